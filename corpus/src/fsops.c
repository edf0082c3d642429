/* File-system semantics that a user trusts without checking: MAP_SHARED coherence, metadata changes (chmod,
   chown, utimensat, link), sendfile, copy_file_range, deep directory nesting, and opens separated by a read of stdin (the window in
   which a host process may rename a mounted directory). Each subcommand prints what it observes, so the output
   is compared with the same program run natively (or, for what only an unprivileged process on a read-only
   mount sees, with fixed expectations). Usage: fsops COMMAND DIR [N|FILE]; DIR is a writable directory. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

static char path_buf[4096];

static const char *at(const char *dir, const char *name) {
    snprintf(path_buf, sizeof path_buf, "%s/%s", dir, name);
    return path_buf;
}

/* The symbolic name of an errno (musl has no strerrorname_np), so that output compares across C libraries. */
static const char *errname(int e) {
    switch (e) {
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case EBADF: return "EBADF";
    case EACCES: return "EACCES";
    case EEXIST: return "EEXIST";
    case EXDEV: return "EXDEV";
    case ENOTDIR: return "ENOTDIR";
    case EISDIR: return "EISDIR";
    case EINVAL: return "EINVAL";
    case EROFS: return "EROFS";
    case ELOOP: return "ELOOP";
    case ENOSYS: return "ENOSYS";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    case EOVERFLOW: return "EOVERFLOW";
    default: return "other";
    }
}

static void report(const char *what, long r) {
    if (r < 0)
        printf("%s: -1 %s\n", what, errname(errno));
    else
        printf("%s: %ld\n", what, r);
}

static void show_file(const char *what, int fd, size_t len) {
    char buf[64] = {0};
    ssize_t n = pread(fd, buf, len < sizeof buf ? len : sizeof buf - 1, 0);
    printf("%s: %zd [", what, n);
    for (ssize_t i = 0; i < n; i++)
        putchar(buf[i] >= 32 && buf[i] < 127 ? buf[i] : '.');
    printf("]\n");
}

/* Stores through a MAP_SHARED mapping reach the file; writes to the file reach the mapping. */
static int mmap_shared(const char *dir) {
    const char *p = at(dir, "shared.bin");
    int fd = open(p, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return perror(p), 1;
    report("ftruncate", ftruncate(fd, 8192));
    char *m = mmap(0, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED)
        return perror("mmap"), 1;
    memcpy(m, "stored-through-map", 18);
    memcpy(m + 4096, "second-page", 11);
    show_file("pread after store", fd, 18);
    char page2[12] = {0};
    pread(fd, page2, 11, 4096);
    printf("pread second page: %s\n", page2);
    pwrite(fd, "WRITE", 5, 0);
    printf("map after pwrite: %.18s\n", m);
    /* read(2) into the mapping is a store into the file too. */
    int src = open(at(dir, "src.txt"), O_RDWR | O_CREAT | O_TRUNC, 0644);
    write(src, "from-read", 9);
    lseek(src, 0, SEEK_SET);
    report("read into map", read(src, m + 100, 9));
    close(src);
    char mid[10] = {0};
    pread(fd, mid, 9, 100);
    printf("file after read into map: %s\n", mid);
    report("msync", msync(m, 8192, MS_SYNC));
    /* A second, private mapping sees the stored bytes. */
    char *priv = mmap(0, 4096, PROT_READ, MAP_PRIVATE, fd, 0);
    printf("private map: %.18s\n", priv);
    report("munmap", munmap(m, 8192));
    show_file("pread after munmap", fd, 18);
    struct stat st;
    fstat(fd, &st);
    printf("size %lld\n", (long long)st.st_size);
    /* Growing the file after mapping: the mapped page beyond the old end shows the new bytes. */
    char *small = mmap(0, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    report("ftruncate to 4096", ftruncate(fd, 4096));
    report("ftruncate to 8192", ftruncate(fd, 8192));
    printf("second page after shrink and grow: %d\n", small[4096]);
    small[4096] = 'Z';
    char z = 0;
    pread(fd, &z, 1, 4096);
    printf("byte stored after growth: %c\n", z);
    munmap(small, 8192);
    close(fd);
    /* A writable shared mapping needs a descriptor open for writing. */
    int ro = open(p, O_RDONLY);
    void *w = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, ro, 0);
    report("shared writable map of O_RDONLY", w == MAP_FAILED ? -1 : 0);
    void *r = mmap(0, 4096, PROT_READ, MAP_SHARED, ro, 0);
    report("shared read-only map of O_RDONLY", r == MAP_FAILED ? -1 : 0);
    report("mprotect it writable", mprotect(r, 4096, PROT_READ | PROT_WRITE));
    void *pw = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, ro, 0);
    report("private writable map of O_RDONLY", pw == MAP_FAILED ? -1 : 0);
    close(ro);
    return 0;
}

