/* glibc's system() and popen(), which start /bin/sh: the guest needs a shell at /bin/sh (under tandem, mount
   busybox there). Usage: popen */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    int status = system("echo system says hello; exit 3");
    printf("system returned: exited %d with %d\n", WIFEXITED(status), WEXITSTATUS(status));
    FILE *p = popen("echo one; echo two; echo three", "r");
    if (!p) {
        printf("popen failed\n");
        return 1;
    }
    char line[128];
    int n = 0;
    while (fgets(line, sizeof line, p))
        printf("popen line %d: %s", ++n, line);
    printf("pclose: %d\n", WEXITSTATUS(pclose(p)));
    FILE *w = popen("tr a-z A-Z", "w");
    fputs("written through popen\n", w);
    printf("pclose of writer: %d\n", WEXITSTATUS(pclose(w)));
    return 0;
}
