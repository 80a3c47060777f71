/* routes.c: the HTTP routes of medserve on top of http.h: early refusals
 * once the headers are in (connection limits, what the HTTP parser refused,
 * framing, size, unknown route, method, auth, lifecycle), then per route:
 * /v1/chat/completions, /v1/completions, /v1/models, /health, /metrics,
 * /tokenize, /detokenize; when a request ends, its metrics (refusals by
 * reason) and request-log line (built by reqlog.c). Request validation is in
 * oai_req.c, generation in gen.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "base/json.h"
#include "gen.h"
#include "oai_resp.h"
#include "routes.h"

#define BAD "invalid_request_error"

int srv_state_get(server *s)
{
    return __atomic_load_n(&s->state, __ATOMIC_SEQ_CST);
}
void srv_state_set(server *s, int st)
{
    __atomic_store_n(&s->state, st, __ATOMIC_SEQ_CST);
}

/* Random id from getrandom (clock-derived if that fails). */
void srv_new_id(char *id, size_t cap, const char *prefix)
{
    unsigned char b[12];
    if (getrandom(b, sizeof b, 0) != sizeof b) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t x = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
        for (size_t i = 0; i < sizeof b; i++) b[i] = (unsigned char)(x >> (8 * (i % 8)));
    }
    static const char hex[] = "0123456789abcdef";
    char h[25];
    for (size_t i = 0; i < sizeof b; i++) {
        h[2 * i] = hex[b[i] >> 4];
        h[2 * i + 1] = hex[b[i] & 15];
    }
    h[24] = 0;
    snprintf(id, cap, "%s%s", prefix, h);
}

/* The route of a path (exact match; /v1/models/<id> counts as models). */
static metrics_route route_of(const char *path)
{
    if (!strcmp(path, "/v1/chat/completions")) return ROUTE_CHAT;
    if (!strcmp(path, "/v1/completions")) return ROUTE_COMPLETIONS;
    if (!strcmp(path, "/v1/models") || !strncmp(path, "/v1/models/", 11)) return ROUTE_MODELS;
    if (!strcmp(path, "/health")) return ROUTE_HEALTH;
    if (!strcmp(path, "/metrics")) return ROUTE_METRICS;
    if (!strcmp(path, "/tokenize")) return ROUTE_TOKENIZE;
    if (!strcmp(path, "/detokenize")) return ROUTE_DETOKENIZE;
    return ROUTE_OTHER;
}

/* Replies with an error built from the arguments. */
static void reply_err(http_req *r, int status, const char *type, const char *param, const char *code, const char *msg)
{
    oai_err e;
    oai_fail(&e, status, type, param, code, "%s", msg);
    oai_reply_error(r, &e);
}

/* 413: the body is over --max-body (declared up front, or counted while read). */
static void reply_too_large(server *S, http_req *r)
{
    char msg[96];
    snprintf(msg, sizeof msg, "the request body is larger than %zu bytes", S->cfg.lim.max_body);
    reply_err(r, 413, BAD, NULL, "request_too_large", msg);
}

/* A refusal before any work (429/503): the log says "rejected" and why. */
static void refuse(http_req *r, int status, const char *type, const char *code, const char *msg)
{
    reqinfo *in = http_user(r);
    if (in) in->outcome = "rejected";
    reply_err(r, status, type, NULL, code, msg);
}

/* Answers what http.c flagged (limits, parser refusals, framing, size);
 * 1 if it replied. */
