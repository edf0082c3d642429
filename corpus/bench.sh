#!/bin/sh
# Speed of `tandem run` against native execution and qemu-x86_64 (Debian's qemu-user) on the issue's workloads:
# busybox sha256sum and gzip of a 20 MB file. Prints wall times and the tandem/qemu ratio. Reports, never asserts.
# Usage: cargo build --release && corpus/bench.sh [SIZE_MB]
set -eu
cd "$(dirname "$0")/.."
size_mb=${1:-20}
tandem=./target/release/tandem
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
# Compressible but not trivial input: the busybox binary repeated.
while [ "$(stat -c %s "$dir/input" 2>/dev/null || echo 0)" -lt $((size_mb * 1048576)) ]; do
    cat /bin/busybox >> "$dir/input"
done
truncate -s $((size_mb * 1048576)) "$dir/input"

secs() { # run "$@" and print the wall time in seconds
    start=$(date +%s.%N)
    "$@" > /dev/null
    end=$(date +%s.%N)
    echo "$end - $start" | bc
}

printf '%-10s %9s %9s %9s %12s\n' workload native qemu tandem tandem/qemu
for w in sha256sum gzip; do
    case $w in
        sha256sum) args="sha256sum $dir/input" ;;
        gzip) args="gzip -c $dir/input" ;;
    esac
    n=$(secs /bin/busybox $args)
    q=$(secs qemu-x86_64 /bin/busybox $args)
    t=$(secs $tandem run --mount "$dir" -- /bin/busybox $args)
    printf '%-10s %9.2f %9.2f %9.2f %12.2f\n' "$w" "$n" "$q" "$t" "$(echo "$t / $q" | bc -l)"
done
