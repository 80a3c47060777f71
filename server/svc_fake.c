/* svc_fake.c: a deterministic stand-in for the engine, for tests of the HTTP
 * layer and for load tests without model compute (`medserve --fake-engine`).
 *
 * Tokens: ids 0..255 are single bytes; a few of Qwen3's added tokens keep
 * their ids and strings (<|endoftext|>, <|im_start|>, <|im_end|>, <think>,
 * </think>). Generation: one worker thread, a bounded queue, at most
 * max_seqs sequences advanced one token per step of step_us. A sequence's
 * tokens depend only on its prompt, its seed (or greedy) and the position,
 * never on its neighbours, so batch invariance holds by construction. After a
 * chat prompt with thinking on, output opens with a <think> block. Stop
 * strings are refused: matching them is the real engine's job. It does not
 * model any real language model. svc_free (for any service) lives here too,
 * since this file is always built. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/err.h"
#include "svc.h"

#define FAKE_VOCAB 151936
#define FAKE_KV_BLOCK 16
#define FAKE_MAX_TOP 20

enum { ID_EOT = 151643, ID_IM_START = 151644, ID_IM_END = 151645, ID_THINK = 151667, ID_THINK_END = 151668 };

typedef struct fake_special {
    int32_t id;
    const char *text;
    int special; /* skipped by skip_special */
} fake_special;

static const fake_special SPECIALS[] = {
    {ID_EOT, "<|endoftext|>", 1}, {ID_IM_START, "<|im_start|>", 1}, {ID_IM_END, "<|im_end|>", 1},
    {ID_THINK, "<think>", 0},     {ID_THINK_END, "</think>", 0},
};
#define N_SPECIALS (sizeof SPECIALS / sizeof SPECIALS[0])

typedef struct fseq {
    uint64_t id;
    uint64_t h; /* hash of prompt and seed: the sequence's identity */
    int think;  /* 1: emit a <think> block first */
    size_t n_prompt;
    int max_tokens, n_gen, answer_len, think_len;
    int logprobs, top_logprobs;
    int cancelled;
    ms_token_fn fn;
    void *user;
    struct fseq *next;
} fseq;

typedef struct fake {
    svc_fake_params p;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    int stop;
    uint64_t next_id;
    fseq *queued, *running; /* singly linked, FIFO by append */
    int n_queued, n_running;
    uint64_t prompt_tokens, generated_tokens;
} fake;

/* 64-bit mix (splitmix64 finaliser). */
static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* Appends id to a growing array; returns 0 on allocation failure. */
static int ids_push(int32_t **ids, size_t *n, size_t *cap, int32_t id)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        int32_t *p = realloc(*ids, nc * sizeof *p);
        if (!p) return 0;
        *ids = p;
        *cap = nc;
    }
    (*ids)[(*n)++] = id;
    return 1;
}

/* Encodes text: bytes, plus added tokens when allow_special. */
static int encode_append(const char *text, size_t len, int allow_special, int32_t **ids, size_t *n, size_t *cap)
{
    size_t i = 0;
    while (i < len) {
        int matched = 0;
        if (allow_special && text[i] == '<') {
            for (size_t k = 0; k < N_SPECIALS; k++) {
                size_t sl = strlen(SPECIALS[k].text);
                if (sl <= len - i && !memcmp(text + i, SPECIALS[k].text, sl)) {
                    if (!ids_push(ids, n, cap, SPECIALS[k].id)) return 0;
                    i += sl;
                    matched = 1;
                    break;
                }
            }
        }
        if (matched) continue;
        if (!ids_push(ids, n, cap, (unsigned char)text[i])) return 0;
        i++;
    }
    return 1;
}

/* Tokenize: see encode_append. */
static ms_status fake_tokenize(void *self, const char *text, size_t len, int allow_special, int32_t **ids,
                               size_t *n_ids, ms_error *err)
{
    (void)self;
    size_t n = 0, cap = 0;
    int32_t *out = NULL;
    if (!encode_append(text, len, allow_special, &out, &n, &cap)) {
        free(out);
        return ms_seterr(err, MS_ERR_NOMEM, "fake tokenizer: out of memory");
    }
    *ids = out;
    *n_ids = n;
    return MS_OK;
}