static int reply_flag(server *S, http_req *r)
{
    char msg[256];
    int st = http_flag_status(r);
    switch (http_flags(r)) {
    case HTTP_FLAG_NONE: return 0;
    case HTTP_FLAG_OVER_CONNECTIONS:
        snprintf(msg, sizeof msg, "the server is serving its limit of %u connections (--max-connections); retry later",
                 S->cfg.lim.max_conns);
        refuse(r, 503, "server_error", "too_many_connections", msg);
        return 1;
    case HTTP_FLAG_OVER_PER_ADDRESS:
        snprintf(msg, sizeof msg,
                 "client address %s is at its limit of %u connections or requests in flight "
                 "(--max-connections-per-ip); retry later",
                 http_client(r), S->cfg.lim.max_per_ip);
        refuse(r, 429, "rate_limit_error", "too_many_connections_per_address", msg);
        return 1;
    case HTTP_FLAG_TOO_MANY_HEADERS:
        snprintf(msg, sizeof msg, "more than %d header fields", HTTP_MAX_HEADERS);
        reply_err(r, 431, BAD, NULL, "headers_too_large", msg);
        return 1;
    case HTTP_FLAG_BAD_FRAMING:
        reply_err(r, 400, BAD, NULL, "bad_framing",
                  "ambiguous body framing (Content-Length with Transfer-Encoding, repeated, or "
                  "malformed)");
        return 1;
    case HTTP_FLAG_TOO_LARGE: reply_too_large(S, r); return 1;
    case HTTP_FLAG_PROTOCOL: break;
    }
    switch (st) { /* the HTTP parser's own refusals, in the same JSON shape as every error */
    case 413: reply_too_large(S, r); break;
    case 414:
        snprintf(msg, sizeof msg, "the request line is longer than %u KiB", HTTP_CONN_MEMORY >> 10);
        reply_err(r, 414, BAD, NULL, "uri_too_long", msg);
        break;
    case 431:
        snprintf(msg, sizeof msg, "the request line and header fields are larger than %u KiB", HTTP_CONN_MEMORY >> 10);
        reply_err(r, 431, BAD, NULL, "headers_too_large", msg);
        break;
    case 505: reply_err(r, 505, BAD, NULL, "http_version_not_supported", "only HTTP/1.0 and HTTP/1.1"); break;
    default:
        if (st >= 400 && st < 500)
            reply_err(r, st, BAD, NULL, "malformed_request",
                      "the request could not be parsed (request line, header syntax, Host, or chunked "
                      "framing)");
        else reply_err(r, st >= 500 && st < 600 ? st : 500, "server_error", NULL, NULL, "the request failed");
        break;
    }
    return 1;
}

/* Auth for routes other than /health: exactly one "Authorization: Bearer KEY"
 * with a configured key. Returns 0 when allowed. */
static int check_auth(server *S, http_req *r, reqinfo *in)
{
    if (!S->auth) return 0;
    const char *key_id = NULL;
    if (http_header_count(r, "Authorization") == 1 &&
        auth_check(S->auth, http_header(r, "Authorization"), &key_id) >= 0) {
        in->key_id = key_id;
        return 0;
    }
    reply_err(r, 401, "authentication_error", NULL, "invalid_api_key",
              "a valid API key is required: send 'Authorization: Bearer <key>'");
    return -1;
}

/* Runs when the headers are in: refuses what must not be read any further. */
static void on_headers(void *ctx, http_req *r)
{
    server *S = ctx;
    reqinfo *in = calloc(1, sizeof *in);
    if (!in) {
        http_abort(r);
        return;
    }
    http_set_user(r, in);
    in->route = route_of(http_path(r));
    in->ttft_s = -1;
    srv_new_id(in->id, sizeof in->id,
               in->route == ROUTE_CHAT          ? "chatcmpl-"
               : in->route == ROUTE_COMPLETIONS ? "cmpl-"
                                                : "req-");
    http_add_header(r, "X-Request-Id", in->id);
    if (reply_flag(S, r)) return;
    if (in->route != ROUTE_HEALTH && check_auth(S, r, in)) return;
    if (in->route == ROUTE_OTHER) {
        reply_err(r, 404, BAD, NULL, "not_found", "no such route");
        return;
    }
    int get = in->route == ROUTE_MODELS || in->route == ROUTE_HEALTH || in->route == ROUTE_METRICS;
    if (strcmp(http_method(r), get ? "GET" : "POST")) {
        http_add_header(r, "Allow", get ? "GET" : "POST");
        reply_err(r, 405, BAD, NULL, "method_not_allowed", get ? "this route takes GET" : "this route takes POST");
        return;
    }
    int st = srv_state_get(S);
    if (in->route != ROUTE_HEALTH && in->route != ROUTE_METRICS &&
        (st == SRV_LOADING || (st == SRV_DRAINING && !get))) {
        refuse(r, 503, "server_error", st == SRV_LOADING ? "loading" : "shutting_down",
               st == SRV_LOADING ? "the model is still loading" : "the server is shutting down");
        return;
    }
    if (S->cfg.log_required && in->route != ROUTE_HEALTH && in->route != ROUTE_METRICS && !reqlog_admit(S->log)) {
        /* docs/threats.md §3 "Request log"; the 503 carries Retry-After */
        refuse(r, 503, "server_error", "audit_log_unavailable",
               "the audit log (--log) cannot be written, so the server takes no requests until it can "
               "(--log-required)");
        return;
    }
}

