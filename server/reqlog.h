/* reqlog.h: the request log (--log): an audit trail of one JSON line per
 * request, and the per-request record (reqinfo, filled by routes.c and
 * gen.c) and line built from it. Guarantees (docs/threats.md §3 "Request
 * log"):
 * - Whole lines only. Each line reaches the file in one writev(2) of the
 *   whole line and its newline, on an O_APPEND descriptor, under a mutex (so
 *   lines never interleave; the file must have no other writer). No user-space
 *   buffer: a line is in the kernel before its request is forgotten, so a
 *   kill -9 of the server loses no line already written.
 *   Room for the line is reserved first (fallocate, FALLOC_FL_KEEP_SIZE);
 *   where that fails (disk full) nothing is written. A short write (a
 *   filesystem without fallocate, RLIMIT_FSIZE) is finished if the rest goes
 *   through at once, else cut off again with ftruncate before the next line.
 * - What remains: the kernel copies a write page by page and stops between
 *   pages on SIGKILL, and a power loss can lose what was not yet fsync'd; so a
 *   crash at that instant can still leave a torn last line. reqlog_open cuts
 *   such a tail off (up to REQLOG_MAX_LINE bytes without a newline; a longer
 *   one is refused as "not a request log") and records it as a line
 *   {"event":"log_repaired","removed_bytes":N}.
 * - Durability: fsync'd by a background thread at most a second after a
 *   write, and at close.
 * - Failures (disk full, I/O error) are never fatal: the lost line is counted
 *   (reqlog_errors) and the log is "failing" (a failed fsync does that too,
 *   losing no counted line) until the line
 *   {"event":"log_gap","since":TS,"lost_lines":N,"error":"..."} is written,
 *   first thing before the next line, or by the background thread, which
 *   tries every second: the log recovers by itself, without traffic.
 * - Headroom (--log-required): with headroom > 0 the log is also "low" while
 *   fewer than headroom bytes can be reserved at its end, checked at open,
 *   by reqlog_admit before each request, and every second. Low only refuses
 *   new requests; lines that fit are still written.
 * reqlog_writable is 0 while failing or low. Lines to standard error (no
 * --log) get the same one-write rule but no reservation, roll-back or repair. */
#ifndef MS_REQLOG_H
#define MS_REQLOG_H

#include <stddef.h>
#include <stdint.h>

#include "medserve.h"
#include "metrics.h"

/* Longest line: with --log-text a longer one is written without the texts. */
#define REQLOG_MAX_LINE (256u << 10)
/* Room --log-required wants at the log's end before it admits a request. */
#define REQLOG_HEADROOM (16u << 10)

typedef struct reqlog reqlog;

/* Opens path for appending (created 0600; a torn last line is cut off), or
 * standard error when path is NULL; starts the background thread. headroom:
 * 0, or the bytes reqlog_admit wants free (see above). */
ms_status reqlog_open(const char *path, size_t headroom, reqlog **out, ms_error *err);
/* Appends one line (a '\n' is added if missing); line NULL (out of memory
 * building it) counts as lost. Returns 0 when written, -1 when lost. Thread-safe. */
int reqlog_write(reqlog *l, const char *line, size_t len);
/* Whether a request may start (--log-required): writes a pending log_gap
 * line, then checks the headroom; 1 when writable. */
int reqlog_admit(reqlog *l);
/* Lines lost (not written) since open. */
uint64_t reqlog_errors(const reqlog *l);
/* 0 while failing (a line lost, no log_gap line written since) or low
 * (headroom missing at the last check). */
int reqlog_writable(const reqlog *l);
/* errno of the last failure (0: none). */
int reqlog_last_errno(const reqlog *l);
/* Bytes of a torn last line removed by reqlog_open. */
uint64_t reqlog_repaired(const reqlog *l);
/* Syncs, stops the background thread, closes; NULL-safe. */
void reqlog_close(reqlog *l);

/* What one request did; becomes its log line (reqlog_line). */
typedef struct reqinfo {
    char id[48];
    metrics_route route;
    const char *key_id;  /* points into the auth set, or NULL */
    const char *outcome; /* "ok", "error", "client_closed", "timeout", "aborted", "rejected" */
    const char *reason;  /* "rejected": why (the error code: queue_full, too_many_connections, ...) */
    char error[512];
    int stream, n;
    int has_seed;
    uint64_t seed;
    uint64_t prompt_tokens, completion_tokens, reasoning_tokens;
    double ttft_s;     /* < 0: no token */
    char finish[64];   /* finish reasons, comma-separated per choice */
    char *prompt_text; /* only with --log-text, malloc'd */
    char *completion_text;
} reqinfo;

/* The log line of a finished request as compact JSON (malloc'd; NULL when out
 * of memory): when, who, route, status, outcome, duration, for generation
 * routes the token counts, first-token latency, finish reasons and seed, and
 * with with_text (--log-text) the prompt and completion texts. status is the
 * reply's (499 when none was sent); completed_ok: the reply reached the client
 * in full. client and method come from the HTTP request. A line with text
 * over REQLOG_MAX_LINE is built again without the texts and with
 * "text_omitted":true, so no line is ever cut. */
char *reqlog_line(const reqinfo *in, const char *client, const char *method, int status, int completed_ok, double dur_s,
                  int with_text);

#endif
