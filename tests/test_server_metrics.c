/* test_server_metrics.c: Prometheus text of server/metrics.c (format, counters,
 * cumulative histograms), the request log of server/reqlog.c (whole lines
 * under concurrent writers; a short write cut off, counted and recorded as a
 * gap; a torn tail repaired at open; the headroom check; the line of one
 * request), and runtime/base/strbuf.c. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/json.h"
#include "base/strbuf.h"
#include "metrics.h"
#include "reqlog.h"
#include "util.h"

/* Value of the sample line starting with prefix (name plus labels), or -1. */
static double sample(const char *text, const char *prefix)
{
    size_t pl = strlen(prefix);
    for (const char *p = text; p && *p;) {
        if (!strncmp(p, prefix, pl) && p[pl] == ' ') return atof(p + pl + 1);
        p = strchr(p, '\n');
        if (p) p++;
    }
    return -1;
}

/* 1 if every line is a comment (# HELP/# TYPE) or "name[{labels}] number". */
static int well_formed(const char *text)
{
    for (const char *p = text; *p;) {
        const char *e = strchr(p, '\n');
        if (!e) return 0; /* must end with a newline */
        if (*p == '#') {
            if (strncmp(p, "# HELP ", 7) && strncmp(p, "# TYPE ", 7)) return 0;
        } else {
            const char *q = p;
            while (q < e && ((*q >= 'a' && *q <= 'z') || *q == '_')) q++;
            if (q == p) return 0;
            if (*q == '{') {
                while (q < e && *q != '}') q++;
                if (q == e) return 0;
                q++;
            }
            if (*q != ' ') return 0;
            char *end;
            strtod(q + 1, &end);
            if (end != e) return 0;
        }
        p = e + 1;
    }
    return 1;
}

/* Counters, gauges and cumulative histogram buckets in valid exposition format. */
static void t_render(void)
{
    metrics *m = metrics_create();
    metrics_request(m, ROUTE_CHAT, 200, 0.3);
    metrics_request(m, ROUTE_CHAT, 200, 0.3);
    metrics_request(m, ROUTE_CHAT, 429, 0.001);
    metrics_request(m, ROUTE_HEALTH, 503, 0.001);
    metrics_tokens(m, 10, 20);
    metrics_tokens(m, 1, 2);
    metrics_ttft(m, 0.02); /* bucket 0.025 */
    metrics_ttft(m, 0.7);  /* bucket 1 */
    metrics_ttft(m, 100);  /* +Inf only */
    metrics_itl(m, 0.004);
    ms_engine_stats st = {3, 2, 8, 4096, 5, 20, 0, 0};
    char *t = NULL;
    size_t len = 0;
    CHECK(metrics_render(m, &st, 4, 1, &t, &len) == MS_OK && t && strlen(t) == len, "render");
    if (!t) return;
    CHECK(well_formed(t), "exposition format:\n%s", t);
    CHECK(sample(t, "medserve_requests_total{route=\"/v1/chat/completions\",code=\"200\"}") == 2, "200s");
    CHECK(sample(t, "medserve_requests_total{route=\"/v1/chat/completions\",code=\"429\"}") == 1, "429");
    CHECK(sample(t, "medserve_requests_total{route=\"/health\",code=\"503\"}") == 1, "health");
    CHECK(sample(t, "medserve_requests_total{route=\"/metrics\",code=\"200\"}") == -1, "zero counters omitted");
    CHECK(sample(t, "medserve_queue_depth") == 3 && sample(t, "medserve_running_sequences") == 2, "queue/running");
    CHECK(sample(t, "medserve_kv_usage_ratio") == 0.25, "kv ratio");
    CHECK(sample(t, "medserve_requests_in_flight") == 4 && sample(t, "medserve_ready") == 1, "gauges");
    CHECK(sample(t, "medserve_prompt_tokens_total") == 11 && sample(t, "medserve_generation_tokens_total") == 22,
          "token counters");
    CHECK(sample(t, "medserve_time_to_first_token_seconds_bucket{le=\"0.01\"}") == 0, "ttft le 0.01");
    CHECK(sample(t, "medserve_time_to_first_token_seconds_bucket{le=\"0.025\"}") == 1, "ttft le 0.025");
    CHECK(sample(t, "medserve_time_to_first_token_seconds_bucket{le=\"1\"}") == 2, "ttft le 1 (cumulative)");
    CHECK(sample(t, "medserve_time_to_first_token_seconds_bucket{le=\"60\"}") == 2, "ttft le 60");
    CHECK(sample(t, "medserve_time_to_first_token_seconds_bucket{le=\"+Inf\"}") == 3, "ttft +Inf");
    CHECK(sample(t, "medserve_time_to_first_token_seconds_count") == 3, "ttft count");
    CHECK(fabs(sample(t, "medserve_time_to_first_token_seconds_sum") - 100.72) < 1e-6, "ttft sum");
    CHECK(sample(t, "medserve_inter_token_latency_seconds_bucket{le=\"0.005\"}") == 1, "itl");
    CHECK(sample(t, "medserve_request_duration_seconds_count") == 3, "duration counts generation routes");
    CHECK(sample(t, "medserve_log_write_errors_total") == 0 && sample(t, "medserve_log_writable") == 1, "log ok");
    free(t);
    metrics_log_state(m, 5, 0);
    CHECK(metrics_render(m, &st, 4, 1, &t, &len) == MS_OK && t, "render");
    if (!t) return;
    CHECK(well_formed(t), "exposition format:\n%s", t);
    CHECK(sample(t, "medserve_log_write_errors_total") == 5 && sample(t, "medserve_log_writable") == 0, "log lost");
    free(t);
    metrics_free(m);
}

