/* metrics.c: counters and fixed-bucket histograms (see metrics.h). Output
 * is built in a strbuf; label values are from fixed tables, so no
 * escaping is needed. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/strbuf.h"
#include "metrics.h"

#define MAX_STATUS 600

static const double TTFT_BUCKETS[] = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
static const double ITL_BUCKETS[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5};
static const double DUR_BUCKETS[] = {0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300};
#define NB(a) (sizeof(a) / sizeof((a)[0]))
#define MAX_BUCKETS 16

typedef struct histo {
    pthread_mutex_t mu;
    const double *bounds;
    size_t nb;
    uint64_t counts[MAX_BUCKETS + 1]; /* last: +Inf */
    uint64_t n;
    double sum;
} histo;

struct metrics {
    uint64_t requests[ROUTE_COUNT][MAX_STATUS];
    uint64_t refused[REFUSED_COUNT];
    int64_t conn[MCONN_COUNT]; /* opened - closed and admitted - released are the gauges */
    uint64_t prompt_tokens, generated_tokens;
    histo ttft, itl, duration;
    uint64_t log_lost; /* atomic; set by metrics_log_state */
    int log_writable;  /* atomic */
};

static const char *const ROUTE_NAMES[ROUTE_COUNT] = {"/v1/chat/completions",
                                                     "/v1/completions",
                                                     "/v1/models",
                                                     "/health",
                                                     "/metrics",
                                                     "/tokenize",
                                                     "/detokenize",
                                                     "other"};

static const char *const REFUSAL_CODES[REFUSED_COUNT] = {"too_many_connections", "too_many_connections_per_address",
                                                         "queue_full", "loading", "shutting_down"};

/* Index of code in REFUSAL_CODES, REFUSED_COUNT if absent. */
metrics_refusal metrics_refusal_of(const char *code)
{
    for (int i = 0; code && i < REFUSED_COUNT; i++)
        if (!strcmp(code, REFUSAL_CODES[i])) return (metrics_refusal)i;
    return REFUSED_COUNT;
}

/* Adds one to the refusal's counter. */
void metrics_refused(metrics *m, metrics_refusal why)
{
    if (why < REFUSED_COUNT) __atomic_add_fetch(&m->refused[why], 1, __ATOMIC_RELAXED);
}

/* Adds one to the event's counter. */
void metrics_conn(metrics *m, metrics_conn_event ev)
{
    if (ev < MCONN_COUNT) __atomic_add_fetch(&m->conn[ev], 1, __ATOMIC_RELAXED);
}

/* Label value of a route. */
const char *metrics_route_name(metrics_route r)
{
    return r < ROUTE_COUNT ? ROUTE_NAMES[r] : "other";
}

/* Initialises h with its bucket bounds. */
static void histo_init(histo *h, const double *b, size_t nb)
{
    memset(h, 0, sizeof *h);
    pthread_mutex_init(&h->mu, NULL);
    h->bounds = b;
    h->nb = nb;
}

/* Records one observation. */
static void histo_add(histo *h, double v)
{
    size_t i = 0;
    while (i < h->nb && v > h->bounds[i]) i++;
    pthread_mutex_lock(&h->mu);
    h->counts[i]++;
    h->n++;
    h->sum += v;
    pthread_mutex_unlock(&h->mu);
}

/* Zeroed counters and the three histograms. */
metrics *metrics_create(void)
{
    metrics *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    histo_init(&m->ttft, TTFT_BUCKETS, NB(TTFT_BUCKETS));
    histo_init(&m->itl, ITL_BUCKETS, NB(ITL_BUCKETS));
    histo_init(&m->duration, DUR_BUCKETS, NB(DUR_BUCKETS));
    m->log_writable = 1;
    return m;
}

/* Frees; NULL-safe. */
void metrics_free(metrics *m)
{
    if (!m) return;
    pthread_mutex_destroy(&m->ttft.mu);
    pthread_mutex_destroy(&m->itl.mu);
    pthread_mutex_destroy(&m->duration.mu);
    free(m);
}

