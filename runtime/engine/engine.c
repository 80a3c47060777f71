/* engine.c: continuous batching. ms_engine_submit validates a request and
 * queues it (bounded: MS_ERR_BUSY when full); one worker thread admits queued
 * requests into free sequence slots between steps, and every step runs one
 * batched backend forward over all active sequences: one token for each
 * decoding sequence plus prompt chunks (at most prefill_chunk tokens of one
 * sequence, at fixed offsets) while the step's token budget lasts, so long
 * prompts never stall running sequences. After the forward, each sequence
 * that produced logits samples a token (sampler.c; sequences in parallel, each
 * with its own RNG, so the result does not depend on the schedule), then, in
 * batch order on the worker thread, turns it into newly decodable text, cuts
 * stop strings (stop.c) and calls the request's callback.
 * Every accepted request gets exactly one final event, whatever ends it (eos,
 * stop string, length, cancel, error, engine shutdown).
 *
 * KV memory is reserved up front: n_ctx x max_seqs positions in blocks
 * (kv.c); a request holds blocks for n_prompt + max_tokens from admission to
 * completion, so no request can run out mid-way. Per-step buffers (batch
 * table, logits rows, text) are allocated at create; the hot path does not
 * allocate. Does not tokenize, render chat or parse requests (api.c, chat.c). */
#include "engine/engine.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "engine/kv.h"
#include "engine/sampler.h"
#include "text/stop.h"

typedef struct request {
    uint64_t id;
    struct request *next; /* queue link */
    uint64_t admit_seq;   /* admission order (prefill fairness) */
    int32_t *tokens;      /* [n_prompt + max_tokens]: prompt, then generated */
    int n_prompt, max_tokens, n_gen;
    int n_kv;       /* positions already in the KV cache */
    ms_sampling sp; /* bias pointers point at the copies below */
    int32_t *bias_ids;
    float *bias_vals;
    stop_matcher stop;
    tok_stream ts;
    int ignore_eos, logprobs;
    ms_token_fn fn;
    void *user;
    int cancel;   /* guarded by the engine mutex */
    sampler *smp; /* created at admission */
    int slot;     /* -1 while queued */
} request;

struct ms_engine {
    engine_model em;
    int n_ctx, max_seqs, max_queue, chunk, budget;
    backend *be;
    kv_pool *kv;
    pthread_t thread;
    int thread_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* guarded by mu */
    request *q_head, *q_tail;
    int n_queued, n_running, stopping;
    uint64_t next_id, next_admit;
    request **slots; /* [max_seqs] */
    size_t kv_used;
    /* counters read by ms_engine_get_stats */
    _Atomic uint64_t prompt_tokens, generated_tokens;
    /* worker only */
    request **admitted;  /* [max_seqs] */
    char *kill;          /* [max_seqs] slots to cancel this step */
    float *logits;       /* [max_seqs, vocab] */
    fwd_seq *batch;      /* [max_seqs] */
    request **batch_req; /* [max_seqs] */
    char *piece;         /* one token's text, [piece_cap] */
    size_t piece_cap;
    char *text; /* one event's text, [text_cap] */
    size_t text_cap, text_len;
    int32_t *top_ids;  /* [max_seqs, MS_MAX_TOP_LOGPROBS] per slot */
    float *top_lps;    /* [max_seqs, MS_MAX_TOP_LOGPROBS] */
    int32_t *sampled;  /* [max_seqs] this step's token per batch entry */
    float *sampled_lp; /* [max_seqs] */
};

/* 8 sequences, 64 waiting, prompt chunks of 512, n_ctx from the model. */
ms_engine_params ms_engine_params_default(void)
{
    ms_engine_params p = {.n_ctx = 0, .max_seqs = 8, .max_queue = 64, .prefill_chunk = 512};
    return p;
}

/* ---- requests ------------------------------------------------------------ */

static void request_free(request *r)
{
    if (!r) return;
    sampler_free(r->smp);
    stop_free(&r->stop);
    free(r->tokens);
    free(r->bias_ids);
    free(r->bias_vals);
    free(r);
}

