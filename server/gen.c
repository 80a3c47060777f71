/* gen.c: one generation request from submit to its terminal outcome (see
 * gen.h). Non-streaming requests wait on the request's own thread and reply
 * once; streaming requests reply with an SSE body whose reader pulls engine
 * events as the client consumes them. Either way the same event handler
 * tracks choices, token counts, latencies and logprobs. What each object and
 * chunk carries is decided here, its JSON shape in oai_resp.c. It does not
 * validate requests (oai_req.c) or tokenize them (routes.c). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "base/strbuf.h"
#include "gen.h"
#include "oai_resp.h"
#include "rsplit.h"

typedef struct choice {
    int prompt; /* index into spec->prompts */
    int finished;
    ms_finish finish;
    size_t n_generated;
    rsplit *sp;                /* chat only */
    strbuf content, reasoning; /* non-stream: all of it; stream: this event's delta */
    strbuf all;                /* --log-text: everything generated */
    cJSON *lp;                 /* chat: [entries]; completions: {tokens,...}; NULL if off */
    size_t text_off;           /* completions: bytes of text so far (text_offset) */
    double t_last;
} choice;

typedef enum gen_end {
    GEN_RUNNING = 0,
    GEN_DONE,   /* every choice finished */
    GEN_FAILED, /* err is set */
    GEN_HANGUP, /* the client left */
} gen_end;

typedef struct gen {
    server *S;
    http_req *r; /* NULL once the stream is handed to MHD's cleanup */
    reqinfo *info;
    const gen_spec *spec;
    int chat, stream, include_usage, logprobs, top_logprobs;
    job *j;
    choice *ch;
    int n_ch, n_done;
    double deadline, t_start;
    double idle_s; /* longest silence on a stream: keep-alive after it */
    int fd;
    int first_token;
    char id[48];
    gen_end end;
    oai_err err;
    const char *outcome;
    /* stream only */
    strbuf out;
    size_t out_pos;
    int tail_sent; /* [DONE] or the error event is in out */
    uint64_t prompt_tokens;
} gen;

/* Frees g and what it owns (the job is released: unfinished choices cancelled). */
static void gen_free(gen *g)
{
    if (!g) return;
    job_release(g->j);
    for (int i = 0; i < g->n_ch; i++) {
        choice *c = &g->ch[i];
        rsplit_free(c->sp);
        sb_free(&c->content);
        sb_free(&c->reasoning);
        sb_free(&c->all);
        cJSON_Delete(c->lp);
    }
    free(g->ch);
    sb_free(&g->out);
    free(g);
}

/* Decoded text of one token (for logprobs); malloc'd, never NULL on success. */
static char *token_text(gen *g, int32_t id)
{
    char *t = NULL;
    size_t len;
    ms_error err;
    svc *s = g->S->svc;
    if (s->ops->detokenize(s->self, &id, 1, 0, &t, &len, &err) != MS_OK) return strdup("");
    return t;
}

/* Records the logprobs of event e into c->lp: the token's text and logprob
 * and those of its top alternatives. */
static void lp_add(gen *g, choice *c, const job_event *e)
{
    _Static_assert(OAI_MAX_COMPLETION_LOGPROBS <= MS_MAX_TOP_LOGPROBS, "top alternatives must fit in top[]");
    if (!c->lp && !(c->lp = oai_logprobs_new(g->chat))) return;
    char *tok = token_text(g, e->token);
    if (!tok) return;
    char *top[MS_MAX_TOP_LOGPROBS];
    int n_top = 0;
    while (n_top < e->n_top && n_top < g->top_logprobs && n_top < MS_MAX_TOP_LOGPROBS) {
        top[n_top] = token_text(g, e->top_ids[n_top]);
        n_top++;
    }
    oai_logprobs_add(c->lp, g->chat, tok, e->logprob, top, e->top_lps, n_top, c->text_off);
    for (int k = 0; k < n_top; k++) free(top[k]);
    free(tok);
}

