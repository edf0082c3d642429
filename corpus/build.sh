#!/bin/sh
# Rebuilds the committed corpus binaries: each C program in src/ with musl-gcc -static and with gcc -static (glibc).
# Output: bin/NAME-musl and bin/NAME-glibc; bin/NAME-dyn for a few of them, built with plain gcc (dynamically
# linked against the system's glibc, a PIE: the dynamic-loader tests, hello-dyn with symbols for gdb; maps only
# so); also bin/throw-glibc (src/throw.cpp, g++) and bin/unwind-rust
# (src/unwind.rs, rustc). Stripped (-s) to keep the repository small, except hello and rewind, which
# keep their symbols for the gdb and replay-debugger tests, crash and sigbus, which keep theirs for the core-dump and
# fault tests, and overflow, which keeps its for the reverse-watchpoint tests. Needs musl-tools (musl-gcc), gcc, g++
# rustc, libsqlite3-dev, libexpat1-dev and a JDK (javac).
# Usage: corpus/build.sh            (from anywhere)
set -eu
cd "$(dirname "$0")"
mkdir -p bin
for src in src/*.c; do
    name=$(basename "$src" .c)
    strip=-s
    case "$name" in hello|rewind|crash|sigbus|overflow) strip=-g ;; maps) continue ;; esac
    musl-gcc -static -O2 $strip -o "bin/$name-musl" "$src" -lm
    gcc -static -O2 $strip -o "bin/$name-glibc" "$src" -lm
done
# The modified builds of the service (src/service.c) that `tandem baseline check` must catch (tests/baseline.rs):
# one leaks a file, one adds a network call. musl only, bin/service-leak-musl and bin/service-net-musl.
musl-gcc -static -O2 -s -DLEAK -o bin/service-leak-musl src/service.c
musl-gcc -static -O2 -s -DNET -o bin/service-net-musl src/service.c
# The planted-bug targets of `tandem fuzz` (tests/fuzz_cli.rs): musl only, bin/fuzz-NAME-musl.
for src in src/fuzz/*.c; do
    musl-gcc -static -O2 -s -o "bin/fuzz-$(basename "$src" .c)-musl" "$src"
done
# The crash-consistency programs of `tandem crashtest` (tests/crashtest.rs): save (musl) and sqlite-txn, linked
# against Debian's libsqlite3-dev (glibc: apt-get install libsqlite3-dev).
musl-gcc -static -O2 -s -o bin/save-musl src/crash/save.c
gcc -static -O2 -s -o bin/sqlite-txn-glibc src/crash/sqlite-txn.c -lsqlite3 -lm -lpthread
# A real library as a fuzz target (BENCHMARKS.md): Debian's libexpat, static with glibc (needs libexpat1-dev).
gcc -static -O2 -s -o bin/fuzz-expat-glibc src/realfuzz/expat.c -lexpat
for name in hello crash sha256 qsort fileio mmx maps; do
    strip=-s
    case "$name" in hello|crash) strip=-g ;; esac
    gcc -O2 $strip -o "bin/$name-dyn" "src/$name.c" -lm
done
# C++ exceptions and Rust panics unwind through libgcc's unwinder, which runs rdsspq on every throw. glibc only (no
# musl C++ toolchain here); Rust links glibc statically (static-pie) when the musl target is not installed.
g++ -static -O2 -s -o bin/throw-glibc src/throw.cpp
if rustup target list --installed 2>/dev/null | grep -q x86_64-unknown-linux-musl; then
    rustc --edition 2021 -O -C strip=symbols --target x86_64-unknown-linux-musl -o bin/unwind-rust src/unwind.rs
else
    rustc --edition 2021 -O -C strip=symbols -C target-feature=+crt-static -o bin/unwind-rust src/unwind.rs
fi
# The JVM's end-to-end test (tests/dynamic.rs): class files for Java 11 and later, in java/ (not bin/, whose
# files are all ELF programs).
javac --release 11 -d java src/java/Tasks.java
ls -l bin