typedef struct writer_arg {
    reqlog *l;
    int id, n;
} writer_arg;

/* Writes n lines of growing size. */
static void *writer(void *p)
{
    writer_arg *a = p;
    char line[9000];
    for (int i = 0; i < a->n; i++) {
        int pad = (i * 131 + a->id * 17) % 8000;
        int k = snprintf(line, sizeof line, "{\"w\":%d,\"i\":%d,\"pad\":\"", a->id, i);
        memset(line + k, 'x', (size_t)pad);
        k += pad;
        k += snprintf(line + k, sizeof line - (size_t)k, "\"}");
        reqlog_write(a->l, line, (size_t)k);
    }
    return NULL;
}

/* Four threads writing 800 lines of up to 8 KiB: every line whole, none lost. */
static void t_reqlog(void)
{
    char path[] = "/tmp/ms_reqlog_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    if (fd < 0) return;
    close(fd);
    reqlog *l = NULL;
    ms_error e;
    CHECK(reqlog_open(path, 0, &l, &e) == MS_OK, "%s", e.message);
    enum { W = 4, N = 200 };
    pthread_t th[W];
    writer_arg args[W];
    for (int i = 0; i < W; i++) {
        args[i] = (writer_arg){l, i, N};
        pthread_create(&th[i], NULL, writer, &args[i]);
    }
    for (int i = 0; i < W; i++) pthread_join(th[i], NULL);
    CHECK(reqlog_errors(l) == 0, "write errors");
    reqlog_close(l);
    char *buf = NULL;
    size_t len = 0;
    CHECK(file_read_all(path, 64u << 20, &buf, &len, &e) == MS_OK, "read back");
    int seen[W][N];
    memset(seen, 0, sizeof seen);
    int lines = 0, bad = 0;
    for (char *p = buf; p && p < buf + len;) {
        char *nl = memchr(p, '\n', (size_t)(buf + len - p));
        if (!nl) {
            bad++;
            break;
        }
        cJSON *j = json_parse_strict(p, (size_t)(nl - p), "line", &e);
        const cJSON *w = j ? json_get(j, "w") : NULL, *i = j ? json_get(j, "i") : NULL;
        if (w && i && w->valueint >= 0 && w->valueint < W && i->valueint >= 0 && i->valueint < N)
            seen[w->valueint][i->valueint]++;
        else bad++;
        cJSON_Delete(j);
        lines++;
        p = nl + 1;
    }
    CHECK(lines == W * N && bad == 0, "%d lines, %d malformed", lines, bad);
    int dup = 0;
    for (int w = 0; w < W; w++)
        for (int i = 0; i < N; i++) dup += seen[w][i] != 1;
    CHECK(dup == 0, "%d lines missing or repeated", dup);
    free(buf);
    unlink(path);
    CHECK(reqlog_open("/nonexistent/dir/log", 0, &l, &e) == MS_ERR_IO && strstr(e.message, "--log"),
          "unwritable log path");
}

