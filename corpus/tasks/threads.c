/* Threads and their synchronisation, with output that is the same under every correct schedule: a mutex-protected
   counter, a condition-variable queue between one producer and two consumers, a barrier between phases,
   thread-local storage, and join values. Usage: threads [THREADS] (default 4). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define ROUNDS 20000
#define ITEMS 1000

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static long counter;

static __thread long tls_value;
static pthread_barrier_t barrier;
static long phase_sum[3];

static void *count(void *arg) {
    long id = (long)arg;
    tls_value = id * 7 + 1;
    for (int i = 0; i < ROUNDS; i++) {
        pthread_mutex_lock(&lock);
        counter++;
        pthread_mutex_unlock(&lock);
    }
    for (int phase = 0; phase < 3; phase++) {
        pthread_mutex_lock(&lock);
        phase_sum[phase] += (id + 1) * (phase + 1);
        pthread_mutex_unlock(&lock);
        pthread_barrier_wait(&barrier);
        /* After the barrier every thread's share of this phase is in. */
    }
    if (tls_value != id * 7 + 1)
        return (void *)-1;
    return (void *)(id * 100);
}

/* A bounded queue: one producer, two consumers. */
#define QUEUE 8
static int queue[QUEUE];
static int head, tail, items, done;
static pthread_mutex_t qlock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t not_empty = PTHREAD_COND_INITIALIZER;
static pthread_cond_t not_full = PTHREAD_COND_INITIALIZER;

static void *produce(void *arg) {
    (void)arg;
    for (int v = 1; v <= ITEMS; v++) {
        pthread_mutex_lock(&qlock);
        while (items == QUEUE)
            pthread_cond_wait(&not_full, &qlock);
        queue[tail] = v;
        tail = (tail + 1) % QUEUE;
        items++;
        pthread_cond_signal(&not_empty);
        pthread_mutex_unlock(&qlock);
    }
    pthread_mutex_lock(&qlock);
    done = 1;
    pthread_cond_broadcast(&not_empty);
    pthread_mutex_unlock(&qlock);
    return NULL;
}

static void *consume(void *arg) {
    long *sum = arg;
    for (;;) {
        pthread_mutex_lock(&qlock);
        while (items == 0 && !done)
            pthread_cond_wait(&not_empty, &qlock);
        if (items == 0 && done) {
            pthread_mutex_unlock(&qlock);
            return NULL;
        }
        int v = queue[head];
        head = (head + 1) % QUEUE;
        items--;
        pthread_cond_signal(&not_full);
        pthread_mutex_unlock(&qlock);
        *sum += v;
    }
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 4;
    if (n < 1 || n > 64)
        return 2;
    pthread_t t[64];
    pthread_barrier_init(&barrier, NULL, n);
    for (long i = 0; i < n; i++)
        if (pthread_create(&t[i], NULL, count, (void *)i) != 0) {
            printf("pthread_create failed\n");
            return 1;
        }
    long joined = 0;
    for (int i = 0; i < n; i++) {
        void *r;
        pthread_join(t[i], &r);
        joined += (long)r;
    }
    printf("counter %ld (expected %ld)\n", counter, (long)n * ROUNDS);
    for (int p = 0; p < 3; p++)
        printf("phase %d sum %ld\n", p, phase_sum[p]);
    printf("join values sum %ld\n", joined);

    pthread_t prod, cons[2];
    long sums[2] = {0, 0};
    pthread_create(&prod, NULL, produce, NULL);
    pthread_create(&cons[0], NULL, consume, &sums[0]);
    pthread_create(&cons[1], NULL, consume, &sums[1]);
    pthread_join(prod, NULL);
    pthread_join(cons[0], NULL);
    pthread_join(cons[1], NULL);
    printf("queue total %ld (expected %d)\n", sums[0] + sums[1], ITEMS * (ITEMS + 1) / 2);
    return counter == (long)n * ROUNDS ? 0 : 1;
}
