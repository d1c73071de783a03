#!/bin/sh
# QEMU COLO with Castor's test guest: guest throughput and checkpoint pause per
# checkpoint interval, beside an unprotected run. CSV on stdout; see
# scripts/bench_colo.py (its header, or --help) for the options and the columns.
#   scripts/bench-colo.sh [--intervals 5,10,25,50,100] [--rate 100] [--secs 15] [--json FILE] ...
exec python3 "$(dirname "$0")/bench_colo.py" "$@"
