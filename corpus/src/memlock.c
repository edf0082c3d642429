/* mlock(2) and its kin, capget(2)/capset(2) and the protection-key calls, compared with Linux by
   tests/syscall_fuzz.rs. Prints return values and errno numbers only. The capability sets are dropped to empty
   first (capset), so a run as root and tandem's unprivileged guest then answer alike. The pkey lines hold only on a
   CPU without protection keys (tandem's; the test drops them where the host has PKU). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

struct cap_header { unsigned version; int pid; };
struct cap_data { unsigned effective, permitted, inheritable; };

static void show(const char *what, long r) {
    printf("%s %ld %d\n", what, r, r < 0 ? errno : 0);
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    long page = sysconf(_SC_PAGESIZE);
    char *m = mmap(NULL, 4 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    munmap(m + 2 * page, page); /* a hole: m+2p .. m+3p */
    show("mlock mapped", syscall(SYS_mlock, m, 2 * page));
    show("mlock unaligned start and length", syscall(SYS_mlock, m + 100, page));
    show("mlock zero length", syscall(SYS_mlock, m, 0));
    show("mlock over the hole", syscall(SYS_mlock, m + page, 2 * page));
    show("mlock past the hole's end", syscall(SYS_mlock, m + 3 * page - 1, 2));
    show("munlock mapped", syscall(SYS_munlock, m, 2 * page));
    show("munlock over the hole", syscall(SYS_munlock, m, 4 * page));
    show("mlock2 onfault", syscall(SYS_mlock2, m, page, 1));
    show("mlock2 bad flags", syscall(SYS_mlock2, m, page, 2));
    show("mlockall 0", syscall(SYS_mlockall, 0));
    show("mlockall onfault only", syscall(SYS_mlockall, 4));
    show("mlockall bad bit", syscall(SYS_mlockall, 1 | 8));
    show("mlockall current", syscall(SYS_mlockall, 1));
    show("mlockall future|onfault", syscall(SYS_mlockall, 2 | 4));
    show("munlockall", syscall(SYS_munlockall));

    struct cap_header h = { 0x20080522, 0 };
    struct cap_data d[2];
    memset(d, 0, sizeof d);
    show("capset empty", syscall(SYS_capset, &h, d));
    memset(d, 0xff, sizeof d);
    show("capget v3", syscall(SYS_capget, &h, d));
    printf("sets %x %x %x %x %x %x\n", d[0].effective, d[0].permitted, d[0].inheritable, d[1].effective,
           d[1].permitted, d[1].inheritable);
    d[0].effective = d[0].permitted = 1;
    show("capset raise", syscall(SYS_capset, &h, d));
    h.version = 0x19980330;
    show("capget v1", syscall(SYS_capget, &h, d));
    h.version = 1234;
    show("capget unknown version, no data", syscall(SYS_capget, &h, NULL));
    printf("version written back %x\n", h.version);
    h.version = 1234;
    show("capget unknown version", syscall(SYS_capget, &h, d));
    printf("version written back %x\n", h.version);
    h.pid = -1;
    show("capget pid -1", syscall(SYS_capget, &h, d));
    show("capget pid -1, no data", syscall(SYS_capget, &h, NULL));
    h.pid = 999999;
    show("capget no such pid", syscall(SYS_capget, &h, d));
    show("capset other pid", syscall(SYS_capset, &h, d));
    h.pid = getpid();
    show("capget own pid", syscall(SYS_capget, &h, d));
    h.version = 7;
    show("capset unknown version", syscall(SYS_capset, &h, d));

    show("pkey_alloc", syscall(SYS_pkey_alloc, 0, 0));
    show("pkey_alloc bad flags", syscall(SYS_pkey_alloc, 1, 0));
    show("pkey_alloc bad rights", syscall(SYS_pkey_alloc, 0, 4));
    show("pkey_free", syscall(SYS_pkey_free, 1));
    show("pkey_mprotect -1", syscall(SYS_pkey_mprotect, m, page, PROT_READ, -1));
    show("pkey_mprotect 1", syscall(SYS_pkey_mprotect, m, page, PROT_READ, 1));
    return 0;
}
