/* Time that blocks: nanosleep and clock_nanosleep advance the monotonic clock by at least what they ask, alarm
   and setitimer deliver SIGALRM, a POSIX timer delivers its signal, a timerfd becomes readable and counts
   expirations. Only relations that hold on every correct system are printed, so native and emulated output
   match. Usage: timers */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t alarms, rt_signals;

static void on_alarm(int sig) {
    (void)sig;
    alarms++;
}

static void on_rt(int sig, siginfo_t *info, void *ctx) {
    (void)sig;
    (void)ctx;
    if (info->si_code == SI_TIMER && info->si_value.sival_int == 77)
        rt_signals++;
}

static int64_t now_ns(clockid_t c) {
    struct timespec ts;
    clock_gettime(c, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    int64_t t0 = now_ns(CLOCK_MONOTONIC);
    struct timespec req = {0, 30 * 1000 * 1000};
    nanosleep(&req, NULL);
    int64_t t1 = now_ns(CLOCK_MONOTONIC);
    printf("nanosleep 30ms: slept at least that long: %s\n", t1 - t0 >= 30000000 ? "yes" : "no");

    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += 1;
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL);
    printf("clock_nanosleep absolute: reached the deadline: %s\n",
           now_ns(CLOCK_MONOTONIC) >= (int64_t)until.tv_sec * 1000000000 + until.tv_nsec ? "yes" : "no");

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, NULL);
    alarm(1);
    pause();
    printf("alarm(1) then pause: %d SIGALRM\n", alarms);

    struct itimerval it = {{0, 10000}, {0, 10000}};
    setitimer(ITIMER_REAL, &it, NULL);
    while (alarms < 4)
        pause();
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    printf("setitimer 10ms periodic: %d SIGALRM in all\n", alarms);

    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_rt;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGRTMIN, &sa, NULL);
    timer_t timer;
    struct sigevent sev;
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_SIGNAL;
    sev.sigev_signo = SIGRTMIN;
    sev.sigev_value.sival_int = 77;
    if (timer_create(CLOCK_MONOTONIC, &sev, &timer) != 0)
        printf("timer_create failed: %s\n", strerror(errno));
    struct itimerspec its = {{0, 0}, {0, 5000000}};
    timer_settime(timer, 0, &its, NULL);
    while (rt_signals < 1)
        pause();
    printf("timer_create SIGEV_SIGNAL: %d signal with its value\n", rt_signals);
    timer_delete(timer);

    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
    struct itimerspec tits = {{0, 2000000}, {0, 2000000}};
    timerfd_settime(tfd, 0, &tits, NULL);
    uint64_t expirations = 0, total = 0;
    while (total < 3) {
        if (read(tfd, &expirations, sizeof expirations) != sizeof expirations)
            break;
        total += expirations;
    }
    printf("timerfd: at least 3 expirations: %s\n", total >= 3 ? "yes" : "no");
    close(tfd);

    struct timespec rem = {0, 0};
    struct timespec big = {5, 0};
    alarm(1);
    int r = nanosleep(&big, &rem);
    printf("nanosleep interrupted by SIGALRM: %s, remaining time returned: %s\n",
           r == -1 && errno == EINTR ? "yes" : "no", rem.tv_sec >= 3 ? "yes" : "no");
    return 0;
}
