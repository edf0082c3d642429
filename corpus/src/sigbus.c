/* Recovery from uncorrectable memory errors with a SIGBUS handler (the pattern of Linux's mm/memory-failure.c
   users: databases and caches that can rebuild lost data).

   A table of derived values lives in its own anonymous pages. When a page of it is lost, the kernel (here:
   tandem's hypervisor) sends SIGBUS with si_code BUS_MCEERR_AR when the program touches the page (late kill) or
   BUS_MCEERR_AO at once (early kill), si_addr inside the page and si_addr_lsb 12. The handler maps a fresh page
   over the lost one, recomputes its values and returns; a touching load is retried and now succeeds, so the
   program's output is what it would have been without the error. A SIGBUS for memory outside the table (stack,
   libc data) cannot be recovered: the handler restores the default action, and the retried access kills the
   process. The handler runs on an alternate stack, so it also runs when a stack page was lost.

   Usage: sigbus [PASSES]   (default 100) */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef BUS_MCEERR_AR
#define BUS_MCEERR_AR 4
#endif
#ifndef BUS_MCEERR_AO
#define BUS_MCEERR_AO 5
#endif

#define PAGE 4096
#define PAGES 8
#define N (PAGES * PAGE / 8)

static uint64_t *table;
static volatile int recovered;
static char altstack[65536];

static uint64_t value_of(uint64_t i) {
    uint64_t x = (i + 1) * 0x9e3779b97f4a7c15ull;
    x ^= x >> 29;
    return x * 0xbf58476d1ce4e5b9ull;
}

static void fill(size_t from, size_t to) {
    for (size_t i = from; i < to; i++)
        table[i] = value_of(i);
}

static void say(const char *what, long page_index, int code) {
    char msg[96];
    int n = snprintf(msg, sizeof msg, "sigbus: %s page %ld of the table (si_code %d)\n", what, page_index, code);
    write(2, msg, n);
}

static void on_sigbus(int sig, siginfo_t *si, void *uc) {
    (void)sig;
    (void)uc;
    char *page = (char *)((uintptr_t)si->si_addr & ~(uintptr_t)(PAGE - 1));
    char *start = (char *)table;
    int memory_error = si->si_code == BUS_MCEERR_AR || si->si_code == BUS_MCEERR_AO;
    if (memory_error && page >= start && page < start + PAGES * PAGE) {
        if (mmap(page, PAGE, PROT_READ | PROT_WRITE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) == page) {
            size_t first = (size_t)(page - start) / 8;
            fill(first, first + PAGE / 8);
            recovered++;
            say("recomputed", (long)((page - start) / PAGE), si->si_code);
            return;
        }
    }
    say("cannot recover memory outside", -1, si->si_code);
    signal(SIGBUS, SIG_DFL);
}

int main(int argc, char **argv) {
    int passes = argc > 1 ? atoi(argv[1]) : 100;
    stack_t ss;
    memset(&ss, 0, sizeof ss);
    ss.ss_sp = altstack;
    ss.ss_size = sizeof altstack;
    sigaltstack(&ss, 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigaction(SIGBUS, &sa, 0);

    table = mmap(0, PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (table == MAP_FAILED)
        return 2;
    fill(0, N);
    uint64_t sum = 0;
    for (int p = 0; p < passes; p++)
        for (size_t i = 0; i < N; i++)
            sum += table[i] ^ (uint64_t)p;
    printf("sum %016llx after %d passes over %d pages\n", (unsigned long long)sum, passes, PAGES);
    if (recovered)
        fprintf(stderr, "sigbus: recovered %d lost pages\n", recovered);
    return 0;
}
