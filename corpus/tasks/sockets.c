/* A client and a server over local sockets: AF_UNIX stream, AF_UNIX datagram, TCP and UDP on the loopback, and
   socketpair; the server side runs in a thread or in a forked child. The server echoes each message in upper
   case; the client prints what came back. The output is the same under every correct schedule.
   Usage: sockets unix|tcp|udp|dgram|pair thread|fork */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *kind;
static int listener = -1, server_end = -1;
static struct sockaddr_storage addr;
static socklen_t addr_len;
static const char *messages[] = {"hello", "over a socket", "third and last"};

static void die(const char *what) {
    printf("%s: %s\n", what, strerror(errno));
    exit(3);
}

static void upper(char *s, ssize_t n) {
    for (ssize_t i = 0; i < n; i++)
        s[i] = (char)toupper((unsigned char)s[i]);
}

/* Stream server: accept one client, echo upper-cased until it shuts down. */
static void serve_stream(int fd) {
    char buf[256];
    ssize_t n;
    while ((n = recv(fd, buf, sizeof buf, 0)) > 0) {
        upper(buf, n);
        if (send(fd, buf, (size_t)n, 0) != n)
            die("send");
    }
    close(fd);
}

static void *server(void *arg) {
    (void)arg;
    if (strcmp(kind, "unix") == 0 || strcmp(kind, "tcp") == 0) {
        int c = accept(listener, NULL, NULL);
        if (c < 0)
            die("accept");
        serve_stream(c);
    } else if (strcmp(kind, "pair") == 0) {
        serve_stream(server_end);
    } else {
        char buf[256];
        for (int i = 0; i < 3; i++) {
            struct sockaddr_storage from;
            socklen_t flen = sizeof from;
            ssize_t n = recvfrom(listener, buf, sizeof buf, 0, (struct sockaddr *)&from, &flen);
            if (n < 0)
                die("recvfrom");
            upper(buf, n);
            if (sendto(listener, buf, (size_t)n, 0, (struct sockaddr *)&from, flen) != n)
                die("sendto");
        }
    }
    return NULL;
}

static int client_socket(void) {
    if (strcmp(kind, "pair") == 0)
        return -1;
    int type = (strcmp(kind, "udp") == 0 || strcmp(kind, "dgram") == 0) ? SOCK_DGRAM : SOCK_STREAM;
    int family = addr.ss_family;
    int fd = socket(family, type, 0);
    if (fd < 0)
        die("socket");
    if (strcmp(kind, "dgram") == 0) {
        struct sockaddr_un me = {.sun_family = AF_UNIX};
        snprintf(me.sun_path, sizeof me.sun_path, "/tmp/tandem-sock-client-%d", getpid());
        unlink(me.sun_path);
        if (bind(fd, (struct sockaddr *)&me, sizeof me) != 0)
            die("bind client");
    }
    if (connect(fd, (struct sockaddr *)&addr, addr_len) != 0)
        die("connect");
    return fd;
}

int main(int argc, char **argv) {
    if (argc < 3)
        return 2;
    kind = argv[1];
    int forked = strcmp(argv[2], "fork") == 0;
    setvbuf(stdout, NULL, _IONBF, 0);
    int client_end = -1;
    if (strcmp(kind, "pair") == 0) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
            die("socketpair");
        client_end = sv[0];
        server_end = sv[1];
    } else if (strcmp(kind, "unix") == 0 || strcmp(kind, "dgram") == 0) {
        struct sockaddr_un *un = (struct sockaddr_un *)&addr;
        un->sun_family = AF_UNIX;
        snprintf(un->sun_path, sizeof un->sun_path, "/tmp/tandem-sock-%s-%d", kind, getpid());
        unlink(un->sun_path);
        addr_len = sizeof *un;
        listener = socket(AF_UNIX, strcmp(kind, "unix") == 0 ? SOCK_STREAM : SOCK_DGRAM, 0);
        if (listener < 0 || bind(listener, (struct sockaddr *)&addr, addr_len) != 0)
            die("bind");
    } else {
        struct sockaddr_in *in = (struct sockaddr_in *)&addr;
        in->sin_family = AF_INET;
        in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        in->sin_port = 0;
        addr_len = sizeof *in;
        listener = socket(AF_INET, strcmp(kind, "tcp") == 0 ? SOCK_STREAM : SOCK_DGRAM, 0);
        int one = 1;
        setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (listener < 0 || bind(listener, (struct sockaddr *)&addr, addr_len) != 0)
            die("bind");
        if (getsockname(listener, (struct sockaddr *)&addr, &addr_len) != 0)
            die("getsockname");
        printf("bound to loopback: %s\n", in->sin_addr.s_addr == htonl(INADDR_LOOPBACK) ? "yes" : "no");
    }
    if ((strcmp(kind, "unix") == 0 || strcmp(kind, "tcp") == 0) && listen(listener, 4) != 0)
        die("listen");

    pthread_t t;
    pid_t child = -1;
    if (forked) {
        child = fork();
        if (child == 0) {
            if (client_end >= 0)
                close(client_end);
            server(NULL);
            _exit(0);
        }
        if (server_end >= 0)
            close(server_end);
    } else {
        pthread_create(&t, NULL, server, NULL);
    }
    int fd = client_end >= 0 ? client_end : client_socket();
    if (strcmp(kind, "tcp") == 0 || strcmp(kind, "unix") == 0) {
        struct sockaddr_storage peer;
        socklen_t plen = sizeof peer;
        if (getpeername(fd, (struct sockaddr *)&peer, &plen) != 0)
            die("getpeername");
        printf("peer family matches: %s\n", peer.ss_family == addr.ss_family ? "yes" : "no");
    }
    for (int i = 0; i < 3; i++) {
        size_t len = strlen(messages[i]);
        if (send(fd, messages[i], len, 0) != (ssize_t)len)
            die("send");
        char buf[256];
        size_t got = 0;
        while (got < len) {
            ssize_t n = recv(fd, buf + got, sizeof buf - got, 0);
            if (n <= 0)
                die("recv");
            got += (size_t)n;
        }
        printf("%s -> %.*s\n", messages[i], (int)got, buf);
    }
    if (strcmp(kind, "udp") != 0 && strcmp(kind, "dgram") != 0)
        shutdown(fd, SHUT_WR);
    if (forked) {
        int status;
        waitpid(child, &status, 0);
        printf("server process exited %d\n", WEXITSTATUS(status));
    } else {
        pthread_join(t, NULL);
        printf("server thread joined\n");
    }
    close(fd);
    if (addr.ss_family == AF_UNIX)
        unlink(((struct sockaddr_un *)&addr)->sun_path);
    return 0;
}
