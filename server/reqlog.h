/* reqlog.h: the request log: one JSON line per request, written with a
 * single write(2) on an O_APPEND descriptor so concurrent lines never
 * interleave and a crash can tear at most the last line; fsync'd by a
 * background thread at most a second after a write, and at close. Write
 * errors (disk full) are counted, never fatal. Also the per-request record
 * (reqinfo, filled by routes.c and gen.c) and the line built from it. */
#ifndef MS_REQLOG_H
#define MS_REQLOG_H

#include <stddef.h>
#include <stdint.h>

#include "medserve.h"
#include "metrics.h"

typedef struct reqlog reqlog;

/* Opens path for appending (created 0600), or standard error when path is NULL. */
ms_status reqlog_open(const char *path, reqlog **out, ms_error *err);
/* Appends one line (a '\n' is added if missing). Thread-safe. */
void reqlog_write(reqlog *l, const char *line, size_t len);
/* Lines that could not be written in full. */
uint64_t reqlog_errors(const reqlog *l);
/* Syncs, stops the flusher, closes; NULL-safe. */
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
 * in full. client and method come from the HTTP request. */
char *reqlog_line(const reqinfo *in, const char *client, const char *method, int status, int completed_ok, double dur_s,
                  int with_text);

#endif
