/* A SIGSEGV handler that recovers: writes to a read-only page, the handler checks siginfo (si_addr, si_code) and
   makes the page writable, the write is retried and succeeds. Then a second fault is recovered with siglongjmp. */
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static char *volatile page;
static volatile int faults;
static sigjmp_buf jump;
static volatile int use_jump;

static void handler(int sig, siginfo_t *info, void *uc_) {
    (void)uc_;
    faults++;
    if (use_jump)
        siglongjmp(jump, 1);
    long off = (char *)info->si_addr - page;
    const char *code = info->si_code == SEGV_ACCERR ? "SEGV_ACCERR" : info->si_code == SEGV_MAPERR ? "SEGV_MAPERR" : "other";
    /* printf is not async-signal-safe; use write. */
    char msg[96];
    int n = snprintf(msg, sizeof msg, "handler: signal %d, offset %ld, %s\n", sig, off, code);
    write(1, msg, n);
    mprotect(page, 4096, PROT_READ | PROT_WRITE);
}

int main(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = handler;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &sa, 0);
    page = mmap(0, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ((volatile char *)page)[100] = 42;
    printf("after recovery: page[100]=%d, faults=%d\n", page[100], faults);
    use_jump = 1;
    if (sigsetjmp(jump, 1) == 0) {
        *(volatile int *)16 = 1;
        printf("not reached\n");
    } else {
        printf("recovered by siglongjmp, faults=%d\n", faults);
    }
    return 0;
}
