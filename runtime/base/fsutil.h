/* fsutil.h: small POSIX file-system steps shared by the safetensors writers
 * (runtime/io) and lora-merge. Callers that inject faults (st_write.c,
 * merge/fsio.c) wrap these with their own hooks. */
#ifndef MS_FSUTIL_H
#define MS_FSUTIL_H

#include <stddef.h>

#include "medserve.h"

/* Writes all n bytes to fd, in writes of at most 1 GiB, retrying short
 * writes and EINTR. 0, or -1 with errno set (EIO when write makes no progress). */
int fs_write_all(int fd, const void *data, size_t n);

/* fsyncs a directory, so that a rename or create in it survives a crash.
 * A filesystem that cannot sync directories (EINVAL) counts as success. */
ms_status fs_fsync_dir(const char *dir, ms_error *err);

#endif