/* Records g's outcome and counts into info and metrics (once, at the end). */
static void finish_info(gen *g)
{
    reqinfo *in = g->info;
    uint64_t gen_tokens = 0, reasoning = 0;
    size_t fl = 0;
    in->finish[0] = 0;
    for (int i = 0; i < g->n_ch; i++) {
        choice *c = &g->ch[i];
        gen_tokens += c->n_generated;
        if (c->sp) reasoning += rsplit_reasoning_tokens(c->sp);
        const char *f = c->finished ? oai_finish_name(c->finish) : NULL;
        int k = snprintf(in->finish + fl, sizeof in->finish - fl, "%s%s", i ? "," : "", f ? f : "none");
        if (k > 0 && fl + (size_t)k < sizeof in->finish) fl += (size_t)k;
    }
    in->prompt_tokens = g->prompt_tokens;
    in->completion_tokens = gen_tokens;
    in->reasoning_tokens = reasoning;
    in->outcome = g->outcome;
    if (g->end == GEN_FAILED) snprintf(in->error, sizeof in->error, "%s", g->err.message);
    metrics_tokens(g->S->metrics, g->prompt_tokens, gen_tokens);
    if (g->S->cfg.log_text) {
        cJSON *a = cJSON_CreateArray();
        for (int i = 0; a && i < g->n_ch; i++)
            cJSON_AddItemToArray(a, cJSON_CreateString(g->ch[i].all.p ? g->ch[i].all.p : ""));
        free(in->completion_text);
        in->completion_text = a ? cJSON_PrintUnformatted(a) : NULL;
        cJSON_Delete(a);
    }
}

/* Marks g failed with an error in OpenAI's shape. */
static void fail(gen *g, int http, const char *type, const char *code, const char *msg, const char *outcome)
{
    g->end = GEN_FAILED;
    g->outcome = outcome;
    oai_fail(&g->err, http, type, NULL, code, "%s", msg);
}

/* Applies one engine event: latencies, logprobs, text split, completion. */
static void on_event(gen *g, const job_event *e)
{
    if (e->choice < 0 || e->choice >= g->n_ch) return;
    choice *c = &g->ch[e->choice];
    if (c->finished) return;
    if (e->token >= 0) {
        if (!g->first_token) {
            g->first_token = 1;
            g->info->ttft_s = e->t - g->t_start;
            metrics_ttft(g->S->metrics, g->info->ttft_s);
        } else if (c->t_last > 0) {
            metrics_itl(g->S->metrics, e->t - c->t_last);
        }
        c->t_last = e->t;
        if (g->logprobs && e->finish != MS_FINISH_ERROR) lp_add(g, c, e);
    }
    if (g->stream) {
        sb_reset(&c->content);
        sb_reset(&c->reasoning);
    }
    if (g->chat) rsplit_feed(c->sp, e->token, e->text, e->text_len, &c->reasoning, &c->content);
    else sb_append(&c->content, e->text, e->text_len);
    c->text_off += e->text_len;
    if (g->S->cfg.log_text) sb_append(&c->all, e->text, e->text_len);
    if (e->finish == MS_FINISH_NONE) return;
    if (g->chat) rsplit_flush(c->sp, &c->reasoning, &c->content);
    c->finished = 1;
    c->finish = e->finish;
    c->n_generated = e->n_generated;
    g->n_done++;
    if (e->finish == MS_FINISH_ERROR || e->finish == MS_FINISH_CANCELLED) {
        if (e->status == MS_ERR_INTERNAL) __atomic_store_n(&g->S->fatal, 1, __ATOMIC_SEQ_CST);
        char msg[300];
        snprintf(msg, sizeof msg, "generation failed: %s",
                 e->finish == MS_FINISH_CANCELLED ? "cancelled by the engine"
                 : e->error[0]                    ? e->error
                                                  : ms_status_name(e->status));
        fail(g, e->finish == MS_FINISH_CANCELLED ? 503 : 500, "server_error",
             e->finish == MS_FINISH_CANCELLED ? "cancelled" : "engine_error", msg, "error");
        return;
    }
    if (g->n_done == g->n_ch) {
        g->end = GEN_DONE;
        g->outcome = "ok";
    }
}

