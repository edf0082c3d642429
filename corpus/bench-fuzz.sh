#!/bin/sh
# Speed of `tandem fuzz` (issue 17). Reports, never asserts. Times are user CPU seconds (/usr/bin/time %U), so a
# loaded machine shares cores without changing the figures much; exec/s per core = executions / user seconds.
# 1. The cost of edge coverage: busybox sha256sum and gzip of a SIZE_MB file under `tandem run`, with and without
#    the hidden --coverage flag (coverage as `tandem fuzz` collects it; compiled blocks then do not chain), JIT on.
# 2. Executions per second per core of `tandem fuzz` on the planted-bug targets (--jobs 1, 60,000 executions).
# Usage: cargo build --release -p tandem && corpus/bench-fuzz.sh [SIZE_MB]
set -eu
cd "$(dirname "$0")/.."
size_mb=${1:-5}
tandem=./target/release/tandem
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
while [ "$(stat -c %s "$dir/input" 2>/dev/null || echo 0)" -lt $((size_mb * 1048576)) ]; do
    cat /bin/busybox >> "$dir/input"
done
truncate -s $((size_mb * 1048576)) "$dir/input"
user() { /usr/bin/time -f %U "$@" 2>&1 >/dev/null | tail -1; }
printf '%-10s %12s %14s %8s\n' workload 'plain (s)' 'coverage (s)' cost
for w in sha256sum gzip; do
    case $w in
        sha256sum) args="sha256sum /in" ;;
        gzip) args="gzip -c /in" ;;
    esac
    plain=$(user $tandem run --mount "$dir/input:/in" -- /bin/busybox $args)
    cov=$(user $tandem run --coverage --mount "$dir/input:/in" -- /bin/busybox $args)
    printf '%-10s %12s %14s %7.0f%%\n' $w "$plain" "$cov" "$(echo "($cov / $plain - 1) * 100" | bc -l)"
done
printf '\n%-22s %8s %10s %12s\n' target execs 'user (s)' 'exec/s/core'
mkdir -p "$dir/seeds"
printf 'FZ....' > "$dir/seeds/a"
for t in magic checksum messages uaf shortread; do
    rm -rf "$dir/out"
    u=$(/usr/bin/time -f %U $tandem fuzz -q --seed 1 --execs 60000 --max-insns 200000 -i "$dir/seeds" -o "$dir/out" \
        -- corpus/bin/fuzz-$t-musl 2>&1 >/dev/null | tail -1)
    e=$(grep -o '"execs":[0-9]*' "$dir/out/stats.json" | head -1 | cut -d: -f2)
    printf '%-22s %8s %10s %12.0f\n' fuzz-$t-musl "$e" "$u" "$(echo "$e / $u" | bc -l)"
done
