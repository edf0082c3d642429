#!/bin/sh
# The profile scores table of BENCHMARKS.md (issue 16, part 1): the static profile of each program's binary
# (`tandem profile -- PROG`) scored against two dynamic profiles:
#   usage-only  the program recorded once with no arguments and stdin from /dev/null (most corpus programs then
#               print a usage line or run their one fixed job)
#   exercised   the union of that run and every run corpus/profile-runs.txt lists for the program (real
#               arguments, inputs, mounts and volumes, as the tests use them)
#   perturbed   (PERTURB=1) the union of the exercised runs and, for each of them and each syscall it made, the
#               same run with the first call of that syscall failing (`--syscall-faults 'NAME 1 errno E'`,
#               ENOMEM for the memory calls, EIO for the others): the error paths a sound profile must also allow
# Prints one markdown row per program and the means of both. Reports, never asserts. Traces are kept in TRACES
# (default /tmp/tandem-profile-traces) and reused when present (delete them after a change that alters runs).
# Usage: cargo build --release -p tandem && corpus/bench-profile.sh [PROGRAM...]
#        (default: every program of corpus/bin, and `busybox`, Debian's /bin/busybox with the applet runs listed)
set -eu
cd "$(dirname "$0")/.."
tandem=${TANDEM:-./target/release/tandem}
traces=${TRACES:-/tmp/tandem-profile-traces}
runs=corpus/profile-runs.txt
mkdir -p "$traces"
if [ $# -eq 0 ]; then
    set -- $(ls corpus/bin) busybox
fi
tab=$(printf '\t')

# A fresh scratch directory: the inputs the runs of profile-runs.txt name through @DIR.
fill_scratch() {
    rm -rf "$1"
    mkdir -p "$1/data" "$1/vol/in"
    printf 'first line\nsecond line\nthird line\n' >"$1/in.txt"
    printf 'the readme\n' >"$1/data/readme"
    printf 's3cr3t\n' >"$1/data/secret"
    printf 'keep\n' >"$1/vol/keep.txt"
    printf 'old\n' >"$1/vol/old.txt"
    printf '0123456789' >"$1/vol/in/data.bin"
}

# record TRACE PROGRAM OPTIONS ARGUMENTS STDIN [FAULT]: one run (with FAULT, a --syscall-faults line), unless its trace is there already. Each run gets a
# scratch directory and a stdin file of its own, named after its trace and removed once the run is over (never
# a pipe: a program that exits without reading its stdin would leave the writer with EPIPE, which dash reports
# as an I/O error). The trace is written beside its place and moved there when the recording ends, so that an
# interrupted run is not reused; a run that leaves no trace is reported on stderr.
record() {
    [ -s "$1" ] && return 0
    scratch=$1.scratch
    input=/dev/null
    fill_scratch "$scratch"
    options=$(printf '%s' "$3" | sed "s|@DIR|$scratch|g")
    arguments=$(printf '%s' "$4" | sed "s|@DIR|$scratch|g")
    if [ -n "$5" ]; then
        input=$1.stdin
        printf '%b' "$5" >"$input"
    fi
    # A guest that fails still leaves its trace (tandem record's status is the guest's).
    # shellcheck disable=SC2086 # options and arguments are split at spaces on purpose (see profile-runs.txt)
    if [ -n "${6:-}" ]; then
        # shellcheck disable=SC2086
        $tandem record --max-insns 2000000000 $options --syscall-faults "$6" -o "$1.part" -- "$2" $arguments \
            <"$input" >/dev/null 2>"$1.log" || true
    else
        # shellcheck disable=SC2086
        $tandem record --max-insns 2000000000 $options -o "$1.part" -- "$2" $arguments <"$input" \
            >/dev/null 2>"$1.log" || true
    fi
    if [ -s "$1.part" ]; then
        mv "$1.part" "$1"
    else
        echo "bench-profile: no trace from $2 $4: $(head -c 300 "$1.log")" >&2
    fi
    rm -rf "$scratch" "$1.stdin" "$1.part" "$1.log"
}

# score PROGRAM TRACE...: the `# static`, `# compared` and `# missed` lines as "static unresolved observed
# precision recall F1 missed".
score() {
    prog=$1
    shift
    $tandem profile --from "$@" -- "$prog" 2>/dev/null </dev/null | awk '
        /^# static profile/ { for (i = 1; i <= NF; i++) { if ($i == "syscalls") st = $(i - 1); if ($i == "unresolved)") un = $(i - 1) } }
        /^# compared/ { for (i = 1; i <= NF; i++) { if ($i == "observed,") ob = $(i - 1); if ($i == "precision") p = $(i + 1); if ($i == "recall") r = $(i + 1); if ($i == "F1") f = $(i + 1) } }
        /^# missed:/ { sub(/^# missed: /, ""); m = $0 }
        END { if (st != "") printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", st, un, ob, p, r, f, m }'
}

# perturb TRACE PROGRAM OPTIONS ARGUMENTS STDIN: with PERTURB=1, records the run once for each syscall TRACE
# made, its first call failing; prints the traces made.
perturb() {
    [ "${PERTURB:-0}" = 1 ] && [ -s "$1" ] || return 0
    for call in $($tandem profile --from "$1" 2>/dev/null | awk '!/^#/ { print $2 }'); do
        case $call in
            mmap | mremap | munmap | mprotect | madvise | brk) errno=ENOMEM ;;
            exit | exit_group) continue ;;
            *) errno=EIO ;;
        esac
        record "${1%.trace}.f-$call.trace" "$2" "$3" "$4" "$5" "$call 1 errno $errno"
        [ -s "${1%.trace}.f-$call.trace" ] && printf '%s ' "${1%.trace}.f-$call.trace"
    done
}

