/* Readiness between threads: a writer thread feeds two pipes and an eventfd while the main thread waits with
   poll, select and epoll (level- and edge-triggered); a blocked reader is woken by a writer. The output is the
   same under every correct schedule. Usage: ready */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/select.h>
#include <unistd.h>

static int p1[2], p2[2], efd;

static void *writer(void *arg) {
    (void)arg;
    for (int i = 0; i < 5; i++) {
        char c = (char)('a' + i);
        write(i % 2 ? p2[1] : p1[1], &c, 1);
        uint64_t one = 1;
        write(efd, &one, sizeof one);
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    close(p1[1]);
    close(p2[1]);
    return NULL;
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    pipe(p1);
    pipe(p2);
    efd = eventfd(0, 0);

    /* A blocking read woken by a writer thread. */
    pthread_t t;
    pthread_create(&t, NULL, writer, NULL);
    int got = 0, p1_closed = 0, p2_closed = 0;
    char seen[16] = {0};
    int nseen = 0;
    while (!(p1_closed && p2_closed)) {
        struct pollfd fds[2] = {{p1[0], POLLIN, 0}, {p2[0], POLLIN, 0}};
        int n = poll(fds, 2, -1);
        if (n <= 0) {
            printf("poll: %s\n", strerror(errno));
            return 1;
        }
        for (int i = 0; i < 2; i++) {
            if (fds[i].revents & (POLLIN | POLLHUP)) {
                char c;
                ssize_t r = read(fds[i].fd, &c, 1);
                if (r == 1) {
                    seen[nseen++] = c;
                    got++;
                } else if (r == 0) {
                    if (i == 0)
                        p1_closed = 1;
                    else
                        p2_closed = 1;
                    fds[i].fd = -1;
                    close(i == 0 ? p1[0] : p2[0]);
                    if (i == 0)
                        p1[0] = -1;
                    else
                        p2[0] = -1;
                }
            }
        }
        if (p1[0] < 0 && p2[0] < 0)
            break;
        if (p1[0] < 0)
            p1_closed = 1;
        if (p2[0] < 0)
            p2_closed = 1;
    }
    pthread_join(t, NULL);
    /* Bytes of each pipe arrive in order; the interleaving between pipes may vary, so sort for printing. */
    for (int i = 0; i < nseen; i++)
        for (int j = i + 1; j < nseen; j++)
            if (seen[j] < seen[i]) {
                char x = seen[i];
                seen[i] = seen[j];
                seen[j] = x;
            }
    printf("poll: %d bytes from two pipes: %s\n", got, seen);
    uint64_t count;
    read(efd, &count, sizeof count);
    printf("eventfd counted %llu writes\n", (unsigned long long)count);

    /* select on a pipe with data, and a timeout on an empty one. */
    int q[2];
    pipe(q);
    fd_set rd;
    FD_ZERO(&rd);
    FD_SET(q[0], &rd);
    struct timeval tv = {0, 20000};
    int n = select(q[0] + 1, &rd, NULL, NULL, &tv);
    printf("select on an empty pipe: %d ready (timeout)\n", n);
    write(q[1], "x", 1);
    FD_ZERO(&rd);
    FD_SET(q[0], &rd);
    tv.tv_sec = 1;
    n = select(q[0] + 1, &rd, NULL, NULL, &tv);
    printf("select with data: %d ready, set: %d\n", n, FD_ISSET(q[0], &rd));

    /* epoll level-triggered reports again while data is unread; edge-triggered only on new data. */
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 1};
    epoll_ctl(ep, EPOLL_CTL_ADD, q[0], &ev);
    struct epoll_event out[4];
    int a = epoll_wait(ep, out, 4, 0);
    int b = epoll_wait(ep, out, 4, 0);
    printf("epoll level-triggered: %d then %d, data %llu\n", a, b, (unsigned long long)out[0].data.u64);
    ev.events = EPOLLIN | EPOLLET;
    ev.data.u64 = 2;
    epoll_ctl(ep, EPOLL_CTL_MOD, q[0], &ev);
    write(q[1], "y", 1);
    a = epoll_wait(ep, out, 4, 0);
    b = epoll_wait(ep, out, 4, 0);
    printf("epoll edge-triggered: %d then %d\n", a, b);
    char buf[4];
    read(q[0], buf, sizeof buf);
    a = epoll_wait(ep, out, 4, 10);
    printf("epoll after draining: %d\n", a);
    return 0;
}