/* A time the program set (before 2020) is printed; one the system set is "now" (the clocks differ). */
static void show_time(const char *what, struct timespec t) {
    if (t.tv_sec >= 1577836800)
        printf(" %s now", what);
    else
        printf(" %s %lld.%09ld", what, (long long)t.tv_sec, t.tv_nsec);
}

static void show_stat(const char *what, const char *p, int follow) {
    struct stat st;
    int r = follow ? stat(p, &st) : lstat(p, &st);
    if (r < 0) {
        report(what, r);
        return;
    }
    printf("%s: mode %o nlink %ld mine %d", what, st.st_mode, (long)st.st_nlink,
           st.st_uid == getuid() && st.st_gid == getgid());
    show_time("atime", st.st_atim);
    show_time("mtime", st.st_mtim);
    printf("\n");
}

/* chmod, chown, utimensat, utimes, futimesat and link change what stat shows; sendfile copies. */
static int meta(const char *dir) {
    char f[4096], g[4096], l[4096];
    snprintf(f, sizeof f, "%s/file", dir);
    snprintf(g, sizeof g, "%s/hard", dir);
    snprintf(l, sizeof l, "%s/sym", dir);
    unlink(f), unlink(g), unlink(l);
    int fd = open(f, O_RDWR | O_CREAT | O_EXCL, 0600);
    write(fd, "0123456789abcdef", 16);
    report("chmod 0751", chmod(f, 0751));
    show_stat("after chmod", f, 1);
    report("access X_OK", access(f, X_OK));
    report("fchmod 0640", fchmod(fd, 0640));
    show_stat("after fchmod", f, 1);
    report("access X_OK", access(f, X_OK));
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    report("fchmodat 0604", fchmodat(dfd, "file", 01604, 0));
    show_stat("after fchmodat", f, 1);
    report("chown to self", chown(f, getuid(), getgid()));
    report("fchown -1 -1", fchown(fd, -1, -1));
    report("symlink", symlink("file", l));
    report("lchown", lchown(l, getuid(), -1));
    report("fchownat nofollow", fchownat(dfd, "sym", -1, getgid(), AT_SYMLINK_NOFOLLOW));
    struct timespec ts[2] = {{1000000000, 123456789}, {1200000000, 987654321}};
    report("utimensat", utimensat(AT_FDCWD, f, ts, 0));
    show_stat("after utimensat", f, 1);
    struct timespec omit[2] = {{0, UTIME_OMIT}, {1300000000, 5}};
    report("utimensat omit atime", utimensat(dfd, "file", omit, 0));
    show_stat("after omit", f, 1);
    struct timeval tv[2] = {{1400000000, 250000}, {1500000000, 750000}};
    report("utimes", utimes(f, tv));
    show_stat("after utimes", f, 1);
    report("futimesat", futimesat(dfd, "file", tv));
    struct timespec bad[2] = {{0, 1000000000}, {0, 0}};
    report("utimensat bad nsec", utimensat(AT_FDCWD, f, bad, 0));
    report("futimens", futimens(fd, ts));
    show_stat("after futimens", f, 1);
    report("link", link(f, g));
    show_stat("after link", f, 1);
    report("link to existing", link(f, g));
    report("linkat", linkat(dfd, "file", dfd, "hard2", 0));
    show_stat("hard2", at(dir, "hard2"), 1);
    report("unlink hard2", unlink(at(dir, "hard2")));
    int hfd = open(g, O_WRONLY | O_APPEND);
    write(hfd, "+", 1);
    close(hfd);
    struct stat st;
    stat(f, &st);
    printf("size through the other name: %lld nlink %ld\n", (long long)st.st_size, (long)st.st_nlink);
    report("unlink original", unlink(f));
    show_stat("hard after unlink", g, 1);
    report("link a directory", link(dir, at(dir, "dirlink")));
    /* rename: a directory replaces only a directory, a file only a non-directory; two names of one file stay. */
    char rd[4096], rf[4096];
    snprintf(rd, sizeof rd, "%s/rdir", dir);
    snprintf(rf, sizeof rf, "%s/rfile", dir);
    mkdir(rd, 0755);
    close(open(rf, O_WRONLY | O_CREAT, 0644));
    report("rename file over dir", rename(rf, rd));
    report("rename dir over file", rename(rd, rf));
    report("link rfile twin", link(rf, at(dir, "twin")));
    report("rename onto its twin", rename(rf, at(dir, "twin")));
    show_stat("rfile after", rf, 1);
    /* A directory's link count follows its subdirectories. */
    show_stat("dir with a subdirectory", dir, 1);
    report("rmdir", rmdir(rd));
    show_stat("dir without", dir, 1);
    /* sendfile: from a file to a file, with and without an offset pointer, and to stdout. */
    int in = open(g, O_RDONLY);
    int out = open(at(dir, "copy"), O_RDWR | O_CREAT | O_TRUNC, 0644);
    off_t off = 4;
    report("sendfile with offset", sendfile(out, in, &off, 6));
    printf("offset now %lld, in's position %lld\n", (long long)off, (long long)lseek(in, 0, SEEK_CUR));
    report("sendfile from position", sendfile(out, in, 0, 100));
    printf("in's position %lld\n", (long long)lseek(in, 0, SEEK_CUR));
    show_file("copy", out, 40);
    fflush(stdout);
    lseek(in, 0, SEEK_SET);
    report("sendfile to stdout", sendfile(1, in, 0, 5));
    report("sendfile from write-only", sendfile(in, out, 0, 5));
    close(in), close(out), close(fd), close(dfd);
    return 0;
}