/* A fresh temporary file holding data (NULL: none); its path in path. */
static int temp_file(char *path, const char *data, size_t len)
{
    strcpy(path, "/tmp/ms_reqlog_XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0) return -1;
    int ok = !data || write(fd, data, len) == (ssize_t)len;
    close(fd);
    return ok ? 0 : -1;
}

/* The file's bytes (malloc'd, NUL-terminated) and length. */
static char *slurp(const char *path, size_t *len)
{
    char *buf = NULL;
    ms_error e;
    *len = 0;
    if (file_read_all(path, 64u << 20, &buf, len, &e) != MS_OK) return NULL;
    char *z = realloc(buf, *len + 1);
    if (!z) {
        free(buf);
        return NULL;
    }
    z[*len] = 0;
    return z;
}

/* Number of lines of text that are not whole JSON objects (a missing final newline counts). */
static int bad_lines(const char *text, size_t len, int *lines)
{
    int bad = 0;
    *lines = 0;
    for (const char *p = text; p < text + len;) {
        const char *nl = memchr(p, '\n', (size_t)(text + len - p));
        if (!nl) return bad + 1;
        ms_error e;
        cJSON *j = json_parse_strict(p, (size_t)(nl - p), "line", &e);
        bad += !cJSON_IsObject(j);
        cJSON_Delete(j);
        ++*lines;
        p = nl + 1;
    }
    return bad;
}

/* A write cut short by RLIMIT_FSIZE (what a full disk does on a filesystem
 * without fallocate) leaves nothing of its line, is counted and makes the log
 * not writable; the next write first records the gap, then the line. */
static void t_reqlog_short_write(void)
{
    char path[32];
    CHECK(temp_file(path, NULL, 0) == 0, "mkstemp");
    reqlog *l = NULL;
    ms_error e;
    CHECK(reqlog_open(path, 0, &l, &e) == MS_OK, "%s", e.message);
    if (!l) return;
    const char *a = "{\"line\":\"a\"}";
    char b[400];
    snprintf(b, sizeof b, "{\"line\":\"b\",\"pad\":\"%0300d\"}", 0);
    CHECK(reqlog_write(l, a, strlen(a)) == 0, "first line");
    struct stat st;
    stat(path, &st);
    off_t size_a = st.st_size;
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = (rlim_t)size_a + 100; /* b gets 100 of its bytes, then EFBIG */
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0, "setrlimit");
    int w = reqlog_write(l, b, strlen(b));
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, prev);
    stat(path, &st);
    CHECK(w == -1 && st.st_size == size_a, "short write cut off: %d, size %lld (was %lld)", w, (long long)st.st_size,
          (long long)size_a);
    CHECK(reqlog_errors(l) == 1 && !reqlog_writable(l) && reqlog_last_errno(l) == EFBIG, "counted: %llu %d %d",
          (unsigned long long)reqlog_errors(l), reqlog_writable(l), reqlog_last_errno(l));
    CHECK(reqlog_write(l, b, strlen(b)) == 0 && reqlog_writable(l) && reqlog_errors(l) == 1, "recovered");
    reqlog_close(l);
    size_t len;
    char *text = slurp(path, &len);
    int lines = 0;
    CHECK(text && bad_lines(text, len, &lines) == 0 && lines == 3, "%d lines: %s", lines, text ? text : "");
    CHECK(text && !strncmp(text, a, strlen(a)) && strstr(text, "\"event\":\"log_gap\"") &&
              strstr(text, "\"lost_lines\":1") && strstr(text, "\"error\":\"File too large\"") &&
              strstr(text, "\"since\":") && strstr(text, b) > strstr(text, "log_gap"),
          "gap line, then b: %s", text ? text : "");
    free(text);
    unlink(path);
}

