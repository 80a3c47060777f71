/* fsutil.c: file-system steps of fsutil.h. A failed fsync is reported, never
 * retried (after a failed fsync the kernel may already have dropped the data). */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "base/err.h"
#include "base/fsutil.h"

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
