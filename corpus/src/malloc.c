/* malloc/realloc/free stress: a seeded LCG picks sizes (small, page-sized and mmap-sized), contents are checked. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SLOTS 64
#define ROUNDS 4000

static unsigned long long state = 12345;
static unsigned rnd(void) {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (unsigned)(state >> 33);
}

int main(void) {
    unsigned char *slot[SLOTS] = {0};
    size_t len[SLOTS] = {0};
    unsigned long long sum = 0;
    for (int r = 0; r < ROUNDS; r++) {
        int i = rnd() % SLOTS;
        if (slot[i]) {
            for (size_t k = 0; k < len[i]; k++)
                if (slot[i][k] != (unsigned char)(i + k)) {
                    printf("corrupt slot %d at %zu\n", i, k);
                    return 1;
                }
            sum += len[i];
            if (rnd() % 4 == 0) {
                size_t n = len[i] / 2 + 1;
                slot[i] = realloc(slot[i], n);
                len[i] = n;
                continue;
            }
            free(slot[i]);
            slot[i] = 0;
            continue;
        }
        unsigned kind = rnd() % 16;
        size_t n = kind < 12 ? rnd() % 200 + 1 : kind < 15 ? rnd() % 8192 + 1 : rnd() % 300000 + 131072;
        slot[i] = malloc(n);
        if (!slot[i]) {
            printf("malloc failed\n");
            return 1;
        }
        for (size_t k = 0; k < n; k++)
            slot[i][k] = (unsigned char)(i + k);
        len[i] = n;
    }
    for (int i = 0; i < SLOTS; i++)
        free(slot[i]);
    printf("malloc ok, checked %llu bytes\n", sum);
    return 0;
}