/* Text of one id ("" for ids without text); special says whether to skip it. */
static const char *id_text(int32_t id, char byte[2], int *special)
{
    *special = 0;
    if (id >= 0 && id < 256) {
        byte[0] = (char)id;
        byte[1] = 0;
        return byte;
    }
    for (size_t k = 0; k < N_SPECIALS; k++)
        if (SPECIALS[k].id == id) {
            *special = SPECIALS[k].special;
            return SPECIALS[k].text;
        }
    return "";
}

/* Detokenize: concatenates the ids' texts. */
static ms_status fake_detokenize(void *self, const int32_t *ids, size_t n_ids, int skip_special, char **text,
                                 size_t *len, ms_error *err)
{
    (void)self;
    size_t cap = 1, n = 0;
    for (size_t i = 0; i < n_ids; i++) {
        if (ids[i] < 0 || ids[i] >= FAKE_VOCAB)
            return ms_seterr(err, MS_ERR_INVALID, "detokenize: id %d out of range [0, %d)", (int)ids[i], FAKE_VOCAB);
        cap += 16;
    }
    char *out = malloc(cap);
    if (!out) return ms_seterr(err, MS_ERR_NOMEM, "fake detokenize: out of memory");
    for (size_t i = 0; i < n_ids; i++) {
        char b[2];
        int sp;
        const char *t = id_text(ids[i], b, &sp);
        size_t tl = ids[i] < 256 ? 1 : strlen(t);
        if (sp && skip_special) continue;
        memcpy(out + n, t, tl);
        n += tl;
    }
    out[n] = 0;
    *text = out;
    *len = n;
    return MS_OK;
}

/* Renders messages in Qwen3's shape; message text never yields added tokens. */
static ms_status fake_chat_tokenize(void *self, const ms_message *msgs, size_t n_msgs, int add_generation_prompt,
                                    int enable_thinking, int32_t **ids, size_t *n_ids, ms_error *err)
{
    (void)self;
    size_t n = 0, cap = 0;
    int32_t *out = NULL;
    int ok = 1;
    for (size_t i = 0; i < n_msgs && ok; i++) {
        const char *role = msgs[i].role ? msgs[i].role : "";
        const char *content = msgs[i].content ? msgs[i].content : "";
        if (strcmp(role, "system") && strcmp(role, "user") && strcmp(role, "assistant") && strcmp(role, "tool")) {
            free(out);
            return ms_seterr(err, MS_ERR_INVALID, "messages[%zu].role: unknown role '%s'", i, role);
        }
        ok = ids_push(&out, &n, &cap, ID_IM_START) && encode_append(role, strlen(role), 0, &out, &n, &cap) &&
             ids_push(&out, &n, &cap, '\n') && encode_append(content, strlen(content), 0, &out, &n, &cap) &&
             ids_push(&out, &n, &cap, ID_IM_END) && ids_push(&out, &n, &cap, '\n');
    }
    if (ok && add_generation_prompt) {
        ok = ids_push(&out, &n, &cap, ID_IM_START) && encode_append("assistant\n", 10, 0, &out, &n, &cap);
        if (ok && enable_thinking == 0)
            ok = ids_push(&out, &n, &cap, ID_THINK) && encode_append("\n\n", 2, 0, &out, &n, &cap) &&
                 ids_push(&out, &n, &cap, ID_THINK_END) && encode_append("\n\n", 2, 0, &out, &n, &cap);
    }
    if (!ok) {
        free(out);
        return ms_seterr(err, MS_ERR_NOMEM, "fake chat: out of memory");
    }
    *ids = out;
    *n_ids = n;
    return MS_OK;
}

/* Greedy unless a temperature is given, like generation_config without do_sample. */
static ms_sampling fake_sampling_default(void *self)
{
    (void)self;
    ms_sampling s;
    memset(&s, 0, sizeof s);
    s.greedy = 1;
    s.temperature = 1.0f;
    s.top_p = 1.0f;
    s.repetition_penalty = 1.0f;
    return s;
}

/* Appends q to the list *head. */
static void list_append(fseq **head, fseq *q)
{
    q->next = NULL;
    while (*head) head = &(*head)->next;
    *head = q;
}

