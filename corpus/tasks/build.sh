#!/bin/sh
# Rebuilds the committed binaries of the multi-task corpus (processes, threads, blocking calls, timers, sockets),
# the programs the guest kernel must run byte for byte as Linux does. Separate from ../build.sh so that
# rebuilding these never changes the single-task binaries other tests depend on.
# Output: ../bin/NAME-musl and ../bin/NAME-glibc for each C program (workers keeps its symbols; threads also
# ../bin/threads-dyn, built with plain gcc: dynamically linked against the system's glibc; xzmt: glibc only, with Debian's static
# liblzma), ../bin/go-NAME (Debian's golang-go, CGO_ENABLED=0), ../bin/rust-threads (rustc, musl target).
# Needs: musl-tools, gcc, liblzma-dev, golang-go, rustc with the x86_64-unknown-linux-musl target.
# Usage: corpus/tasks/build.sh [NAME...]     (default: all)
set -eu
cd "$(dirname "$0")"
out=../bin
names="${*:-threads race deadlock procs sockets sockedge timers ready popen ncpu spin workers xzmt go-hello go-chan go-pool rust-threads}"
for name in $names; do
    case "$name" in
    xzmt)
        gcc -static -O2 -s -o "$out/xzmt-glibc" xzmt.c -llzma -lpthread ;;
    popen)
        gcc -static -O2 -s -o "$out/popen-glibc" popen.c ;;
    workers)
        # Symbols and debug information kept: the debugger, gdb server and core tests name its functions.
        musl-gcc -static -O1 -g -fno-omit-frame-pointer -o "$out/workers-musl" workers.c -lpthread
        gcc -static -O1 -g -fno-omit-frame-pointer -o "$out/workers-glibc" workers.c -lpthread ;;
    go-*)
        (cd go && CGO_ENABLED=0 GOFLAGS=-trimpath go build -ldflags='-s -w -buildid=' -o "../$out/$name" "${name#go-}.go") ;;
    rust-threads)
        rustc -O --edition 2021 --target x86_64-unknown-linux-musl -C strip=symbols -o "$out/rust-threads" rust/threads.rs ;;
    *)
        musl-gcc -static -O2 -s -o "$out/$name-musl" "$name.c" -lpthread
        gcc -static -O2 -s -o "$out/$name-glibc" "$name.c" -lpthread
        if [ "$name" = threads ]; then gcc -O2 -s -o "$out/threads-dyn" threads.c -lpthread; fi ;;
    esac
done
ls -l $out | grep -E "$(echo $names | tr ' ' '|')"
