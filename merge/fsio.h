/* fsio.h: the file-system steps of an export, each checked and each a
 * possible fault-injection point: writing a file with fsync, copying one,
 * fsyncing a directory, removing a tree we created, and the final rename of
 * the temp directory into place (RENAME_NOREPLACE, or RENAME_EXCHANGE with
 * --force so the old export stays whole until the new one is in place). */
#ifndef MG_FSIO_H
#define MG_FSIO_H

#include <stddef.h>
#include <stdint.h>

#include "medserve.h"

typedef struct mg_io {
    int step;    /* I/O steps done so far */
    int fail_at; /* fail the step with this number (1-based); 0 = never */
} mg_io;

/* Counts one I/O step; returns MS_ERR_IO (injected) when it is the one to fail. */
ms_status mg_io_step(mg_io *io, const char *what, const char *path, ms_error *err);

/* Creates path (must not exist), writes n bytes, fsyncs, closes. */
ms_status mg_write_file(mg_io *io, const char *path, const void *data, size_t n, ms_error *err);
/* Copies src to dst (new file) with fsync; at most max_bytes. */
ms_status mg_copy_file(mg_io *io, const char *src, const char *dst, size_t max_bytes, ms_error *err);
/* fsyncs a directory. */
ms_status mg_fsync_dir(mg_io *io, const char *dir, ms_error *err);
/* Removes a directory tree without following symlinks; best effort. */
void mg_rmtree(const char *path);
/* Moves tmp to out: fails if out exists unless replace, in which case the two
 * are exchanged atomically and the old content ends up at tmp. */
ms_status mg_rename_into_place(mg_io *io, const char *tmp, const char *out, int replace, ms_error *err);
/* Whether path exists (lstat). */
int mg_exists(const char *path);

#endif