/* Queues a request; see svc_ops.submit. */
static ms_status fake_submit(void *self, const ms_request *r, ms_token_fn fn, void *user, uint64_t *id, ms_error *err)
{
    fake *f = self;
    if (!r || !fn || r->n_prompt == 0 || !r->prompt) return ms_seterr(err, MS_ERR_INVALID, "submit: empty prompt");
    if (r->max_tokens <= 0) return ms_seterr(err, MS_ERR_INVALID, "submit: max_tokens must be > 0");
    if (r->stop[0]) return ms_seterr(err, MS_ERR_UNSUPPORTED, "submit: the fake engine has no stop strings");
    if (r->n_prompt > (size_t)f->p.n_ctx || (size_t)r->max_tokens > (size_t)f->p.n_ctx - r->n_prompt)
        return ms_seterr(err, MS_ERR_CONTEXT, "submit: prompt (%zu tokens) + max_tokens (%d) > context (%d)",
                         r->n_prompt, r->max_tokens, f->p.n_ctx);
    for (size_t i = 0; i < r->n_prompt; i++)
        if (r->prompt[i] < 0 || r->prompt[i] >= FAKE_VOCAB)
            return ms_seterr(err, MS_ERR_INVALID, "submit: prompt[%zu] = %d out of range", i, (int)r->prompt[i]);
    fseq *q = calloc(1, sizeof *q);
    if (!q) return ms_seterr(err, MS_ERR_NOMEM, "submit: out of memory");
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < r->n_prompt; i++) h = mix(h ^ (uint32_t)r->prompt[i]);
    q->h = r->sampling.greedy ? h : mix(h ^ mix(r->sampling.seed + 1));
    /* thinking on: the prompt ends with "<|im_start|>assistant\n" */
    static const char tail[] = "assistant\n";
    size_t tl = sizeof tail - 1;
    if (r->n_prompt > tl && r->prompt[r->n_prompt - tl - 1] == ID_IM_START) {
        q->think = 1;
        for (size_t i = 0; i < tl; i++)
            if (r->prompt[r->n_prompt - tl + i] != (unsigned char)tail[i]) q->think = 0;
    }
    q->n_prompt = r->n_prompt;
    q->max_tokens = r->max_tokens;
    q->think_len = 4 + (int)(q->h % 6);
    q->answer_len = 6 + (int)((q->h >> 8) % 20);
    q->logprobs = r->logprobs;
    q->top_logprobs = r->sampling.top_logprobs;
    if (q->top_logprobs < 0 || q->top_logprobs > FAKE_MAX_TOP) {
        free(q);
        return ms_seterr(err, MS_ERR_INVALID, "submit: top_logprobs out of range");
    }
    q->fn = fn;
    q->user = user;
    pthread_mutex_lock(&f->mu);
    if (f->stop) {
        pthread_mutex_unlock(&f->mu);
        free(q);
        return ms_seterr(err, MS_ERR_BUSY, "submit: engine is shutting down");
    }
    if (f->n_queued >= f->p.max_queue) {
        pthread_mutex_unlock(&f->mu);
        free(q);
        return ms_seterr(err, MS_ERR_BUSY, "submit: queue full (%d waiting)", f->p.max_queue);
    }
    q->id = ++f->next_id;
    list_append(&f->queued, q);
    f->n_queued++;
    if (id) *id = q->id;
    pthread_cond_signal(&f->cv);
    pthread_mutex_unlock(&f->mu);
    return MS_OK;
}

/* Marks a queued or running sequence cancelled; its final event follows. */
static ms_status fake_cancel(void *self, uint64_t id)
{
    fake *f = self;
    ms_status st = MS_ERR_NOTFOUND;
    pthread_mutex_lock(&f->mu);
    for (int l = 0; l < 2; l++)
        for (fseq *q = l ? f->running : f->queued; q; q = q->next)
            if (q->id == id) {
                q->cancelled = 1;
                st = MS_OK;
            }
    pthread_cond_signal(&f->cv);
    pthread_mutex_unlock(&f->mu);
    return st;
}

