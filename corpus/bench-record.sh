#!/bin/sh
# What recording and replaying cost against `tandem run`, on the corpus benchmarks: corpus/bin/sha256-glibc and
# busybox sha256sum and gzip -c of a SIZE_MB file (the workloads of corpus/bench.sh). For each: the CPU time
# (perf stat's task-clock) and wall time of run, record and replay, as the median of ROUNDS rounds that each run
# all three one after the other (interleaved, so that a slow spell of a shared machine hits all three alike),
# and the ratios the issue sets bars on: record at most +10% over run, replay at least 90% of run speed.
# Reports, never asserts. The trace goes to TRACE_DIR (default: a fresh directory under /tmp, on disk), removed
# before each recording so that no run pays for truncating the previous one's file.
# Usage: cargo build --release && corpus/bench-record.sh [SIZE_MB] [ROUNDS]
set -eu
cd "$(dirname "$0")/.."
size_mb=${1:-20}
rounds=${2:-11}
tandem=$PWD/target/release/tandem
command -v perf > /dev/null || { echo "bench-record.sh: needs perf (Debian package linux-perf)" >&2; exit 2; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
trace=${TRACE_DIR:-$dir}/bench.trace
while [ "$(stat -c %s "$dir/input" 2>/dev/null || echo 0)" -lt $((size_mb * 1048576)) ]; do
    cat /bin/busybox >> "$dir/input"
done
truncate -s $((size_mb * 1048576)) "$dir/input"

# measure NAME CMD...: appends the CPU ms of one run of CMD to $dir/NAME.cpu.
measure() {
    name=$1
    shift
    perf stat -x, -e task-clock -o "$dir/stat" "$@" > /dev/null 2> "$dir/err" || {
        cat "$dir/err" >&2
        exit 1
    }
    cpu=$(grep task-clock "$dir/stat" | cut -d, -f1)
    echo "$cpu" >> "$dir/$name.cpu"
}
wall() { # wall NAME CMD...: appends the wall ms of one run of CMD to $dir/NAME.wall
    name=$1
    shift
    start=$(date +%s%N)
    "$@" > /dev/null 2>&1
    end=$(date +%s%N)
    echo $(((end - start) / 1000000)) >> "$dir/$name.wall"
}
median() { sort -n "$1" | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

printf '%-12s %9s %9s %9s %11s %12s %9s %9s %9s\n' workload run_cpu rec_cpu rep_cpu record/run replay_speed run_wall rec_wall rep_wall
for w in sha256-glibc sha256sum gzip; do
    case $w in
        sha256-glibc) args="-- corpus/bin/sha256-glibc" ;;
        sha256sum) args="--mount $dir -- /bin/busybox sha256sum $dir/input" ;;
        gzip) args="--mount $dir -- /bin/busybox gzip -c $dir/input" ;;
    esac
    rm -f "$dir"/*.cpu "$dir"/*.wall "$trace"
    # shellcheck disable=SC2086
    "$tandem" record -o "$dir/keep.trace" $args > /dev/null 2>&1
    i=0
    while [ $i -lt "$rounds" ]; do
        # shellcheck disable=SC2086
        measure run "$tandem" run $args
        rm -f "$trace"
        # shellcheck disable=SC2086
        measure record "$tandem" record -o "$trace" $args
        measure replay "$tandem" replay "$dir/keep.trace"
        # shellcheck disable=SC2086
        wall run "$tandem" run $args
        rm -f "$trace"
        # shellcheck disable=SC2086
        wall record "$tandem" record -o "$trace" $args
        wall replay "$tandem" replay "$dir/keep.trace"
        i=$((i + 1))
    done
    run=$(median "$dir/run.cpu")
    rec=$(median "$dir/record.cpu")
    rep=$(median "$dir/replay.cpu")
    printf '%-12s %9.1f %9.1f %9.1f %+10.1f%% %11.1f%% %9s %9s %9s\n' "$w" "$run" "$rec" "$rep" \
        "$(echo "($rec / $run - 1) * 100" | bc -l)" "$(echo "$run / $rep * 100" | bc -l)" \
        "$(median "$dir/run.wall")" "$(median "$dir/record.wall")" "$(median "$dir/replay.wall")"
done
echo "(medians of $rounds interleaved rounds; CPU and wall in ms)"
