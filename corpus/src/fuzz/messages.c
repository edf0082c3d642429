/* Planted bug 3, reachable only after three correct messages: a session of 8-byte messages (a 32-bit opcode and
   a 32-bit argument, little-endian). HELO, then AUTH with the argument 1337, then DATA, then a fourth message
   whose argument indexes a table without a bounds check (SIGSEGV for a large argument). A message out of order
   ends the session. Usage: messages < input */
#include "common.h"

#define OP(a, b, c, d) ((uint32_t)(a) | (uint32_t)(b) << 8 | (uint32_t)(c) << 16 | (uint32_t)(d) << 24)

static int table[16];

int main(void) {
    unsigned char buf[FUZZ_INPUT_MAX];
    size_t n = read_input(buf, sizeof buf);
    int state = 0;
    for (size_t at = 0; at + 8 <= n; at += 8) {
        uint32_t op, arg;
        memcpy(&op, buf + at, 4);
        memcpy(&arg, buf + at + 4, 4);
        if (state == 0 && op == OP('H', 'E', 'L', 'O'))
            state = 1;
        else if (state == 1 && op == OP('A', 'U', 'T', 'H') && arg == 1337)
            state = 2;
        else if (state == 2 && op == OP('D', 'A', 'T', 'A'))
            state = 3;
        else if (state == 3) {
            /* The bug: no bounds check on the index. */
            volatile int *slot = &table[arg];
            *slot = 1;
            return 0;
        } else
            return 1;
    }
    return 0;
}