/* Opens a file holding data; returns the bytes reqlog_open cut off (-1: refused)
 * and leaves the file's content in *out. */
static long long repaired_of(const char *data, size_t n, char **out, size_t *outlen)
{
    char path[32];
    *out = NULL;
    if (temp_file(path, data, n)) return -2;
    reqlog *l = NULL;
    ms_error e;
    long long r = -1;
    if (reqlog_open(path, 0, &l, &e) == MS_OK) {
        r = (long long)reqlog_repaired(l);
        reqlog_close(l);
    } else if (!strstr(e.message, "not a medserve request log")) r = -3;
    *out = slurp(path, outlen);
    unlink(path);
    return r;
}

/* A torn last line is cut off at open and recorded; a tail that is no log
 * line (no '{', or over REQLOG_MAX_LINE) is refused and left unchanged. */
static void t_reqlog_repair(void)
{
    char *out;
    size_t n;
    const char *whole = "{\"a\":1}\n";
    CHECK(repaired_of(whole, strlen(whole), &out, &n) == 0 && out && n == strlen(whole), "whole file untouched");
    free(out);
    CHECK(repaired_of("", 0, &out, &n) == 0 && n == 0, "empty file untouched");
    free(out);
    const char torn[] = "{\"a\":1}\n{\"b\":\"cut her";
    int lines = 0;
    CHECK(repaired_of(torn, strlen(torn), &out, &n) == 13 && out && !strncmp(out, whole, strlen(whole)) &&
              strstr(out, "{\"ts\":") && strstr(out, "\"event\":\"log_repaired\",\"removed_bytes\":13}\n") &&
              bad_lines(out, n, &lines) == 0 && lines == 2,
          "torn tail: %s", out ? out : "");
    free(out);
    CHECK(repaired_of("{\"only\":", 8, &out, &n) == 8 && bad_lines(out, n, &lines) == 0 && lines == 1,
          "the whole file one torn line");
    free(out);
    const char zeros[] = "{\"a\":1}\n\0\0\0\0"; /* a power loss can leave zeros */
    CHECK(repaired_of(zeros, sizeof zeros - 1, &out, &n) == 4, "zeros");
    free(out);
    const char notlog[] = "some text\nwithout a final newline";
    CHECK(repaired_of(notlog, strlen(notlog), &out, &n) == -1 && out && n == strlen(notlog) && !memcmp(out, notlog, n),
          "not a log: refused, unchanged");
    free(out);
    size_t big = REQLOG_MAX_LINE + 2;
    char *junk = malloc(big);
    if (!junk) return;
    memset(junk, '{', big);
    CHECK(repaired_of(junk, big, &out, &n) == -1 && out && n == big, "over REQLOG_MAX_LINE without newline");
    free(out);
    junk[0] = '\n'; /* the same with one newline further back than a line can be long */
    CHECK(repaired_of(junk, big, &out, &n) == -1 && n == big, "newline too far back");
    free(out);
    junk[0] = '{';
    junk[1] = '\n';
    CHECK(repaired_of(junk, big, &out, &n) == (long long)REQLOG_MAX_LINE, "longest tail cut");
    free(out);
    free(junk);
}

/* With a headroom that cannot be reserved the log is not writable from the
 * start and admits nothing, but still writes lines that fit; headroom 0 admits. */
