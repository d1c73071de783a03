#!/bin/sh
# castord's command line and configuration, checked without corosync: every
# refusal exits 2 and names the file, the line and the problem.
#   test_castord_args.sh CASTORD
set -u
castord=$1
tmp=$(mktemp -d /tmp/castor-test-castord.XXXXXX)
fails=0
trap 'rm -rf "$tmp"' EXIT

bad() { # EXPECTED ARGS...
	want=$1
	shift
	"$castord" "$@" >"$tmp/out" 2>"$tmp/err"
	rc=$?
	if [ "$rc" != 2 ] || ! grep -qF -- "$want" "$tmp/err"; then
		echo "FAIL: castord $*: exit $rc, stderr '$(head -c 300 "$tmp/err")'; want 2 and '$want'"
		fails=$((fails + 1))
	fi
}

bad "unknown option '--frob'" --frob
bad "option '--config' needs a value" --config
bad "unexpected argument 'x'" x
bad "$tmp/none.conf: No such file or directory" --config "$tmp/none.conf"
printf 'node = a\nnode = b\n' >"$tmp/twice.conf"
bad "$tmp/twice.conf:2: node is set again (first on line 1)" --config "$tmp/twice.conf"
printf '# no node\nwitness = yes\n' >"$tmp/nonode.conf"
bad "'node = NAME' is required" --config "$tmp/nonode.conf"
printf 'node = a\ncontrol = relative.sock\n' >"$tmp/rel.conf"
bad "$tmp/rel.conf:2: control: 'relative.sock' is not an absolute path" --config "$tmp/rel.conf"
mkdir "$tmp/dir.conf"
bad "not a regular file" --config "$tmp/dir.conf"
# the shipped example parses (castord stops at the control socket, which /run/castor lacks here,
# or would start: so only the config is checked, through a copy whose control path is ours)
example=$(dirname "$0")/../../clusterd/dist/castord.conf.example
sed "s|^control = .*|control = $tmp/c.sock|" "$example" >"$tmp/example.conf"
sed -i "s|^metrics = .*|metrics = off|" "$tmp/example.conf"
printf 'colour = red\n' >>"$tmp/example.conf"
bad "example.conf:$(($(wc -l <"$example") + 1)): unknown setting 'colour'" --config "$tmp/example.conf"
"$castord" --help | grep -q "usage: castord" || { echo "FAIL: --help"; fails=$((fails + 1)); }

[ "$fails" = 0 ] && echo "castord arguments: all checks passed" && exit 0
exit 1