/* Counts one finished request; generation routes also feed the duration histogram. */
void metrics_request(metrics *m, metrics_route route, int status, double seconds)
{
    if (route >= ROUTE_COUNT) route = ROUTE_OTHER;
    if (status < 0 || status >= MAX_STATUS) status = 0;
    __atomic_add_fetch(&m->requests[route][status], 1, __ATOMIC_RELAXED);
    if (route == ROUTE_CHAT || route == ROUTE_COMPLETIONS) histo_add(&m->duration, seconds);
}

/* Adds a finished generation's prompt and generated tokens. */
void metrics_tokens(metrics *m, uint64_t prompt, uint64_t generated)
{
    __atomic_add_fetch(&m->prompt_tokens, prompt, __ATOMIC_RELAXED);
    __atomic_add_fetch(&m->generated_tokens, generated, __ATOMIC_RELAXED);
}

/* Stores the request log's state for the next render. */
void metrics_log_state(metrics *m, uint64_t lost, int writable)
{
    __atomic_store_n(&m->log_lost, lost, __ATOMIC_RELAXED);
    __atomic_store_n(&m->log_writable, writable, __ATOMIC_RELAXED);
}

void metrics_ttft(metrics *m, double s)
{
    histo_add(&m->ttft, s);
}
void metrics_itl(metrics *m, double s)
{
    histo_add(&m->itl, s);
}

/* One histogram in Prometheus form. */
static void histo_render(strbuf *b, histo *h, const char *name, const char *help)
{
    pthread_mutex_lock(&h->mu);
    uint64_t counts[MAX_BUCKETS + 1], n = h->n;
    double sum = h->sum;
    memcpy(counts, h->counts, sizeof counts);
    pthread_mutex_unlock(&h->mu);
    sb_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (size_t i = 0; i < h->nb; i++) {
        cum += counts[i];
        sb_printf(b, "%s_bucket{le=\"%g\"} %llu\n", name, h->bounds[i], (unsigned long long)cum);
    }
    sb_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name, (unsigned long long)n, name, sum,
              name, (unsigned long long)n);
}

/* A gauge or counter line with its HELP and TYPE. */
static void scalar(strbuf *b, const char *name, const char *type, const char *help, double v)
{
    sb_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type, name, v);
}