/* Waits for and applies the next event; sets g->end on anything terminal.
 * Returns 1 when the caller should emit a keep-alive. */
static int step(gen *g, int *choice_out)
{
    job_event *e = NULL;
    *choice_out = -1;
    job_wait w = job_next(g->j, g->fd, g->deadline, g->idle_s, &e);
    switch (w) {
    case JOB_EVENT:
        *choice_out = e->choice;
        on_event(g, e);
        job_event_free(e);
        return 0;
    case JOB_IDLE: return 1;
    case JOB_TIMEOUT: {
        char msg[128];
        snprintf(msg, sizeof msg, "the request exceeded the server's --timeout of %g s", g->S->cfg.timeout_s);
        fail(g, 504, "server_error", "timeout", msg, "timeout");
        break;
    }
    case JOB_HANGUP:
        g->end = GEN_HANGUP;
        g->outcome = "client_closed";
        break;
    case JOB_ABORT: fail(g, 503, "server_error", "shutting_down", job_abort_reason(g->j), "aborted"); break;
    }
    job_cancel(g->j);
    return 0;
}

/* ---- non-streaming -------------------------------------------------- */

/* What every object and chunk of this request repeats. */
static oai_head head_of(const gen *g)
{
    oai_head h = {g->id, g->S->created, g->S->model_name, g->S->fingerprint, g->chat, g->stream};
    return h;
}

/* Takes a choice's logprobs out of it (they move into a response object). */
static cJSON *take_lp(choice *c)
{
    cJSON *lp = c->lp;
    c->lp = NULL;
    return lp;
}

/* The whole response object once every choice finished. */
static cJSON *build_response(gen *g)
{
    oai_head h = head_of(g);
    cJSON *o = oai_completion_object(&h);
    if (!o) return NULL;
    for (int i = 0; i < g->n_ch; i++) {
        choice *c = &g->ch[i];
        strbuf t = {0};
        const char *text = c->content.p ? c->content.p : "";
        if (!g->chat) { /* completions: the echoed prompt, then what was generated */
            const gen_prompt *p = &g->spec->prompts[c->prompt];
            if (p->echo) sb_append(&t, p->echo, p->echo_len);
            sb_append(&t, text, c->content.n);
            text = t.p ? t.p : "";
        }
        const char *f = oai_finish_name(c->finish);
        oai_choice oc = {i, NULL, c->reasoning.n ? c->reasoning.p : NULL, text, take_lp(c), f ? f : "stop"};
        oai_add_choice(o, &h, &oc);
        sb_free(&t);
    }
    oai_add_usage(o, oai_usage(g->prompt_tokens, g->info->completion_tokens, g->info->reasoning_tokens));
    return o;
}

/* Waits for every choice on this thread, then replies once. */
static void run_blocking(gen *g)
{
    int ch;
    while (g->end == GEN_RUNNING) step(g, &ch);
    finish_info(g);
    if (g->end == GEN_HANGUP) {
        http_abort(g->r);
        return;
    }
    if (g->end == GEN_FAILED) {
        oai_reply_error(g->r, &g->err);
        return;
    }
    oai_reply_json(g->r, 200, build_response(g));
}

/* ---- streaming -------------------------------------------------------- */

/* Appends one SSE event "data: <json>\n\n" (o is freed). */
static void sse_json(gen *g, cJSON *o)
{
    char *s = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!s) {
        g->out.oom = 1;
        return;
    }
    sb_puts(&g->out, "data: ");
    sb_puts(&g->out, s);
    sb_puts(&g->out, "\n\n");
    free(s);
}

/* One chunk for choice i: role/echo at the start, deltas, or the finish.
 * The logprobs gathered since the last chunk go with it (never with the start). */
