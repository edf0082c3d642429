/* Integer kernels for the emulator speed benchmark (emulator/benches/kernels.rs).
 *
 * Built freestanding into a flat binary loaded at 0x400000 (see build.sh). The entry table at the start holds one
 * 8-byte slot per kernel; each kernel follows the System V calling convention and returns to its caller.
 * General-purpose registers only: these measure the integer interpreter. */

typedef unsigned long u64;
typedef unsigned int u32;
typedef unsigned char u8;

u64 loop_sum(u64 n);
void sha256_blocks(const u8 *data, u64 blocks, u32 *state);
void heap_sort(u32 *a, u64 n);
u64 copy_kernel(u8 *dst, const u8 *src, u64 n, u64 reps);

__asm__(".section .text.entry,\"ax\",@progbits\n"
        ".globl entry_table\n"
        "entry_table:\n"
        "  jmp loop_sum\n .p2align 3\n"
        "  jmp sha256_blocks\n .p2align 3\n"
        "  jmp heap_sort\n .p2align 3\n"
        "  jmp copy_kernel\n .p2align 3\n"
        ".text\n");

/* A counted loop with a loop-carried dependency, so the compiler cannot close it into a formula. */
u64 loop_sum(u64 n) {
    u64 s = 1;
    for (u64 i = 0; i < n; i++) {
        s += i ^ (s >> 3);
    }
    return s;
}

static const u32 K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static u32 ror(u32 x, int n) { return (x >> n) | (x << (32 - n)); }

/* SHA-256 compression (FIPS 180-4, 6.2.2) over `blocks` 64-byte blocks. */
void sha256_blocks(const u8 *data, u64 blocks, u32 *state) {
    for (u64 b = 0; b < blocks; b++) {
        const u8 *p = data + 64 * b;
        u32 w[64];
        for (int t = 0; t < 16; t++) {
            w[t] = (u32)p[4 * t] << 24 | (u32)p[4 * t + 1] << 16 | (u32)p[4 * t + 2] << 8 | p[4 * t + 3];
        }
        for (int t = 16; t < 64; t++) {
            u32 s0 = ror(w[t - 15], 7) ^ ror(w[t - 15], 18) ^ (w[t - 15] >> 3);
            u32 s1 = ror(w[t - 2], 17) ^ ror(w[t - 2], 19) ^ (w[t - 2] >> 10);
            w[t] = w[t - 16] + s0 + w[t - 7] + s1;
        }
        u32 a = state[0], bb = state[1], c = state[2], d = state[3];
        u32 e = state[4], f = state[5], g = state[6], h = state[7];
        for (int t = 0; t < 64; t++) {
            u32 t1 = h + (ror(e, 6) ^ ror(e, 11) ^ ror(e, 25)) + ((e & f) ^ (~e & g)) + K[t] + w[t];
            u32 t2 = (ror(a, 2) ^ ror(a, 13) ^ ror(a, 22)) + ((a & bb) ^ (a & c) ^ (bb & c));
            h = g; g = f; f = e; e = d + t1; d = c; c = bb; bb = a; a = t1 + t2;
        }
        state[0] += a; state[1] += bb; state[2] += c; state[3] += d;
        state[4] += e; state[5] += f; state[6] += g; state[7] += h;
    }
}

static void sift_down(u32 *a, u64 start, u64 end) {
    u64 root = start;
    while (2 * root + 1 <= end) {
        u64 child = 2 * root + 1, swap = root;
        if (a[swap] < a[child]) swap = child;
        if (child + 1 <= end && a[swap] < a[child + 1]) swap = child + 1;
        if (swap == root) return;
        u32 t = a[root]; a[root] = a[swap]; a[swap] = t;
        root = swap;
    }
}

void heap_sort(u32 *a, u64 n) {
    if (n < 2) return;
    for (u64 start = (n - 2) / 2 + 1; start-- > 0;) sift_down(a, start, n - 1);
    for (u64 end = n - 1; end > 0; end--) {
        u32 t = a[0]; a[0] = a[end]; a[end] = t;
        sift_down(a, 0, end - 1);
    }
}

/* memcpy-heavy: `reps` copies of n bytes with rep movsb (as musl's memcpy does for the bulk), each followed by a
 * byte-wise checksum of a stride of the copy. */
u64 copy_kernel(u8 *dst, const u8 *src, u64 n, u64 reps) {
    u64 sum = 0;
    for (u64 r = 0; r < reps; r++) {
        u8 *d = dst;
        const u8 *s = src;
        u64 c = n;
        __asm__ volatile("rep movsb" : "+D"(d), "+S"(s), "+c"(c) : : "memory");
        for (u64 i = 0; i < n; i += 61) sum += dst[i] * (r + 1);
    }
    return sum;
}
