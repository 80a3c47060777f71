/* reqlog.c: the append-only JSON-lines request log: whole lines only (room
 * reserved first, one writev per line, short writes cut off again, a torn
 * tail cut off at open), lost lines counted and recorded by a log_gap line
 * once writing works again; and the line of one request (see reqlog.h and
 * docs/threats.md §3 "Request log"). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "base/err.h"
#include "reqlog.h"

#define TAIL_CHUNK 65536

struct reqlog {
    int fd;
    int own_fd;      /* close at the end (not stderr) */
    int regular;     /* a regular file we opened: reserve, roll back, repair */
    int no_falloc;   /* fallocate is not supported by this filesystem */
    off_t torn_at;   /* >= 0: a short write could not be cut off; retry before the next line */
    size_t headroom; /* see reqlog.h */
    pthread_t flusher;
    pthread_mutex_t mu; /* serialises writes; guards every field but the atomics */
    pthread_cond_t cv;
    int dirty, stop, started;
    uint64_t gap_lost;  /* lines lost since the log stopped being writable */
    char gap_since[96]; /* when it stopped */
    uint64_t repaired;  /* bytes cut off at open */
    int failing;        /* atomic: a line was lost (or an fsync failed); no log_gap line yet */
    int low;            /* atomic: the headroom could not be reserved at the last check */
    int last_errno;     /* atomic */
    uint64_t lost;      /* atomic: lines lost since open */
};

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

/* Makes sure need more bytes can be appended without allocating: 0, or the
 * errno of the failed reservation (ENOSPC, EDQUOT, ...). Room already
 * allocated past the end (st_blocks) counts; where fallocate is unsupported,
 * or for pipes and terminals, nothing is checked. */
static int reserve(reqlog *l, size_t need)
{
    if (!l->regular || l->no_falloc || need == 0) return 0;
    struct stat st;
    if (fstat(l->fd, &st) != 0) return errno;
    if ((uint64_t)st.st_blocks * 512u >= (uint64_t)st.st_size + need) return 0;
    int r;
    do {
        r = fallocate(l->fd, FALLOC_FL_KEEP_SIZE, st.st_size, (off_t)need);
    } while (r != 0 && errno == EINTR);
    if (r == 0) return 0;
    if (errno == EOPNOTSUPP || errno == ENOSYS) {
        l->no_falloc = 1; /* a short write is then cut off again (put) */
        return 0;
    }
    return errno;
}

/* Appends line and, if it lacks one, a newline, in one writev; the caller
 * holds mu. Returns 0, or the errno after which nothing of the line is left
 * in the file (a partial write is cut off with ftruncate). */
static int put(reqlog *l, const char *line, size_t len)
{
    if (l->torn_at >= 0) { /* an earlier cut-off failed: nothing may follow the fragment */
        if (ftruncate(l->fd, l->torn_at) != 0) return errno;
        l->torn_at = -1;
    }
    const char *part[2] = {line, "\n"};
    size_t plen[2] = {len, len == 0 || line[len - 1] != '\n'};
    size_t total = plen[0] + plen[1], done = 0;
    int e = reserve(l, total);
    if (e) return e;
    while (done < total) { /* more than one round only after a short write */
        struct iovec iov[2];
        int k = 0;
        size_t skip = done;
        for (int i = 0; i < 2; i++) {
            if (skip >= plen[i]) {
                skip -= plen[i];
                continue;
            }
            iov[k].iov_base = (void *)(part[i] + skip);
            iov[k].iov_len = plen[i] - skip;
            k++;
            skip = 0;
        }
        ssize_t w = writev(l->fd, iov, k);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            e = w < 0 ? errno : ENOSPC;
            break;
        }
        done += (size_t)w;
    }
    if (done == total) return 0;
    if (done > 0 && l->regular) { /* O_APPEND left the offset at the end of what was written */
        off_t end = lseek(l->fd, 0, SEEK_CUR);
        if (end >= (off_t)done && ftruncate(l->fd, end - (off_t)done) != 0) l->torn_at = end - (off_t)done;
    }
    return e;
}

/* Marks the log failing (noting since when) with errno e, and counts a lost
 * line when line is set; the caller holds mu. */
static void lose(reqlog *l, int e, int line)
{
    if (!__atomic_load_n(&l->failing, __ATOMIC_SEQ_CST)) {
        iso_now(l->gap_since, sizeof l->gap_since);
        l->gap_lost = 0;
        __atomic_store_n(&l->failing, 1, __ATOMIC_SEQ_CST);
    }
    if (line) {
        l->gap_lost++;
        __atomic_add_fetch(&l->lost, 1, __ATOMIC_RELAXED);
    }
    __atomic_store_n(&l->last_errno, e, __ATOMIC_RELAXED);
}