/* Returns r's slot and KV blocks (if it has them) and drops it from the counts. */
static void release_slot(ms_engine *e, request *r)
{
    if (r->slot < 0) return;
    kv_release(e->kv, r->slot);
    pthread_mutex_lock(&e->mu);
    e->slots[r->slot] = NULL;
    e->n_running--;
    e->kv_used = kv_used(e->kv);
    pthread_mutex_unlock(&e->mu);
    r->slot = -1;
}

/* Delivers r's final event (no token) and frees r. */
static void finish(ms_engine *e, request *r, ms_finish why, ms_status st, const char *msg)
{
    release_slot(e, r);
    ms_token_event ev = {.id = r->id,
                         .token = -1,
                         .text = "",
                         .finish = why,
                         .status = why == MS_FINISH_ERROR ? st : MS_OK,
                         .error = why == MS_FINISH_ERROR ? msg : NULL,
                         .n_prompt = (size_t)r->n_prompt,
                         .n_generated = (size_t)r->n_gen};
    r->fn(&ev, r->user);
    request_free(r);
}

/* ---- submit / cancel / stats --------------------------------------------- */

ms_status ms_engine_submit(ms_engine *e, const ms_request *q, ms_token_fn on_token, void *user, uint64_t *id,
                           ms_error *err)
{
    if (!e || !q || !on_token)
        return ms_seterr(err, MS_ERR_INVALID, "engine: submit needs an engine, a request and a callback");
    if (!q->prompt || q->n_prompt == 0) return ms_seterr(err, MS_ERR_INVALID, "request: prompt is empty");
    if (q->max_tokens <= 0)
        return ms_seterr(err, MS_ERR_INVALID, "request: max_tokens must be > 0, got %d", q->max_tokens);
    if (q->n_prompt > (size_t)e->n_ctx || (size_t)q->max_tokens > (size_t)e->n_ctx - q->n_prompt)
        return ms_seterr(err, MS_ERR_CONTEXT,
                         "request: prompt of %zu tokens + max_tokens %d exceeds the context of %d tokens", q->n_prompt,
                         q->max_tokens, e->n_ctx);
    for (size_t i = 0; i < q->n_prompt; i++)
        if (q->prompt[i] < 0 || q->prompt[i] >= e->em.vocab)
            return ms_seterr(err, MS_ERR_INVALID, "request: prompt token %zu is %d, outside [0, %d)", i,
                             (int)q->prompt[i], e->em.vocab);
    ms_status st = sampler_validate(&q->sampling, e->em.vocab, err);
    if (st != MS_OK) return st;

    request *r = calloc(1, sizeof *r);
    if (!r) return ms_seterr(err, MS_ERR_NOMEM, "engine: out of memory for a request");
    r->slot = -1;
    r->n_prompt = (int)q->n_prompt;
    r->max_tokens = q->max_tokens;
    r->sp = q->sampling;
    r->ignore_eos = q->ignore_eos;
    r->logprobs = q->logprobs;
    r->fn = on_token;
    r->user = user;
    st = stop_init(&r->stop, q->stop, e->piece_cap, err);
    if (st != MS_OK) {
        request_free(r);
        return st;
    }
    r->tokens = malloc(((size_t)r->n_prompt + (size_t)r->max_tokens) * sizeof *r->tokens);
    if (!r->tokens) goto nomem;
    memcpy(r->tokens, q->prompt, q->n_prompt * sizeof *r->tokens);
    if (q->sampling.n_logit_bias > 0) {
        size_t nb = (size_t)q->sampling.n_logit_bias;
        r->bias_ids = malloc(nb * sizeof *r->bias_ids);
        r->bias_vals = malloc(nb * sizeof *r->bias_vals);
        if (!r->bias_ids || !r->bias_vals) goto nomem;
        memcpy(r->bias_ids, q->sampling.logit_bias_ids, nb * sizeof *r->bias_ids);
        memcpy(r->bias_vals, q->sampling.logit_bias_values, nb * sizeof *r->bias_vals);
    }
    r->sp.logit_bias_ids = r->bias_ids;
    r->sp.logit_bias_values = r->bias_vals;

    pthread_mutex_lock(&e->mu);
    if (e->stopping) {
        pthread_mutex_unlock(&e->mu);
        request_free(r);
        return ms_seterr(err, MS_ERR_INVALID, "engine: shutting down, not accepting requests");
    }
    if (e->n_queued + e->n_running >= e->max_seqs + e->max_queue) {
        int queued = e->n_queued, running = e->n_running;
        pthread_mutex_unlock(&e->mu);
        request_free(r);
        return ms_seterr(err, MS_ERR_BUSY, "engine: busy (%d running, %d waiting, queue limit %d)", running, queued,
                         e->max_queue);
    }
    r->id = ++e->next_id;
    if (e->q_tail) e->q_tail->next = r;
    else e->q_head = r;
    e->q_tail = r;
    e->n_queued++;
    if (id) *id = r->id;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    return MS_OK;
nomem:
    request_free(r);
    return ms_seterr(err, MS_ERR_NOMEM, "engine: out of memory for a request of %zu + %d tokens", q->n_prompt,
                     q->max_tokens);
}