if [ "${PERTURB:-0}" = 1 ]; then
    echo '| program | static | runs | observed: usage-only | F1 | observed: exercised | precision | recall | F1 | unresolved | missed (exercised) | runs: perturbed | observed: perturbed | precision | recall | F1 | missed (perturbed) |'
    echo '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|'
else
    echo '| program | static | runs | observed: usage-only | F1 | observed: exercised | precision | recall | F1 | unresolved | missed (exercised) |'
    echo '|---|---|---|---|---|---|---|---|---|---|---|'
fi
for p in "$@"; do
    case $p in
        busybox) prog=/bin/busybox ;;
        */*) prog=$p ;;
        *) prog=corpus/bin/$p ;;
    esac
    name=$(basename "$p")
    echo "bench-profile: $name" >&2
    usage=$traces/$name.0.trace
    if [ "$name" = busybox ]; then
        record "$usage" "$prog" "" "--help" ""
        perturbed=$(perturb "$usage" "$prog" "" "--help" "")
    else
        record "$usage" "$prog" "" "" ""
        perturbed=$(perturb "$usage" "$prog" "" "" "")
    fi
    set -- "$usage"
    n=0
    # The program's lines of the runs table, fields separated by tabs, spaces around them trimmed.
    lines=$(awk -F'|' -v name="$name" '
        /^#/ || NF < 4 { next }
        { for (i = 1; i <= 4; i++) gsub(/^[ \t]+|[ \t]+$/, "", $i) }
        $1 == name { printf "%s\t%s\t%s\n", ($2 == "" ? "-" : $2), ($3 == "" ? "-" : $3), ($4 == "" ? "-" : $4) }' "$runs")
    if [ -n "$lines" ]; then
        while IFS="$tab" read -r options arguments stdin; do
            n=$((n + 1))
            [ "$options" = - ] && options=
            [ "$arguments" = - ] && arguments=
            [ "$stdin" = - ] && stdin=
            record "$traces/$name.$n.trace" "$prog" "$options" "$arguments" "$stdin"
            perturbed="$perturbed $(perturb "$traces/$name.$n.trace" "$prog" "$options" "$arguments" "$stdin")"
        done <<LINES
$lines
LINES
    fi
    all=$usage
    i=1
    while [ $i -le $n ]; do
        [ -s "$traces/$name.$i.trace" ] && all="$all $traces/$name.$i.trace"
        i=$((i + 1))
    done
    if [ ! -s "$usage" ]; then
        echo "| $name | (no trace) | | | | | | | | | |"
        continue
    fi
    u=$(score "$prog" "$usage")
    # shellcheck disable=SC2086 # the trace paths have no spaces
    e=$(score "$prog" $all)
    if [ -z "$u" ] || [ -z "$e" ]; then
        echo "| $name | (error: $($tandem profile -- "$prog" 2>&1 >/dev/null </dev/null | head -1)) | | | | | | | | | |"
        continue
    fi
    runs_count=$(echo "$all" | wc -w)
    row=$(printf '%s\t%s\n' "$u" "$e" | awk -F'\t' -v name="$name" -v runs="$runs_count" '
        { printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |", name, $1, runs, $3, $6, $10, $11, $12, $13, $9, $14 }')
    if [ "${PERTURB:-0}" = 1 ]; then
        # shellcheck disable=SC2086 # the trace paths have no spaces
        f=$(score "$prog" $all $perturbed)
        row="$row$(printf '%s\n' "$f" | awk -F'\t' -v runs="$(echo "$perturbed" | wc -w)" '
            { printf " %s | %s | %s | %s | %s | %s |", runs, $3, $4, $5, $6, $7 }')"
    fi
    echo "$row"
done | tee "$traces/table.md"
awk -F'|' '$3 ~ /[0-9]/ { n++; fu += $6; p += $8; r += $9; f += $10; pp += $15; pr += $16; pf += $17 }
    END { if (n) printf "\n%d programs: usage-only mean F1 %.3f; exercised mean precision %.3f, recall %.3f, F1 %.3f\n", n, fu / n, p / n, r / n, f / n
          if (n && pp + pr > 0) printf "perturbed: mean precision %.3f, recall %.3f, F1 %.3f\n", pp / n, pr / n, pf / n }' \
    "$traces/table.md"
