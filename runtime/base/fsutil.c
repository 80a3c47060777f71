/* fsutil.c: file-system steps of fsutil.h. A failed fsync is reported, never
 * retried (after a failed fsync the kernel may already have dropped the data). */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "base/err.h"
#include "base/fsutil.h"

/* Loops over write() until everything is written. */
int fs_write_all(int fd, const void *data, size_t n)
{
    const uint8_t *p = data;
    while (n) {
        ssize_t k = write(fd, p, n > (1u << 30) ? (1u << 30) : n);
        if (k < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (k == 0) {
            errno = EIO;
            return -1;
        }
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Opens the directory read-only and fsyncs it. */
ms_status fs_fsync_dir(const char *dir, ms_error *err)
{
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return ms_seterr(err, MS_ERR_IO, "%s: cannot open directory: %s", dir, strerror(errno));
    int r = fsync(dfd);
    int e = errno;
    close(dfd);
    if (r != 0 && e != EINVAL) /* EINVAL: a filesystem that cannot sync directories */
        return ms_seterr(err, MS_ERR_IO, "%s: fsync of the directory failed: %s", dir, strerror(e));
    return MS_OK;
}
