/* fsio.c: checked file-system steps for the export (see fsio.h). Errors name
 * the path and the system call. A failed fsync is reported, never retried
 * (after a failed fsync the kernel may already have dropped the data). */
#include "fsio.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/err.h"
#include "base/fsutil.h"
#include "base/json.h"

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

/* Counts a step and fails the chosen one. */
ms_status mg_io_step(mg_io *io, const char *what, const char *path, ms_error *err)
{
    if (!io) return MS_OK;
    io->step++;
    if (io->fail_at && io->step == io->fail_at)
        return ms_seterr(err, MS_ERR_IO, "%s: %s: injected failure (step %d)", path, what, io->step);
    return MS_OK;
}

/* Creates, writes, fsyncs and closes path. */
ms_status mg_write_file(mg_io *io, const char *path, const void *data, size_t n, ms_error *err)
{
    ms_status st;
    if ((st = mg_io_step(io, "create", path, err))) return st;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) return ms_seterr(err, MS_ERR_IO, "%s: create: %s", path, strerror(errno));
    if ((st = mg_io_step(io, "write", path, err))) {
        close(fd);
        return st;
    }
    if (fs_write_all(fd, data, n)) {
        int e = errno;
        close(fd);
        return ms_seterr(err, MS_ERR_IO, "%s: write: %s", path, strerror(e));
    }
    if ((st = mg_io_step(io, "fsync", path, err))) {
        close(fd);
        return st;
    }
    if (fsync(fd)) {
        int e = errno;
        close(fd);
        return ms_seterr(err, MS_ERR_IO, "%s: fsync: %s", path, strerror(e));
    }
    if (close(fd)) return ms_seterr(err, MS_ERR_IO, "%s: close: %s", path, strerror(errno));
    return MS_OK;
}

/* Copies a small file. */
ms_status mg_copy_file(mg_io *io, const char *src, const char *dst, size_t max_bytes, ms_error *err)
{
    char *data;
    size_t n;
    ms_status st = file_read_all(src, max_bytes, &data, &n, err);
    if (st) return st;
    st = mg_write_file(io, dst, data, n, err);
    free(data);
    return st;
}

/* Counts the step, then fsyncs the directory (fs_fsync_dir). */
ms_status mg_fsync_dir(mg_io *io, const char *dir, ms_error *err)
{
    ms_status st;
    if ((st = mg_io_step(io, "fsync directory", dir, err))) return st;
    return fs_fsync_dir(dir, err);
}

/* nftw callback: removes one entry. */
static int rm_one(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb;
    (void)ftw;
    if (type == FTW_DP || type == FTW_D) rmdir(path);
    else unlink(path);
    return 0;
}

/* Removes a tree (depth first, symlinks not followed). */
void mg_rmtree(const char *path)
{
    if (!path || !path[0]) return;
    nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Whether path exists. */
int mg_exists(const char *path)
{
    struct stat sb;
    return lstat(path, &sb) == 0;
}

/* Renames tmp to out without clobbering (or exchanging with --force). */
ms_status mg_rename_into_place(mg_io *io, const char *tmp, const char *out, int replace, ms_error *err)
{
    ms_status st;
    if ((st = mg_io_step(io, "rename", out, err))) return st;
    if (replace && mg_exists(out)) {
        if (renameat2(AT_FDCWD, tmp, AT_FDCWD, out, RENAME_EXCHANGE))
            return ms_seterr(err, MS_ERR_IO, "%s: exchanging with the new export %s: %s", out, tmp, strerror(errno));
        return MS_OK;
    }
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, out, RENAME_NOREPLACE)) {
        int e = errno;
        if (e == EEXIST)
            return ms_seterr(err, MS_ERR_INVALID, "%s: appeared while merging; not replaced (use --force)", out);
        return ms_seterr(err, MS_ERR_IO, "%s: rename from %s: %s", out, tmp, strerror(e));
    }
    return MS_OK;
}
