/* mlock(2) and its kin, capget(2)/capset(2), the protection-key calls, the scheduling-policy queries and the NUMA
   memory-policy calls, compared with Linux by
   tests/syscall_fuzz.rs. Prints return values and errno numbers only. The capability sets are dropped to empty
   first (capset), so a run as root and tandem's unprivileged guest then answer alike. The pkey lines hold only on a
   CPU without protection keys (tandem's; the test drops them where the host has PKU), the numa lines only on a
   host with one NUMA node (the test drops them elsewhere). */
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

    struct { unsigned size, policy; unsigned long long flags; int nice; unsigned prio;
             unsigned long long runtime, deadline, period; unsigned util_min, util_max; } sa;
    show("sched_getscheduler", syscall(SYS_sched_getscheduler, 0));
    show("sched_getscheduler no such pid", syscall(SYS_sched_getscheduler, 999999));
    show("sched_getscheduler pid -1", syscall(SYS_sched_getscheduler, -1));
    int prio = -1;
    show("sched_getparam", syscall(SYS_sched_getparam, 0, &prio));
    printf("priority %d\n", prio);
    for (int policy = -1; policy <= 7; policy++) {
        printf("policy %d: ", policy);
        show("max", syscall(SYS_sched_get_priority_max, policy));
        printf("policy %d: ", policy);
        show("min", syscall(SYS_sched_get_priority_min, policy));
    }
    memset(&sa, 0xee, sizeof sa);
    show("sched_getattr 56", syscall(SYS_sched_getattr, 0, &sa, 56, 0));
    /* Not sched_runtime: Linux reports the fair scheduler's slice there, which depends on the kernel and the CPUs. */
    printf("attr size %u policy %u flags %llu nice %d prio %u deadline %llu period %llu util %u %u\n", sa.size,
           sa.policy, sa.flags, sa.nice, sa.prio, sa.deadline, sa.period, sa.util_min, sa.util_max);
    memset(&sa, 0xee, sizeof sa);
    show("sched_getattr 48", syscall(SYS_sched_getattr, 0, &sa, 48, 0));
    printf("attr size %u util %x\n", sa.size, sa.util_min);
    show("sched_getattr 40", syscall(SYS_sched_getattr, 0, &sa, 40, 0));
    show("sched_getattr flags", syscall(SYS_sched_getattr, 0, &sa, 56, 1));
    show("sched_getattr no such pid", syscall(SYS_sched_getattr, 999999, &sa, 56, 0));
    show("getpriority bad which", syscall(SYS_getpriority, 3, 0));
    show("getpriority no such pid", syscall(SYS_getpriority, 0, 999999));

    int mode = -1;
    unsigned long mask[2] = {~0ul, ~0ul};
    show("numa get_mempolicy", syscall(SYS_get_mempolicy, &mode, mask, 128, NULL, 0));
    printf("numa mode %d mask %lx %lx\n", mode, mask[0], mask[1]);
    mask[0] = mask[1] = ~0ul;
    show("numa get_mempolicy mems allowed", syscall(SYS_get_mempolicy, &mode, mask, 65, NULL, 4));
    printf("numa mode %d mask %lx %lx\n", mode, mask[0], mask[1]);
    show("numa get_mempolicy addr", syscall(SYS_get_mempolicy, &mode, NULL, 0, m, 2));
    show("numa get_mempolicy node of addr", syscall(SYS_get_mempolicy, &mode, NULL, 0, m, 3));
    printf("numa node %d\n", mode);
    show("numa get_mempolicy node", syscall(SYS_get_mempolicy, &mode, NULL, 0, NULL, 1));
    show("numa get_mempolicy unmapped addr", syscall(SYS_get_mempolicy, &mode, NULL, 0, m + 2 * page, 2));
    show("numa get_mempolicy bad flags", syscall(SYS_get_mempolicy, &mode, NULL, 0, NULL, 8));
    show("numa get_mempolicy mems allowed and node", syscall(SYS_get_mempolicy, &mode, NULL, 0, NULL, 5));
    show("numa get_mempolicy maxnode 0", syscall(SYS_get_mempolicy, &mode, mask, 0, NULL, 0));
    show("numa set_mempolicy default", syscall(SYS_set_mempolicy, 0, NULL, 0));
    show("numa set_mempolicy bad mode", syscall(SYS_set_mempolicy, 9, NULL, 0));
    show("numa mbind default", syscall(SYS_mbind, m, page, 0, NULL, 0, 0));
    return 0;
}
