/* xz compression with two threads through liblzma's multithreaded encoder (what `xz -T2` uses), then
   decompression and a check. Input: stdin, or a deterministic generated text of SIZE bytes when stdin is empty.
   Output: the sizes and a CRC-32 of the compressed stream (the same on every correct system: the encoder's
   output does not depend on thread timing) and whether the round trip matched. Usage: xzmt [SIZE] < input */
#include <lzma.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint8_t *read_input(size_t *len, size_t size) {
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap);
    ssize_t r;
    while ((r = read(0, buf + n, cap - n)) > 0) {
        n += (size_t)r;
        if (n == cap)
            buf = realloc(buf, cap *= 2);
    }
    if (n == 0) {
        buf = realloc(buf, size);
        uint64_t x = 1;
        static const char *words[] = {"tandem ", "replays ", "every ", "failure ", "bit ", "for ", "bit\n", "exactly "};
        while (n < size) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            const char *w = words[(x >> 60) & 7];
            size_t wl = strlen(w);
            if (n + wl > size)
                wl = size - n;
            memcpy(buf + n, w, wl);
            n += wl;
        }
    }
    *len = n;
    return buf;
}

int main(int argc, char **argv) {
    size_t size = argc > 1 ? (size_t)atol(argv[1]) : 3 << 20;
    size_t len;
    uint8_t *in = read_input(&len, size);
    lzma_mt mt = {0};
    mt.threads = 2;
    mt.block_size = 1 << 20; /* several blocks, so both threads get work */
    mt.timeout = 0;
    mt.preset = 6;
    mt.check = LZMA_CHECK_CRC64;
    lzma_stream s = LZMA_STREAM_INIT;
    if (lzma_stream_encoder_mt(&s, &mt) != LZMA_OK) {
        printf("encoder init failed\n");
        return 1;
    }
    size_t cap = len + len / 2 + 65536;
    uint8_t *out = malloc(cap);
    s.next_in = in;
    s.avail_in = len;
    s.next_out = out;
    s.avail_out = cap;
    lzma_ret ret;
    while ((ret = lzma_code(&s, LZMA_FINISH)) == LZMA_OK)
        ;
    if (ret != LZMA_STREAM_END) {
        printf("encode failed: %d\n", ret);
        return 1;
    }
    size_t clen = cap - s.avail_out;
    lzma_end(&s);
    printf("input %zu bytes, compressed %zu bytes, crc32 %08x\n", len, clen, lzma_crc32(out, clen, 0));

    uint8_t *back = malloc(len + 1);
    size_t in_pos = 0, out_pos = 0;
    uint64_t memlimit = UINT64_MAX;
    ret = lzma_stream_buffer_decode(&memlimit, 0, NULL, out, &in_pos, clen, back, &out_pos, len + 1);
    printf("round trip: %s\n", ret == LZMA_OK && out_pos == len && memcmp(back, in, len) == 0 ? "ok" : "differs");
    return 0;
}
