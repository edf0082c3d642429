/* Planted bug 2, a checksum guard: a record is a type byte 'X', a payload length byte (1 to 32), the payload and
   a one-byte XOR checksum of the payload. A payload that starts with 0xA5 crashes, but only when its checksum is
   right: changing the payload without fixing the checksum is rejected, so the fuzzer must get the flag byte (a
   comparison constant) and then the checksum (a byte no comparison constant gives) right together.
   Usage: checksum < input */
#include "common.h"

int main(void) {
    unsigned char buf[FUZZ_INPUT_MAX];
    size_t n = read_input(buf, sizeof buf);
    if (n < 3 || buf[0] != 'X')
        return 0;
    size_t len = buf[1];
    if (len < 1 || len > 32 || 2 + len + 1 > n)
        return 1;
    if (buf[2] != 0xa5)
        return 3;
    unsigned char sum = 0;
    for (size_t i = 0; i < len; i++)
        sum ^= buf[2 + i];
    if (sum != buf[2 + len])
        return 2;
    planted_crash(2);
    return 0;
}
