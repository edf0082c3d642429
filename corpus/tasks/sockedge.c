/* The edges of the socket calls, each printed as a line that is the same on Linux and under tandem: datagram
   and seqpacket message boundaries (and truncation), ECONNREFUSED and ENOENT without a listener, EADDRINUSE on
   a second bind, EAGAIN from non-blocking accept and recv, EINPROGRESS from a non-blocking TCP connect, end of
   file and EPIPE/SIGPIPE after the peer closed, shutdown, poll readiness, options, S_IFSOCK nodes, abstract
   names, IPv6 and IPv4-mapped peers.
   Usage: sockedge all      (every check)
          sockedge port     (the ephemeral ports tandem chose: not comparable with Linux, same on every run) */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static volatile sig_atomic_t sigpipes;
static void on_sigpipe(int sig) { (void)sig; sigpipes++; }

static const char *err(int r) { return r < 0 ? strerror(errno) : "ok"; }

static void lengths(const char *what, int fd, int n, int flags) {
    printf("%s:", what);
    for (int i = 0; i < n; i++) {
        char buf[64];
        ssize_t got = recv(fd, buf, 2, flags);
        printf(" %zd", got);
    }
    printf("\n");
}

static struct sockaddr_in loopback(int port) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

static int port_of(int fd) {
    struct sockaddr_in6 a;
    socklen_t len = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &len);
    return ntohs(a.sin6_port); /* sin_port and sin6_port are at the same offset */
}

static int tcp_listener(int flags) {
    int l = socket(AF_INET, SOCK_STREAM | flags, 0);
    struct sockaddr_in a = loopback(0);
    if (bind(l, (struct sockaddr *)&a, sizeof a) != 0 || listen(l, 8) != 0)
        printf("listener: %s\n", strerror(errno));
    return l;
}

static void boundaries(void) {
    int sv[2];
    socketpair(AF_UNIX, SOCK_DGRAM, 0, sv);
    send(sv[0], "a", 1, 0);
    send(sv[0], "bcd", 3, 0);
    send(sv[0], "efghi", 5, 0);
    lengths("unix dgram lengths with MSG_TRUNC", sv[1], 3, MSG_TRUNC);
    close(sv[0]), close(sv[1]);

    socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv);
    send(sv[0], "x", 1, 0);
    send(sv[0], "yy", 2, 0);
    char buf[16];
    ssize_t a = recv(sv[1], buf, sizeof buf, 0), b = recv(sv[1], buf, sizeof buf, 0);
    printf("seqpacket lengths: %zd %zd\n", a, b);
    close(sv[0]);
    printf("seqpacket after close: %zd\n", recv(sv[1], buf, sizeof buf, 0));
    close(sv[1]);

    int u1 = socket(AF_INET, SOCK_DGRAM, 0), u2 = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a1 = loopback(0);
    bind(u1, (struct sockaddr *)&a1, sizeof a1);
    a1 = loopback(port_of(u1));
    sendto(u2, "12345", 5, 0, (struct sockaddr *)&a1, sizeof a1);
    sendto(u2, "678", 3, 0, (struct sockaddr *)&a1, sizeof a1);
    struct sockaddr_in from;
    socklen_t flen = sizeof from;
    ssize_t n1 = recvfrom(u1, buf, sizeof buf, 0, (struct sockaddr *)&from, &flen);
    ssize_t n2 = recv(u1, buf, sizeof buf, 0);
    printf("udp lengths: %zd %zd, from loopback: %s, from the sender's port: %s\n", n1, n2,
           from.sin_addr.s_addr == htonl(INADDR_LOOPBACK) ? "yes" : "no",
           ntohs(from.sin_port) == port_of(u2) ? "yes" : "no");
    close(u1), close(u2);
}

