/* File locks between processes, for the differential test of tandem's locks (tests/file_layer.rs): POSIX record
   locks (fcntl F_SETLK, F_SETLKW, F_GETLK), open file description locks (F_OFD_*) and flock(2), exercised by a
   parent and the children it forks. Prints only what is the same on every run and machine: return values,
   errno names, the lock F_GETLK reports (type, start, length, and whose it is: "parent", "child" or -1, never a
   pid), and facts combined from both sides of a race (one of two deadlocked processes gets EDEADLK).
   Usage: locks DIR   (DIR: a writable directory; the program creates and removes DIR/locks.dat) */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

static char path[4096];
static pid_t parent_pid;

static const char *err_name(int e) {
    switch (e) {
    case EAGAIN: return "EAGAIN";
    case EACCES: return "EACCES";
    case EBADF: return "EBADF";
    case EINVAL: return "EINVAL";
    case EDEADLK: return "EDEADLK";
    case EINTR: return "EINTR";
    default: return "other";
    }
}

static void show(const char *what, int r) {
    if (r < 0)
        printf("%s: -1 %s\n", what, err_name(errno));
    else
        printf("%s: %d\n", what, r);
}

static int lock(int fd, int cmd, short type, short whence, off_t start, off_t len) {
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = type;
    fl.l_whence = whence;
    fl.l_start = start;
    fl.l_len = len;
    return fcntl(fd, cmd, &fl);
}

static const char *type_name(short t) {
    return t == F_RDLCK ? "F_RDLCK" : t == F_WRLCK ? "F_WRLCK" : t == F_UNLCK ? "F_UNLCK" : "?";
}

/* F_GETLK (or F_OFD_GETLK) for a write lock over start..start+len-1: what it reports. */
static void probe(const char *what, int fd, int cmd, off_t start, off_t len) {
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = start;
    fl.l_len = len;
    if (fcntl(fd, cmd, &fl) < 0) {
        printf("%s: getlk -1 %s\n", what, err_name(errno));
        return;
    }
    if (fl.l_type == F_UNLCK) {
        printf("%s: F_UNLCK\n", what);
        return;
    }
    const char *owner = fl.l_pid == parent_pid ? "parent" : fl.l_pid == -1 ? "-1" : "other";
    printf("%s: %s whence %d start %ld len %ld pid %s\n", what, type_name(fl.l_type), fl.l_whence,
           (long)fl.l_start, (long)fl.l_len, owner);
}

static int open_file(int flags) {
    int fd = open(path, flags);
    if (fd < 0) {
        perror("open");
        exit(2);
    }
    return fd;
}