/* copy_file_range(2): through the files' positions or offset pointers (which move instead), short at the end of
   the input, within one file (EINVAL where the ranges overlap), and its refusals: flags, O_APPEND, a write-only
   input, a directory, a pipe, a negative offset. */
static int copy_range(const char *dir) {
    int src = open(at(dir, "src"), O_RDWR | O_CREAT | O_TRUNC, 0644);
    write(src, "0123456789abcdefghij", 20);
    int dst = open(at(dir, "dst"), O_RDWR | O_CREAT | O_TRUNC, 0644);
    lseek(src, 2, SEEK_SET);
    report("from the positions", copy_file_range(src, NULL, dst, NULL, 5, 0));
    printf("positions %lld %lld\n", (long long)lseek(src, 0, SEEK_CUR), (long long)lseek(dst, 0, SEEK_CUR));
    loff_t in_off = 15, out_off = 30;
    report("from the pointers, past the end", copy_file_range(src, &in_off, dst, &out_off, 100, 0));
    printf("pointers %lld %lld, positions %lld %lld\n", (long long)in_off, (long long)out_off,
           (long long)lseek(src, 0, SEEK_CUR), (long long)lseek(dst, 0, SEEK_CUR));
    show_file("dst", dst, 40);
    in_off = 20;
    report("at the end of the input", copy_file_range(src, &in_off, dst, NULL, 10, 0));
    report("length 0", copy_file_range(src, NULL, dst, NULL, 0, 0));
    in_off = 0, out_off = 10;
    report("one file, apart", copy_file_range(src, &in_off, src, &out_off, 5, 0));
    in_off = 0, out_off = 3;
    report("one file, overlapping", copy_file_range(src, &in_off, src, &out_off, 5, 0));
    show_file("src", src, 40);
    report("flags 1", copy_file_range(src, NULL, dst, NULL, 5, 1));
    in_off = -1;
    report("negative offset", copy_file_range(src, &in_off, dst, NULL, 5, 0));
    int app = open(at(dir, "dst"), O_WRONLY | O_APPEND);
    report("to O_APPEND", copy_file_range(src, NULL, app, NULL, 5, 0));
    int wo = open(at(dir, "src"), O_WRONLY);
    report("from write-only", copy_file_range(wo, NULL, dst, NULL, 5, 0));
    int ro = open(at(dir, "dst"), O_RDONLY);
    report("to read-only", copy_file_range(src, NULL, ro, NULL, 5, 0));
    int d = open(dir, O_RDONLY | O_DIRECTORY);
    report("from a directory", copy_file_range(d, NULL, dst, NULL, 5, 0));
    int p[2];
    pipe(p);
    write(p[1], "xyz", 3);
    report("from a pipe", copy_file_range(p[0], NULL, dst, NULL, 3, 0));
    report("to a pipe", copy_file_range(src, NULL, p[1], NULL, 3, 0));
    report("bad descriptor", copy_file_range(99, NULL, dst, NULL, 3, 0));
    close(src), close(dst), close(app), close(wo), close(ro), close(d), close(p[0]), close(p[1]);
    return 0;
}

/* What an unprivileged process on a read-only file system gets: DIR holds host.txt and hostdir/ on a read-only
   mount; new files go to a writable layer. Run under tandem (uid 1000, mounts read-only), compared with fixed
   expectations rather than a native run as root. */