/* Flags a queued or running request; the worker finishes it next step. */
ms_status ms_engine_cancel(ms_engine *e, uint64_t id)
{
    if (!e) return MS_ERR_INVALID;
    int found = 0;
    pthread_mutex_lock(&e->mu);
    for (request *r = e->q_head; r && !found; r = r->next)
        if (r->id == id) r->cancel = found = 1;
    for (int i = 0; i < e->max_seqs && !found; i++)
        if (e->slots[i] && e->slots[i]->id == id) e->slots[i]->cancel = found = 1;
    if (found) pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    return found ? MS_OK : MS_ERR_NOTFOUND;
}

/* A consistent snapshot of the counters for /metrics. */
void ms_engine_get_stats(ms_engine *e, ms_engine_stats *out)
{
    memset(out, 0, sizeof *out);
    if (!e) return;
    pthread_mutex_lock(&e->mu);
    out->queued = e->n_queued;
    out->running = e->n_running;
    out->kv_blocks_used = e->kv_used;
    pthread_mutex_unlock(&e->mu);
    out->max_seqs = e->max_seqs;
    out->n_ctx = e->n_ctx;
    out->kv_blocks_total = kv_total(e->kv);
    out->prompt_tokens = atomic_load(&e->prompt_tokens);
    out->generated_tokens = atomic_load(&e->generated_tokens);
}

/* ---- the step ------------------------------------------------------------- */

/* 1 if t is one of the model's stop ids. */
static int is_stop_id(const ms_engine *e, int32_t t)
{
    for (int i = 0; i < e->em.n_stop_ids; i++)
        if (e->em.stop_ids[i] == t) return 1;
    return 0;
}

/* Runs piece through r's stop matcher and appends what it releases to the
 * event text. Returns 1 on a stop-string match, 0 otherwise, -1 on overflow. */
static int text_push(ms_engine *e, request *r, const char *piece, size_t len)
{
    const char *o;
    size_t ol;
    int m = stop_feed(&r->stop, piece, len, &o, &ol);
    if (m < 0 || ol > e->text_cap - e->text_len) return -1;
    memcpy(e->text + e->text_len, o, ol);
    e->text_len += ol;
    return m;
}

/* At the end of generation: flushes the decoder's held bytes and the stop
 * matcher's held tail into the event text. Returns 1 if the flush completed a
 * stop string, -1 on overflow. */
static int text_flush(ms_engine *e, request *r)
{
    int m = 0;
    if (r->stop.matched) return 0;
    size_t fl = e->em.text_flush ? e->em.text_flush(e->em.text_ctx, &r->ts, e->piece, e->piece_cap) : 0;
    if (fl) m = text_push(e, r, e->piece, fl);
    if (m != 0) return m;
    const char *o;
    size_t ol;
    stop_finish(&r->stop, &o, &ol);
    if (ol > e->text_cap - e->text_len) return -1;
    memcpy(e->text + e->text_len, o, ol);
    e->text_len += ol;
    return 0;
}

