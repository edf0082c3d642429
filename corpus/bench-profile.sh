#!/bin/sh
# The profile scores table of BENCHMARKS.md (issue 16, part 1): each program is recorded once with no arguments
# and stdin from /dev/null, then `tandem profile --from TRACE -- PROG` scores the static profile of the binary
# against the syscalls the run entered. Prints one markdown row per program and the means. Reports, never asserts.
# Traces are kept in TRACES (default /tmp/tandem-profile-traces) and reused when present (delete them after a
# change that alters what runs do).
# Usage: cargo build --release -p tandem && corpus/bench-profile.sh [PROGRAM...]
#        (default: every program of corpus/bin, and the Debian busybox applets below)
set -eu
cd "$(dirname "$0")/.."
tandem=${TANDEM:-./target/release/tandem}
traces=${TRACES:-/tmp/tandem-profile-traces}
mkdir -p "$traces"
if [ $# -eq 0 ]; then
    set -- $(ls corpus/bin)
fi
echo '| program | static | observed | precision | recall | F1 | unresolved | missed |'
echo '|---|---|---|---|---|---|---|---|'
for p in "$@"; do
    case $p in
        */*) prog=$p ;;
        *) prog=corpus/bin/$p ;;
    esac
    name=$(basename "$prog")
    trace=$traces/$name.trace
    if [ ! -s "$trace" ]; then
        $tandem record --max-insns 2000000000 -o "$trace" -- "$prog" </dev/null >/dev/null 2>&1 || true
    fi
    if [ ! -s "$trace" ]; then
        echo "| $name | (no trace) | | | | | | |"
        continue
    fi
    out=$($tandem profile --from "$trace" -- "$prog" 2>"$traces/$name.err") || {
        echo "| $name | (error: $(head -1 "$traces/$name.err")) | | | | | | |"
        continue
    }
    echo "$out" | awk -v name="$name" '
        /^# static profile/ { for (i = 1; i <= NF; i++) { if ($i == "syscalls") st = $(i - 1); if ($i == "unresolved)") un = $(i - 1) } }
        /^# compared/ { for (i = 1; i <= NF; i++) { if ($i == "observed,") ob = $(i - 1); if ($i == "precision") p = $(i + 1); if ($i == "recall") r = $(i + 1); if ($i == "F1") f = $(i + 1) } }
        /^# missed:/ { sub(/^# missed: /, ""); m = $0 }
        END { printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", name, st, ob, p, r, f, un, m }'
done | tee "$traces/table.md"
awk -F'|' '$4 ~ /[0-9]/ { n++; p += $5; r += $6; f += $7 }
    END { if (n) printf "\n%d programs: mean precision %.3f, recall %.3f, F1 %.3f\n", n, p / n, r / n, f / n }' \
    "$traces/table.md"
