/* Shared by the planted-bug fuzz targets: read all of stdin (at most FUZZ_INPUT_MAX bytes) with a proper
   retry loop, and crash on purpose with a write through a bad pointer (SIGSEGV at a known place). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#define FUZZ_INPUT_MAX 4096

static size_t read_input(unsigned char *buf, size_t max) {
    size_t got = 0;
    while (got < max) {
        ssize_t n = read(0, buf + got, max - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    return got;
}

__attribute__((noinline)) static void planted_crash(int which) {
    *(volatile int *)(uintptr_t)(16 + which) = which;
}
