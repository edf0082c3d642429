/* Saves a document N times in one of two ways, for `tandem crashtest` (tests/crashtest.rs), and checks what a
   crash left.
   Usage: save inplace DIR N   each save rewrites DIR/doc in place: open O_TRUNC, write, close; no fsync, no rename
                               (the pattern that loses data: caught)
          save atomic DIR N    each save writes DIR/doc.tmp, fsyncs it, renames it over DIR/doc and fsyncs DIR
                               (the pattern that keeps data: clean)
          save check DIR       the checker: DIR/doc must be one whole version (or absent if no save was
                               acknowledged), and no older than the last save acknowledged on stdin
   A version V is 40 lines "version V line I" and a last line "end V": 1.6 KiB, four sectors, so a torn write
   shows. Each acknowledged save prints "saved V" after it returned. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LINES 40

static char path[4096], tmp[4096];

static size_t render(int version, char *out, size_t cap) {
    size_t n = 0;
    for (int i = 0; i < LINES; i++)
        n += snprintf(out + n, cap - n, "version %04d line %02d of the document\n", version, i);
    n += snprintf(out + n, cap - n, "end %04d\n", version);
    return n;
}

static void die(const char *what) {
    perror(what);
    exit(2);
}

static void write_all(int fd, const char *b, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w <= 0)
            die("write");
        b += w;
        n -= (size_t)w;
    }
}

static void save_inplace(int version) {
    char buf[8192];
    size_t n = render(version, buf, sizeof buf);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        die("open");
    write_all(fd, buf, n);
    close(fd);
}

static void save_atomic(const char *dir, int version) {
    char buf[8192];
    size_t n = render(version, buf, sizeof buf);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        die("open tmp");
    write_all(fd, buf, n);
    if (fsync(fd) != 0)
        die("fsync");
    close(fd);
    if (rename(tmp, path) != 0)
        die("rename");
    int d = open(dir, O_RDONLY | O_DIRECTORY);
    if (d < 0 || fsync(d) != 0)
        die("fsync dir");
    close(d);
}

static int check(void) {
    int acked = 0, v;
    char line[256];
    while (fgets(line, sizeof line, stdin))
        if (sscanf(line, "saved %d", &v) == 1)
            acked = v;
    char buf[8192], want[8192];
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        if (acked == 0)
            return 0;
        printf("document missing after an acknowledged save\n");
        fprintf(stderr, "save %d was acknowledged\n", acked);
        return 1;
    }
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n < 0)
        die("read");
    buf[n] = 0;
    if (sscanf(buf, "version %d", &v) != 1) {
        printf("document is not a version (%s)\n", n == 0 ? "empty" : "garbage");
        fprintf(stderr, "%zd bytes\n", n);
        return 1;
    }
    size_t m = render(v, want, sizeof want);
    if ((size_t)n != m || memcmp(buf, want, m) != 0) {
        printf("document is torn or mixed\n");
        fprintf(stderr, "starts as version %d, %zd bytes, expected %zu\n", v, n, m);
        return 1;
    }
    if (v < acked) {
        printf("an acknowledged save was lost\n");
        fprintf(stderr, "found version %d, save %d was acknowledged\n", v, acked);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: save inplace|atomic DIR N | save check DIR\n");
        return 2;
    }
    snprintf(path, sizeof path, "%s/doc", argv[2]);
    snprintf(tmp, sizeof tmp, "%s/doc.tmp", argv[2]);
    if (strcmp(argv[1], "check") == 0)
        return check();
    int count = argc > 3 ? atoi(argv[3]) : 3;
    for (int v = 1; v <= count; v++) {
        if (strcmp(argv[1], "inplace") == 0)
            save_inplace(v);
        else if (strcmp(argv[1], "atomic") == 0)
            save_atomic(argv[2], v);
        else {
            fprintf(stderr, "unknown mode %s\n", argv[1]);
            return 2;
        }
        printf("saved %d\n", v);
        fflush(stdout);
    }
    return 0;
}
