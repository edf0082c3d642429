/* Planted bug 5, a crash only under a short read: a 32-byte record is read into a buffer followed by a
   function pointer, with a retry loop whose retry asks for the whole record again (`want` instead of
   `want - got`). When read(2) returns the record in one piece, or the input ends, the retry never reads; when a
   read comes back short with more input behind it (a pipe written in pieces, a signal), the retry reads past
   the buffer over the pointer, which is then called. Usage: shortread < input */
#include "common.h"
#include <stdio.h>

static void done(void) { puts("record read"); }

struct record {
    unsigned char data[32];
    void (*done)(void);
};

/* Global, so the compiler reloads the pointer after read(2) instead of calling done directly. */
struct record r;

int main(void) {
    r.done = done;
    size_t want = sizeof r.data, got = 0;
    while (got < want) {
        ssize_t n = read(0, r.data + got, want); /* The bug: should be want - got. */
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    r.done();
    return got == want ? 0 : 1;
}
