/* Prints its own /proc/self/maps, then calls into libc: puts (a plain function) and strlen (an indirect function
   whose implementation the loader chooses). Built dynamically linked only (maps-dyn): the debugger and gdb tests
   compute where libc's functions are from these lines and `nm -D` of libc, independently of the debugger. */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    FILE *maps = fopen("/proc/self/maps", "r");
    char line[4096];
    if (!maps)
        return 1;
    while (fgets(line, sizeof line, maps))
        fputs(line, stdout);
    fclose(maps);
    size_t n = strlen(argv[argc - 1]);
    puts("called puts");
    printf("strlen %zu\n", n);
    return 0;
}
