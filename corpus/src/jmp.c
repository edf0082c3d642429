/* setjmp/longjmp across several frames, with a value carried back, and a longjmp(0) that setjmp sees as 1. */
#include <setjmp.h>
#include <stdio.h>

static jmp_buf env;

static int depth(int n) {
    if (n == 0)
        longjmp(env, 42);
    return depth(n - 1) + 1;
}

int main(void) {
    volatile int rounds = 0;
    int v = setjmp(env);
    rounds++;
    if (v == 0) {
        depth(10);
    } else if (v == 42) {
        printf("came back with %d after %d rounds\n", v, rounds);
        longjmp(env, 0);
    }
    printf("final value %d, rounds %d\n", v, rounds);
    return 0;
}
