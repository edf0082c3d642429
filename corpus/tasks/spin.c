/* CPU-bound work split over threads, for the scheduler's benchmarks: THREADS threads share TOTAL rounds of an
   xorshift generator (each its own stream, nothing shared while they run) and the main thread prints the xor of
   their results, which is the same under any schedule. Usage: spin THREADS TOTAL */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static uint64_t rounds_each;

static void *spin(void *arg) {
    uint64_t x = (uint64_t)(uintptr_t)arg * 0x9e3779b97f4a7c15ull + 1;
    for (uint64_t i = 0; i < rounds_each; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    return (void *)(uintptr_t)x;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 4;
    uint64_t total = argc > 2 ? strtoull(argv[2], NULL, 10) : 100000000;
    if (threads < 1 || threads > 64)
        return 2;
    rounds_each = total / threads;
    pthread_t t[64];
    for (int i = 0; i < threads; i++)
        pthread_create(&t[i], NULL, spin, (void *)(uintptr_t)(i % 4));
    uint64_t acc = 0;
    for (int i = 0; i < threads; i++) {
        void *r;
        pthread_join(t[i], &r);
        acc ^= (uint64_t)(uintptr_t)r;
    }
    printf("spin %d threads, %llu rounds each: %016llx\n", threads, (unsigned long long)rounds_each,
           (unsigned long long)acc);
    return 0;
}
