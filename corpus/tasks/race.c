/* Two planted data races, for the chaos scheduler: an unprotected counter incremented by two threads (a lost
   update makes the total short) and a check-then-act on a shared flag (two threads can both see it clear and
   both claim it). Under a correct program the total is 2 * ROUNDS and exactly one thread wins. Exit status 0
   when no race manifested, 1 when one did. Usage: race [ROUNDS] (default 1000). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static volatile long counter;
static volatile int flag;
static volatile int winners;
static long rounds = 1000;

static void *work(void *arg) {
    (void)arg;
    for (long i = 0; i < rounds; i++) {
        long v = counter; /* read */
        for (volatile int d = 0; d < 3; d++)
            ; /* a window between the read and the write */
        counter = v + 1; /* write: a switch in between loses an update */
    }
    if (!flag) {
        for (volatile int d = 0; d < 20; d++)
            ;
        flag = 1;
        winners++;
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc > 1)
        rounds = atol(argv[1]);
    pthread_t a, b;
    pthread_create(&a, NULL, work, NULL);
    pthread_create(&b, NULL, work, NULL);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    printf("counter %ld of %ld, winners %d\n", counter, 2 * rounds, winners);
    return counter == 2 * rounds && winners == 1 ? 0 : 1;
}
