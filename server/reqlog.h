/* reqlog.h: the request log: one JSON line per request, written with a
 * single write(2) on an O_APPEND descriptor so concurrent lines never
 * interleave and a crash can tear at most the last line; fsync'd by a
 * background thread at most a second after a write, and at close. Write
 * errors (disk full) are counted, never fatal. It does not build the records. */
#ifndef MS_REQLOG_H
#define MS_REQLOG_H

#include <stddef.h>
#include <stdint.h>

#include "medserve.h"

typedef struct reqlog reqlog;

/* Opens path for appending (created 0600), or standard error when path is NULL. */
ms_status reqlog_open(const char *path, reqlog **out, ms_error *err);
/* Appends one line (a '\n' is added if missing). Thread-safe. */
void reqlog_write(reqlog *l, const char *line, size_t len);
/* Lines that could not be written in full. */
uint64_t reqlog_errors(const reqlog *l);
/* Syncs, stops the flusher, closes; NULL-safe. */
void reqlog_close(reqlog *l);

#endif
