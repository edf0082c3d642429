/* Planted bug 1, a magic value: an input that starts with "FZ" and the 32-bit little-endian magic 0x5eedf00d
   crashes (SIGSEGV in planted_crash). Blind mutation finds a 32-bit constant with probability 2^-32 per try; the
   comparison's immediate is in tandem's dictionary.
   Usage: magic < input */
#include "common.h"

int main(void) {
    unsigned char buf[FUZZ_INPUT_MAX];
    size_t n = read_input(buf, sizeof buf);
    if (n < 6 || buf[0] != 'F' || buf[1] != 'Z')
        return 0;
    uint32_t magic;
    memcpy(&magic, buf + 2, 4);
    if (magic == 0x5eedf00d)
        planted_crash(1);
    return 0;
}