static void t_reqlog_headroom(void)
{
    char path[32];
    CHECK(temp_file(path, NULL, 0) == 0, "mkstemp");
    int fd = open(path, O_WRONLY);
    int falloc = fd >= 0 && fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 4096) == 0;
    if (fd >= 0) close(fd);
    reqlog *l = NULL;
    ms_error e;
    if (falloc) { /* a filesystem with fallocate, as /tmp is on Linux */
        CHECK(reqlog_open(path, (size_t)1 << 60, &l, &e) == MS_OK, "%s", e.message);
        CHECK(l && !reqlog_writable(l) && !reqlog_admit(l) && reqlog_errors(l) == 0, "no headroom");
        CHECK(l && reqlog_write(l, "{}", 2) == 0 && reqlog_errors(l) == 0 && !reqlog_writable(l),
              "a line that fits is still written");
        reqlog_close(l);
    }
    CHECK(reqlog_open(path, 0, &l, &e) == MS_OK, "%s", e.message);
    CHECK(l && reqlog_writable(l) && reqlog_admit(l), "headroom 0 admits");
    reqlog_close(l);
    CHECK(reqlog_open(NULL, 4096, &l, &e) == MS_OK && reqlog_admit(l), "standard error: nothing to reserve");
    reqlog_close(l);
    unlink(path);
}

/* The line's outcome for (recorded outcome, status, completed), and its fields. */
static const char *line_outcome(const char *recorded, int status, int completed_ok, char **line)
{
    static char out[32];
    reqinfo in;
    memset(&in, 0, sizeof in);
    snprintf(in.id, sizeof in.id, "chatcmpl-1");
    in.route = ROUTE_CHAT;
    in.outcome = recorded;
    in.ttft_s = -1;
    in.has_seed = 1;
    in.seed = (uint64_t)-3; /* logged as sent: a signed 64-bit value, every digit */
    char prompt[] = "PROMPT";
    in.prompt_text = prompt;
    *line = reqlog_line(&in, "127.0.0.1", "POST", status, completed_ok, 0.0015, 0);
    ms_error e;
    cJSON *j = *line ? json_parse_strict(*line, strlen(*line), "line", &e) : NULL;
    const cJSON *o = json_get(j, "outcome");
    snprintf(out, sizeof out, "%s", cJSON_IsString(o) ? o->valuestring : "?");
    cJSON_Delete(j);
    return out;
}

/* Outcomes: a reply cut short or never sent is client_closed; text only when asked. */
static void t_reqlog_line(void)
{
    char *l = NULL;
    CHECK(!strcmp(line_outcome(NULL, 200, 1, &l), "ok"), "ok");
    CHECK(l && strstr(l, "\"seed\":-3}") && strstr(l, "\"ttft_ms\":null") && strstr(l, "\"duration_ms\":1.5,") &&
              strstr(l, "\"route\":\"/v1/chat/completions\"") && !strstr(l, "PROMPT"),
          "%s", l ? l : "NULL");
    free(l);
    CHECK(!strcmp(line_outcome(NULL, 400, 1, &l), "error"), "error");
    free(l);
    CHECK(!strcmp(line_outcome("ok", 200, 0, &l), "client_closed"), "cut short");
    free(l);
    CHECK(!strcmp(line_outcome("streaming", 200, 1, &l), "client_closed"), "stream not ended");
    free(l);
    CHECK(!strcmp(line_outcome("timeout", 499, 1, &l), "client_closed"), "nothing sent");
    free(l);
    CHECK(!strcmp(line_outcome("timeout", 504, 0, &l), "timeout"), "timeout");
    free(l);
    reqinfo in; /* texts that would make the line too long are left out, never cut */
    memset(&in, 0, sizeof in);
    in.route = ROUTE_COMPLETIONS;
    in.ttft_s = -1;
    in.prompt_text = malloc(REQLOG_MAX_LINE);
    if (!in.prompt_text) return;
    memset(in.prompt_text, 'p', REQLOG_MAX_LINE - 1);
    in.prompt_text[REQLOG_MAX_LINE - 1] = 0;
    in.completion_text = "[\"c\"]";
    l = reqlog_line(&in, "::1", "POST", 200, 1, 0.1, 1);
    ms_error e;
    cJSON *j = l ? json_parse_strict(l, strlen(l), "line", &e) : NULL;
    CHECK(j && strlen(l) <= REQLOG_MAX_LINE && cJSON_IsTrue(json_get(j, "text_omitted")) && !json_get(j, "prompt") &&
              !json_get(j, "completions") && json_get(j, "completion_tokens"),
          "long text omitted");
    cJSON_Delete(j);
    free(l);
    in.prompt_text[100] = 0;
    l = reqlog_line(&in, "::1", "POST", 200, 1, 0.1, 1);
    CHECK(l && strstr(l, "\"prompt\":\"pppp") && strstr(l, "\"completions\":[\"c\"]") && !strstr(l, "omitted"),
          "short text kept");
    free(l);
    free(in.prompt_text);
}

