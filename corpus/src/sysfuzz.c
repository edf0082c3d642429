/* Random system calls with hostile arguments, for the emulator's "no guest input panics it" test.
 *
 * Usage: sysfuzz SEED COUNT [tasks]
 * Makes COUNT system calls with numbers 0..459 and six arguments each drawn from a seeded xorshift stream: small
 * integers, -1, huge values, pointers to a writable buffer (filled with random bytes, or holding a path), pointers
 * just before unmapped memory, and raw random words. Prints one line per call (number, and result or -errno) so that two runs
 * can be compared. The calls that would end the loop at once or multiply the process (exit, exit_group, fork,
 * vfork, clone, clone3, execve, execveat) are skipped: the others may still end it (a random munmap of the code, a
 * signal sent to itself), which is a normal guest outcome. With `tasks`, fork, vfork, clone and clone3 are made
 * too, with random flags: a child (a call that returned 0) makes 20 more calls, never creating tasks, and exits;
 * a thread on a random stack usually dies at once, taking its process with it. Never run it natively: it changes files under /tmp and
 * may do anything the calls allow. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>

static uint64_t state;

static uint64_t next(void) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
}

static unsigned char buf[3 * 4096] __attribute__((aligned(4096)));

static const char *paths[] = {
    "/tmp/sysfuzz-a", "/tmp/sysfuzz-dir", "/tmp", "/", ".", "/proc/self/maps", "/proc/self/status",
    "/dev/null", "/dev/zero", "/dev/urandom", "/etc/passwd", "", "/tmp/sysfuzz-a/../sysfuzz-b", "/nonexistent/x",
};

static uint64_t argument(void) {
    uint64_t r = next();
    switch (r % 12) {
    case 0: return 0;
    case 1: return (uint64_t)-1;
    case 2: return (r >> 8) % 64;
    case 3: return (r >> 8) % 4;
    case 4: return (uint64_t)(uintptr_t)(buf + ((r >> 8) % sizeof buf));
    case 5: return (uint64_t)(uintptr_t)buf;
    case 6: {
        const char *p = paths[(r >> 8) % (sizeof paths / sizeof paths[0])];
        size_t at = 4096 + ((r >> 16) % 2048);
        size_t n = strlen(p) + 1;
        memcpy(buf + at, p, n);
        return (uint64_t)(uintptr_t)(buf + at);
    }
    case 7: return 0x7ffffffff000ull + ((r >> 8) % 8192);
    case 8: return 1ull << ((r >> 8) % 64);
    case 9: return (r >> 8) % 4096;
    case 10: return (uint64_t)(uintptr_t)(buf + sizeof buf - 8);
    default: return next();
    }
}

static int creates_task(long nr) {
    return nr == SYS_fork || nr == SYS_vfork || nr == SYS_clone || nr == 435 /* clone3 */;
}

static int skipped(long nr, int tasks) {
    return nr == SYS_exit || nr == SYS_exit_group || nr == SYS_execve || nr == SYS_execveat ||
           (creates_task(nr) && !tasks);
}

/* One random call; its number and result (or -errno) on stdout. Returns the call's number and result. */
static long one_call(int tasks, long *nr_out) {
    long nr;
    do {
        nr = (long)(next() % 460);
    } while (skipped(nr, tasks));
    uint64_t a[6];
    for (int k = 0; k < 6; k++) a[k] = argument();
    long r = syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
    if (r == -1) r = -errno;
    char line[64];
    int n = snprintf(line, sizeof line, "%ld %ld\n", nr, r);
    /* write(2) directly: stdio's buffer could be clobbered by a random read into it. */
    syscall(SYS_write, 1, line, n);
    *nr_out = nr;
    return r;
}

int main(int argc, char **argv) {
    if (argc != 3 && !(argc == 4 && strcmp(argv[3], "tasks") == 0)) {
        fprintf(stderr, "usage: sysfuzz SEED COUNT [tasks]\n");
        return 2;
    }
    int tasks = argc == 4;
    state = strtoull(argv[1], 0, 0) * 0x9e3779b97f4a7c15ull + 1;
    long count = strtol(argv[2], 0, 0);
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = (unsigned char)next();
    for (long i = 0; i < count; i++) {
        long nr;
        long r = one_call(tasks, &nr);
        if (creates_task(nr) && r == 0) {
            for (int k = 0; k < 20; k++) one_call(0, &nr);
            syscall(SYS_exit_group, 0);
        }
    }
    return 0;
}