/* Runs f in a child and waits for it; returns its exit status. */
static int in_child(void (*f)(void)) {
    pid_t pid = fork();
    if (pid == 0) {
        f();
        _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* ---- POSIX record locks ---- */

static void child_sees_parent_locks(void) {
    int fd = open_file(O_RDWR);
    probe("child getlk 0+1", fd, F_GETLK, 0, 1);
    probe("child getlk 45+1", fd, F_GETLK, 45, 1);
    probe("child getlk 70+1", fd, F_GETLK, 70, 1);
    probe("child getlk 10+10", fd, F_GETLK, 10, 10);
    probe("child getlk 200+0", fd, F_GETLK, 200, 0);
    show("child setlk write 45+1", lock(fd, F_SETLK, F_WRLCK, SEEK_SET, 45, 1));
    show("child setlk read 70+5", lock(fd, F_SETLK, F_RDLCK, SEEK_SET, 70, 5));
    show("child setlk read 10+5", lock(fd, F_SETLK, F_RDLCK, SEEK_SET, 10, 5));
    probe("child getlk own 10+5", fd, F_GETLK, 10, 5);
}

static void child_probe_all(void) {
    int fd = open_file(O_RDWR);
    probe("child getlk 0+0", fd, F_GETLK, 0, 0);
}

static void child_takes_and_exits(void) {
    int fd = open_file(O_RDWR);
    show("child setlk write 0+10", lock(fd, F_SETLK, F_WRLCK, SEEK_SET, 0, 10));
}

static void posix_locks(void) {
    int fd = open_file(O_RDWR);
    show("setlk read 0+100", lock(fd, F_SETLK, F_RDLCK, SEEK_SET, 0, 100));
    show("setlk write 40+20", lock(fd, F_SETLK, F_WRLCK, SEEK_SET, 40, 20));
    show("setlk unlock 10+10", lock(fd, F_SETLK, F_UNLCK, SEEK_SET, 10, 10));
    show("setlk read 150+-50", lock(fd, F_SETLK, F_RDLCK, SEEK_SET, 150, -50));
    lseek(fd, 300, SEEK_SET);
    show("setlk write cur+0 len 10", lock(fd, F_SETLK, F_WRLCK, SEEK_CUR, 0, 10));
    show("setlk write end-5+0", lock(fd, F_SETLK, F_WRLCK, SEEK_END, -5, 0));
    probe("own getlk 45+1", fd, F_GETLK, 45, 1);
    printf("child: %d\n", in_child(child_sees_parent_locks));
    /* The child's locks went with it: the parent's write over 70.. is free again. */
    show("setlk write 70+5 after the child", lock(fd, F_SETLK, F_WRLCK, SEEK_SET, 70, 5));
    /* Closing any descriptor of the file releases every POSIX lock the process holds on it. */
    int other = open_file(O_RDONLY);
    close(other);
    printf("child: %d\n", in_child(child_probe_all));
    printf("child: %d\n", in_child(child_takes_and_exits));
    show("setlk write 0+10 after the child exited", lock(fd, F_SETLK, F_WRLCK, SEEK_SET, 0, 10));
    close(fd);
}

static void errors(void) {
    int ro = open_file(O_RDONLY), wo = open_file(O_WRONLY);
    show("setlk write on O_RDONLY", lock(ro, F_SETLK, F_WRLCK, SEEK_SET, 0, 1));
    show("setlk read on O_WRONLY", lock(wo, F_SETLK, F_RDLCK, SEEK_SET, 0, 1));
    show("setlk unlock on O_RDONLY", lock(ro, F_SETLK, F_UNLCK, SEEK_SET, 0, 1));
    show("setlk type 7", lock(ro, F_SETLK, 7, SEEK_SET, 0, 1));
    show("setlk whence 9", lock(ro, F_SETLK, F_RDLCK, 9, 0, 1));
    show("setlk start -1", lock(ro, F_SETLK, F_RDLCK, SEEK_SET, -1, 1));
    show("setlk 5+-10", lock(ro, F_SETLK, F_RDLCK, SEEK_SET, 5, -10));
    show("getlk unlock", lock(ro, F_GETLK, F_UNLCK, SEEK_SET, 0, 1));
    show("setlk bad fd", lock(99, F_SETLK, F_RDLCK, SEEK_SET, 0, 1));
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = F_RDLCK;
    fl.l_pid = 1;
    show("ofd setlk l_pid 1", fcntl(ro, F_OFD_SETLK, &fl));
    show("flock op 0", flock(ro, 0));
    show("flock op LOCK_SH|LOCK_EX", flock(ro, LOCK_SH | LOCK_EX));
    show("flock bad fd", flock(99, LOCK_SH));
    close(ro);
    close(wo);
}

/* ---- F_SETLKW: waiting, and deadlock ---- */

static int sync_pipe[2], report_pipe[2];

static void child_waits(void) {
    int fd = open_file(O_RDWR);
    char c = 'r';
    write(sync_pipe[1], &c, 1);
    int r = lock(fd, F_SETLKW, F_WRLCK, SEEK_SET, 0, 10);
    show("child setlkw write 0+10", r);
    probe("child getlk own 0+10", fd, F_GETLK, 0, 10);
}

static void deadlock_child(void) {
    int fd = open_file(O_RDWR);
    lock(fd, F_SETLK, F_WRLCK, SEEK_SET, 1, 1);
    char c = 'r';
    write(sync_pipe[1], &c, 1);
    /* Give the parent time to block on byte 1 (only the order of the EDEADLK changes otherwise). */
    usleep(100000);
    int r = lock(fd, F_SETLKW, F_WRLCK, SEEK_SET, 0, 1);
    int e = r < 0 ? errno : 0;
    if (r < 0)
        lock(fd, F_SETLK, F_UNLCK, SEEK_SET, 1, 1);
    write(report_pipe[1], &e, sizeof e);
}

static void waiting(void) {
    int fd = open_file(O_RDWR);
    pipe(sync_pipe);
    pipe(report_pipe);
    show("setlk write 0+10", lock(fd, F_SETLK, F_WRLCK, SEEK_SET, 0, 10));
    pid_t pid = fork();
    if (pid == 0) {
        child_waits();
        _exit(0);
    }
    char c;
    read(sync_pipe[0], &c, 1);
    /* Printed once the child is gone: the child, woken by the unlock, prints too, in either order natively. */
    int unlocked = lock(fd, F_SETLK, F_UNLCK, SEEK_SET, 0, 10);
    int status;
    waitpid(pid, &status, 0);
    show("unlock 0+10", unlocked);
    printf("child: %d\n", WEXITSTATUS(status));

    show("setlk write 0+1", lock(fd, F_SETLK, F_WRLCK, SEEK_SET, 0, 1));
    pid = fork();
    if (pid == 0) {
        deadlock_child();
        _exit(0);
    }
    read(sync_pipe[0], &c, 1);
    int r = lock(fd, F_SETLKW, F_WRLCK, SEEK_SET, 1, 1);
    int mine = r < 0 ? errno : 0;
    if (r < 0)
        lock(fd, F_SETLK, F_UNLCK, SEEK_SET, 0, 1);
    int theirs;
    read(report_pipe[0], &theirs, sizeof theirs);
    waitpid(pid, &status, 0);
    printf("deadlock: one EDEADLK and one lock: %s\n",
           (mine == EDEADLK && theirs == 0) || (mine == 0 && theirs == EDEADLK) ? "yes" : "no");
    close(fd);
}

/* ---- OFD locks ---- */

static void ofd_locks(void) {
    int a = open_file(O_RDWR), b = open_file(O_RDWR);
    show("ofd setlk write a 0+10", lock(a, F_OFD_SETLK, F_WRLCK, SEEK_SET, 0, 10));
    show("ofd setlk write b 5+10", lock(b, F_OFD_SETLK, F_WRLCK, SEEK_SET, 5, 10));
    show("posix setlk write b 5+10", lock(b, F_SETLK, F_WRLCK, SEEK_SET, 5, 10));
    show("ofd setlk write a 5+10 (own)", lock(a, F_OFD_SETLK, F_WRLCK, SEEK_SET, 5, 10));
    probe("ofd getlk b 0+1", b, F_OFD_GETLK, 0, 1);
    probe("posix getlk b 12+1", b, F_GETLK, 12, 1);
    int c = dup(a);
    close(a);
    probe("after closing a but not its dup", b, F_OFD_GETLK, 0, 1);
    close(c);
    probe("after closing the dup", b, F_OFD_GETLK, 0, 1);
    show("ofd setlk write b 0+10", lock(b, F_OFD_SETLK, F_WRLCK, SEEK_SET, 0, 10));
    /* A POSIX lock of this process conflicts with the OFD lock of its own descriptor b. */
    int d = open_file(O_RDWR);
    show("posix setlk read d 0+1", lock(d, F_SETLK, F_RDLCK, SEEK_SET, 0, 1));
    probe("posix getlk d 0+1", d, F_GETLK, 0, 1);
    close(d);
    close(b);
}

/* ---- flock ---- */

static int flock_fd;

static void child_flock_same_description(void) {
    show("child flock EX|NB on the inherited description", flock(flock_fd, LOCK_EX | LOCK_NB));
    int other = open_file(O_RDWR);
    show("child flock SH|NB on its own description", flock(other, LOCK_SH | LOCK_NB));
}

static void child_flock_waits(void) {
    int fd = open_file(O_RDWR);
    char c = 'r';
    write(sync_pipe[1], &c, 1);
    show("child flock EX (waits)", flock(fd, LOCK_EX));
}

static void flocks(void) {
    flock_fd = open_file(O_RDWR);
    int b = open_file(O_RDWR);
    show("flock EX a", flock(flock_fd, LOCK_EX));
    show("flock EX|NB b", flock(b, LOCK_EX | LOCK_NB));
    show("flock SH|NB b", flock(b, LOCK_SH | LOCK_NB));
    show("posix setlk write b 0+10 (flock is separate)", lock(b, F_SETLK, F_WRLCK, SEEK_SET, 0, 10));
    lock(b, F_SETLK, F_UNLCK, SEEK_SET, 0, 0);
    printf("child: %d\n", in_child(child_flock_same_description));
    show("flock SH a (convert)", flock(flock_fd, LOCK_SH));
    show("flock SH|NB b", flock(b, LOCK_SH | LOCK_NB));
    show("flock EX|NB a", flock(flock_fd, LOCK_EX | LOCK_NB));
    show("flock UN b", flock(b, LOCK_UN));
    show("flock EX|NB a", flock(flock_fd, LOCK_EX | LOCK_NB));
    show("flock UN on an unlocked description", flock(b, LOCK_UN));
    pid_t pid = fork();
    if (pid == 0) {
        close(flock_fd);
        child_flock_waits();
        _exit(0);
    }
    char c;
    read(sync_pipe[0], &c, 1);
    /* The last close of the description releases its flock. */
    close(flock_fd);
    int status;
    waitpid(pid, &status, 0);
    printf("child: %d\n", WEXITSTATUS(status));
    close(b);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: locks DIR\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IONBF, 0);
    parent_pid = getpid();
    snprintf(path, sizeof path, "%s/locks.dat", argv[1]);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        perror(path);
        return 2;
    }
    char buf[100];
    memset(buf, 'x', sizeof buf);
    write(fd, buf, sizeof buf);
    close(fd);
    printf("-- posix\n");
    posix_locks();
    printf("-- errors\n");
    errors();
    printf("-- waiting\n");
    waiting();
    printf("-- ofd\n");
    ofd_locks();
    printf("-- flock\n");
    flocks();
    unlink(path);
    printf("done\n");
    return 0;
}
