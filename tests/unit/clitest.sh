# Assertions shared by the CLI test scripts (sourced). The sourcing script sets
# $castor, $tmp and fails=0; run() leaves $tmp/out, $tmp/err and $rc.

# run ARGS...: runs castor, leaving $tmp/out, $tmp/err and $rc
run() {
	"$castor" "$@" >"$tmp/out" 2>"$tmp/err"
	rc=$?
	last="castor $*"
}

fail() {
	echo "FAIL: $last: $*"
	echo "  stdout: $(head -c 600 "$tmp/out")"
	echo "  stderr: $(head -c 600 "$tmp/err")"
	fails=$((fails + 1))
}

expect_rc() {
	[ "$rc" = "$1" ] || fail "exit status $rc, expected $1"
}

# expect_in out|err FIXED-STRING
expect_in() {
	grep -qF -- "$2" "$tmp/$1" || fail "$1 lacks '$2'"
}

expect_empty() {
	[ ! -s "$tmp/$1" ] || fail "$1 is not empty"
}

# json_check PYTHON-EXPRESSION over j, the JSON object in $tmp/out. Without
# python3 the check fails: a check that cannot run has not passed.
json_check() {
	command -v python3 >/dev/null || { fail "json check '$1': python3 is missing"; return; }
	python3 -c "import json,sys; j=json.load(open(sys.argv[1])); assert $1, j" "$tmp/out" \
		2>"$tmp/pyerr" || fail "json check '$1': $(cat "$tmp/pyerr")"
}
