#!/bin/sh
# tandem fuzz against AFL++ on the five planted-bug targets of corpus/src/fuzz (issue 17). Reports, never asserts.
#
# AFL++ (Debian's afl++ 4.04c): each source built with afl-clang-fast -O2 (classic fork server, no persistent
# mode: the targets read stdin with read(2) and keep no harness), with AFL_LLVM_DICT2FILE's dictionary of the
# comparison constants the compiler saw passed as -x (the counterpart of tandem's dictionary of the constants
# its decoder sees). One afl-fuzz per seed (-s SEED), AFL_BENCH_UNTIL_CRASH=1.
# tandem: tandem fuzz --jobs 1 --until-crash on the musl static builds of the same sources (corpus/bin).
# Both are capped at EXECS executions (afl-fuzz -E), FAULT_EXECS for the two fault-only targets, which no input
# reaches (AFL++'s stdin is a regular file, read(2) is never short, malloc never fails): executions, not wall
# time, so that a loaded machine does not cut one fuzzer's runs shorter than the other's.
# Both start from the same one-file seed corpus per target. "execs" is the executions when the first crash was
# saved (AFL++'s crash name execs:N; tandem's stats.json); cpu s is user + system CPU of the whole run
# (/usr/bin/time, children included); exec/s per core = all executions / cpu s. The load average is printed:
# the machine is shared, so wall times mean little and CPU times are the figures.
# Usage: cargo build --release -p tandem && corpus/bench-afl.sh [afl|tandem|both|summary]
# (summary: only the table, from the results file of an earlier run kept in WORK.)
# Environment: SEEDS (10), EXECS (200000), FAULT_EXECS (50000), TARGETS ("magic checksum messages uaf
# shortread"), WORK (a kept directory; default a temporary one).
set -eu
cd "$(dirname "$0")/.."
which=${1:-both}
seeds=${SEEDS:-10}
execs_max=${EXECS:-200000}
fault_execs_max=${FAULT_EXECS:-50000}
targets=${TARGETS:-magic checksum messages uaf shortread}
if [ -n "${WORK:-}" ]; then
    dir=$WORK
    mkdir -p "$dir"
else
    dir=$(mktemp -d)
    trap 'rm -rf "$dir"' EXIT
fi
tandem=./target/release/tandem
export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1 AFL_BENCH_UNTIL_CRASH=1
export AFL_QUIET=1

# The seed corpus of a target (the one tests/fuzz_cli.rs uses).
seed_corpus() {
    rm -rf "$dir/in-$1"
    mkdir -p "$dir/in-$1"
    case $1 in
        magic) printf 'FZ....' ;;
        checksum) printf 'X\003abc\000' ;;
        messages) printf 'HELO\000\000\000\000' ;;
        uaf) printf 'hi\n' ;;
        shortread) printf 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' ;;
    esac > "$dir/in-$1/a"
}

# The median of column 2 over the lines on stdin (column 1 "-": a run that found nothing, larger than any
# number); "-" when the median run found nothing.
median() {
    awk '$1 == "-" { none++; next } { print $2 } END { for (i = 0; i < none; i++) print "-" }' |
        sort -n -k1,1 | awk '$1 != "-" { v[++n] = $1; next } { m++ } END {
            k = int((n + m + 1) / 2)
            print (k <= n ? v[k] : "-") }'
}

# CPU seconds (user + system) from a /usr/bin/time -f '%U %S' file.
# (The last line: a "Command exited with non-zero status" line comes first when the fuzzer found something.)
cpu_of() { tail -1 "$1" | awk '{ printf "%.2f", $1 + $2 }'; }

# The execution cap of target $1.
cap_of() {
    case $1 in uaf | shortread) echo "$fault_execs_max" ;; *) echo "$execs_max" ;; esac
}

run_afl() {
    t=$1 s=$2
    out="$dir/afl-out-$t-$s"
    rm -rf "$out"
    dict=
    [ -s "$dir/afl-$t.dict" ] && dict="-x $dir/afl-$t.dict"
    # shellcheck disable=SC2086
    /usr/bin/time -f '%U %S' -o "$dir/time" afl-fuzz -E "$(cap_of "$t")" -s "$s" $dict -i "$dir/in-$t" -o "$out" \
        -- "$dir/afl-$t" > "$dir/afl.log" 2>&1 || true
    stats="$out/default/fuzzer_stats"
    total=$(awk -F' *: *' '$1 == "execs_done" { print $2 }' "$stats")
    crash=$(ls "$out/default/crashes" 2>/dev/null | grep '^id:' | head -1 || true)
    if [ -n "$crash" ]; then
        found=$(echo "$crash" | sed 's/.*execs:\([0-9]*\).*/\1/')
    else
        found=-
    fi
    echo "afl $t $s $found $total $(cpu_of "$dir/time")"
    rm -rf "$out"
}

run_tandem() {
    t=$1 s=$2
    out="$dir/tandem-out-$t-$s"
    rm -rf "$out"
    /usr/bin/time -f '%U %S' -o "$dir/time" $tandem fuzz -q --until-crash --seed "$s" --execs "$(cap_of "$t")" \
        --max-insns 200000 -i "$dir/in-$t" -o "$out" -- "corpus/bin/fuzz-$t-musl" > /dev/null 2>&1 || true
    total=$(grep -o '"execs":[0-9]*' "$out/stats.json" | head -1 | cut -d: -f2)
    found=$(grep -o '"findings":\[{[^}]*' "$out/stats.json" | grep -o '"execs":[0-9]*' | head -1 | cut -d: -f2)
    echo "tandem $t $s ${found:--} $total $(cpu_of "$dir/time")"
    rm -rf "$out"
}

echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
[ "$which" = summary ] && targets_run= || targets_run=$targets
[ "$which" = summary ] || : > "$dir/results"
for t in $targets_run; do
    seed_corpus "$t"
    case $which in
        afl | both)
            AFL_LLVM_DICT2FILE="$dir/afl-$t.dict" afl-clang-fast -O2 -o "$dir/afl-$t" "corpus/src/fuzz/$t.c" ;;
    esac
    for s in $(seq 1 "$seeds"); do
        case $which in afl | both) run_afl "$t" "$s" | tee -a "$dir/results" ;; esac
        case $which in tandem | both) run_tandem "$t" "$s" | tee -a "$dir/results" ;; esac
    done
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"

printf '\n%-7s %-10s %6s %14s %12s %12s\n' fuzzer target found 'median execs' 'median cpu s' 'exec/s/core'
for f in afl tandem; do
    for t in $targets; do
        rows=$(awk -v f=$f -v t=$t '$1 == f && $2 == t' "$dir/results")
        [ -n "$rows" ] || continue
        n=$(echo "$rows" | wc -l)
        hit=$(echo "$rows" | awk '$4 != "-"' | wc -l)
                med=$(echo "$rows" | awk '{ print $4, $4 }' | median)
        # CPU seconds to the bug: the run's CPU time when it stopped at the crash.
        cpu=$(echo "$rows" | awk '{ print $4, $6 }' | median)
        rate=$(echo "$rows" | awk '{ e += $5; c += $6 } END { printf "%.0f", (c > 0 ? e / c : 0) }')
        printf '%-7s %-10s %3s/%-2s %14s %12s %12s\n' $f $t "$hit" "$n" "$med" "$cpu" "$rate"
    done
done
