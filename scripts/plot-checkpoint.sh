#!/bin/sh
# Plot guest throughput and checkpoint pause against the epoch interval, Castor
# beside QEMU COLO, from the CSVs of `castor bench checkpoint --csv` and
# scripts/bench-colo.sh (gnuplot from Debian's gnuplot-nox).
#   scripts/plot-checkpoint.sh CASTOR.csv COLO.csv OUT.png [RATE]
# RATE picks Castor's rows of that guest rate (default: max).
set -eu
castor=$1 colo=$2 out=$3 rate=${4:-max}
command -v gnuplot >/dev/null || { echo "plot-checkpoint: gnuplot is not installed" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# interval, throughput, pause p50 (ms)
awk -F, -v r="$rate" 'NR > 1 && $1 == r && $NF == "ok" { print $2, $21, $3 }' "$castor" > "$tmp/castor.dat"
for v in stock nodelay; do
	awk -F, -v v="$v" 'NR > 1 && $2 == v && $NF == "ok" { print $1, $4, $6 }' "$colo" > "$tmp/colo-$v.dat"
done
gnuplot <<EOF
set terminal pngcairo size 1100,450 noenhanced
set output "$out"
set multiplot layout 1,2
set logscale x
set xlabel "epoch / checkpoint interval (ms)"
set key top left
set grid
set ylabel "guest throughput (fraction of unprotected)"
set yrange [0:1.2]
plot "$tmp/castor.dat" using 1:2 with linespoints title "Castor", \
     "$tmp/colo-nodelay.dat" using 1:2 with linespoints title "QEMU COLO (TCP_NODELAY)", \
     "$tmp/colo-stock.dat" using 1:2 with linespoints title "QEMU COLO (stock)"
set ylabel "pause p50 (ms)"
set yrange [0:*]
plot "$tmp/castor.dat" using 1:3 with linespoints title "Castor", \
     "$tmp/colo-nodelay.dat" using 1:3 with linespoints title "QEMU COLO (TCP_NODELAY)", \
     "$tmp/colo-stock.dat" using 1:3 with linespoints title "QEMU COLO (stock)"
unset multiplot
EOF
echo "plot-checkpoint: wrote $out"
