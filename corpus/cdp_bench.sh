#!/bin/sh
# Restore time of `tandem cdp restore --at end` against journal length and volume size (BENCHMARKS.md, CDP).
# A volume of SIZE MiB in 64 files is journaled under `volume DIR churn ROUNDS 1` (writes, renames, truncates,
# unlinks, fsyncs on five small files beside the 64), then restored; wall time of the restore, best of 3.
# Usage: corpus/cdp_bench.sh [SIZES_MIB] [ROUNDS]   (from anywhere; needs target/release/tandem)
set -eu
cd "$(dirname "$0")/.."
T=${TANDEM:-target/release/tandem}
SIZES=${1:-"1 16 64"}
ROUNDS=${2:-"1000 10000 100000"}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
for mb in $SIZES; do
    mkdir -p "$W/in-$mb"
    for i in $(seq 1 64); do
        head -c $((mb * 16384)) /dev/urandom > "$W/in-$mb/file$i"
    done
    for rounds in $ROUNDS; do
        "$T" run --volume "$W/in-$mb:/vol" --cdp-journal "$W/j" -- corpus/bin/volume-musl /vol churn "$rounds" 1 \
            > /dev/null 2>&1
        size=$(stat -c %s "$W/j")
        ops=$("$T" cdp list "$W/j" | grep -c '^seq ')
        best=""
        for _ in 1 2 3; do
            rm -rf "$W/out"
            start=$(date +%s%N)
            "$T" cdp restore "$W/j" --at end -o "$W/out" > /dev/null 2>&1
            end=$(date +%s%N)
            ms=$(( (end - start) / 1000000 ))
            if [ -z "$best" ] || [ "$ms" -lt "$best" ]; then best=$ms; fi
        done
        echo "volume ${mb} MiB, ${ops} operations, journal ${size} bytes: restore ${best} ms"
    done
done