static void refused_and_in_use(const char *dir) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = loopback(0);
    bind(s, (struct sockaddr *)&a, sizeof a);
    a = loopback(port_of(s));
    int c = socket(AF_INET, SOCK_STREAM, 0);
    printf("tcp connect to a bound socket not listening: %s\n", err(connect(c, (struct sockaddr *)&a, sizeof a)));
    int d = socket(AF_INET, SOCK_STREAM, 0);
    printf("second tcp bind of the port: %s\n", err(bind(d, (struct sockaddr *)&a, sizeof a)));
    close(s), close(c), close(d);

    struct sockaddr_un un = {.sun_family = AF_UNIX};
    snprintf(un.sun_path, sizeof un.sun_path, "%s/sockedge-%d", dir, getpid());
    unlink(un.sun_path);
    int u = socket(AF_UNIX, SOCK_STREAM, 0);
    printf("unix connect to a missing path: %s\n", err(connect(u, (struct sockaddr *)&un, sizeof un)));
    int v = socket(AF_UNIX, SOCK_STREAM, 0);
    printf("unix bind: %s\n", err(bind(v, (struct sockaddr *)&un, sizeof un)));
    printf("unix connect to a socket not listening: %s\n", err(connect(u, (struct sockaddr *)&un, sizeof un)));
    int w = socket(AF_UNIX, SOCK_STREAM, 0);
    printf("second unix bind of the path: %s\n", err(bind(w, (struct sockaddr *)&un, sizeof un)));
    struct stat st;
    stat(un.sun_path, &st);
    printf("the path is a socket node: %s\n", S_ISSOCK(st.st_mode) ? "yes" : "no");
    printf("open of the socket node: %s\n", err(open(un.sun_path, O_RDONLY)));
    fstat(v, &st);
    printf("fstat of a socket descriptor: %s\n", S_ISSOCK(st.st_mode) ? "S_IFSOCK" : "other");
    unlink(un.sun_path);
    close(u), close(v), close(w);
}

static void nonblocking(void) {
    int l = tcp_listener(SOCK_NONBLOCK);
    printf("non-blocking accept with nothing queued: %s\n", err(accept(l, NULL, NULL)));
    struct pollfd p = {.fd = l, .events = POLLIN};
    printf("poll of an idle listener: %d\n", poll(&p, 1, 0));
    struct sockaddr_in a = loopback(port_of(l));
    int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int r = connect(c, (struct sockaddr *)&a, sizeof a);
    printf("non-blocking tcp connect: %s\n", r < 0 && errno == EINPROGRESS ? "EINPROGRESS" : err(r));
    struct pollfd pc = {.fd = c, .events = POLLOUT};
    poll(&pc, 1, -1);
    int e = -1;
    socklen_t elen = sizeof e;
    getsockopt(c, SOL_SOCKET, SO_ERROR, &e, &elen);
    printf("connected: writable %d, SO_ERROR %d\n", (pc.revents & POLLOUT) != 0, e);
    int polled = poll(&p, 1, -1);
    printf("poll of the listener after connect: %d (revents %#x)\n", polled, p.revents);
    int s = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    printf("accept4: %s, cloexec %d\n", err(s), (fcntl(s, F_GETFD) & FD_CLOEXEC) != 0);
    char buf[8];
    fcntl(s, F_SETFL, fcntl(s, F_GETFL) | O_NONBLOCK);
    printf("non-blocking recv with nothing sent: %s\n", err(recv(s, buf, sizeof buf, 0)));
    printf("MSG_DONTWAIT recv on the client: %s\n", err(recv(c, buf, sizeof buf, MSG_DONTWAIT)));
    send(c, "ping", 4, 0);
    struct pollfd ps = {.fd = s, .events = POLLIN | POLLOUT};
    poll(&ps, 1, -1);
    printf("poll of the server end after a send: %#x\n", ps.revents);
    int ready = 0;
    ioctl(s, FIONREAD, &ready);
    ssize_t peeked = recv(s, buf, sizeof buf, MSG_PEEK);
    ssize_t got = read(s, buf, sizeof buf);
    printf("FIONREAD %d, peek %zd, read %zd\n", ready, peeked, got);
    shutdown(c, SHUT_WR);
    printf("read after the peer's SHUT_WR: %zd\n", read(s, buf, sizeof buf));
    ssize_t wrote = write(s, "pong", 4);
    fcntl(c, F_SETFL, 0);
    printf("write back after SHUT_WR: %zd, read by the client: %zd\n", wrote, read(c, buf, sizeof buf));
    close(s), close(c), close(l);
}

static void peer_closed(void) {
    int sv[2];
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    write(sv[0], "last", 4);
    close(sv[0]);
    char buf[8];
    ssize_t a = read(sv[1], buf, sizeof buf), b = read(sv[1], buf, sizeof buf);
    printf("reads after the peer closed: %zd then %zd\n", a, b);
    const char *e1 = err(send(sv[1], "x", 1, MSG_NOSIGNAL));
    printf("send with MSG_NOSIGNAL: %s, SIGPIPEs %d\n", e1, (int)sigpipes);
    const char *e2 = err(write(sv[1], "x", 1));
    printf("write: %s, SIGPIPEs %d\n", e2, (int)sigpipes);
    close(sv[1]);

    int l = tcp_listener(0);
    struct sockaddr_in a4 = loopback(port_of(l));
    int c = socket(AF_INET, SOCK_STREAM, 0);
    connect(c, (struct sockaddr *)&a4, sizeof a4);
    int s = accept(l, NULL, NULL);
    close(s);
    printf("tcp read after the peer closed: %zd\n", read(c, buf, sizeof buf));
    close(c), close(l);
}

