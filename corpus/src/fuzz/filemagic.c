/* The magic-value bug of magic.c behind a file input: the test case is the file named by argv[1] (AFL's @@),
   not stdin, which it never reads. An input file that starts with "FZ" and the 32-bit little-endian magic
   0x5eedf00d crashes (SIGSEGV in planted_crash). Usage: filemagic FILE */
#include "common.h"
#include <fcntl.h>

int main(int argc, char **argv) {
    if (argc < 2)
        return 2;
    int fd = open(argv[1], O_RDONLY);
    if (fd < 0)
        return 2;
    unsigned char buf[64];
    ssize_t n = read(fd, buf, sizeof buf);
    close(fd);
    if (n < 6 || buf[0] != 'F' || buf[1] != 'Z')
        return 0;
    uint32_t magic;
    memcpy(&magic, buf + 2, 4);
    if (magic == 0x5eedf00d)
        planted_crash(1);
    return 0;
}
