/* rewind: a small program for the replay debugger and gdb tests. It keeps its symbols (corpus/build.sh):
   a global (`counter`), two functions called from a loop (`step`, `checksum`), and a read of stdin, so that a
   trace holds an input that a test can edit. Exit status 0 when counter ends at 15. */
#include <stdio.h>
#include <unistd.h>

long counter = 0;
char line[256];

__attribute__((noinline)) long step(long x) {
    counter += x;
    return counter * 3 + 1;
}

__attribute__((noinline)) long checksum(const char *s, long n) {
    long h = 7;
    for (long i = 0; i < n; i++)
        h = h * 31 + (unsigned char)s[i];
    return h;
}

int main(void) {
    long n = read(0, line, sizeof line - 1);
    if (n < 0)
        n = 0;
    line[n] = 0;
    long h = checksum(line, n);
    long last = 0;
    for (int i = 1; i <= 5; i++)
        last = step(i);
    printf("read %ld bytes, checksum %ld, counter %ld, last %ld\n", n, h, counter, last);
    return counter == 15 ? 0 : 1;
}
