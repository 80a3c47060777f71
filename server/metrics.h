/* metrics.h: the server's counters and histograms, rendered as Prometheus
 * text (exposition format 0.0.4) for GET /metrics. Thread-safe; recording is
 * a few atomic adds (histograms take a short lock). */
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

/* Renders everything plus the engine's gauges; *out malloc'd. in_flight:
 * generation requests the server holds; state: 0 loading, 1 ready, 2 draining. */
ms_status metrics_render(metrics *m, const ms_engine_stats *st, int in_flight, int state, char **out, size_t *len);

#endif
