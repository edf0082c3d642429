/* Crashes on purpose, keeping its symbols, for the core-dump tests: main -> descend (3 levels) -> crash_here,
   which sets the global crash_marker and then faults. gdb on the core must name crash_here in `bt`, show the
   emulator's rip, and print crash_marker = 0x5eed5eed.

   Usage: crash [segv|abort|ill|fpe]   (default segv) */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

long crash_marker = 0x1234;
int crash_depth;

__attribute__((noinline)) void crash_here(volatile int *p, const char *how) {
    crash_marker = 0x5eed5eed;
    if (strcmp(how, "abort") == 0)
        abort();
    if (strcmp(how, "ill") == 0)
        __builtin_trap();
    if (strcmp(how, "fpe") == 0) {
        volatile int one = 1, zero = 0;
        crash_depth = one / zero;
    }
    *p = 42;
}

__attribute__((noinline)) void descend(int n, const char *how) {
    if (n == 0)
        crash_here((volatile int *)16, how);
    else
        descend(n - 1, how);
    crash_depth += n; /* not a tail call: every level keeps its frame */
}

int main(int argc, char **argv) {
    const char *how = argc > 1 ? argv[1] : "segv";
    printf("crashing by %s\n", how);
    fflush(stdout);
    descend(3, how);
    printf("not reached\n");
    return 0;
}