/* An event line of the log itself (no request): {"ts","event",...}; malloc'd. */
static char *event_line(const char *event, const char *since, const char *num_name, uint64_t num, int e)
{
    char ts[96], eb[128];
    iso_now(ts, sizeof ts);
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "ts", ts);
    cJSON_AddStringToObject(o, "event", event);
    if (since) cJSON_AddStringToObject(o, "since", since);
    cJSON_AddNumberToObject(o, num_name, (double)num);
    if (e) cJSON_AddStringToObject(o, "error", strerror_r(e, eb, sizeof eb));
    char *line = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return line;
}

/* If the log is failing, writes the log_gap line, which ends the failure.
 * The caller holds mu. Returns 0 when not failing (any more), else the errno. */
static int recover(reqlog *l)
{
    if (!__atomic_load_n(&l->failing, __ATOMIC_SEQ_CST)) return 0;
    char *g = event_line("log_gap", l->gap_since, "lost_lines", l->gap_lost,
                         __atomic_load_n(&l->last_errno, __ATOMIC_RELAXED));
    int e = g ? put(l, g, strlen(g)) : ENOMEM;
    free(g);
    if (e) return e;
    l->gap_lost = 0;
    l->dirty = 1;
    __atomic_store_n(&l->failing, 0, __ATOMIC_SEQ_CST);
    return 0;
}

/* Checks that the headroom can be reserved, setting or clearing low; the
 * caller holds mu. Returns 0 or the errno. */
static int check_headroom(reqlog *l)
{
    int e = reserve(l, l->headroom);
    if (e) __atomic_store_n(&l->last_errno, e, __ATOMIC_RELAXED);
    __atomic_store_n(&l->low, e != 0, __ATOMIC_SEQ_CST);
    return e;
}

/* Background thread, waking every second: writes the log_gap line of a
 * failing log, checks the headroom, and fsyncs what was written. */