/* Parses the body as strict JSON; NULL after replying 400. */
static cJSON *parse_body(http_req *r)
{
    size_t len;
    const char *body = http_body(r, &len);
    if (len == 0) {
        reply_err(r, 400, BAD, NULL, "invalid_json", "the request body is empty");
        return NULL;
    }
    ms_error err;
    cJSON *root = json_parse_strict(body, len, "request body", &err);
    if (!root) reply_err(r, 400, BAD, NULL, "invalid_json", err.message);
    return root;
}

/* The limits requests are validated against. */
static oai_limits limits_of(server *S)
{
    oai_limits l = {S->model_name, S->cfg.max_n, S->svc->vocab_size};
    return l;
}

/* Detokenized text for --log-text (malloc'd or NULL). */
static char *log_text_of(server *S, const int32_t *ids, size_t n)
{
    char *t = NULL;
    size_t len;
    ms_error err;
    if (S->svc->ops->detokenize(S->svc->self, ids, n, 0, &t, &len, &err) != MS_OK) return NULL;
    return t;
}

/* POST /v1/chat/completions. */
static void route_chat(server *S, http_req *r, reqinfo *in, cJSON *root)
{
    oai_chat c;
    oai_err e;
    oai_limits lim = limits_of(S);
    if (oai_parse_chat(root, &lim, &c, &e)) {
        oai_reply_error(r, &e);
        oai_chat_free(&c);
        return;
    }
    int32_t *ids = NULL;
    size_t n = 0;
    ms_error err;
    ms_status st = S->svc->ops->chat_tokenize(S->svc->self, c.msgs, c.n_msgs, 1, c.g.enable_thinking, &ids, &n, &err);
    if (st != MS_OK) {
        oai_err_from_status(&e, st, err.message);
        if (e.http == 400) snprintf(e.param, sizeof e.param, "messages");
        oai_reply_error(r, &e);
    } else {
        if (S->cfg.log_text) in->prompt_text = log_text_of(S, ids, n);
        gen_prompt p = {ids, n, NULL, 0};
        gen_spec spec = {1, &c.g, &p, 1, "messages"};
        gen_run(S, r, in, &spec);
    }
    free(ids);
    oai_chat_free(&c);
}

/* POST /v1/completions. */
static void route_completions(server *S, http_req *r, reqinfo *in, cJSON *root)
{
    oai_completion c;
    oai_err e;
    oai_limits lim = limits_of(S);
    if (oai_parse_completion(root, &lim, &c, &e)) {
        oai_reply_error(r, &e);
        oai_completion_free(&c);
        return;
    }
    gen_prompt *ps = calloc(c.n_prompts, sizeof *ps);
    char **echo = calloc(c.n_prompts, sizeof *echo);
    size_t i = 0;
    if (!ps || !echo) {
        reply_err(r, 503, "server_error", NULL, "out_of_memory", "out of memory");
        goto done;
    }
    for (; i < c.n_prompts; i++) {
        ms_error err;
        if (c.texts[i]) {
            /* the caller writes the whole prompt, so added tokens are matched */
            ms_status st =
                S->svc->ops->tokenize(S->svc->self, c.texts[i], c.text_lens[i], 1, &ps[i].ids, &ps[i].n, &err);
            if (st != MS_OK) {
                oai_err_from_status(&e, st, err.message);
                oai_reply_error(r, &e);
                goto done;
            }
            if (c.g.echo) {
                ps[i].echo = c.texts[i];
                ps[i].echo_len = c.text_lens[i];
            }
        } else {
            ps[i].ids = c.ids[i];
            ps[i].n = c.n_ids[i];
            c.ids[i] = NULL; /* ownership moves to ps */
            if (c.g.echo) {
                size_t len = 0;
                if (S->svc->ops->detokenize(S->svc->self, ps[i].ids, ps[i].n, 0, &echo[i], &len, &err) == MS_OK) {
                    ps[i].echo = echo[i];
                    ps[i].echo_len = len;
                }
            }
        }
    }
    if (S->cfg.log_text && c.n_prompts) in->prompt_text = log_text_of(S, ps[0].ids, ps[0].n);
    gen_spec spec = {0, &c.g, ps, c.n_prompts, "prompt"};
    gen_run(S, r, in, &spec);
done:
    for (size_t k = 0; ps && k < c.n_prompts; k++) free(ps[k].ids);
    for (size_t k = 0; echo && k < c.n_prompts; k++) free(echo[k]);
    free(ps);
    free(echo);
    oai_completion_free(&c);
}

