/* What a program learns about its machine and itself: the CPU count by every route (sysconf, get_nprocs,
   sched_getaffinity, /proc/cpuinfo, /proc/stat, /sys/devices/system/cpu/online), and its own identity and threads
   from /proc/self/stat and /proc/self/status while two extra threads wait. Prints facts that hold on any correct
   system with the same CPU count, so emulated output run with --cpus N matches a native run on N CPUs.
   Usage: ncpu */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysinfo.h>
#include <unistd.h>

static int count_lines(const char *path, const char *prefix) {
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, prefix, strlen(prefix)) == 0)
            n++;
    fclose(f);
    return n;
}

static int online(void) {
    FILE *f = fopen("/sys/devices/system/cpu/online", "r");
    if (!f)
        return -1;
    int lo = 0, hi = 0, n = fscanf(f, "%d-%d", &lo, &hi);
    fclose(f);
    return n == 2 ? hi - lo + 1 : n == 1 ? 1 : -1;
}

static char *field(const char *path, const char *name, char *out, size_t size) {
    FILE *f = fopen(path, "r");
    char line[4096];
    out[0] = 0;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, name, strlen(name)) == 0) {
            snprintf(out, size, "%s", line + strlen(name));
            out[strcspn(out, "\n")] = 0;
            break;
        }
    if (f)
        fclose(f);
    return out;
}

static pthread_barrier_t started, done;

static void *waiter(void *arg) {
    (void)arg;
    pthread_barrier_wait(&started);
    pthread_barrier_wait(&done);
    return NULL;
}

int main(void) {
    cpu_set_t set;
    CPU_ZERO(&set);
    sched_getaffinity(0, sizeof set, &set);
    printf("sysconf online %ld configured %ld\n", sysconf(_SC_NPROCESSORS_ONLN), sysconf(_SC_NPROCESSORS_CONF));
    printf("get_nprocs %d get_nprocs_conf %d affinity %d\n", get_nprocs(), get_nprocs_conf(), CPU_COUNT(&set));
    printf("cpuinfo processors %d\n", count_lines("/proc/cpuinfo", "processor"));
    printf("stat cpu lines %d\n", count_lines("/proc/stat", "cpu") - 1);
    printf("sys online %d\n", online());

    pthread_t t[2];
    pthread_barrier_init(&started, NULL, 3);
    pthread_barrier_init(&done, NULL, 3);
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, waiter, NULL);
    pthread_barrier_wait(&started);
    char buf[256], name[64];
    printf("status Threads %s\n", field("/proc/self/status", "Threads:\t", buf, sizeof buf));
    printf("status Name is comm %d\n",
           strcmp(field("/proc/self/status", "Name:\t", name, sizeof name), field("/proc/self/comm", "", buf, sizeof buf)) == 0);
    printf("status Tgid is pid %d\n", atoi(field("/proc/self/status", "Tgid:\t", buf, sizeof buf)) == getpid());
    printf("status PPid is ppid %d\n", atoi(field("/proc/self/status", "PPid:\t", buf, sizeof buf)) == getppid());
    FILE *f = fopen("/proc/self/stat", "r");
    char stat[4096] = "";
    if (f) {
        if (!fgets(stat, sizeof stat, f))
            stat[0] = 0;
        fclose(f);
    }
    char *rest = strrchr(stat, ')');
    int pid = atoi(stat), ppid = 0, pgid = 0, threads = 0;
    char state = '?';
    if (rest)
        sscanf(rest + 2, "%c %d %d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %d", &state, &ppid, &pgid,
               &threads);
    printf("stat pid %d ppid %d pgid %d state %c threads %d\n", pid == getpid(), ppid == getppid(),
           pgid == getpgrp(), state, threads);
    pthread_barrier_wait(&done);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    return 0;
}