/* Prints every counter, gauge and histogram in exposition format 0.0.4. */
ms_status metrics_render(metrics *m, const ms_engine_stats *st, int in_flight, int state, char **out, size_t *len)
{
    strbuf b = {0};
    sb_printf(&b, "# HELP medserve_requests_total HTTP requests by route and status code.\n"
                  "# TYPE medserve_requests_total counter\n");
    for (int r = 0; r < ROUTE_COUNT; r++)
        for (int s = 0; s < MAX_STATUS; s++) {
            uint64_t v = __atomic_load_n(&m->requests[r][s], __ATOMIC_RELAXED);
            if (v)
                sb_printf(&b, "medserve_requests_total{route=\"%s\",code=\"%d\"} %llu\n", ROUTE_NAMES[r], s,
                          (unsigned long long)v);
        }
    sb_printf(&b, "# HELP medserve_requests_refused_total Requests answered 429 or 503 before any work, by "
                  "reason.\n# TYPE medserve_requests_refused_total counter\n");
    for (int i = 0; i < REFUSED_COUNT; i++)
        sb_printf(&b, "medserve_requests_refused_total{reason=\"%s\"} %llu\n", REFUSAL_CODES[i],
                  (unsigned long long)__atomic_load_n(&m->refused[i], __ATOMIC_RELAXED));
    int64_t c[MCONN_COUNT];
    for (int i = 0; i < MCONN_COUNT; i++) c[i] = __atomic_load_n(&m->conn[i], __ATOMIC_RELAXED);
    scalar(&b, "medserve_connections_open", "gauge", "Open client connections (served or not yet).",
           (double)(c[MCONN_OPENED] - c[MCONN_CLOSED]));
    scalar(&b, "medserve_connections_served", "gauge",
           "Connections that sent a request and count to --max-connections.",
           (double)(c[MCONN_ADMITTED] - c[MCONN_RELEASED]));
    sb_printf(&b,
              "# HELP medserve_connections_dropped_total Connections closed at accept without an answer (hard "
              "caps).\n# TYPE medserve_connections_dropped_total counter\n"
              "medserve_connections_dropped_total{reason=\"connections\"} %lld\n"
              "medserve_connections_dropped_total{reason=\"per_address\"} %lld\n",
              (long long)c[MCONN_DROPPED_TOTAL], (long long)c[MCONN_DROPPED_PER_ADDRESS]);
    scalar(&b, "medserve_connections_header_timeout_total", "counter",
           "Connections closed for not completing a request head in time.", (double)c[MCONN_HEADER_TIMEOUT]);
    scalar(&b, "medserve_forwarded_for_invalid_total", "counter",
           "Malformed X-Forwarded-For from a trusted proxy (the peer address was used).", (double)c[MCONN_XFF_INVALID]);
    scalar(&b, "medserve_ready", "gauge", "1 when serving, 0 while loading or draining.", state == 1);
    scalar(&b, "medserve_draining", "gauge", "1 while draining after SIGTERM.", state == 2);
    scalar(&b, "medserve_requests_in_flight", "gauge", "Generation requests being served.", in_flight);
    scalar(&b, "medserve_queue_depth", "gauge", "Requests waiting for a sequence slot.", st->queued);
    scalar(&b, "medserve_running_sequences", "gauge", "Sequences being decoded.", st->running);
    scalar(&b, "medserve_max_sequences", "gauge", "Sequences decoded together at most.", st->max_seqs);
    scalar(&b, "medserve_context_tokens", "gauge", "Context length per sequence.", st->n_ctx);
    scalar(&b, "medserve_kv_blocks_used", "gauge", "KV-cache blocks in use.", (double)st->kv_blocks_used);
    scalar(&b, "medserve_kv_blocks_total", "gauge", "KV-cache blocks in all.", (double)st->kv_blocks_total);
    scalar(&b, "medserve_kv_usage_ratio", "gauge", "KV-cache blocks used / total.",
           st->kv_blocks_total ? (double)st->kv_blocks_used / (double)st->kv_blocks_total : 0.0);
    scalar(&b, "medserve_prompt_tokens_total", "counter", "Prompt tokens of finished requests.",
           (double)__atomic_load_n(&m->prompt_tokens, __ATOMIC_RELAXED));
    scalar(&b, "medserve_generation_tokens_total", "counter", "Generated tokens of finished requests.",
           (double)__atomic_load_n(&m->generated_tokens, __ATOMIC_RELAXED));
    histo_render(&b, &m->ttft, "medserve_time_to_first_token_seconds",
                 "Time from request arrival to the first generated token.");
    histo_render(&b, &m->itl, "medserve_inter_token_latency_seconds",
                 "Time between consecutive tokens of one sequence.");
    histo_render(&b, &m->duration, "medserve_request_duration_seconds", "Duration of generation requests.");
    scalar(&b, "medserve_log_write_errors_total", "counter",
           "Request-log lines that could not be written (disk full, I/O error): lost from the audit trail.",
           (double)__atomic_load_n(&m->log_lost, __ATOMIC_RELAXED));
    scalar(&b, "medserve_log_writable", "gauge",
           "0 from a failed request-log write (or, with --log-required, too little room) until one succeeds.",
           __atomic_load_n(&m->log_writable, __ATOMIC_RELAXED));
    size_t n = b.n;
    char *text = sb_take(&b);
    if (!text) return MS_ERR_NOMEM;
    *out = text;
    *len = n;
    return MS_OK;
}
