/* File I/O: reads the file named by argv[1] (on a mount), writes a copy to argv[2] (in the writable overlay),
   reads the copy back with lseek and pread, lists the directory argv[3] sorted, and checks that unlink works. */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: fileio IN OUT DIR\n");
        return 2;
    }
    FILE *in = fopen(argv[1], "r");
    if (!in) {
        perror(argv[1]);
        return 1;
    }
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf, in);
    fclose(in);
    printf("read %zu bytes; first line: %.*s\n", n, (int)strcspn(buf, "\n"), buf);
    int fd = open(argv[2], O_CREAT | O_WRONLY | O_TRUNC, 0644);
    if (fd < 0) {
        perror(argv[2]);
        return 1;
    }
    write(fd, buf, n);
    write(fd, "appended\n", 9);
    close(fd);
    struct stat st;
    stat(argv[2], &st);
    printf("copy size %lld, regular %d\n", (long long)st.st_size, S_ISREG(st.st_mode));
    fd = open(argv[2], O_RDONLY);
    char tail[9];
    lseek(fd, -9, SEEK_END);
    read(fd, tail, 8);
    tail[8] = 0;
    char head[6] = {0};
    pread(fd, head, 5, 0);
    close(fd);
    printf("tail '%s' head '%s'\n", tail, head);
    DIR *d = opendir(argv[3]);
    if (!d) {
        perror(argv[3]);
        return 1;
    }
    char *names[256];
    int count = 0;
    struct dirent *e;
    while ((e = readdir(d)) && count < 256)
        if (e->d_name[0] != '.')
            names[count++] = strdup(e->d_name);
    closedir(d);
    qsort(names, count, sizeof names[0], cmp);
    for (int i = 0; i < count; i++)
        printf("entry %s\n", names[i]);
    int unlinked = unlink(argv[2]);
    int reopened = open(argv[2], O_RDONLY);
    printf("unlink %d, then open fails: %d\n", unlinked, reopened < 0);
    return 0;
}