/* Samples r's next token from its logits row into *tok / *lp (-1 when the
 * row holds NaN or +inf); top alternatives go to r's slot rows. Touches only
 * r's sampler and slot, so sequences can be sampled in parallel. */
static void sample_one(ms_engine *e, request *r, float *logits, int32_t *tok, float *lp)
{
    int n_top = r->sp.top_logprobs;
    size_t o = (size_t)r->slot * MS_MAX_TOP_LOGPROBS;
    *lp = 0.0f;
    *tok = sampler_sample(r->smp, logits, (r->logprobs || n_top) ? lp : NULL, n_top, e->top_ids + o, e->top_lps + o);
}

/* Emits the event of r's sampled token t and finishes r when this token ends
 * it (eos, stop string, length) or its callback asks. */
static void on_token(ms_engine *e, request *r, int32_t t, float lp)
{
    if (t < 0) {
        finish(e, r, MS_FINISH_ERROR, MS_ERR_INTERNAL,
               "engine: the backend returned NaN or +inf logits (or no token can be sampled)");
        return;
    }
    sampler_accept(r->smp, t);
    r->tokens[r->n_prompt + r->n_gen++] = t;
    atomic_fetch_add(&e->generated_tokens, 1);

    ms_finish fin = MS_FINISH_NONE;
    e->text_len = 0;
    int m = 0;
    if (!r->ignore_eos && is_stop_id(e, t)) {
        fin = MS_FINISH_STOP;
    } else {
        size_t pl = e->em.text_feed(e->em.text_ctx, &r->ts, t, e->piece, e->piece_cap);
        m = text_push(e, r, e->piece, pl);
        if (m == 1) fin = MS_FINISH_STOP;
    }
    if (fin == MS_FINISH_NONE && (r->n_gen >= r->max_tokens || r->n_prompt + r->n_gen >= e->n_ctx))
        fin = MS_FINISH_LENGTH;
    if (m >= 0 && fin != MS_FINISH_NONE) {
        m = text_flush(e, r);
        if (m == 1) fin = MS_FINISH_STOP;
    }
    if (m < 0) {
        finish(e, r, MS_FINISH_ERROR, MS_ERR_INTERNAL, "engine: token text overflowed its buffer");
        return;
    }
    size_t o = (size_t)r->slot * MS_MAX_TOP_LOGPROBS;
    ms_token_event ev = {.id = r->id,
                         .token = t,
                         .logprob = lp,
                         .n_top = r->sp.top_logprobs,
                         .top_ids = e->top_ids + o,
                         .top_logprobs = e->top_lps + o,
                         .text = e->text,
                         .text_len = e->text_len,
                         .finish = fin,
                         .status = MS_OK,
                         .n_prompt = (size_t)r->n_prompt,
                         .n_generated = (size_t)r->n_gen};
    if (fin != MS_FINISH_NONE) {
        release_slot(e, r);
        r->fn(&ev, r->user);
        request_free(r);
        return;
    }
    if (r->fn(&ev, r->user) != 0) finish(e, r, MS_FINISH_CANCELLED, MS_OK, NULL);
}

