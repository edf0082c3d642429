#!/bin/sh
# Rebuilds the committed corpus binaries: each program in src/ with musl-gcc -static and with gcc -static (glibc).
# Output: bin/NAME-musl and bin/NAME-glibc. Stripped (-s) to keep the repository small, except hello and rewind, which
# keep their symbols for the gdb and replay-debugger tests, and crash and sigbus, which keep theirs for the core-dump and fault tests,
# and overflow, which keeps its for the reverse-watchpoint tests. Needs musl-tools (musl-gcc) and gcc.
# Usage: corpus/build.sh            (from anywhere)
set -eu
cd "$(dirname "$0")"
mkdir -p bin
for src in src/*.c; do
    name=$(basename "$src" .c)
    strip=-s
    case "$name" in hello|rewind|crash|sigbus|overflow) strip=-g ;; esac
    musl-gcc -static -O2 $strip -o "bin/$name-musl" "$src" -lm
    gcc -static -O2 $strip -o "bin/$name-glibc" "$src" -lm
done
ls -l bin
