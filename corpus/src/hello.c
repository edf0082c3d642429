/* The smallest guest: one line on stdout, exit status 0. Built with symbols (a later gdb test needs them). */
#include <stdio.h>

int main(void) {
    printf("hello, world\n");
    return 0;
}