static void options_and_names(void) {
    int s = socket(AF_INET6, SOCK_STREAM, 0);
    int v, one = 1;
    socklen_t len = sizeof v;
    getsockopt(s, SOL_SOCKET, SO_TYPE, &v, &len);
    printf("SO_TYPE %d", v);
    getsockopt(s, SOL_SOCKET, SO_DOMAIN, &v, &len);
    printf(", SO_DOMAIN %d", v);
    getsockopt(s, SOL_SOCKET, SO_PROTOCOL, &v, &len);
    printf(", SO_PROTOCOL %d", v);
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(s, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int r = 0, k = 0, nd = 0, v6 = 0;
    getsockopt(s, SOL_SOCKET, SO_REUSEADDR, &r, &len);
    getsockopt(s, SOL_SOCKET, SO_KEEPALIVE, &k, &len);
    getsockopt(s, IPPROTO_TCP, TCP_NODELAY, &nd, &len);
    getsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &v6, &len);
    printf(", REUSEADDR %d, KEEPALIVE %d, NODELAY %d, V6ONLY %d\n", r, k, nd, v6);
    printf("unknown option: %s\n", err(getsockopt(s, SOL_SOCKET, 12345, &v, &len)));
    int u = socket(AF_UNIX, SOCK_STREAM, 0);
    printf("TCP_NODELAY on a unix socket: %s\n", err(setsockopt(u, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one)) != NULL ? "refused" : "ok");
    printf("getpeername unconnected: %s\n", err(getpeername(u, (struct sockaddr *)&(struct sockaddr_un){0}, &(socklen_t){110})));
    printf("socket calls on a pipe: %s\n", err(listen(0 * pipe((int[2]){0}) + 1, 1)));
    close(u);

    /* IPv6 wildcard listener, an IPv4 client: the server sees a mapped address. */
    struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_addr = in6addr_any};
    bind(s, (struct sockaddr *)&a6, sizeof a6);
    listen(s, 1);
    struct sockaddr_in a4 = loopback(port_of(s));
    int c = socket(AF_INET, SOCK_STREAM, 0);
    printf("ipv4 connect to an ipv6 wildcard listener: %s\n", err(connect(c, (struct sockaddr *)&a4, sizeof a4)));
    struct sockaddr_in6 peer;
    socklen_t plen = sizeof peer;
    int t = accept(s, (struct sockaddr *)&peer, &plen);
    printf("accepted: family %d, length %u, mapped %d\n", peer.sin6_family, plen, IN6_IS_ADDR_V4MAPPED(&peer.sin6_addr));
    close(t), close(c), close(s);

    /* Abstract names: no file, unique per process. */
    struct sockaddr_un an = {.sun_family = AF_UNIX};
    int n = snprintf(an.sun_path + 1, sizeof an.sun_path - 1, "sockedge-%d", getpid());
    socklen_t alen = offsetof(struct sockaddr_un, sun_path) + 1 + n;
    int al = socket(AF_UNIX, SOCK_STREAM, 0), ac = socket(AF_UNIX, SOCK_STREAM, 0);
    printf("abstract bind: %s", err(bind(al, (struct sockaddr *)&an, alen)));
    listen(al, 1);
    printf(", connect: %s", err(connect(ac, (struct sockaddr *)&an, alen)));
    struct sockaddr_un got;
    socklen_t glen = sizeof got;
    getpeername(ac, (struct sockaddr *)&got, &glen);
    printf(", peer name length right: %s\n", glen == alen && memcmp(&got, &an, alen) == 0 ? "yes" : "no");
    close(al), close(ac);
}

static void ports(void) {
    int a = socket(AF_INET, SOCK_STREAM, 0), b = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in any = {.sin_family = AF_INET};
    bind(a, (struct sockaddr *)&any, sizeof any);
    struct sockaddr_in dst = loopback(9);
    sendto(b, "x", 1, 0, (struct sockaddr *)&dst, sizeof dst);
    printf("tcp bind port %d, udp autobind port %d\n", port_of(a), port_of(b));
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    signal(SIGPIPE, on_sigpipe);
    if (argc > 1 && strcmp(argv[1], "port") == 0) {
        ports();
        return 0;
    }
    boundaries();
    refused_and_in_use("/tmp");
    nonblocking();
    peer_closed();
    options_and_names();
    return 0;
}