/* One batched forward over every active sequence, then sampling. */
static void step(ms_engine *e)
{
    int n = 0, used = 0;
    for (int i = 0; i < e->max_seqs; i++) { /* decoding sequences: one token each */
        request *r = e->slots[i];
        if (!r || r->n_kv < r->n_prompt) continue;
        e->batch[n] = (fwd_seq){.tokens = r->tokens + r->n_kv,
                                .n_tokens = 1,
                                .pos0 = r->n_kv,
                                .blocks = kv_blocks(e->kv, i),
                                .logits_mode = 1,
                                .logits = e->logits + (size_t)i * (size_t)e->em.vocab};
        e->batch_req[n++] = r;
        used++;
    }
    for (;;) { /* prompt chunks, oldest admission first, while the budget lasts */
        request *pick = NULL;
        for (int i = 0; i < e->max_seqs; i++) {
            request *r = e->slots[i];
            if (!r || r->n_kv >= r->n_prompt) continue;
            int c = r->n_prompt - r->n_kv < e->chunk ? r->n_prompt - r->n_kv : e->chunk;
            int queued = 0;
            for (int j = 0; j < n; j++) queued |= e->batch_req[j] == r;
            if (queued || used + c > e->budget) continue;
            if (!pick || r->admit_seq < pick->admit_seq) pick = r;
        }
        if (!pick) break;
        int c = pick->n_prompt - pick->n_kv < e->chunk ? pick->n_prompt - pick->n_kv : e->chunk;
        e->batch[n] = (fwd_seq){.tokens = pick->tokens + pick->n_kv,
                                .n_tokens = c,
                                .pos0 = pick->n_kv,
                                .blocks = kv_blocks(e->kv, pick->slot),
                                .logits_mode = pick->n_kv + c == pick->n_prompt,
                                .logits = e->logits + (size_t)pick->slot * (size_t)e->em.vocab};
        e->batch_req[n++] = pick;
        used += c;
    }
    if (n == 0) return;
    ms_error err = {0};
    ms_status st = e->em.ops->forward(e->be, e->batch, n, &err);
    if (st != MS_OK) {
        char msg[600];
        snprintf(msg, sizeof msg, "engine: backend forward failed: %s", err.message);
        for (int j = 0; j < n; j++) finish(e, e->batch_req[j], MS_FINISH_ERROR, st, msg);
        return;
    }
    for (int j = 0; j < n; j++) e->batch_req[j]->n_kv += e->batch[j].n_tokens;
        /* sampling is per request (own sampler, RNG and slot rows): in parallel */
#ifdef _OPENMP
    int nt = e->em.n_threads > 0 ? e->em.n_threads : omp_get_max_threads();
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if (n > 1 && nt > 1)
#endif
    for (int j = 0; j < n; j++)
        if (e->batch[j].logits_mode)
            sample_one(e, e->batch_req[j], e->batch[j].logits, &e->sampled[j], &e->sampled_lp[j]);
    /* events in batch order, on this thread */
    for (int j = 0; j < n; j++)
        if (e->batch[j].logits_mode) on_token(e, e->batch_req[j], e->sampled[j], e->sampled_lp[j]);
}

/* Gives an admitted request its sampler and KV blocks; finishes it on failure. */
static void admit(ms_engine *e, request *r)
{
    ms_error err = {0};
    ms_status st = sampler_create(&r->sp, e->em.vocab, e->em.n_valid, r->tokens, (size_t)r->n_prompt, &r->smp, &err);
    if (st == MS_OK) st = kv_reserve(e->kv, r->slot, r->n_prompt + r->max_tokens, &err);
    pthread_mutex_lock(&e->mu);
    e->kv_used = kv_used(e->kv);
    pthread_mutex_unlock(&e->mu);
    if (st != MS_OK) {
        finish(e, r, MS_FINISH_ERROR, st, err.message);
        return;
    }
    atomic_fetch_add(&e->prompt_tokens, (uint64_t)r->n_prompt);
}

