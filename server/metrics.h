/* metrics.h: the server's counters and histograms, rendered as Prometheus
 * text (exposition format 0.0.4) for GET /metrics: requests, refusals by
 * reason, connections, tokens, latencies. Thread-safe; recording is a few
 * atomic adds (histograms take a short lock). */
#ifndef MS_METRICS_H
#define MS_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "medserve.h"

typedef enum metrics_route {
    ROUTE_CHAT = 0,
    ROUTE_COMPLETIONS,
    ROUTE_MODELS,
    ROUTE_HEALTH,
    ROUTE_METRICS,
    ROUTE_TOKENIZE,
    ROUTE_DETOKENIZE,
    ROUTE_OTHER,
    ROUTE_COUNT
} metrics_route;

const char *metrics_route_name(metrics_route r);

typedef struct metrics metrics;

metrics *metrics_create(void);
void metrics_free(metrics *m);

/* One finished HTTP request. */
void metrics_request(metrics *m, metrics_route route, int status, double seconds);
/* Tokens of one finished generation. */
void metrics_tokens(metrics *m, uint64_t prompt, uint64_t generated);
void metrics_ttft(metrics *m, double seconds);
void metrics_itl(metrics *m, double seconds);

/* The request log's lost lines and whether it is writable (reqlog.h), for the next render. */
void metrics_log_state(metrics *m, uint64_t lost, int writable);

/* A request refused before any work (429/503), by reason; the label values
 * are the error codes of the replies. */
typedef enum metrics_refusal {
    REFUSED_CONNECTIONS = 0, /* too_many_connections: --max-connections */
    REFUSED_PER_ADDRESS,     /* too_many_connections_per_address: --max-connections-per-ip */
    REFUSED_QUEUE_FULL,      /* queue_full: --queue */
    REFUSED_LOADING,         /* loading */
    REFUSED_SHUTTING_DOWN,   /* shutting_down: draining after SIGTERM */
    REFUSED_COUNT
} metrics_refusal;

/* The refusal whose error code is code; REFUSED_COUNT when it is none. */
metrics_refusal metrics_refusal_of(const char *code);
/* Counts one refused request. */
void metrics_refused(metrics *m, metrics_refusal why);

/* Connection events (from the HTTP layer). */
typedef enum metrics_conn_event {
    MCONN_OPENED = 0,
    MCONN_CLOSED,
    MCONN_ADMITTED,            /* its first request was let in: counts to --max-connections */
    MCONN_RELEASED,            /* an admitted connection closed */
    MCONN_DROPPED_TOTAL,       /* closed at accept, unanswered: hard cap on connections */
    MCONN_DROPPED_PER_ADDRESS, /* closed at accept, unanswered: hard cap for one address */
    MCONN_HEADER_TIMEOUT,      /* closed: no complete request head in time */
    MCONN_XFF_INVALID,         /* malformed X-Forwarded-For from a trusted proxy */
    MCONN_COUNT
} metrics_conn_event;

/* Counts one connection event. */
void metrics_conn(metrics *m, metrics_conn_event ev);

/* Renders everything plus the engine's gauges; *out malloc'd. in_flight:
 * generation requests the server holds; state: 0 loading, 1 ready, 2 draining. */
ms_status metrics_render(metrics *m, const ms_engine_stats *st, int in_flight, int state, char **out, size_t *len);

#endif
