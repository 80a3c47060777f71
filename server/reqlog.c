/* reqlog.c: append-only JSON-lines request log, and the line of one request
 * (see reqlog.h). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "base/err.h"
#include "reqlog.h"

#define REQLOG_MAX_LINE (256u << 10)

struct reqlog {
    int fd;
    int own_fd; /* close at the end (not stderr) */
    pthread_t flusher;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int dirty, stop, started;
    uint64_t errors;
};

/* Background thread: fsync at most once a second while lines arrive. */
static void *flush_main(void *arg)
{
    reqlog *l = arg;
    pthread_mutex_lock(&l->mu);
    while (!l->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&l->cv, &l->mu, &ts);
        if (l->dirty) {
            l->dirty = 0;
            pthread_mutex_unlock(&l->mu);
            fsync(l->fd);
            pthread_mutex_lock(&l->mu);
        }
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

/* O_APPEND|O_CREAT, mode 0600, no symlinks; starts the fsync thread for files. */
ms_status reqlog_open(const char *path, reqlog **out, ms_error *err)
{
    *out = NULL;
    reqlog *l = calloc(1, sizeof *l);
    if (!l) return ms_seterr(err, MS_ERR_NOMEM, "log: out of memory");
    if (path) {
        l->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (l->fd < 0) {
            ms_status st = ms_seterr(err, MS_ERR_IO, "--log %s: cannot open: %s", path, strerror(errno));
            free(l);
            return st;
        }
        l->own_fd = 1;
    } else {
        l->fd = 2;
    }
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    if (l->own_fd && pthread_create(&l->flusher, NULL, flush_main, l) == 0) l->started = 1;
    *out = l;
    return MS_OK;
}

/* One write(2) per line so concurrent lines never interleave. */
void reqlog_write(reqlog *l, const char *line, size_t len)
{
    if (!l || !line) return;
    if (len > REQLOG_MAX_LINE) len = REQLOG_MAX_LINE;
    char stackbuf[4096];
    int nl = len == 0 || line[len - 1] != '\n';
    const char *p = line;
    char *heap = NULL;
    if (nl) { /* one write(2): the newline must be in the same buffer */
        char *b = len + 1 <= sizeof stackbuf ? stackbuf : (heap = malloc(len + 1));
        if (!b) {
            __atomic_add_fetch(&l->errors, 1, __ATOMIC_RELAXED);
            return;
        }
        memcpy(b, line, len);
        b[len++] = '\n';
        p = b;
    }
    ssize_t w;
    do {
        w = write(l->fd, p, len);
    } while (w < 0 && errno == EINTR);
    if (w != (ssize_t)len) __atomic_add_fetch(&l->errors, 1, __ATOMIC_RELAXED);
    free(heap);
    if (l->started) {
        pthread_mutex_lock(&l->mu);
        l->dirty = 1;
        pthread_mutex_unlock(&l->mu);
    }
}

/* Count of short or failed writes. */
uint64_t reqlog_errors(const reqlog *l)
{
    return l ? __atomic_load_n(&l->errors, __ATOMIC_RELAXED) : 0;
}

/* Stops the flusher, fsyncs and closes. */
void reqlog_close(reqlog *l)
{
    if (!l) return;
    if (l->started) {
        pthread_mutex_lock(&l->mu);
        l->stop = 1;
        pthread_cond_signal(&l->cv);
        pthread_mutex_unlock(&l->mu);
        pthread_join(l->flusher, NULL);
    }
    if (l->own_fd) {
        fsync(l->fd);
        close(l->fd);
    }
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv);
    free(l);
}

/* UTC wall time as ISO 8601 with milliseconds. */
static void iso_now(char *out, size_t cap)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(out, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
             tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
}

/* Settles the outcome (a reply cut short, or never sent, is client_closed),
 * then builds the record with cJSON so every string is escaped. */
char *reqlog_line(const reqinfo *in, const char *client, const char *method, int status, int completed_ok, double dur_s,
                  int with_text)
{
    const char *outcome = in->outcome;
    if (!outcome) outcome = status < 400 ? "ok" : "error";
    if (!strcmp(outcome, "streaming") || (!completed_ok && !strcmp(outcome, "ok"))) outcome = "client_closed";
    if (status == 499) outcome = "client_closed";
    char ts[96];
    iso_now(ts, sizeof ts);
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "ts", ts);
    cJSON_AddStringToObject(o, "id", in->id);
    if (in->key_id) cJSON_AddStringToObject(o, "key_id", in->key_id);
    else cJSON_AddNullToObject(o, "key_id");
    cJSON_AddStringToObject(o, "client", client);
    cJSON_AddStringToObject(o, "method", method);
    cJSON_AddStringToObject(o, "route", metrics_route_name(in->route));
    cJSON_AddNumberToObject(o, "status", status);
    cJSON_AddStringToObject(o, "outcome", outcome);
    if (in->reason) cJSON_AddStringToObject(o, "reason", in->reason);
    cJSON_AddNumberToObject(o, "duration_ms", (double)(long long)(dur_s * 1e6) / 1e3);
    if (in->route == ROUTE_CHAT || in->route == ROUTE_COMPLETIONS) {
        cJSON_AddBoolToObject(o, "stream", in->stream);
        cJSON_AddNumberToObject(o, "n", in->n);
        cJSON_AddNumberToObject(o, "prompt_tokens", (double)in->prompt_tokens);
        cJSON_AddNumberToObject(o, "completion_tokens", (double)in->completion_tokens);
        cJSON_AddNumberToObject(o, "reasoning_tokens", (double)in->reasoning_tokens);
        if (in->ttft_s >= 0) cJSON_AddNumberToObject(o, "ttft_ms", (double)(long long)(in->ttft_s * 1e6) / 1e3);
        else cJSON_AddNullToObject(o, "ttft_ms");
        cJSON_AddStringToObject(o, "finish_reason", in->finish);
        if (in->has_seed) { /* exact digits: a double would round 64-bit seeds */
            char sd[24];
            snprintf(sd, sizeof sd, "%lld", (long long)(int64_t)in->seed);
            cJSON_AddRawToObject(o, "seed", sd);
        } else cJSON_AddNullToObject(o, "seed");
    }
    if (in->error[0]) cJSON_AddStringToObject(o, "error", in->error);
    if (with_text) {
        if (in->prompt_text) cJSON_AddStringToObject(o, "prompt", in->prompt_text);
        cJSON *ct = in->completion_text ? cJSON_Parse(in->completion_text) : NULL;
        if (ct) cJSON_AddItemToObject(o, "completions", ct);
    }
    char *line = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return line;
}