/* The model object of the one model served. */
static cJSON *model_object(server *S)
{
    return oai_model(S->model_name, S->created, S->svc->n_ctx, S->svc->manifest_sha256);
}

/* GET /v1/models and /v1/models/<id>. */
static void route_models(server *S, http_req *r)
{
    const char *path = http_path(r);
    if (!strncmp(path, "/v1/models/", 11)) {
        if (strcmp(path + 11, S->model_name)) {
            reply_err(r, 404, BAD, "model", "model_not_found", "no such model");
            return;
        }
        oai_reply_json(r, 200, model_object(S));
        return;
    }
    oai_reply_json(r, 200, oai_model_list(model_object(S)));
}

/* GET /health: 200 when ready; 503 while loading, draining, after an engine
 * fault, or with --log-required while the log cannot be written. */
static void route_health(server *S, http_req *r)
{
    int st = srv_state_get(S);
    int fatal = __atomic_load_n(&S->fatal, __ATOMIC_SEQ_CST);
    const char *ok = S->cfg.log_required && !reqlog_writable(S->log) ? "audit_log_unwritable" : "ok";
    const char *s = fatal ? "unhealthy" : st == SRV_READY ? ok : st == SRV_LOADING ? "loading" : "draining";
    if (strcmp(s, "ok")) http_add_header(r, "Retry-After", "1");
    oai_reply_json(r, strcmp(s, "ok") ? 503 : 200, oai_health(s));
}

