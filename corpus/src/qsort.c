/* qsort of 20000 pseudo-random ints and of strings; prints a checksum and a few elements. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_int(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}
static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(void) {
    enum { N = 20000 };
    static int v[N];
    unsigned s = 1;
    for (int i = 0; i < N; i++) {
        s = s * 1103515245u + 12345u;
        v[i] = (int)(s >> 8) - (1 << 22);
    }
    qsort(v, N, sizeof v[0], cmp_int);
    long long check = 0;
    for (int i = 0; i < N; i++) {
        if (i && v[i - 1] > v[i]) {
            printf("not sorted at %d\n", i);
            return 1;
        }
        check = check * 31 + v[i];
    }
    printf("min=%d median=%d max=%d check=%lld\n", v[0], v[N / 2], v[N - 1], check);
    char *words[] = {"pear", "apple", "fig", "banana", "cherry", "date", "elderberry", "grape"};
    qsort(words, 8, sizeof words[0], cmp_str);
    for (int i = 0; i < 8; i++)
        printf("%s%c", words[i], i == 7 ? '\n' : ' ');
    return 0;
}