static int readonly(const char *dir) {
    char f[4096], d[4096], n[4096];
    snprintf(f, sizeof f, "%s/host.txt", dir);
    snprintf(d, sizeof d, "%s/hostdir", dir);
    snprintf(n, sizeof n, "%s/new.txt", dir);
    report("chmod host file", chmod(f, 0600));
    report("chmod host dir", chmod(d, 0700));
    report("chown host file", chown(f, getuid(), -1));
    report("utimensat host file", utimensat(AT_FDCWD, f, 0, 0));
    struct timespec ts[2] = {{1, 0}, {2, 0}};
    report("utimensat host dir", utimensat(AT_FDCWD, d, ts, 0));
    int fd = open(f, O_RDONLY);
    report("fchmod host file", fchmod(fd, 0600));
    report("futimens host file", futimens(fd, 0));
    close(fd);
    fd = open(n, O_RDWR | O_CREAT | O_TRUNC, 0644);
    report("chown new to uid 0", fchown(fd, 0, -1));
    report("chown new to gid 0", fchown(fd, -1, 0));
    report("chown new to own ids", fchown(fd, getuid(), getgid()));
    report("fchmod new setuid", fchmod(fd, 04755));
    report("fchown new keeps ids", fchown(fd, -1, getgid()));
    struct stat st;
    fstat(fd, &st);
    printf("mode after chown: %o\n", st.st_mode & 07777);
    close(fd);
    report("chmod /dev/null", chmod("/dev/null", 0600));
    report("touch /dev/null", utimensat(AT_FDCWD, "/dev/null", 0, 0));
    report("link host file", link(f, at(dir, "hostlink")));
    show_stat("host file after link", f, 1);
    report("chmod host file copied up by link", chmod(f, 0600));
    return 0;
}

/* alarm(2) and setitimer(2): no timers yet, so they must fail rather than pretend. */
static int timers(void) {
    report("alarm", (int)alarm(5));
    struct itimerval it = {{0, 0}, {1, 0}};
    report("setitimer", setitimer(ITIMER_REAL, &it, 0));
    return 0;
}

/* mkdir d; chdir d, N times: the cost must grow linearly with N. */
static int nest(const char *dir, long n) {
    if (chdir(dir) < 0)
        return perror(dir), 1;
    for (long i = 0; i < n; i++) {
        if (mkdir("d", 0755) < 0 || chdir("d") < 0) {
            printf("failed at depth %ld: %s\n", i, strerror(errno));
            return 1;
        }
    }
    int fd = open("leaf", O_WRONLY | O_CREAT, 0644);
    write(fd, "deep\n", 5);
    close(fd);
    char buf[64];
    fd = open("leaf", O_RDONLY);
    long got = read(fd, buf, sizeof buf);
    printf("depth %ld, leaf %ld bytes\n", n, got);
    return 0;
}

/* Opens DIR/FILE, reads a line of stdin, opens DIR/SECOND (default FILE): prints both contents (or the error). */
static int twice(const char *dir, const char *name, const char *second) {
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    for (int i = 0; i < 2; i++) {
        if (i == 1) {
            char line[64];
            if (!fgets(line, sizeof line, stdin))
                return 1;
            snprintf(p, sizeof p, "%s/%s", dir, second);
        }
        int fd = open(p, O_RDONLY);
        if (fd < 0) {
            printf("open %d: %s\n", i, errname(errno));
            continue;
        }
        char buf[128] = {0};
        read(fd, buf, sizeof buf - 1);
        close(fd);
        printf("open %d: %s", i, buf);
    }
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, 0, _IOLBF, 0);
    if (argc < 3) {
        fprintf(stderr, "usage: fsops mmap-shared|meta|copy-range|readonly|timers|nest|twice DIR [N|FILE]\n");
        return 2;
    }
    if (!strcmp(argv[1], "mmap-shared"))
        return mmap_shared(argv[2]);
    if (!strcmp(argv[1], "meta"))
        return meta(argv[2]);
    if (!strcmp(argv[1], "copy-range"))
        return copy_range(argv[2]);
    if (!strcmp(argv[1], "readonly"))
        return readonly(argv[2]);
    if (!strcmp(argv[1], "timers"))
        return timers();
    if (!strcmp(argv[1], "nest"))
        return nest(argv[2], argc > 3 ? atol(argv[3]) : 1000);
    if (!strcmp(argv[1], "twice") && argc > 3)
        return twice(argv[2], argv[3], argc > 4 ? argv[4] : argv[3]);
    fprintf(stderr, "fsops: unknown command %s\n", argv[1]);
    return 2;
}
