/* server.h: the state one `medserve` server shares between its HTTP
 * threads: configuration, the generation service, keys, metrics, the
 * request log, the jobs in flight and the lifecycle (loading, ready,
 * draining). The per-request record is reqlog.h's reqinfo. */
#ifndef MS_SERVER_H
#define MS_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "auth.h"
#include "http.h"
#include "job.h"
#include "metrics.h"
#include "reqlog.h"
#include "svc.h"

#define SRV_DEFAULT_MAX_N 8
#define SRV_KEEPALIVE_S 5.0 /* SSE comment after this much silence (at most idle/3) */

typedef enum srv_state {
    SRV_LOADING = 0,
    SRV_READY = 1,
    SRV_DRAINING = 2,
} srv_state;

typedef struct srv_config {
    const char *dir;
    const char *host;
    int port;
    const char *api_key_file;
    int threads, ctx, max_seqs, queue, max_n;
    int q8; /* --weights q8 */
    double timeout_s, drain_timeout_s;
    const char *log_path;
    int log_text;
    int log_required; /* refuse work while the log cannot be written */
    const char *model_name;
    http_limits lim;
    int fake; /* --fake-engine: no model, deterministic fake tokens */
    int fake_step_us;
    long fake_fault_after;
} srv_config;

typedef struct server {
    srv_config cfg;
    char model_name[256];
    char fingerprint[64]; /* system_fingerprint */
    time_t created;
    svc *svc;   /* set once loaded (state READY) */
    auth *auth; /* NULL: no keys configured */
    metrics *metrics;
    reqlog *log;
    job_registry *jobs;
    int state; /* srv_state, atomic */
    int fatal; /* an engine fault was seen: exit non-zero */
} server;

int srv_state_get(server *s);
void srv_state_set(server *s, int st);

/* Fills id with prefix + 24 random hex digits. */
void srv_new_id(char *id, size_t cap, const char *prefix);

#endif