/* Engine counters for /metrics. */
static void fake_stats(void *self, ms_engine_stats *out)
{
    fake *f = self;
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&f->mu);
    out->queued = f->n_queued;
    out->running = f->n_running;
    out->max_seqs = f->p.max_seqs;
    out->n_ctx = f->p.n_ctx;
    for (fseq *q = f->running; q; q = q->next)
        out->kv_blocks_used += (q->n_prompt + (size_t)q->n_gen + FAKE_KV_BLOCK - 1) / FAKE_KV_BLOCK;
    out->kv_blocks_total = (size_t)f->p.max_seqs * (((size_t)f->p.n_ctx + FAKE_KV_BLOCK - 1) / FAKE_KV_BLOCK);
    out->prompt_tokens = f->prompt_tokens;
    out->generated_tokens = f->generated_tokens;
    pthread_mutex_unlock(&f->mu);
}

/* The token at position pos of q and whether it ends the sequence (eos). */
static int32_t next_token(const fseq *q, int pos, int *eos)
{
    *eos = 0;
    if (q->think) {
        if (pos == 0) return ID_THINK;
        if (pos == 1) return '\n';
        if (pos < 2 + q->think_len) return 'a' + (int)(mix(q->h ^ (uint64_t)pos) % 26);
        if (pos == 2 + q->think_len) return '\n';
        if (pos == 3 + q->think_len) return ID_THINK_END;
        if (pos == 4 + q->think_len || pos == 5 + q->think_len) return '\n';
        pos -= 6 + q->think_len;
    }
    if (pos >= q->answer_len) {
        *eos = 1;
        return ID_IM_END;
    }
    uint64_t r = mix(q->h ^ (uint64_t)(pos + 1000));
    return (r % 5 == 0) ? ' ' : 'a' + (int)((r >> 8) % 26);
}

/* Emits q's final event. */
static void emit_final(fseq *q, ms_finish finish)
{
    ms_token_event ev;
    memset(&ev, 0, sizeof ev);
    ev.id = q->id;
    ev.token = -1;
    ev.text = "";
    ev.finish = finish;
    ev.status = finish == MS_FINISH_CANCELLED ? MS_ERR_CANCELLED : MS_OK;
    ev.n_prompt = q->n_prompt;
    ev.n_generated = (size_t)q->n_gen;
    q->fn(&ev, q->user);
}

/* Advances q by one token; returns nonzero when q is finished (final event sent). */
static int step_seq(fake *f, fseq *q)
{
    pthread_mutex_lock(&f->mu);
    int cancelled = q->cancelled;
    int fault = f->p.fault_after > 0 && f->generated_tokens >= (uint64_t)f->p.fault_after;
    pthread_mutex_unlock(&f->mu);
    if (fault) {
        ms_token_event ev;
        memset(&ev, 0, sizeof ev);
        ev.id = q->id;
        ev.token = -1;
        ev.text = "";
        ev.finish = MS_FINISH_ERROR;
        ev.status = MS_ERR_INTERNAL;
        ev.error = "fake engine: injected fault";
        ev.n_prompt = q->n_prompt;
        ev.n_generated = (size_t)q->n_gen;
        q->fn(&ev, q->user);
        return 1;
    }
    if (cancelled) {
        emit_final(q, MS_FINISH_CANCELLED);
        return 1;
    }
    int eos;
    int32_t tok = next_token(q, q->n_gen, &eos);
    if (eos) {
        emit_final(q, MS_FINISH_STOP);
        return 1;
    }
    q->n_gen++;
    pthread_mutex_lock(&f->mu);
    f->generated_tokens++;
    pthread_mutex_unlock(&f->mu);
    int32_t top_ids[FAKE_MAX_TOP];
    float top_lps[FAKE_MAX_TOP];
    float lp = -0.05f - (float)(mix(q->h ^ (uint64_t)q->n_gen) % 100) / 100.0f;
    for (int k = 0; k < q->top_logprobs; k++) {
        top_ids[k] = k == 0 ? tok : 'a' + (tok + k) % 26;
        top_lps[k] = lp - (float)k;
    }
    char b[2];
    int sp;
    const char *t = id_text(tok, b, &sp);
    ms_token_event ev;
    memset(&ev, 0, sizeof ev);
    ev.id = q->id;
    ev.token = tok;
    ev.logprob = lp;
    ev.n_top = q->top_logprobs;
    ev.top_ids = top_ids;
    ev.top_logprobs = top_lps;
    ev.text = t;
    ev.text_len = tok < 256 ? 1 : strlen(t);
    ev.finish = q->n_gen >= q->max_tokens ? MS_FINISH_LENGTH : MS_FINISH_NONE;
    ev.status = MS_OK;
    ev.n_prompt = q->n_prompt;
    ev.n_generated = (size_t)q->n_gen;
    if (q->fn(&ev, q->user) && ev.finish == MS_FINISH_NONE) {
        pthread_mutex_lock(&f->mu);
        q->cancelled = 1;
        pthread_mutex_unlock(&f->mu);
    }
    return ev.finish != MS_FINISH_NONE;
}

