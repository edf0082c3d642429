/* close_range(2) edge cases, compared with Linux by tests/syscall_fuzz.rs: a reversed range and unknown flags are
   EINVAL, CLOSE_RANGE_CLOEXEC marks instead of closing, ~0 as the last descriptor closes to the end. */
#define _GNU_SOURCE
#include <stdio.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/syscall.h>
int main(void) {
    int a = open("/dev/null", O_RDONLY), b = open("/dev/null", O_RDONLY), c = open("/dev/null", O_RDONLY);
    long r;
    r = syscall(436, 5, 3, 0); printf("reversed %ld %d\n", r, r ? errno : 0);
    r = syscall(436, 3, 5, 8); printf("badflags %ld %d\n", r, r ? errno : 0);
    r = syscall(436, a, b, 4); printf("cloexec %ld fd%d=%d fd%d=%d fd%d=%d\n", r, a, fcntl(a, F_GETFD), b, fcntl(b, F_GETFD), c, fcntl(c, F_GETFD));
    r = syscall(436, a, ~0u, 0); printf("close %ld %d %d %d\n", r, fcntl(a, F_GETFD), fcntl(b, F_GETFD), fcntl(c, F_GETFD));
    r = syscall(436, 100, 50, 2); printf("unshare-reversed %ld %d\n", r, r ? errno : 0);
    return 0;
}
