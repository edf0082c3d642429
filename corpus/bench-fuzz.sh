#!/bin/sh
# Speed of `tandem fuzz` (issue 17). Reports, never asserts. Times are user CPU seconds (/usr/bin/time %U), so a
# loaded machine shares cores without changing the figures much; exec/s per core = executions / user seconds.
# 1. The cost of edge coverage: busybox sha256sum and gzip of a SIZE_MB file under `tandem run`, with and without
#    the hidden --coverage flag (coverage as `tandem fuzz` collects it: compiled blocks record their own edges),
#    JIT on.
# 2. Executions per second per core of `tandem fuzz` on the planted-bug targets (--jobs 1, 60,000 executions).
# 3. A real library (libexpat), below.
# Usage: cargo build --release -p tandem && corpus/bench-fuzz.sh [SIZE_MB]
set -eu
cd "$(dirname "$0")/.."
size_mb=${1:-20}
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
# 3. A real library nobody here wrote: Debian's libexpat 2.5.0 behind corpus/src/realfuzz/expat.c, the test case
#    as a file (@@), EXPAT_EXECS executions (default 100,000) at seeds 1 and 2 from three small XML documents.
printf '\n%-6s %8s %10s %12s %6s %6s %8s\n' seed execs 'user (s)' 'exec/s/core' edges queue findings
mkdir -p "$dir/xml"
printf '<?xml version="1.0"?>\n<a x="1"><b>text</b><c/></a>\n' > "$dir/xml/a"
printf '<!DOCTYPE r [<!ENTITY e "v"><!ELEMENT r ANY>]>\n<r xmlns:n="urn:n"><n:i n:k="&e;"/><!-- c --><?p d?></r>\n' \
    > "$dir/xml/b"
printf '<r><![CDATA[x<y]]>&#x41;&amp;</r>\n' > "$dir/xml/c"
for s in 1 2; do
    rm -rf "$dir/out"
    u=$(/usr/bin/time -f %U $tandem fuzz -q --seed $s --execs "${EXPAT_EXECS:-100000}" --max-insns 2000000 \
        -i "$dir/xml" -o "$dir/out" -- corpus/bin/fuzz-expat-glibc @@ 2>&1 >/dev/null | tail -1)
    stat() { grep -o "\"$1\":[0-9]*" "$dir/out/stats.json" | head -1 | cut -d: -f2; }
    printf '%-6s %8s %10s %12.0f %6s %6s %8s\n' $s "$(stat execs)" "$u" "$(echo "$(stat execs) / $u" | bc -l)" \
        "$(stat edges)" "$(stat queue)" "$(($(stat crashes) + $(stat hangs)))"
done
