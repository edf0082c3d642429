#!/bin/sh
# Wall and CPU time of a fault-tolerant pair (`tandem ft`) against one guest (`tandem run`) on two cores, at three
# epoch lengths: the median of ROUNDS runs of each, measured with /usr/bin/time. Reports, never asserts.
# Modes: run-ahead (--run-ahead: backups on threads, the primary running the next epoch while the last is
# compared), lockstep (the default: the primary waits for each comparison), no-threads (one host thread).
# Usage: cargo build --release -p tandem && corpus/bench-ft.sh [ROUNDS] -- PROGRAM ARGS
# (default: 5 rounds of corpus/bin/sha256-musl abc). TANDEM_FLAGS go to both `run` and `ft`, e.g.
# TANDEM_FLAGS="--mount /tmp/ftb/dd:/data" corpus/bench-ft.sh 5 -- /bin/busybox sha256sum /data/in
set -eu
cd "$(dirname "$0")/.."
rounds=${1:-5}
[ $# -gt 0 ] && shift
[ "${1:-}" = "--" ] && shift
[ $# -eq 0 ] && set -- corpus/bin/sha256-musl abc
tandem=${TANDEM:-./target/release/tandem}
flags=${TANDEM_FLAGS:-}
out=$(mktemp)
trap 'rm -f "$out"' EXIT

median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

measure() { # prints "wall cpu" medians of ROUNDS runs of "$@"
    : > "$out.w"; : > "$out.c"
    for _ in $(seq "$rounds"); do
        /usr/bin/time -f "%e %U %S" -o "$out" "$@" > /dev/null 2>&1 < /dev/null
        awk '{print $1}' "$out" >> "$out.w"
        awk '{print $2 + $3}' "$out" >> "$out.c"
    done
    echo "$(median < "$out.w") $(median < "$out.c")"
    rm -f "$out.w" "$out.c"
}

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
set -- "$@"
# shellcheck disable=SC2086 # TANDEM_FLAGS is split at spaces on purpose
one=$(measure "$tandem" run $flags -- "$@")
printf '%-30s %8s %8s %10s\n' run wall_s cpu_s wall_ratio
printf '%-30s %8s %8s %10s\n' "one guest" $one 1.00
w1=${one%% *}
for epoch in 10000000 1000000 100000; do
    for mode in run-ahead lockstep no-threads; do
        flag=""
        [ $mode = run-ahead ] && flag=--run-ahead
        [ $mode = no-threads ] && flag=--no-threads
        # shellcheck disable=SC2086
        r=$(measure "$tandem" ft $flags $flag --epoch $epoch -- "$@")
        w=${r%% *}
        printf '%-30s %8s %8s %10s\n' "pair, epoch $epoch, $mode" $r "$(echo "scale=2; $w / $w1" | bc)"
    done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
