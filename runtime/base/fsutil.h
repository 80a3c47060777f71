/* fsutil.h: small POSIX file-system steps shared by the safetensors writers
 * (runtime/io) and lora-merge, each reporting through ms_error. Callers that
 * inject faults (st_write.c, merge/fsio.c) wrap these with their own hooks. */
#ifndef MS_FSUTIL_H
#define MS_FSUTIL_H

#include "medserve.h"

/* fsyncs a directory, so that a rename or create in it survives a crash.
 * A filesystem that cannot sync directories (EINVAL) counts as success. */
ms_status fs_fsync_dir(const char *dir, ms_error *err);

#endif