/* Append, consume, growth, printf, status appends, take, JSON strings and double free. */
static void t_strbuf(void)
{
    strbuf b = {0};
    sb_puts(&b, "hello ");
    sb_append(&b, "world!!", 5);
    CHECK(b.n == 11 && !strcmp(b.p, "hello world"), "append");
    sb_consume(&b, 6);
    CHECK(b.n == 5 && !strcmp(b.p, "world"), "consume");
    for (int i = 0; i < 10000; i++) sb_puts(&b, "ab");
    CHECK(b.n == 20005 && !b.oom, "grow");
    sb_consume(&b, 1u << 30);
    CHECK(b.n == 0 && b.p && b.p[0] == 0, "consume all");
    sb_printf(&b, "%d-%s", 42, "x");
    CHECK(b.n == 4 && !strcmp(b.p, "42-x"), "printf");
    char big[1000];
    memset(big, 'y', sizeof big - 1);
    big[sizeof big - 1] = 0;
    for (int i = 0; i < 50; i++) sb_printf(&b, "%s", big); /* past the capacity: formats twice */
    CHECK(b.n == 4 + 50 * 999 && strlen(b.p) == b.n && !b.oom, "printf grow");
    sb_free(&b);
    ms_error e = {0};
    CHECK(sb_add(&b, "ab", 2, &e) == MS_OK && sb_adds(&b, "c", &e) == MS_OK && !strcmp(b.p, "abc"), "add");
    b.oom = 1;
    CHECK(sb_adds(&b, "d", &e) == MS_ERR_NOMEM && e.status == MS_ERR_NOMEM && b.n == 3, "add after oom");
    CHECK(sb_take(&b) == NULL && b.p == NULL && !b.oom, "take after oom");
    char *t = sb_take(&b);
    CHECK(t && !strcmp(t, "") && b.p == NULL, "take of nothing");
    free(t);
    sb_puts(&b, "kept");
    t = sb_take(&b);
    CHECK(t && !strcmp(t, "kept") && b.p == NULL && b.n == 0, "take");
    free(t);
    sb_json_string(&b, "a\"b\\c\n\r\t\b\f\x01\x1f\x7f\xc3\xa9/");
    CHECK(!strcmp(b.p, "\"a\\\"b\\\\c\\n\\r\\t\\b\\f\\u0001\\u001f\x7f\xc3\xa9/\""), "json string: %s", b.p);
    sb_free(&b);
    sb_free(&b);
    CHECK(b.p == NULL, "free twice");
}

int main(int argc, char **argv)
{
    static const test_case cases[] = {
        {"api_metrics_render", t_render},
        {"api_reqlog_concurrent_lines", t_reqlog},
        {"api_reqlog_line", t_reqlog_line},
        {"api_reqlog_short_write", t_reqlog_short_write},
        {"api_reqlog_repair", t_reqlog_repair},
        {"api_reqlog_headroom", t_reqlog_headroom},
        {"api_strbuf", t_strbuf},
    };
    return test_main(argc, argv, cases, sizeof cases / sizeof *cases);
}
