/* Worker threads, each running in a function of its own, for the debuggers' views of threads (`tandem debug`'s
   `threads` and `thread TID`, the gdb server's `info threads`, cores with one NT_PRSTATUS per thread).
   Usage: workers [crash].
   The workers start together (a barrier). Without an argument: alpha, beta and gamma each call their step
   function ROUNDS times and wait for each other at a second barrier (so all are alive while any steps); main
   joins them and prints what each returned. With `crash`: alpha and beta loop in their step functions for
   good; gamma steps ROUNDS times, waits until both have stepped a hundred times and writes through a null
   pointer (SIGSEGV), so the core holds gamma in worker_gamma, alpha and beta in their loops and main in
   pthread_join. Built with symbols (not stripped) so that gdb names the functions. */
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>

#define ROUNDS 2000

static pthread_barrier_t start, finish;
static volatile long sink;
/* Steps taken so far by alpha and beta: in crash mode gamma waits until both loop for good. */
static volatile long alpha_steps, beta_steps;
static int crash;

__attribute__((noinline)) static long alpha_step(long i) {
    sink += i;
    return i * 3;
}

__attribute__((noinline)) static long beta_step(long i) {
    sink ^= i;
    return i * 5 + 1;
}

__attribute__((noinline)) static long gamma_step(long i) {
    sink -= i;
    return i * 7 + 2;
}

static void *worker_alpha(void *arg) {
    (void)arg;
    long total = 0;
    pthread_barrier_wait(&start);
    for (long i = 0; crash || i < ROUNDS; i++)
        total += alpha_step(i), alpha_steps++;
    pthread_barrier_wait(&finish);
    return (void *)total;
}

static void *worker_beta(void *arg) {
    (void)arg;
    long total = 0;
    pthread_barrier_wait(&start);
    for (long i = 0; crash || i < ROUNDS; i++)
        total += beta_step(i), beta_steps++;
    pthread_barrier_wait(&finish);
    return (void *)total;
}

static void *worker_gamma(void *arg) {
    (void)arg;
    long total = 0;
    pthread_barrier_wait(&start);
    for (long i = 0; i < ROUNDS; i++)
        total += gamma_step(i);
    while (crash && (alpha_steps < 100 || beta_steps < 100))
        sched_yield();
    if (crash)
        *(volatile long *)0 = total; /* SIGSEGV: the whole process dies with this thread's fault */
    pthread_barrier_wait(&finish);
    return (void *)total;
}

int main(int argc, char **argv) {
    crash = argc > 1 && strcmp(argv[1], "crash") == 0;
    pthread_barrier_init(&start, NULL, 3);
    pthread_barrier_init(&finish, NULL, 3);
    void *(*workers[3])(void *) = {worker_alpha, worker_beta, worker_gamma};
    const char *names[3] = {"alpha", "beta", "gamma"};
    pthread_t threads[3];
    for (int i = 0; i < 3; i++)
        if (pthread_create(&threads[i], NULL, workers[i], NULL) != 0)
            return 2;
    for (int i = 0; i < 3; i++) {
        void *result;
        pthread_join(threads[i], &result);
        printf("%s %ld\n", names[i], (long)result);
    }
    return 0;
}