static void sse_chunk(gen *g, int i, int first, const char *finish)
{
    choice *c = &g->ch[i];
    oai_head h = head_of(g);
    cJSON *o = oai_completion_object(&h);
    if (!o) {
        g->out.oom = 1;
        return;
    }
    oai_choice oc = {i, NULL, NULL, NULL, NULL, finish};
    char *echo = NULL;
    if (g->chat && first) {
        oc.role = "assistant";
        oc.content = "";
    } else if (g->chat && !finish) {
        oc.reasoning = c->reasoning.n ? c->reasoning.p : NULL;
        oc.content = c->content.n ? c->content.p : NULL;
    } else if (!g->chat && first) { /* only called from gen_run, while spec is alive */
        const gen_prompt *p = &g->spec->prompts[c->prompt];
        echo = malloc(p->echo_len + 1);
        if (echo) {
            memcpy(echo, p->echo, p->echo_len);
            echo[p->echo_len] = 0;
        }
        oc.content = echo;
    } else if (!g->chat) {
        oc.content = finish || !c->content.p ? "" : c->content.p;
    }
    if (!first && oai_logprobs_count(c->lp, g->chat)) oc.logprobs = take_lp(c);
    oai_add_choice(o, &h, &oc);
    free(echo);
    if (g->include_usage) oai_add_usage(o, NULL);
    sse_json(g, o);
}

/* What the stream says after the last choice: usage (if asked) and [DONE],
 * or the error event. */
static void sse_tail(gen *g)
{
    finish_info(g);
    if (g->end == GEN_FAILED) {
        char *body = oai_error_body(&g->err);
        sb_puts(&g->out, "data: ");
        sb_puts(&g->out, body ? body : "{\"error\":{\"message\":\"server error\"}}");
        sb_puts(&g->out, "\n\n");
        free(body);
    } else {
        if (g->include_usage) {
            oai_head h = head_of(g);
            cJSON *o = oai_completion_object(&h);
            if (o) oai_add_usage(o, oai_usage(g->prompt_tokens, g->info->completion_tokens, g->info->reasoning_tokens));
            sse_json(g, o);
        }
        sb_puts(&g->out, "data: [DONE]\n\n");
    }
    g->tail_sent = 1;
}

/* Emits what an applied event produced for choice i. */
static void sse_after_event(gen *g, int i)
{
    choice *c = &g->ch[i];
    if (c->content.n || c->reasoning.n || oai_logprobs_count(c->lp, g->chat)) sse_chunk(g, i, 0, NULL);
    if (c->finished && (c->finish == MS_FINISH_STOP || c->finish == MS_FINISH_LENGTH))
        sse_chunk(g, i, 0, oai_finish_name(c->finish));
}

/* MHD pulls the stream through here (see http_stream_fn). */
static ssize_t stream_read(void *ctx, char *buf, size_t max)
{
    gen *g = ctx;
    for (;;) {
        if (g->out.oom) {
            job_cancel(g->j);
            return -2;
        }
        if (g->out_pos < g->out.n) {
            size_t n = g->out.n - g->out_pos;
            if (n > max) n = max;
            memcpy(buf, g->out.p + g->out_pos, n);
            g->out_pos += n;
            if (g->out_pos == g->out.n) {
                sb_reset(&g->out);
                g->out_pos = 0;
            }
            return (ssize_t)n;
        }
        if (g->tail_sent) return -1;
        if (g->end == GEN_HANGUP) {
            finish_info(g);
            return -2;
        }
        if (g->end != GEN_RUNNING) {
            sse_tail(g);
            continue;
        }
        int i;
        if (step(g, &i)) {
            sb_puts(&g->out, ": keep-alive\n\n");
            continue;
        }
        if (i >= 0 && g->end != GEN_HANGUP) sse_after_event(g, i);
    }
}

/* Stream cleanup (MHD calls it once, after the last read). */
static void stream_free(void *ctx)
{
    gen_free(ctx);
}

/* ---- setup ----------------------------------------------------------- */

