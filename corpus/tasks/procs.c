/* Processes: fork, pipes between processes, wait4 with exit statuses and a signal death, SIGCHLD, getppid,
   vfork + _exit, execve of the program itself, process groups and sessions. The output is the same under every
   correct schedule: the parent reads the pipe in child order and reaps children by pid.
   Usage: procs            the whole test
          procs child N    (used by execve) prints its arguments and exits N */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t sigchld_count;

static void on_sigchld(int sig) {
    (void)sig;
    sigchld_count++;
}

static void write_all(int fd, const char *s) {
    size_t n = strlen(s);
    while (n > 0) {
        ssize_t w = write(fd, s, n);
        if (w <= 0)
            _exit(99);
        s += w;
        n -= (size_t)w;
    }
}

int main(int argc, char **argv) {
    if (argc >= 3 && strcmp(argv[1], "child") == 0) {
        printf("exec'd child: argc %d, argv[2] %s\n", argc, argv[2]);
        return atoi(argv[2]);
    }
    setvbuf(stdout, NULL, _IONBF, 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigchld;
    sa.sa_flags = SA_RESTART; /* reads and waits go on after the handler */
    sigaction(SIGCHLD, &sa, NULL);

    pid_t me = getpid();
    int pipes[3][2];
    pid_t kids[3];
    for (int i = 0; i < 3; i++) {
        if (pipe(pipes[i]) != 0)
            return 2;
        pid_t pid = fork();
        if (pid < 0) {
            printf("fork failed: %s\n", strerror(errno));
            return 2;
        }
        if (pid == 0) {
            close(pipes[i][0]);
            char line[128];
            snprintf(line, sizeof line, "child %d: parent is the forker: %s\n", i,
                     getppid() == me ? "yes" : "no");
            for (int k = 0; k < 50; k++)
                write_all(pipes[i][1], k == 0 ? line : "");
            write_all(pipes[i][1], line);
            _exit(10 + i);
        }
        close(pipes[i][1]);
        kids[i] = pid;
    }
    for (int i = 0; i < 3; i++) {
        char buf[512];
        size_t got = 0;
        ssize_t r;
        while ((r = read(pipes[i][0], buf + got, sizeof buf - 1 - got)) > 0)
            got += (size_t)r;
        buf[got] = 0;
        printf("from pipe %d: %s", i, buf);
        close(pipes[i][0]);
    }
    for (int i = 0; i < 3; i++) {
        int status;
        struct rusage ru;
        pid_t w = wait4(kids[i], &status, 0, &ru);
        printf("reaped child %d: same pid %s, exited %d, status %d\n", i, w == kids[i] ? "yes" : "no",
               WIFEXITED(status), WEXITSTATUS(status));
    }

    /* A child killed by a signal. */
    pid_t victim = fork();
    if (victim == 0) {
        for (;;)
            pause();
    }
    kill(victim, SIGTERM);
    int status;
    waitpid(victim, &status, 0);
    printf("victim: signaled %d, signal %d\n", WIFSIGNALED(status), WTERMSIG(status));

    /* vfork + _exit: the parent resumes after the child has exited. */
    volatile int shared = 0;
    pid_t v = vfork();
    if (v == 0) {
        shared = 42;
        _exit(7);
    }
    waitpid(v, &status, 0);
    printf("vfork child wrote %d, exited %d\n", shared, WEXITSTATUS(status));

    /* execve of this program. */
    pid_t e = fork();
    if (e == 0) {
        char *args[] = {argv[0], "child", "5", NULL};
        char *env[] = {NULL};
        execve("/proc/self/exe", args, env);
        printf("execve failed: %s\n", strerror(errno));
        _exit(127);
    }
    waitpid(e, &status, 0);
    printf("exec'd child exited %d\n", WEXITSTATUS(status));

    /* Process groups and sessions. */
    pid_t g = fork();
    if (g == 0) {
        pid_t sid = setsid();
        printf("child session leader: %s, pgid is pid: %s\n", sid == getpid() ? "yes" : "no",
               getpgid(0) == getpid() ? "yes" : "no");
        _exit(0);
    }
    waitpid(g, &status, 0);
    if (setpgid(0, 0) != 0)
        printf("setpgid failed: %s\n", strerror(errno));
    printf("parent pgid is pid: %s\n", getpgrp() == getpid() ? "yes" : "no");

    /* No children left. */
    printf("wait with no children: %s\n", wait(&status) == -1 && errno == ECHILD ? "ECHILD" : "wrong");
    printf("SIGCHLD received for every child: %s\n", sigchld_count >= 1 ? "yes" : "no");
    return 0;
}
