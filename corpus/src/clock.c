/* Clocks and entropy: clock_gettime, gettimeofday, time, nanosleep and getrandom. Prints the values (they depend on
   time and seed) and checks the relations that hold on any correct system. */
#include <stdio.h>
#include <sys/random.h>
#include <sys/time.h>
#include <time.h>

int main(void) {
    struct timespec a, b, m;
    clock_gettime(CLOCK_REALTIME, &a);
    clock_gettime(CLOCK_MONOTONIC, &m);
    struct timeval tv;
    gettimeofday(&tv, 0);
    time_t t = time(0);
    printf("realtime %lld.%09ld monotonic %lld.%09ld\n", (long long)a.tv_sec, a.tv_nsec, (long long)m.tv_sec, m.tv_nsec);
    printf("gettimeofday %lld.%06ld time %lld\n", (long long)tv.tv_sec, (long)tv.tv_usec, (long long)t);
    struct timespec d = {0, 250000000};
    nanosleep(&d, 0);
    clock_gettime(CLOCK_REALTIME, &b);
    long long ns = (b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec);
    printf("slept at least 250ms: %s\n", ns >= 250000000 ? "yes" : "no");
    unsigned char r[16];
    long got = getrandom(r, sizeof r, 0);
    printf("getrandom %ld:", got);
    for (int i = 0; i < 16; i++)
        printf(" %02x", r[i]);
    printf("\n");
    return ns >= 250000000 && got == 16 ? 0 : 1;
}