/* Per-prompt max_tokens from the request and the context; 0 ok, -1 replied. */
static int plan_tokens(gen *g, int *max_tokens)
{
    const oai_gen *og = g->spec->g;
    int n_ctx = g->S->svc->n_ctx;
    for (size_t p = 0; p < g->spec->n_prompts; p++) {
        size_t np = g->spec->prompts[p].n;
        oai_err e;
        if (np == 0) {
            oai_fail(&e, 400, "invalid_request_error", g->spec->param, "invalid_value", "the prompt is empty");
            oai_reply_error(g->r, &e);
            return -1;
        }
        long long want = og->has_max_tokens ? og->max_tokens : 0;
        if (np >= (size_t)n_ctx || (size_t)want > (size_t)n_ctx - np) {
            if (og->has_max_tokens)
                oai_fail(&e, 400, "invalid_request_error", g->spec->param, "context_length_exceeded",
                         "This model's maximum context length is %d tokens. However, you "
                         "requested %lld tokens (%zu in the %s, %lld in the completion). Please "
                         "reduce the length of the %s or completion.",
                         n_ctx, (long long)np + want, np, g->chat ? "messages" : "prompt", want,
                         g->chat ? "messages" : "prompt");
            else
                oai_fail(&e, 400, "invalid_request_error", g->spec->param, "context_length_exceeded",
                         "This model's maximum context length is %d tokens. However, your %s "
                         "resulted in %zu tokens, which leaves no room for a completion.",
                         n_ctx, g->chat ? "messages" : "prompt", np);
            oai_reply_error(g->r, &e);
            return -1;
        }
        if (!og->has_max_tokens) {
            want = (long long)n_ctx - (long long)np;
            if (g->S->svc->max_new_tokens > 0 && want > g->S->svc->max_new_tokens) want = g->S->svc->max_new_tokens;
        }
        max_tokens[p] = (int)want;
    }
    return 0;
}

/* The sampling of choice k: generation_config defaults, then the request. */
static ms_sampling sampling_for(gen *g, uint64_t seed)
{
    const oai_gen *og = g->spec->g;
    ms_sampling s = g->S->svc->ops->sampling_default(g->S->svc->self);
    if (og->has_temperature) {
        s.greedy = og->temperature == 0;
        if (og->temperature > 0) s.temperature = (float)og->temperature;
    }
    if (og->has_top_p) s.top_p = (float)og->top_p;
    if (og->has_top_k) s.top_k = og->top_k;
    if (og->has_min_p) s.min_p = (float)og->min_p;
    if (og->has_repetition_penalty) s.repetition_penalty = (float)og->repetition_penalty;
    s.presence_penalty = (float)og->presence_penalty;
    s.frequency_penalty = (float)og->frequency_penalty;
    s.seed = seed;
    s.logit_bias_ids = og->bias_ids;
    s.logit_bias_values = og->bias_values;
    s.n_logit_bias = og->n_bias;
    s.top_logprobs = og->logprobs ? og->top_logprobs : 0;
    return s;
}

/* Submits every choice; 0 ok, -1 replied with the error. */
static int submit_all(gen *g, const int *max_tokens, uint64_t base_seed)
{
    const oai_gen *og = g->spec->g;
    for (int i = 0; i < g->n_ch; i++) {
        choice *c = &g->ch[i];
        const gen_prompt *p = &g->spec->prompts[c->prompt];
        ms_request rq;
        memset(&rq, 0, sizeof rq);
        rq.prompt = p->ids;
        rq.n_prompt = p->n;
        rq.sampling = sampling_for(g, base_seed + (uint64_t)(i % og->n));
        rq.max_tokens = max_tokens[c->prompt];
        for (int s = 0; s < og->n_stop; s++) rq.stop[s] = og->stop[s];
        rq.logprobs = og->logprobs;
        ms_error err;
        err.message[0] = 0;
        ms_status st = job_submit(g->j, i, &rq, &err);
        if (st != MS_OK) {
            oai_err e;
            oai_err_from_status(&e, st, err.message);
            if (st == MS_ERR_BUSY)
                snprintf(e.message, sizeof e.message, "the server is busy (queue full); retry after a moment");
            g->outcome = "rejected";
            oai_reply_error(g->r, &e);
            return -1;
        }
    }
    return 0;
}

