/* Changes a directory tree the way programs that keep data do, for the writable-volume and CDP tests: the tree
   it leaves is compared byte for byte with the same program run natively on a copy of the same input.
   Usage: volume DIR script       one fixed sequence: create, write, pwrite with holes, writev, append, O_TRUNC,
                                  ftruncate, truncate, rename (files and directories, over existing names), link,
                                  symlink, unlink, rmdir, chmod, fsync, fdatasync, sync_file_range, O_SYNC, sync;
                                  expects DIR to hold keep.txt, old.txt and in/data.bin
          volume DIR mmap         stores through MAP_SHARED mappings, msync, munmap, and a mapping left to exit
          volume DIR churn N SEED  N rounds of writes, renames, truncates, unlinks and fsyncs on a few files,
                                  chosen by a generator seeded with SEED (the same on every machine)
   Prints one line per step with what the step returned, so a differing errno shows in the output too. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

static const char *dir;

static const char *at(const char *name) {
    static char bufs[4][4096];
    static int next;
    char *b = bufs[next++ % 4];
    snprintf(b, 4096, "%s/%s", dir, name);
    return b;
}

static void step(const char *what, long r) {
    if (r < 0)
        printf("%s: -1 errno %d\n", what, errno);
    else
        printf("%s: %ld\n", what, r);
}

static long write_all(int fd, const char *s) { return write(fd, s, strlen(s)); }

static int script(void) {
    step("mkdir sub", mkdir(at("sub"), 0755));
    int fd = open(at("a.txt"), O_WRONLY | O_CREAT | O_EXCL, 0644);
    step("create a.txt", fd);
    for (int i = 0; i < 50; i++) {
        char line[64];
        snprintf(line, sizeof line, "line %d of a.txt\n", i);
        write_all(fd, line);
    }
    step("fsync a.txt", fsync(fd));
    step("close", close(fd));

    fd = open(at("sub/holes.bin"), O_RDWR | O_CREAT | O_TRUNC, 0600);
    step("pwrite at 10000", pwrite(fd, "far", 3, 10000));
    step("pwrite at 3", pwrite(fd, "near", 4, 3));
    struct iovec iov[3] = {{"vec", 3}, {"tored-", 6}, {"write", 5}};
    step("writev", writev(fd, iov, 3));
    step("ftruncate grow", ftruncate(fd, 20000));
    step("ftruncate shrink", ftruncate(fd, 5000));
    step("fdatasync", fdatasync(fd));
    step("sync_file_range", sync_file_range(fd, 0, 4096, SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER));
    close(fd);

    fd = open(at("old.txt"), O_WRONLY | O_TRUNC);
    step("O_TRUNC old.txt", fd);
    step("write old.txt", write_all(fd, "replaced\n"));
    close(fd);
    fd = open(at("keep.txt"), O_WRONLY | O_APPEND);
    step("append keep.txt", write_all(fd, "appended\n"));
    close(fd);
    fd = open(at("sync.txt"), O_WRONLY | O_CREAT | O_SYNC, 0644);
    step("O_SYNC write", write_all(fd, "durable on return\n"));
    close(fd);

    step("rename a.txt sub/a2.txt", rename(at("a.txt"), at("sub/a2.txt")));
    step("link", link(at("sub/a2.txt"), at("hard.txt")));
    step("truncate hard.txt", truncate(at("hard.txt"), 15));
    step("symlink", symlink("sub/a2.txt", at("link")));
    step("rename over sync.txt", rename(at("old.txt"), at("sync.txt")));
    step("mkdir empty", mkdir(at("empty"), 0700));
    step("mkdir gone", mkdir(at("gone"), 0755));
    step("rmdir gone", rmdir(at("gone")));
    step("unlink in/data.bin", unlink(at("in/data.bin")));
    step("rename sub moved", rename(at("sub"), at("moved")));
    step("chmod moved/a2.txt", chmod(at("moved/a2.txt"), 0600));
    step("rmdir non-empty", rmdir(at("moved")));
    step("rename into itself", rename(at("moved"), at("moved/x")));

    /* An unlinked file stays writable through its descriptor; none of it shows in the tree. */
    fd = open(at("tmp.txt"), O_RDWR | O_CREAT, 0644);
    step("unlink open tmp.txt", unlink(at("tmp.txt")));
    step("write unlinked", write_all(fd, "invisible"));
    close(fd);

    int d = open(dir, O_RDONLY | O_DIRECTORY);
    step("fsync dir", fsync(d));
    close(d);
    sync();
    printf("done\n");
    return 0;
}