/* The worker: admits queued sequences, advances running ones, sleeps a step. */
static void *fake_main(void *arg)
{
    fake *f = arg;
    for (;;) {
        pthread_mutex_lock(&f->mu);
        while (!f->stop && !f->queued && !f->running) pthread_cond_wait(&f->cv, &f->mu);
        if (f->stop && !f->queued && !f->running) {
            pthread_mutex_unlock(&f->mu);
            break;
        }
        while (f->queued && (f->n_running < f->p.max_seqs || f->queued->cancelled || f->stop)) {
            fseq *q = f->queued;
            f->queued = q->next;
            f->n_queued--;
            if (f->stop) q->cancelled = 1;
            list_append(&f->running, q);
            f->n_running++;
            f->prompt_tokens += q->n_prompt;
        }
        if (f->stop)
            for (fseq *q = f->running; q; q = q->next) q->cancelled = 1;
        fseq *run = f->running;
        pthread_mutex_unlock(&f->mu);
        /* callbacks run unlocked; only this thread unlinks from running */
        for (fseq *q = run, *nx; q; q = nx) {
            nx = q->next;
            if (step_seq(f, q)) {
                pthread_mutex_lock(&f->mu);
                fseq **pp = &f->running;
                while (*pp != q) pp = &(*pp)->next;
                *pp = q->next;
                f->n_running--;
                pthread_mutex_unlock(&f->mu);
                free(q);
            }
        }
        struct timespec ts = {f->p.step_us / 1000000, (long)(f->p.step_us % 1000000) * 1000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

/* Stops the worker (cancelling everything, final events delivered) and frees. */
static void fake_free(void *self)
{
    fake *f = self;
    if (!f) return;
    pthread_mutex_lock(&f->mu);
    f->stop = 1;
    pthread_cond_signal(&f->cv);
    pthread_mutex_unlock(&f->mu);
    pthread_join(f->thread, NULL);
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->cv);
    free(f);
}

static const svc_ops FAKE_OPS = {
    fake_tokenize, fake_detokenize, fake_chat_tokenize, fake_sampling_default,
    fake_submit,   fake_cancel,     fake_stats,         fake_free,
};

/* Starts the fake engine's worker thread. */
ms_status svc_fake_open(const svc_fake_params *p, svc **out, ms_error *err)
{
    *out = NULL;
    if (p->n_ctx <= 0 || p->max_seqs <= 0 || p->max_queue < 0 || p->step_us < 0)
        return ms_seterr(err, MS_ERR_INVALID, "fake engine: bad parameters");
    svc *s = calloc(1, sizeof *s);
    fake *f = calloc(1, sizeof *f);
    if (!s || !f) {
        free(s);
        free(f);
        return ms_seterr(err, MS_ERR_NOMEM, "fake engine: out of memory");
    }
    f->p = *p;
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    if (pthread_create(&f->thread, NULL, fake_main, f)) {
        pthread_mutex_destroy(&f->mu);
        pthread_cond_destroy(&f->cv);
        free(s);
        free(f);
        return ms_seterr(err, MS_ERR_NOMEM, "fake engine: cannot start its thread");
    }
    s->ops = &FAKE_OPS;
    s->self = f;
    s->vocab_size = FAKE_VOCAB;
    s->n_ctx = p->n_ctx;
    s->think_open_id = ID_THINK;
    s->think_close_id = ID_THINK_END;
    strcpy(s->manifest_sha256, "");
    *out = s;
    return MS_OK;
}

/* Frees the service through its ops; NULL-safe. */
void svc_free(svc *s)
{
    if (!s) return;
    if (s->ops && s->self) s->ops->free(s->self);
    free(s);
}