/* GET /metrics. */
static void route_metrics(server *S, http_req *r)
{
    ms_engine_stats st;
    memset(&st, 0, sizeof st);
    if (S->svc) S->svc->ops->stats(S->svc->self, &st);
    metrics_log_state(S->metrics, reqlog_errors(S->log), reqlog_writable(S->log));
    char *text = NULL;
    size_t len = 0;
    if (metrics_render(S->metrics, &st, job_registry_count(S->jobs), srv_state_get(S), &text, &len) != MS_OK) {
        reply_err(r, 503, "server_error", NULL, "out_of_memory", "out of memory");
        return;
    }
    http_reply(r, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
    free(text);
}

/* POST /tokenize. */
static void route_tokenize(server *S, http_req *r, cJSON *root)
{
    oai_tokenize t;
    oai_err e;
    oai_limits lim = limits_of(S);
    if (oai_parse_tokenize(root, &lim, &t, &e)) {
        oai_reply_error(r, &e);
        oai_tokenize_free(&t);
        return;
    }
    int32_t *ids = NULL;
    size_t n = 0;
    ms_error err;
    ms_status st = t.prompt
                       ? S->svc->ops->tokenize(S->svc->self, t.prompt, t.prompt_len, 1, &ids, &n, &err)
                       : S->svc->ops->chat_tokenize(S->svc->self, t.chat.msgs, t.chat.n_msgs, t.add_generation_prompt,
                                                    t.chat.g.enable_thinking, &ids, &n, &err);
    if (st != MS_OK) {
        oai_err_from_status(&e, st, err.message);
        oai_reply_error(r, &e);
    } else {
        oai_reply_json(r, 200, oai_tokenize_result(ids, n, S->svc->n_ctx));
    }
    free(ids);
    oai_tokenize_free(&t);
}

/* POST /detokenize. */
static void route_detokenize(server *S, http_req *r, cJSON *root)
{
    int32_t *ids = NULL;
    size_t n = 0, len = 0;
    oai_err e;
    oai_limits lim = limits_of(S);
    if (oai_parse_detokenize(root, &lim, &ids, &n, &e)) {
        oai_reply_error(r, &e);
        free(ids);
        return;
    }
    char *text = NULL;
    ms_error err;
    ms_status st = S->svc->ops->detokenize(S->svc->self, ids, n, 0, &text, &len, &err);
    if (st != MS_OK) {
        oai_err_from_status(&e, st, err.message);
        oai_reply_error(r, &e);
    } else {
        oai_reply_json(r, 200, oai_detokenize_result(text));
    }
    free(text);
    free(ids);
}

/* Runs with the whole body: dispatches to the route. */
static void on_request(void *ctx, http_req *r)
{
    server *S = ctx;
    reqinfo *in = http_user(r);
    if (reply_flag(S, r)) return; /* a chunked body went over the cap, or the parser refused it */
    switch (in->route) {
    case ROUTE_HEALTH: route_health(S, r); return;
    case ROUTE_METRICS: route_metrics(S, r); return;
    case ROUTE_MODELS: route_models(S, r); return;
    default: break;
    }
    cJSON *root = parse_body(r);
    if (!root) return;
    switch (in->route) {
    case ROUTE_CHAT: route_chat(S, r, in, root); break;
    case ROUTE_COMPLETIONS: route_completions(S, r, in, root); break;
    case ROUTE_TOKENIZE: route_tokenize(S, r, root); break;
    case ROUTE_DETOKENIZE: route_detokenize(S, r, root); break;
    default: reply_err(r, 404, BAD, NULL, "not_found", "no such route"); break;
    }
    cJSON_Delete(root);
}

/* Records the request's metrics, writes its log line, frees its record. */
static void on_done(void *ctx, http_req *r, int completed_ok)
{
    server *S = ctx;
    reqinfo *in = http_user(r);
    if (!in) return;
    double dur = http_now() - http_t_start(r);
    int status = http_status(r) ? http_status(r) : 499;
    metrics_request(S->metrics, in->route, status, dur);
    metrics_refusal why = metrics_refusal_of(http_label(r));
    if (why != REFUSED_COUNT && in->outcome && !strcmp(in->outcome, "rejected") && (status == 429 || status == 503)) {
        metrics_refused(S->metrics, why);
        in->reason = http_label(r);
    }
    char *line = reqlog_line(in, http_client(r), http_method(r), status, completed_ok, dur, S->cfg.log_text);
    reqlog_write(S->log, line, line ? strlen(line) : 0); /* NULL (out of memory): counted as lost */
    free(line);
    free(in->prompt_text);
    free(in->completion_text);
    free(in);
    http_set_user(r, NULL);
}

/* Counts a connection event of http.c in the metrics. */
static void on_event(void *ctx, http_event ev)
{
    server *S = ctx;
    static const metrics_conn_event map[] = {
        [HTTP_EV_OPENED] = MCONN_OPENED,
        [HTTP_EV_CLOSED] = MCONN_CLOSED,
        [HTTP_EV_ADMITTED] = MCONN_ADMITTED,
        [HTTP_EV_RELEASED] = MCONN_RELEASED,
        [HTTP_EV_DROPPED_TOTAL] = MCONN_DROPPED_TOTAL,
        [HTTP_EV_DROPPED_PER_ADDRESS] = MCONN_DROPPED_PER_ADDRESS,
        [HTTP_EV_HEADER_TIMEOUT] = MCONN_HEADER_TIMEOUT,
        [HTTP_EV_XFF_INVALID] = MCONN_XFF_INVALID,
    };
    if ((size_t)ev < sizeof map / sizeof map[0]) metrics_conn(S->metrics, map[ev]);
}

/* Points the HTTP callbacks at this file's handlers. */
void routes_handlers(server *S, http_handlers *h)
{
    h->on_headers = on_headers;
    h->on_request = on_request;
    h->on_done = on_done;
    h->on_event = on_event;
    h->ctx = S;
}
