/* fuzz_util.h: helpers shared by the libFuzzer targets in tests/fuzz: a
 * private scratch directory made once per process (under /dev/shm when it
 * exists, so the file-based loaders are fed from memory) and a whole-file
 * writer. Used only by the fuzz targets; not part of the library. */
#ifndef MS_FUZZ_UTIL_H
#define MS_FUZZ_UTIL_H

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Returns the process's scratch directory, creating it on first use. */
static inline const char *fuzz_dir(void)
{
    static char dir[64];
    if (!dir[0]) {
        struct stat st;
        snprintf(dir, sizeof dir, "%s/msfuzz.XXXXXX", stat("/dev/shm", &st) == 0 ? "/dev/shm" : "/tmp");
        if (!mkdtemp(dir)) {
            perror("mkdtemp");
            abort();
        }
    }
    return dir;
}

/* Writes len bytes to dir/name (replacing it) and fills path; aborts on I/O
 * failure, which is the harness's fault, never the input's. */
static inline void fuzz_write(const char *name, const void *data, size_t len, char *path, size_t cap)
{
    snprintf(path, cap, "%s/%s", fuzz_dir(), name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) {
        perror(path);
        abort();
    }
    const char *p = data;
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w <= 0) {
            perror(path);
            abort();
        }
        p += w;
        len -= (size_t)w;
    }
    close(fd);
}

/* Removes dir/name if present. */
static inline void fuzz_unlink(const char *name)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", fuzz_dir(), name);
    unlink(path);
}

#endif
