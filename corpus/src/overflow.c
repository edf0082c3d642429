/* A one-past-the-end array write that overwrites the global right after the array, for the reverse-watchpoint
   tests: `counter` is incremented normally by bump() three times, then fill() writes one element too many into
   `table` and that element is `counter`; main then uses counter as an index and crashes (SIGSEGV).

   Debugging it as a user would: stop at the crash, `watch -l counter`, `reverse-continue`: the stop must be the
   overflowing store in fill (the last write before the crash), with counter's value from before it, not one of
   bump's ordinary increments.

   The two globals are laid out by hand (a C compiler orders globals as it likes): counter is table[4].

   Usage: overflow [N]   (fill writes N + 1 elements; default 4, one past the end) */
#include <stdio.h>
#include <stdlib.h>

__asm__(".pushsection .data\n"
        ".balign 8\n"
        ".globl table\n.type table, @object\n.size table, 32\ntable:\n.zero 32\n"
        ".globl counter\n.type counter, @object\n.size counter, 8\ncounter:\n.quad 0\n"
        ".popsection\n");
extern long table[4];
extern long counter;

__attribute__((noinline)) void bump(void) {
    counter++;
}

/* The bug: i <= n writes t[n], one past the end when n is the array's length. */
__attribute__((noinline)) void fill(long *t, int n, long v) {
    for (int i = 0; i <= n; i++)
        t[i] = v + i;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 4;
    for (int i = 0; i < 3; i++)
        bump();
    printf("counter %ld before the fill\n", counter);
    fflush(stdout);
    fill(table, n, 0x4000000);
    /* counter is now 0x4000004 when n is 4: a wild index. */
    table[counter] = 1;
    printf("counter %ld after the fill\n", counter);
    return 0;
}