static void *flush_main(void *arg)
{
    reqlog *l = arg;
    pthread_mutex_lock(&l->mu);
    while (!l->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&l->cv, &l->mu, &ts);
        if (l->stop) break;
        recover(l);
        if (l->headroom) check_headroom(l);
        if (l->dirty && l->own_fd) {
            l->dirty = 0;
            pthread_mutex_unlock(&l->mu);
            int r = fsync(l->fd), e = errno;
            pthread_mutex_lock(&l->mu);
            if (r != 0 && e != EINVAL && e != EROFS) lose(l, e, 0); /* written lines may not be on disk */
        }
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

/* Cuts a torn last line (bytes after the last newline) off the regular file
 * l->fd of size bytes. A tail that does not start like a line ('{', or NUL
 * from a power loss) or is longer than REQLOG_MAX_LINE is refused: the file
 * is then not a request log and is left as it is. */
static ms_status repair(reqlog *l, const char *path, off_t size, ms_error *err)
{
    char c;
    if (size == 0) return MS_OK;
    if (pread(l->fd, &c, 1, size - 1) != 1)
        return ms_seterr(err, MS_ERR_IO, "--log %s: cannot read its end: %s", path, strerror(errno));
    if (c == '\n') return MS_OK;
    off_t lo = size > (off_t)REQLOG_MAX_LINE + 1 ? size - (off_t)REQLOG_MAX_LINE - 1 : 0, end = size - 1, cut = -1;
    char *buf = malloc(TAIL_CHUNK);
    if (!buf) return ms_seterr(err, MS_ERR_NOMEM, "--log %s: out of memory", path);
    while (cut < 0 && end > lo) {
        off_t start = end - lo > TAIL_CHUNK ? end - TAIL_CHUNK : lo;
        size_t n = (size_t)(end - start);
        if (pread(l->fd, buf, n, start) != (ssize_t)n) {
            free(buf);
            return ms_seterr(err, MS_ERR_IO, "--log %s: cannot read its end: %s", path, strerror(errno));
        }
        for (size_t i = n; i > 0 && cut < 0; i--)
            if (buf[i - 1] == '\n') cut = start + (off_t)i;
        end = start;
    }
    if (cut < 0 && lo == 0) cut = 0; /* the whole file is one torn line */
    if (cut >= 0 && pread(l->fd, &c, 1, cut) != 1) c = 'x';
    free(buf);
    if (cut < 0 || (c != '{' && c != '\0'))
        return ms_seterr(err, MS_ERR_INVALID,
                         "--log %s: does not end with a newline and its last line does not look like a request "
                         "log line (or is over %u bytes); not a medserve request log? (left unchanged)",
                         path, REQLOG_MAX_LINE);
    if (ftruncate(l->fd, cut) != 0)
        return ms_seterr(err, MS_ERR_IO, "--log %s: cannot cut off its torn last line: %s", path, strerror(errno));
    l->repaired = (uint64_t)(size - cut);
    return MS_OK;
}

/* O_APPEND|O_CREAT, mode 0600, no symlinks; for a regular file repairs the
 * tail and checks the headroom; starts the background thread. */
ms_status reqlog_open(const char *path, size_t headroom, reqlog **out, ms_error *err)
{
    *out = NULL;
    reqlog *l = calloc(1, sizeof *l);
    if (!l) return ms_seterr(err, MS_ERR_NOMEM, "log: out of memory");
    l->torn_at = -1;
    l->headroom = headroom;
    if (path) { /* read access too: the tail is checked */
        l->fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (l->fd < 0) {
            ms_status st = ms_seterr(err, MS_ERR_IO, "--log %s: cannot open: %s", path, strerror(errno));
            free(l);
            return st;
        }
        l->own_fd = 1;
        struct stat st;
        if (fstat(l->fd, &st) == 0 && S_ISREG(st.st_mode)) {
            l->regular = 1;
            ms_status s = repair(l, path, st.st_size, err);
            if (s != MS_OK) {
                close(l->fd);
                free(l);
                return s;
            }
        }
    } else {
        l->fd = 2;
    }
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    if (l->repaired) { /* the log says itself what was cut off */
        char *line = event_line("log_repaired", NULL, "removed_bytes", l->repaired, 0);
        int e = line ? put(l, line, strlen(line)) : ENOMEM;
        free(line);
        if (e) lose(l, e, 1);
        else l->dirty = 1;
    }
    if (headroom) check_headroom(l);
    if (pthread_create(&l->flusher, NULL, flush_main, l) == 0) l->started = 1;
    *out = l;
    return MS_OK;
}

/* Writes the log_gap line first if the log was not writable, then the line;
 * one at a time (mu), so lines never interleave. */
int reqlog_write(reqlog *l, const char *line, size_t len)
{
    if (!l) return -1;
    pthread_mutex_lock(&l->mu);
    int e = line ? recover(l) : ENOMEM;
    if (!e) e = put(l, line, len);
    if (e) lose(l, e, 1);
    else l->dirty = 1;
    pthread_mutex_unlock(&l->mu);
    return e ? -1 : 0;
}

/* Writes the log_gap line of a failing log, then checks the headroom. */
int reqlog_admit(reqlog *l)
{
    if (!l) return 1;
    pthread_mutex_lock(&l->mu);
    int e = recover(l);
    if (!e) e = check_headroom(l);
    pthread_mutex_unlock(&l->mu);
    return e == 0;
}

/* Count of lines not written. */
uint64_t reqlog_errors(const reqlog *l)
{
    return l ? __atomic_load_n(&l->lost, __ATOMIC_RELAXED) : 0;
}

/* Neither failing nor low. */
int reqlog_writable(const reqlog *l)
{
    return l ? !__atomic_load_n(&l->failing, __ATOMIC_SEQ_CST) && !__atomic_load_n(&l->low, __ATOMIC_SEQ_CST) : 1;
}

/* errno of the last failure. */
int reqlog_last_errno(const reqlog *l)
{
    return l ? __atomic_load_n(&l->last_errno, __ATOMIC_RELAXED) : 0;
}

/* Bytes cut off at open. */
uint64_t reqlog_repaired(const reqlog *l)
{
    return l ? l->repaired : 0;
}

/* Stops the background thread, fsyncs and closes. */
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
    char *line = NULL;
    if (with_text) {
        cJSON *t = cJSON_Duplicate(o, 1);
        if (t && in->prompt_text) cJSON_AddStringToObject(t, "prompt", in->prompt_text);
        cJSON *ct = t && in->completion_text ? cJSON_Parse(in->completion_text) : NULL;
        if (ct) cJSON_AddItemToObject(t, "completions", ct);
        line = t ? cJSON_PrintUnformatted(t) : NULL;
        cJSON_Delete(t);
        if (line && strlen(line) > REQLOG_MAX_LINE) { /* never cut a line: leave the texts out */
            free(line);
            line = NULL;
            cJSON_AddBoolToObject(o, "text_omitted", 1);
        }
    }
    if (!line) line = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return line;
}