/* The worker thread: admit, cancel, step; on shutdown cancel everything. */
static void *worker(void *arg)
{
    ms_engine *e = arg;
    pthread_mutex_lock(&e->mu);
    for (;;) {
        /* queued requests that were cancelled (all of them when stopping) */
        request *dropped = NULL, **link = &e->q_head;
        e->q_tail = NULL;
        while (*link) {
            request *r = *link;
            if (r->cancel || e->stopping) {
                *link = r->next;
                r->next = dropped;
                dropped = r;
                e->n_queued--;
            } else {
                e->q_tail = r;
                link = &r->next;
            }
        }
        int n_adm = 0;
        while (e->q_head && e->n_running < e->max_seqs) {
            request *r = e->q_head;
            e->q_head = r->next;
            if (!e->q_head) e->q_tail = NULL;
            e->n_queued--;
            int slot = 0;
            while (e->slots[slot]) slot++;
            e->slots[slot] = r;
            r->slot = slot;
            r->next = NULL;
            r->admit_seq = e->next_admit++;
            e->n_running++;
            e->admitted[n_adm++] = r;
        }
        int n_kill = 0;
        for (int i = 0; i < e->max_seqs; i++) {
            e->kill[i] = e->slots[i] && (e->slots[i]->cancel || e->stopping);
            n_kill += e->kill[i];
        }
        if (!dropped && n_adm == 0 && e->n_running == 0) {
            if (e->stopping) break;
            pthread_cond_wait(&e->cv, &e->mu);
            continue;
        }
        pthread_mutex_unlock(&e->mu);

        while (dropped) {
            request *r = dropped;
            dropped = r->next;
            finish(e, r, MS_FINISH_CANCELLED, MS_OK, NULL);
        }
        for (int j = 0; j < n_adm; j++) admit(e, e->admitted[j]);
        for (int i = 0; n_kill && i < e->max_seqs; i++)
            if (e->kill[i] && e->slots[i]) finish(e, e->slots[i], MS_FINISH_CANCELLED, MS_OK, NULL);
        step(e);

        pthread_mutex_lock(&e->mu);
    }
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

/* ---- create / free ---------------------------------------------------------- */

void ms_engine_free(ms_engine *e)
{
    if (!e) return;
    if (e->thread_started) {
        pthread_mutex_lock(&e->mu);
        e->stopping = 1;
        pthread_cond_signal(&e->cv);
        pthread_mutex_unlock(&e->mu);
        pthread_join(e->thread, NULL);
        pthread_mutex_destroy(&e->mu);
        pthread_cond_destroy(&e->cv);
    }
    if (e->be) e->em.ops->free(e->be);
    kv_pool_free(e->kv);
    free(e->slots);
    free(e->admitted);
    free(e->kill);
    free(e->logits);
    free(e->batch);
    free(e->batch_req);
    free(e->piece);
    free(e->text);
    free(e->top_ids);
    free(e->top_lps);
    free(e->sampled);
    free(e->sampled_lp);
    free(e);
}

/* Validates the parameters, sizes every buffer, creates the backend and starts the worker. */
ms_status engine_create(const engine_model *em, const ms_engine_params *p, ms_engine **out, ms_error *err)
{
    *out = NULL;
    if (!em || !em->ops || !em->ops->create || !em->ops->forward || !em->ops->free || !em->text_feed ||
        em->vocab <= 0 || em->n_valid <= 0 || em->n_valid > em->vocab || em->max_ctx <= 0 || em->n_stop_ids < 0 ||
        em->n_stop_ids > ENGINE_MAX_STOP_IDS)
        return ms_seterr(err, MS_ERR_INVALID, "engine: incomplete model description");
    ms_engine_params d = ms_engine_params_default();
    if (!p) p = &d;
    int n_ctx = p->n_ctx ? p->n_ctx : (em->max_ctx < 4096 ? em->max_ctx : 4096);
    if (n_ctx < 1 || n_ctx > em->max_ctx)
        return ms_seterr(err, MS_ERR_INVALID, "engine: n_ctx %d outside [1, %d] (max_position_embeddings)", p->n_ctx,
                         em->max_ctx);
    if (p->max_seqs < 1 || p->max_seqs > ENGINE_MAX_SEQS)
        return ms_seterr(err, MS_ERR_INVALID, "engine: max_seqs %d outside [1, %d]", p->max_seqs, ENGINE_MAX_SEQS);
    if (p->max_queue < 0 || p->max_queue > ENGINE_MAX_QUEUE)
        return ms_seterr(err, MS_ERR_INVALID, "engine: max_queue %d outside [0, %d]", p->max_queue, ENGINE_MAX_QUEUE);
    if (p->prefill_chunk < 1 || p->prefill_chunk > ENGINE_MAX_CHUNK)
        return ms_seterr(err, MS_ERR_INVALID, "engine: prefill_chunk %d outside [1, %d]", p->prefill_chunk,
                         ENGINE_MAX_CHUNK);
    int per_seq = (n_ctx + ENGINE_BLOCK_SIZE - 1) / ENGINE_BLOCK_SIZE, n_blocks;
    if (__builtin_mul_overflow(per_seq, p->max_seqs, &n_blocks))
        return ms_seterr(err, MS_ERR_NOMEM, "engine: n_ctx %d x max_seqs %d overflows", n_ctx, p->max_seqs);
    size_t n_logits;
    if (__builtin_mul_overflow((size_t)p->max_seqs, (size_t)em->vocab, &n_logits) ||
        n_logits > SIZE_MAX / sizeof(float))
        return ms_seterr(err, MS_ERR_NOMEM, "engine: logits buffer overflows");

    ms_engine *e = calloc(1, sizeof *e);
    if (!e) return ms_seterr(err, MS_ERR_NOMEM, "engine: out of memory");
    e->em = *em;
    e->n_ctx = n_ctx;
    e->max_seqs = p->max_seqs;
    e->max_queue = p->max_queue;
    e->chunk = p->prefill_chunk;
    e->budget = p->max_seqs + p->prefill_chunk;
    e->piece_cap = em->max_piece < 64 ? 64 : em->max_piece;
    e->text_cap = 2 * (STOP_MAX_LEN + e->piece_cap) + 16;
    ms_status st = kv_pool_create(n_blocks, ENGINE_BLOCK_SIZE, p->max_seqs, per_seq, &e->kv, err);
    if (st != MS_OK) goto fail;
    e->slots = calloc((size_t)p->max_seqs, sizeof *e->slots);
    e->admitted = calloc((size_t)p->max_seqs, sizeof *e->admitted);
    e->kill = calloc((size_t)p->max_seqs, 1);
    e->logits = malloc(n_logits * sizeof *e->logits);
    e->batch = calloc((size_t)p->max_seqs, sizeof *e->batch);
    e->batch_req = calloc((size_t)p->max_seqs, sizeof *e->batch_req);
    e->piece = malloc(e->piece_cap);
    e->text = malloc(e->text_cap);
    e->top_ids = calloc((size_t)p->max_seqs * MS_MAX_TOP_LOGPROBS, sizeof *e->top_ids);
    e->top_lps = calloc((size_t)p->max_seqs * MS_MAX_TOP_LOGPROBS, sizeof *e->top_lps);
    e->sampled = calloc((size_t)p->max_seqs, sizeof *e->sampled);
    e->sampled_lp = calloc((size_t)p->max_seqs, sizeof *e->sampled_lp);
    if (!e->slots || !e->admitted || !e->kill || !e->logits || !e->batch || !e->batch_req || !e->piece || !e->text ||
        !e->top_ids || !e->top_lps || !e->sampled || !e->sampled_lp) {
        st = ms_seterr(err, MS_ERR_NOMEM, "engine: out of memory for %d sequences", p->max_seqs);
        goto fail;
    }
    backend_params bp = {.n_threads = em->n_threads,
                         .max_seqs = p->max_seqs,
                         .max_tokens = e->budget,
                         .n_blocks = n_blocks,
                         .block_size = ENGINE_BLOCK_SIZE,
                         .weights_q8 = em->weights_q8};
    st = em->ops->create(em->m, &bp, &e->be, err);
    if (st != MS_OK) goto fail;
    if (pthread_mutex_init(&e->mu, NULL) != 0) {
        st = ms_seterr(err, MS_ERR_INTERNAL, "engine: mutex init failed");
        goto fail;
    }
    if (pthread_cond_init(&e->cv, NULL) != 0) {
        pthread_mutex_destroy(&e->mu);
        st = ms_seterr(err, MS_ERR_INTERNAL, "engine: condition init failed");
        goto fail;
    }
    if (pthread_create(&e->thread, NULL, worker, e) != 0) {
        pthread_mutex_destroy(&e->mu);
        pthread_cond_destroy(&e->cv);
        st = ms_seterr(err, MS_ERR_INTERNAL, "engine: cannot start the worker thread");
        goto fail;
    }
    e->thread_started = 1;
    *out = e;
    return MS_OK;
fail:
    ms_engine_free(e);
    return st;
}
