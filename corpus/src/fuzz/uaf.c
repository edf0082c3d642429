/* Planted bug 4, a use-after-free under a failing allocation: a session object is allocated, then a 1 MiB
   buffer. When that allocation fails (mmap ENOMEM), the error path frees the session but forgets to return, so
   the session is used after its free and freed again at the end: musl's allocator detects the double free and
   crashes. No input reaches it; only a failing allocation does. Usage: uaf < input */
#include "common.h"
#include <stdio.h>
#include <stdlib.h>

struct session {
    long id;
    long bytes;
};

int main(void) {
    unsigned char buf[256];
    size_t n = read_input(buf, sizeof buf);
    struct session *s = malloc(sizeof *s);
    if (!s)
        return 1;
    s->id = 7;
    s->bytes = 0;
    unsigned char *big = malloc(1 << 20);
    if (!big) {
        fputs("out of memory\n", stderr);
        free(s);
        /* The bug: no return here. */
    } else {
        memcpy(big, buf, n);
        free(big);
    }
    s->bytes += (long)n;
    printf("session %ld: %ld bytes\n", s->id, s->bytes);
    free(s);
    return 0;
}