static unsigned long long state;

static unsigned next(unsigned n) {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (unsigned)(state >> 33) % n;
}

static int churn(int rounds) {
    static const char *names[] = {"f0", "f1", "f2", "d/f3", "d/f4"};
    mkdir(at("d"), 0755);
    for (int r = 0; r < rounds; r++) {
        const char *name = names[next(5)];
        char buf[300];
        switch (next(7)) {
        case 0: case 1: case 2: {
            int fd = open(at(name), O_WRONLY | O_CREAT, 0644);
            int len = 1 + next(sizeof buf);
            for (int i = 0; i < len; i++)
                buf[i] = 'a' + (r + i) % 26;
            step("pwrite", pwrite(fd, buf, len, next(2000)));
            if (next(3) == 0)
                step("fsync", fsync(fd));
            close(fd);
            break;
        }
        case 3:
            step("rename", rename(at(name), at(names[next(5)])));
            break;
        case 4:
            step("truncate", truncate(at(name), next(3000)));
            break;
        case 5:
            step("unlink", unlink(at(name)));
            break;
        default: {
            int d = open(dir, O_RDONLY | O_DIRECTORY);
            step("fsync dir", fsync(d));
            close(d);
        }
        }
    }
    printf("done\n");
    return 0;
}

/* MAP_SHARED stores into volume files: read(2) sees them after msync (and at once, as on Linux), munmap and exit
   write them back, and the tree the run leaves holds them. */
static int mapped(void) {
    int fd = open(at("m.bin"), O_RDWR | O_CREAT | O_TRUNC, 0644);
    step("create m.bin", fd);
    step("ftruncate 12288", ftruncate(fd, 12288));
    char *p = mmap(0, 12288, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    step("mmap", p == MAP_FAILED ? -1 : 0);
    memcpy(p + 10, "stored through the mapping", 26);
    memcpy(p + 8200, "page three", 10);
    step("msync MS_SYNC", msync(p, 12288, MS_SYNC));
    char buf[32] = {0};
    step("pread 10", pread(fd, buf, 26, 10));
    printf("read after msync: %s\n", buf);
    memcpy(p + 4096, "page two, before munmap", 23);
    step("msync MS_ASYNC first page", msync(p, 4096, MS_ASYNC));
    step("munmap", munmap(p, 12288));
    memset(buf, 0, sizeof buf);
    step("pread 4096", pread(fd, buf, 23, 4096));
    printf("read after munmap: %s\n", buf);
    step("fsync", fsync(fd));
    close(fd);
    fd = open(at("keep.txt"), O_RDWR);
    p = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    step("mmap keep.txt", p == MAP_FAILED ? -1 : 0);
    memcpy(p, "KEEP", 4);
    close(fd);
    printf("done\n");
    /* Exit with the last mapping still in place: the exit writes it back. */
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 3 && strcmp(argv[2], "mmap") == 0) {
        dir = argv[1];
        return mapped();
    }
    if (argc >= 3 && strcmp(argv[2], "script") == 0) {
        dir = argv[1];
        return script();
    }
    if (argc >= 5 && strcmp(argv[2], "churn") == 0) {
        dir = argv[1];
        state = strtoull(argv[4], 0, 10);
        return churn(atoi(argv[3]));
    }
    fprintf(stderr, "usage: volume DIR script | volume DIR churn N SEED | volume DIR mmap\n");
    return 2;
}