/* Plans, submits and then either waits (JSON) or hands the job to an SSE stream. */
void gen_run(server *S, http_req *r, reqinfo *info, const gen_spec *spec)
{
    const oai_gen *og = spec->g;
    gen *g = calloc(1, sizeof *g);
    int *max_tokens = calloc(spec->n_prompts ? spec->n_prompts : 1, sizeof *max_tokens);
    int n_ch = (int)spec->n_prompts * og->n;
    if (g) g->ch = calloc((size_t)n_ch, sizeof *g->ch);
    if (!g || !g->ch || !max_tokens) {
        oai_err e;
        oai_fail(&e, 503, "server_error", NULL, "out_of_memory", "out of memory");
        oai_reply_error(r, &e);
        free(max_tokens);
        gen_free(g);
        return;
    }
    g->S = S;
    g->r = r;
    g->info = info;
    g->spec = spec;
    g->chat = spec->chat;
    g->stream = og->stream;
    g->include_usage = og->include_usage;
    g->logprobs = og->logprobs;
    g->top_logprobs = og->top_logprobs;
    g->n_ch = n_ch;
    g->t_start = http_t_start(r);
    g->deadline = g->t_start + S->cfg.timeout_s;
    /* MHD drops a connection that stays silent for its idle timeout, even while
     * the stream's reader waits for the engine: speak well before that */
    g->idle_s = SRV_KEEPALIVE_S;
    if (S->cfg.lim.idle_s && g->idle_s > S->cfg.lim.idle_s / 3.0) g->idle_s = S->cfg.lim.idle_s / 3.0;
    g->fd = http_fd(r);
    g->outcome = "error";
    snprintf(g->id, sizeof g->id, "%s", info->id);
    info->stream = g->stream;
    info->n = og->n;
    for (size_t p = 0; p < spec->n_prompts; p++) g->prompt_tokens += spec->prompts[p].n;
    uint64_t seed = og->seed;
    if (!og->has_seed) { /* below 2^53 so the logged seed can be sent back to replay */
        if (getrandom(&seed, sizeof seed, 0) != sizeof seed) seed = (uint64_t)(g->t_start * 1e9);
        seed &= ((uint64_t)1 << 53) - 1;
    }
    char seedtxt[24];
    snprintf(seedtxt, sizeof seedtxt, "%lld", (long long)(int64_t)seed); /* as sent */
    http_add_header(r, "X-Medserve-Seed", seedtxt);
    info->has_seed = 1;
    info->seed = seed;
    for (int i = 0; i < n_ch; i++) {
        g->ch[i].prompt = i / og->n;
        if (g->chat) {
            const gen_prompt *p = &spec->prompts[g->ch[i].prompt];
            g->ch[i].sp = rsplit_create(S->svc, p->ids, p->n);
            if (!g->ch[i].sp) g->out.oom = 1;
        }
    }
    ms_error err;
    if (g->out.oom || plan_tokens(g, max_tokens) || !(g->j = job_create(S->svc, S->jobs, n_ch, &err)) ||
        submit_all(g, max_tokens, seed)) {
        if (!http_replied(r)) {
            oai_err e;
            oai_fail(&e, 503, "server_error", NULL, "out_of_memory", "out of resources");
            oai_reply_error(r, &e);
        }
        info->outcome = g->outcome;
        info->prompt_tokens = g->prompt_tokens;
        free(max_tokens);
        gen_free(g);
        return;
    }
    free(max_tokens);
    if (!g->stream) {
        run_blocking(g);
        gen_free(g);
        return;
    }
    for (int i = 0; i < n_ch; i++)
        if (g->chat || spec->prompts[g->ch[i].prompt].echo) sse_chunk(g, i, 1, NULL);
    g->spec = NULL; /* the caller's spec ends with gen_run; the stream must not use it */
    info->outcome = "streaming";
    http_add_header(r, "Cache-Control", "no-cache");
    http_add_header(r, "X-Accel-Buffering", "no");
    http_reply_stream(r, 200, "text/event-stream", stream_read, g, stream_free);
}
