/* MMX instructions (inline assembly: GCC implements the MMX intrinsics with SSE registers on x86-64), then x87
 * long double arithmetic after EMMS: the result of each packed form, and that the x87 stack works again after the
 * MMX code. Runs byte for byte as on the host CPU. */
#include <stdint.h>
#include <stdio.h>

#define OP(name)                                                                                    \
    static uint64_t name(uint64_t a, uint64_t b) {                                                  \
        __asm__(#name " %2, %0" : "=y"(a) : "0"(a), "y"(b));                                        \
        return a;                                                                                   \
    }
#define IMM(name, op, count)                                                                        \
    static uint64_t name(uint64_t a) {                                                              \
        __asm__(#op " $" #count ", %0" : "=y"(a) : "0"(a));                                         \
        return a;                                                                                   \
    }

OP(paddb) OP(paddw) OP(paddd) OP(paddq) OP(psubb) OP(psubw) OP(psubd) OP(psubq)
OP(paddsb) OP(paddsw) OP(paddusb) OP(paddusw) OP(psubsb) OP(psubsw) OP(psubusb) OP(psubusw)
OP(pmullw) OP(pmulhw) OP(pmaddwd) OP(pand) OP(pandn) OP(por) OP(pxor)
OP(pcmpeqb) OP(pcmpeqw) OP(pcmpeqd) OP(pcmpgtb) OP(pcmpgtw) OP(pcmpgtd)
OP(punpcklbw) OP(punpcklwd) OP(punpckldq) OP(punpckhbw) OP(punpckhwd) OP(punpckhdq)
OP(packsswb) OP(packssdw) OP(packuswb) OP(psllw) OP(pslld) OP(psllq) OP(psrlw) OP(psrld) OP(psrlq)
OP(psraw) OP(psrad)
IMM(psllw_7, psllw, 7) IMM(psrad_31, psrad, 31) IMM(psrlq_40, psrlq, 40)

typedef uint64_t (*binary)(uint64_t, uint64_t);

int main(void) {
    static const struct { const char *name; binary f; } ops[] = {
#define E(n) {#n, n},
        E(paddb) E(paddw) E(paddd) E(paddq) E(psubb) E(psubw) E(psubd) E(psubq)
        E(paddsb) E(paddsw) E(paddusb) E(paddusw) E(psubsb) E(psubsw) E(psubusb) E(psubusw)
        E(pmullw) E(pmulhw) E(pmaddwd) E(pand) E(pandn) E(por) E(pxor)
        E(pcmpeqb) E(pcmpeqw) E(pcmpeqd) E(pcmpgtb) E(pcmpgtw) E(pcmpgtd)
        E(punpcklbw) E(punpcklwd) E(punpckldq) E(punpckhbw) E(punpckhwd) E(punpckhdq)
        E(packsswb) E(packssdw) E(packuswb)
    };
    static const uint64_t in[] = {0x7f80ff0001027ffeull, 0x0180017f80ff8001ull, 0xfffe00018000ffffull,
                                  0x8000800080008000ull};
    unsigned long long sum = 0;
    for (unsigned k = 0; k < sizeof ops / sizeof ops[0]; k++) {
        printf("%-10s", ops[k].name);
        for (int i = 0; i < 4; i++) {
            uint64_t r = ops[k].f(in[i], in[(i + 1) % 4]);
            printf(" %016llx", (unsigned long long)r);
            sum += r;
        }
        printf("\n");
    }
    static const binary shifts[] = {psllw, pslld, psllq, psrlw, psrld, psrlq, psraw, psrad};
    for (int s = 0; s < 8; s++)
        for (uint64_t count = 0; count < 70; count += 3) sum = sum * 31 + shifts[s](in[s % 4], count);
    printf("shifts %016llx imm %016llx %016llx %016llx\n", sum, (unsigned long long)psllw_7(in[0]),
           (unsigned long long)psrad_31(in[1]), (unsigned long long)psrlq_40(in[2]));
    __asm__ volatile("emms");
    volatile long double x = 1.0L;
    for (int k = 0; k < 10; k++) x = x * 3.0L / 7.0L + 0.5L;
    printf("x87 after emms: %.18Lg\n", x);
    return 0;
}
