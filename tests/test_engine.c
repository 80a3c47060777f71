/* test_engine.c: the engine against a fake backend whose logits are a
 * deterministic function of the sequence's tokens, read back from its own
 * block-table KV memory (so wrong positions or block tables change the
 * output). Covers greedy output against a direct computation, batch
 * invariance (8 prompts together vs alone, greedy and seeded sampling),
 * chunked prefill interleaved with decoding, eos / ignore_eos, stop strings
 * across token boundaries, cancellation (callback and API, running and
 * queued), the bounded queue, context checks, backend errors and NaN logits,
 * log-probabilities, shutdown with requests in flight, and exactly one final
 * event per accepted request under random cancels. Nothing depends on timing:
 * where a case needs requests running or queued at some moment, the fake
 * backend holds the worker at a chosen forward call (the gate) until the case
 * releases it, and state the worker reaches later is waited for. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "base/err.h"
#include "engine/engine.h"
#include "engine/kv.h"
#include "util.h"

#define V 64
#define N_VALID 60
#define EOS 2
#define MAX_CALLS 8192

/* ---- the fake backend ------------------------------------------------------ */

static struct {
    int eos_at;    /* sequence length at which eos is favoured (0: never) */
    int nan_at;    /* sequence length at which logits get a NaN (0: never) */
    int fail_call; /* forward call number that fails (0: never) */
    int hold_call; /* forward call number that waits in the gate until gate_release (0: never) */
    int delay_us;  /* sleep per forward call */
    /* recorded by forward (read after the requests finished) */
    int n_calls, max_total, max_seq_tokens;
    int calls_mixed; /* calls holding both a decode token and a full prefill chunk */
    int chunk;       /* the engine's prefill_chunk, to recognise full chunks */
} fake;

struct backend {
    int max_seqs, max_tokens, n_pos, block_size;
    int32_t *kv; /* [n_blocks * block_size] token at each cached position */
};

static uint64_t mix(uint64_t h, uint64_t x)
{
    h ^= x + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2);
    h *= 0xFF51AFD7ED558CCDull;
    return h ^ (h >> 33);
}

/* The fake model: logits after the sequence toks[0..n). */
static void fake_logits(const int32_t *toks, int n, float *out)
{
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < n; i++) h = mix(h, (uint64_t)toks[i]);
    for (int v = 0; v < V; v++) out[v] = (float)((mix(h, (uint64_t)v) >> 40) % 1000) / 100.0f - 5.0f;
    out[10 + h % 50] += 6.0f; /* a clear favourite, so greedy has margins */
    out[EOS] = (fake.eos_at && n == fake.eos_at) ? 20.0f : -10.0f;
    for (int v = N_VALID; v < V; v++) out[v] = 30.0f; /* ids without text: never sampled */
    if (fake.nan_at && n == fake.nan_at) out[5] = NAN;
}

/* The gate: forward call fake.hold_call waits here until the case calls
 * gate_release, so the case acts while the worker provably holds still
 * (requests running or queued, none able to finish) instead of after a sleep. */
static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int held, released;
} gate = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};

/* Called by fake_forward for the held call: waits until released. */
static void gate_hold(void)
{
    pthread_mutex_lock(&gate.mu);
    gate.held = 1;
    while (!gate.released) pthread_cond_wait(&gate.cv, &gate.mu);
    gate.held = 0;
    pthread_mutex_unlock(&gate.mu);
}

/* Lets the held call (or the call still to come) go on. */
static void gate_release(void)
{
    pthread_mutex_lock(&gate.mu);
    gate.released = 1;
    pthread_cond_broadcast(&gate.cv);
    pthread_mutex_unlock(&gate.mu);
}

/* ut_wait_until predicate: the worker waits in the gate. */
static int gate_is_held(void *unused)
{
    (void)unused;
    pthread_mutex_lock(&gate.mu);
    int h = gate.held;
    pthread_mutex_unlock(&gate.mu);
    return h;
}

static ms_status fake_create(const model *m, const backend_params *p, backend **out, ms_error *err)
{
    (void)m;
    backend *b = calloc(1, sizeof *b);
    b->max_seqs = p->max_seqs;
    b->max_tokens = p->max_tokens;
    b->block_size = p->block_size;
    b->n_pos = p->n_blocks * p->block_size;
    b->kv = malloc((size_t)b->n_pos * sizeof *b->kv);
    for (int i = 0; i < b->n_pos; i++) b->kv[i] = -1;
    *out = b;
    (void)err;
    return MS_OK;
}

static ms_status fake_forward(backend *b, const fwd_seq *seqs, int n, ms_error *err)
{
    int call = ++fake.n_calls;
    if (fake.hold_call && call == fake.hold_call) gate_hold();
    if (fake.delay_us) usleep((useconds_t)fake.delay_us);
    if (fake.fail_call && call == fake.fail_call)
        return ms_seterr(err, MS_ERR_INTERNAL, "fake backend: injected failure at call %d", call);
    if (n < 1 || n > b->max_seqs) return ms_seterr(err, MS_ERR_INVALID, "fake backend: %d sequences", n);
    int total = 0, has_decode = 0, has_chunk = 0;
    for (int s = 0; s < n; s++) {
        total += seqs[s].n_tokens;
        if (seqs[s].n_tokens > fake.max_seq_tokens) fake.max_seq_tokens = seqs[s].n_tokens;
        has_decode |= seqs[s].n_tokens == 1 && seqs[s].logits_mode;
        has_chunk |= seqs[s].n_tokens == fake.chunk;
    }
    if (total > fake.max_total) fake.max_total = total;
    if (has_decode && has_chunk) fake.calls_mixed++;
    if (total > b->max_tokens)
        return ms_seterr(err, MS_ERR_INVALID, "fake backend: %d tokens > %d", total, b->max_tokens);
    int32_t seq[2048];
    for (int s = 0; s < n; s++) {
        const fwd_seq *q = &seqs[s];
        int end = q->pos0 + q->n_tokens;
        if (end > 2048) return ms_seterr(err, MS_ERR_INVALID, "fake backend: sequence too long");
        for (int i = 0; i < q->n_tokens; i++) {
            int pos = q->pos0 + i;
            b->kv[q->blocks[pos / b->block_size] * b->block_size + pos % b->block_size] = q->tokens[i];
        }
        for (int pos = 0; pos < end; pos++)
            seq[pos] = b->kv[q->blocks[pos / b->block_size] * b->block_size + pos % b->block_size];
        if (q->logits_mode == 1) fake_logits(seq, end, q->logits);
    }
    return MS_OK;
}

static void fake_free(backend *b)
{
    if (!b) return;
    free(b->kv);
    free(b);
}

static const backend_ops fake_ops = {.name = "fake", .create = fake_create, .forward = fake_forward, .free = fake_free};

/* Token text: two letters per id, eos "<eos>", ids without text "". */
static size_t fake_text(int32_t id, char *out)
{
    if (id == EOS) {
        memcpy(out, "<eos>", 5);
        return 5;
    }
    if (id < 0 || id >= N_VALID) return 0;
    out[0] = (char)('a' + id % 7);
    out[1] = (char)('a' + (id * 3) % 11);
    return 2;
}

static size_t fake_feed(void *ctx, tok_stream *s, int32_t id, char *out, size_t cap)
{
    (void)ctx;
    (void)s;
    (void)cap;
    return fake_text(id, out);
}

static ms_engine *make_engine(int max_seqs, int max_queue, int chunk, int n_ctx)
{
    engine_model em = {.ops = &fake_ops,
                       .vocab = V,
                       .n_valid = N_VALID,
                       .max_ctx = 1024,
                       .stop_ids = {EOS},
                       .n_stop_ids = 1,
                       .text_feed = fake_feed,
                       .max_piece = 16};
    ms_engine_params p = {.n_ctx = n_ctx, .max_seqs = max_seqs, .max_queue = max_queue, .prefill_chunk = chunk};
    ms_engine *e = NULL;
    ms_error err = {0};
    fake.chunk = chunk;
    CHECK(engine_create(&em, &p, &e, &err) == MS_OK, "engine_create: %s", err.message);
    return e;
}

/* ---- collecting events -------------------------------------------------------- */

typedef struct collector {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t id;
    int32_t tokens[1100];
    float lps[1100];
    int n_tokens, n_events, n_final, events_after_final;
    char text[4096];
    size_t text_len;
    ms_token_event final;
    char error[600];
    int cancel_after; /* return 1 from the callback at this many tokens (0: never) */
    int32_t top0[1100];
    int32_t tops[64][3];
    float top_lps[64][3];
    int n_top_seen;
} collector;

static void coll_init(collector *c)
{
    memset(c, 0, sizeof *c);
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
}

static void coll_destroy(collector *c)
{
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
}

static int on_event(const ms_token_event *ev, void *user)
{
    collector *c = user;
    int rc = 0;
    pthread_mutex_lock(&c->mu);
    if (c->n_final) c->events_after_final++;
    c->n_events++;
    if (ev->token >= 0 && c->n_tokens < 1100) {
        c->lps[c->n_tokens] = ev->logprob;
        c->top0[c->n_tokens] = ev->n_top > 0 ? ev->top_ids[0] : -1;
        if (c->n_tokens < 64 && ev->n_top >= 3) {
            for (int k = 0; k < 3; k++) {
                c->tops[c->n_tokens][k] = ev->top_ids[k];
                c->top_lps[c->n_tokens][k] = ev->top_logprobs[k];
            }
            c->n_top_seen++;
        }
        c->tokens[c->n_tokens++] = ev->token;
    }
    if (ev->text_len && c->text_len + ev->text_len < sizeof c->text) {
        memcpy(c->text + c->text_len, ev->text, ev->text_len);
        c->text_len += ev->text_len;
    }
    if (ev->finish != MS_FINISH_NONE) {
        c->n_final++;
        c->final = *ev;
        snprintf(c->error, sizeof c->error, "%s", ev->error ? ev->error : "");
        pthread_cond_broadcast(&c->cv);
    } else if (c->cancel_after && c->n_tokens >= c->cancel_after) {
        rc = 1;
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

/* Waits (up to UT_WAIT_S) for the final event. */
static int coll_wait(collector *c)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += (time_t)UT_WAIT_S;
    pthread_mutex_lock(&c->mu);
    while (!c->n_final)
        if (pthread_cond_timedwait(&c->cv, &c->mu, &dl) != 0) break;
    int ok = c->n_final == 1;
    pthread_mutex_unlock(&c->mu);
    return ok;
}

static ms_request greedy_req(const int32_t *prompt, int n, int max_tokens)
{
    ms_request r = {.prompt = prompt, .n_prompt = (size_t)n, .max_tokens = max_tokens};
    r.sampling = (ms_sampling){.greedy = 1, .temperature = 1.0f, .top_p = 1.0f, .repetition_penalty = 1.0f};
    return r;
}

static ms_status submit(ms_engine *e, const ms_request *r, collector *c)
{
    ms_error err = {0};
    ms_status st = ms_engine_submit(e, r, on_event, c, &c->id, &err);
    CHECK(st == MS_OK, "submit: %s", err.message);
    return st;
}

/* Greedy continuation computed directly from the fake model. */
static int reference_greedy(const int32_t *prompt, int n, int max_tokens, int32_t *out)
{
    int32_t seq[2048];
    memcpy(seq, prompt, (size_t)n * sizeof *seq);
    float l[V];
    for (int k = 0; k < max_tokens; k++) {
        fake_logits(seq, n + k, l);
        int best = 0;
        for (int v = 1; v < N_VALID; v++)
            if (l[v] > l[best]) best = v;
        out[k] = best;
        seq[n + k] = best;
        if (best == EOS) return k + 1;
    }
    return max_tokens;
}

static void make_prompt(int32_t *p, int n, int salt)
{
    for (int i = 0; i < n; i++) p[i] = 10 + (int32_t)((i * 7 + salt * 13) % 50);
}

/* Resets the fake's settings, counters and gate (the worker is not running). */
static void reset_fake(void)
{
    memset(&fake, 0, sizeof fake);
    pthread_mutex_lock(&gate.mu);
    gate.held = gate.released = 0;
    pthread_mutex_unlock(&gate.mu);
}

/* ut_wait_until predicate: nothing running, queued or holding KV blocks. */
static int engine_idle(void *e)
{
    ms_engine_stats s;
    ms_engine_get_stats(e, &s);
    return s.running == 0 && s.queued == 0 && s.kv_blocks_used == 0;
}

/* ---- tests ------------------------------------------------------------------------ */

static void t_greedy(void)
{
    reset_fake();
    ms_engine *e = make_engine(4, 8, 8, 256);
    int32_t prompt[21], want[30];
    make_prompt(prompt, 21, 1);
    reference_greedy(prompt, 21, 30, want);
    collector c;
    coll_init(&c);
    ms_request r = greedy_req(prompt, 21, 30);
    if (e && submit(e, &r, &c) == MS_OK) {
        CHECK(coll_wait(&c), "no single final event");
        CHECK(c.n_tokens == 30 && !memcmp(c.tokens, want, sizeof want), "tokens differ from the direct computation");
        CHECK(c.final.finish == MS_FINISH_LENGTH && c.final.n_generated == 30 && c.final.n_prompt == 21,
              "final: finish %d, %zu generated, %zu prompt", c.final.finish, c.final.n_generated, c.final.n_prompt);
        char text[64];
        size_t tl = 0;
        for (int k = 0; k < 30; k++) tl += fake_text(want[k], text + tl);
        CHECK(c.text_len == tl && !memcmp(c.text, text, tl), "text '%.*s'", (int)c.text_len, c.text);
        CHECK(fake.max_seq_tokens <= 8, "a prefill chunk of %d tokens > 8", fake.max_seq_tokens);
        /* the worker frees the slot around the final event: wait for it, then read */
        CHECK(ut_wait_until(engine_idle, e, UT_WAIT_S), "engine not idle within %.0f s", UT_WAIT_S);
        ms_engine_stats s;
        ms_engine_get_stats(e, &s);
        CHECK(s.running == 0 && s.queued == 0 && s.kv_blocks_used == 0 && s.prompt_tokens == 21 &&
                  s.generated_tokens == 30 && s.kv_blocks_total == 4 * 16 && s.n_ctx == 256,
              "stats: running %d queued %d kv %zu/%zu prompt %llu gen %llu", s.running, s.queued, s.kv_blocks_used,
              s.kv_blocks_total, (unsigned long long)s.prompt_tokens, (unsigned long long)s.generated_tokens);
    }
    ms_engine_free(e);
    coll_destroy(&c);
}

/* Runs the 8 requests together (all at once) or alone (one after another).
 * Together: the first forward call holds in the gate until all 8 are
 * submitted, so they are batched however the threads are scheduled. */
static void run_eight(int together, int sample, collector *c)
{
    if (together) fake.hold_call = 1;
    ms_engine *e = make_engine(8, 8, 16, 512);
    static int32_t prompts[8][300];
    const int lens[8] = {3, 17, 250, 40, 1, 99, 16, 161};
    ms_request r[8];
    for (int i = 0; i < 8; i++) {
        make_prompt(prompts[i], lens[i], i + 5);
        r[i] = greedy_req(prompts[i], lens[i], 40 + i * 5);
        r[i].logprobs = 1;
        if (sample)
            r[i].sampling = (ms_sampling){.temperature = 0.9f,
                                          .top_k = 12,
                                          .top_p = 0.9f,
                                          .repetition_penalty = 1.1f,
                                          .seed = 1000 + (uint64_t)i};
        coll_init(&c[i]);
    }
    for (int i = 0; e && i < 8; i++) {
        if (submit(e, &r[i], &c[i]) != MS_OK) continue;
        if (!together) CHECK(coll_wait(&c[i]), "request %d: no final event", i);
    }
    if (together) gate_release();
    for (int i = 0; e && i < 8; i++) CHECK(coll_wait(&c[i]), "request %d: no final event", i);
    ms_engine_free(e);
}

static void t_batch_invariance(void)
{
    for (int sample = 0; sample < 2; sample++) {
        static collector alone[8], together[8];
        reset_fake();
        run_eight(0, sample, alone);
        int calls_alone = fake.n_calls;
        reset_fake();
        run_eight(1, sample, together);
        int calls_together = fake.n_calls;
        CHECK(calls_together < calls_alone, "batching did not reduce forward calls (%d vs %d)", calls_together,
              calls_alone);
        CHECK(fake.max_total > 16, "requests were never batched (max %d tokens per call)", fake.max_total);
        for (int i = 0; i < 8; i++) {
            CHECK(alone[i].n_tokens == together[i].n_tokens &&
                      !memcmp(alone[i].tokens, together[i].tokens, (size_t)alone[i].n_tokens * sizeof(int32_t)) &&
                      !memcmp(alone[i].lps, together[i].lps, (size_t)alone[i].n_tokens * sizeof(float)),
                  "sample=%d request %d: %d tokens alone, %d together, or different tokens", sample, i,
                  alone[i].n_tokens, together[i].n_tokens);
            if (!sample) {
                int32_t want[100];
                int32_t prompt[300];
                const int lens[8] = {3, 17, 250, 40, 1, 99, 16, 161};
                make_prompt(prompt, lens[i], i + 5);
                int n = reference_greedy(prompt, lens[i], 40 + i * 5, want);
                CHECK(n == together[i].n_tokens && !memcmp(want, together[i].tokens, (size_t)n * sizeof(int32_t)),
                      "request %d: greedy tokens differ from the direct computation", i);
            }
            coll_destroy(&alone[i]);
            coll_destroy(&together[i]);
        }
        printf("  sample=%d: %d forward calls alone, %d together (max %d tokens per call)\n", sample, calls_alone,
               calls_together, fake.max_total);
    }
}

/* A long prompt is prefilled in chunks while a running sequence keeps decoding.
 * A's 3rd forward call holds in the gate (A has decoded 2 tokens, 198 to go)
 * until B is submitted, so B's 19 chunks meet A decoding on any schedule. */
static void t_chunked_prefill(void)
{
    reset_fake();
    fake.hold_call = 3;
    ms_engine *e = make_engine(2, 4, 16, 512);
    int32_t pa[5], pb[300];
    make_prompt(pa, 5, 2);
    make_prompt(pb, 300, 3);
    collector a, b;
    coll_init(&a);
    coll_init(&b);
    ms_request ra = greedy_req(pa, 5, 200), rb = greedy_req(pb, 300, 4);
    if (e && submit(e, &ra, &a) == MS_OK) {
        CHECK(ut_wait_until(gate_is_held, NULL, UT_WAIT_S), "A's 3rd forward call not reached");
        CHECK(a.n_tokens == 2, "A decoded %d tokens before its 3rd forward call", a.n_tokens);
        submit(e, &rb, &b);
        gate_release();
        CHECK(coll_wait(&b) && coll_wait(&a), "no final events");
        CHECK(fake.max_seq_tokens == 16, "largest per-sequence step %d, want the chunk 16", fake.max_seq_tokens);
        CHECK(fake.calls_mixed >= 15, "only %d forward calls mixed a prefill chunk with decoding", fake.calls_mixed);
        int32_t want[200];
        reference_greedy(pb, 300, 4, want);
        CHECK(b.n_tokens == 4 && !memcmp(b.tokens, want, 4 * sizeof(int32_t)), "chunked prompt output differs");
        reference_greedy(pa, 5, 200, want);
        CHECK(a.n_tokens == 200 && !memcmp(a.tokens, want, 200 * sizeof(int32_t)), "A's output differs");
    }
    ms_engine_free(e);
    coll_destroy(&a);
    coll_destroy(&b);
}

static void t_eos(void)
{
    for (int ignore = 0; ignore < 2; ignore++) {
        reset_fake();
        fake.eos_at = 12 + 5; /* after the 12-token prompt and 5 generated tokens */
        ms_engine *e = make_engine(2, 2, 64, 128);
        int32_t prompt[12];
        make_prompt(prompt, 12, 4);
        collector c;
        coll_init(&c);
        ms_request r = greedy_req(prompt, 12, 20);
        r.ignore_eos = ignore;
        if (e && submit(e, &r, &c) == MS_OK) {
            CHECK(coll_wait(&c), "no final event");
            if (!ignore) {
                CHECK(c.final.finish == MS_FINISH_STOP && c.final.token == EOS && c.final.n_generated == 6 &&
                          c.n_tokens == 6,
                      "finish %d token %d generated %zu", c.final.finish, c.final.token, c.final.n_generated);
                CHECK(c.text_len == 10 && !strstr(c.text, "<eos>"), "text '%.*s'", (int)c.text_len, c.text);
            } else {
                CHECK(c.final.finish == MS_FINISH_LENGTH && c.n_tokens == 20 && c.tokens[5] == EOS,
                      "ignore_eos: finish %d, %d tokens", c.final.finish, c.n_tokens);
            }
        }
        ms_engine_free(e);
        coll_destroy(&c);
    }
}

/* Stop strings: matched across token boundaries and cut; a prefix held back at
 * the end is released; the earliest of several stops wins. */
static void t_stop_strings(void)
{
    reset_fake();
    int32_t prompt[9], want[40];
    make_prompt(prompt, 9, 6);
    reference_greedy(prompt, 9, 40, want);
    char full[100];
    size_t fl = 0;
    int ends[40];
    for (int k = 0; k < 40; k++) {
        fl += fake_text(want[k], full + fl);
        ends[k] = (int)fl;
    }
    full[fl] = 0;
    /* a 3-byte stop spanning tokens 4|5|... : bytes 9..11 */
    char stop[4] = {full[9], full[10], full[11], 0};
    const char *first = strstr(full, stop);
    size_t cut = (size_t)(first - full);
    int k_end = 0; /* the token that completes the first occurrence */
    while (ends[k_end] < (int)(cut + 3)) k_end++;
    ms_engine *e = make_engine(2, 2, 64, 128);
    collector c;
    coll_init(&c);
    ms_request r = greedy_req(prompt, 9, 40);
    r.stop[0] = "zzzz-never";
    r.stop[1] = stop;
    if (e && submit(e, &r, &c) == MS_OK) {
        CHECK(coll_wait(&c), "no final event");
        CHECK(c.final.finish == MS_FINISH_STOP, "finish %d", c.final.finish);
        CHECK(c.text_len == cut && !memcmp(c.text, full, cut), "text '%.*s', want '%.*s' (stop '%s')", (int)c.text_len,
              c.text, (int)cut, full, stop);
        CHECK(c.n_tokens == k_end + 1, "%d tokens, the stop completes at token %d", c.n_tokens, k_end + 1);
    }
    coll_destroy(&c);

    /* the text ends with a proper prefix of a stop string: held, then released at the end */
    collector d;
    coll_init(&d);
    char pre[8];
    snprintf(pre, sizeof pre, "%c%c~", full[ends[9] - 2], full[ends[9] - 1]);
    ms_request r2 = greedy_req(prompt, 9, 10);
    r2.stop[0] = pre;
    if (e && submit(e, &r2, &d) == MS_OK) {
        CHECK(coll_wait(&d), "no final event");
        CHECK(d.final.finish == MS_FINISH_LENGTH && d.text_len == (size_t)ends[9] &&
                  !memcmp(d.text, full, (size_t)ends[9]),
              "finish %d text '%.*s' want '%.*s'", d.final.finish, (int)d.text_len, d.text, ends[9], full);
    }
    coll_destroy(&d);

    /* invalid stop strings are refused at submit */
    ms_request r3 = greedy_req(prompt, 9, 10);
    r3.stop[0] = "";
    ms_error err = {0};
    uint64_t id;
    CHECK(e && ms_engine_submit(e, &r3, on_event, NULL, &id, &err) == MS_ERR_INVALID && strstr(err.message, "stop"),
          "empty stop accepted: %s", err.message);
    r3.stop[0] = "\xff";
    CHECK(e && ms_engine_submit(e, &r3, on_event, NULL, &id, &err) == MS_ERR_INVALID, "bad UTF-8 stop accepted");
    ms_engine_free(e);
}

/* Cancellation by callback, by ms_engine_cancel on a running and on a queued
 * request; the slot and KV blocks are freed and nothing follows a final event. */
static void t_cancel(void)
{
    reset_fake();
    ms_engine *e = make_engine(1, 4, 32, 1024);
    int32_t prompt[8];
    make_prompt(prompt, 8, 7);
    /* 1. the callback returns nonzero at the 3rd token */
    collector a;
    coll_init(&a);
    a.cancel_after = 3;
    ms_request r = greedy_req(prompt, 8, 500);
    if (e && submit(e, &r, &a) == MS_OK) {
        CHECK(coll_wait(&a), "no final event");
        CHECK(a.final.finish == MS_FINISH_CANCELLED && a.final.token == -1 && a.n_tokens == 3 &&
                  a.final.n_generated == 3,
              "finish %d token %d, %d tokens", a.final.finish, a.final.token, a.n_tokens);
        CHECK(ut_wait_until(engine_idle, e, UT_WAIT_S), "slot or KV not freed within %.0f s", UT_WAIT_S);
    }
    /* 2. ms_engine_cancel on a running request and on a queued one: B's 3rd
     * forward call holds in the gate (B has 2 tokens, Q waits in the queue)
     * while both are cancelled, so B cannot run to its 500 tokens first */
    collector b, q;
    coll_init(&b);
    coll_init(&q);
    fake.n_calls = 0; /* the worker is idle: its last write came before the final event */
    fake.hold_call = 3;
    if (e && submit(e, &r, &b) == MS_OK && submit(e, &r, &q) == MS_OK) {
        CHECK(ut_wait_until(gate_is_held, NULL, UT_WAIT_S), "B's 3rd forward call not reached");
        ms_engine_stats s;
        ms_engine_get_stats(e, &s);
        CHECK(s.running == 1 && s.queued == 1, "held: running %d queued %d, want 1 and 1", s.running, s.queued);
        CHECK(ms_engine_cancel(e, q.id) == MS_OK, "cancel queued");
        CHECK(ms_engine_cancel(e, b.id) == MS_OK, "cancel running");
        gate_release();
        CHECK(coll_wait(&q), "queued: no final event");
        CHECK(q.final.finish == MS_FINISH_CANCELLED && q.n_tokens == 0 && q.n_events == 1,
              "queued: finish %d, %d tokens, %d events", q.final.finish, q.n_tokens, q.n_events);
        CHECK(coll_wait(&b), "running: no final event");
        /* cancelled at the step in progress: the held call's token, no more */
        CHECK(b.final.finish == MS_FINISH_CANCELLED && b.n_tokens <= 3, "running: finish %d, %d tokens of 500",
              b.final.finish, b.n_tokens);
        CHECK(ms_engine_cancel(e, b.id) == MS_ERR_NOTFOUND, "finished id still cancellable");
        CHECK(ms_engine_cancel(e, 999999) == MS_ERR_NOTFOUND, "unknown id");
    }
    ms_engine_free(e); /* joins the worker: every event it will ever send has been sent */
    CHECK(a.events_after_final == 0 && b.events_after_final == 0 && q.events_after_final == 0,
          "events after the final one");
    coll_destroy(&a);
    coll_destroy(&b);
    coll_destroy(&q);
}

/* The bounded queue (BUSY, while the first forward call holds in the gate so
 * none of the 3 accepted requests can finish), context and argument checks. */
static void t_busy_and_context(void)
{
    reset_fake();
    fake.hold_call = 1;
    ms_engine *e = make_engine(1, 2, 32, 64);
    int32_t prompt[64];
    make_prompt(prompt, 64, 8);
    collector c[3];
    ms_request r = greedy_req(prompt, 4, 50);
    for (int i = 0; i < 3; i++) {
        coll_init(&c[i]);
        if (e) submit(e, &r, &c[i]);
    }
    ms_error err = {0};
    uint64_t id = 0;
    CHECK(e && ms_engine_submit(e, &r, on_event, NULL, &id, &err) == MS_ERR_BUSY, "4th request accepted: %s",
          err.message);
    /* context: 60 + 5 > 64 */
    ms_request big = greedy_req(prompt, 60, 5);
    CHECK(e && ms_engine_submit(e, &big, on_event, NULL, &id, &err) == MS_ERR_CONTEXT, "context");
    CHECK(strstr(err.message, "60") && strstr(err.message, "5") && strstr(err.message, "64"),
          "message lacks the counts: %s", err.message);
    ms_request bad = greedy_req(prompt, 4, 0);
    CHECK(e && ms_engine_submit(e, &bad, on_event, NULL, &id, &err) == MS_ERR_INVALID, "max_tokens 0");
    bad = greedy_req(prompt, 0, 4);
    CHECK(e && ms_engine_submit(e, &bad, on_event, NULL, &id, &err) == MS_ERR_INVALID, "empty prompt");
    int32_t badp[2] = {3, V};
    bad = greedy_req(badp, 2, 4);
    CHECK(e && ms_engine_submit(e, &bad, on_event, NULL, &id, &err) == MS_ERR_INVALID && strstr(err.message, "token 1"),
          "prompt id out of range: %s", err.message);
    bad = greedy_req(prompt, 4, 4);
    bad.sampling.top_p = 0.0f;
    CHECK(e && ms_engine_submit(e, &bad, on_event, NULL, &id, &err) == MS_ERR_INVALID && strstr(err.message, "top_p"),
          "bad sampling: %s", err.message);
    gate_release();
    for (int i = 0; i < 3; i++) CHECK(e && coll_wait(&c[i]), "request %d: no final event", i);
    ms_engine_free(e);
    for (int i = 0; i < 3; i++) coll_destroy(&c[i]);

    engine_model em = {
        .ops = &fake_ops, .vocab = V, .n_valid = N_VALID, .max_ctx = 1024, .text_feed = fake_feed, .max_piece = 16};
    ms_engine_params p = ms_engine_params_default();
    p.n_ctx = 2048;
    ms_engine *x = NULL;
    CHECK(engine_create(&em, &p, &x, &err) == MS_ERR_INVALID && !x && strstr(err.message, "n_ctx"),
          "n_ctx over max_position_embeddings: %s", err.message);
    p = ms_engine_params_default();
    p.max_seqs = 0;
    CHECK(engine_create(&em, &p, &x, &err) == MS_ERR_INVALID && !x, "max_seqs 0");
    ms_engine_free(NULL);
}

/* Runs ms_engine_free on another thread. */
static void *free_engine(void *e)
{
    ms_engine_free(e);
    return NULL;
}

/* Freeing the engine with requests running and queued: each gets one final
 * event. The first forward call holds in the gate while ms_engine_free starts
 * on another thread, and is released only once the engine refuses new
 * requests ("shutting down"), so no request can finish by length first. */
static void t_free_in_flight(void)
{
    reset_fake();
    fake.hold_call = 1;
    ms_engine *e = make_engine(2, 8, 32, 1024);
    int32_t prompt[8];
    make_prompt(prompt, 8, 9);
    enum { N = 6, PROBES = 4, ALL = N + PROBES + 1 }; /* 2 slots + 8 queued = 10; 1 spare */
    static collector c[ALL];
    ms_request r = greedy_req(prompt, 8, 900);
    int n = 0;
    for (int i = 0; i < ALL; i++) coll_init(&c[i]);
    for (int i = 0; e && i < N; i++) n += submit(e, &r, &c[i]) == MS_OK;
    CHECK(e && n == N, "%d of %d requests accepted", n, N);
    int held = e && ut_wait_until(gate_is_held, NULL, UT_WAIT_S);
    CHECK(held, "the first forward call was not reached");
    if (held) { /* stable while the worker is held: 1 or 2 admitted, the rest queued */
        ms_engine_stats s;
        ms_engine_get_stats(e, &s);
        CHECK(s.running >= 1 && s.queued >= N - 2 && s.running + s.queued == N, "held: running %d queued %d", s.running,
              s.queued);
    }
    pthread_t th;
    if (n != N || !held || pthread_create(&th, NULL, free_engine, e) != 0) {
        gate_release();
        ms_engine_free(e);
        for (int i = 0; i < ALL; i++) coll_destroy(&c[i]);
        CHECK(0, "could not start ms_engine_free with requests in flight");
        return;
    }
    /* the engine stays allocated until the held call returns: probe it until it
     * says it is shutting down (a probe accepted before that is one more
     * request in flight, and must get its final event too; once the 10 places
     * are taken, a probe is BUSY until then) */
    double deadline = ut_now() + UT_WAIT_S;
    int stopping = 0;
    while (!stopping && ut_now() < deadline) {
        ms_error err = {0};
        uint64_t id;
        ms_request pr = greedy_req(prompt, 1, 1);
        ms_status st = ms_engine_submit(e, &pr, on_event, &c[n < ALL ? n : ALL - 1], &id, &err);
        if (st == MS_OK) n++;
        else if (st == MS_ERR_INVALID && strstr(err.message, "shutting down")) stopping = 1;
        else {
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        }
    }
    CHECK(stopping, "ms_engine_free did not start within %.0f s", UT_WAIT_S);
    gate_release();
    pthread_join(th, NULL);
    CHECK(n < ALL, "%d requests accepted, the engine holds 10", n);
    for (int i = 0; i < ALL; i++) {
        if (i < n)
            CHECK(c[i].n_final == 1 && c[i].final.finish == MS_FINISH_CANCELLED && c[i].events_after_final == 0,
                  "request %d: %d final events, finish %d", i, c[i].n_final, c[i].final.finish);
        coll_destroy(&c[i]);
    }
}

static void t_backend_errors(void)
{
    reset_fake();
    fake.fail_call = 3;
    ms_engine *e = make_engine(2, 2, 64, 128);
    int32_t prompt[8];
    make_prompt(prompt, 8, 10);
    collector a, b, c;
    coll_init(&a);
    coll_init(&b);
    coll_init(&c);
    ms_request r = greedy_req(prompt, 8, 20);
    if (e && submit(e, &r, &a) == MS_OK) {
        CHECK(coll_wait(&a), "no final event");
        CHECK(a.final.finish == MS_FINISH_ERROR && a.final.status == MS_ERR_INTERNAL &&
                  strstr(a.error, "injected failure"),
              "finish %d status %d error '%s'", a.final.finish, a.final.status, a.error);
        /* the engine keeps serving */
        submit(e, &r, &b);
        CHECK(coll_wait(&b) && b.final.finish == MS_FINISH_LENGTH && b.n_tokens == 20, "after a failure");
        fake.nan_at = 8 + 3;
        submit(e, &r, &c);
        CHECK(coll_wait(&c) && c.final.finish == MS_FINISH_ERROR && c.n_tokens == 3 && strstr(c.error, "NaN"),
              "NaN logits: finish %d, %d tokens, '%s'", c.final.finish, c.n_tokens, c.error);
    }
    ms_engine_free(e);
    coll_destroy(&a);
    coll_destroy(&b);
    coll_destroy(&c);
}

static void t_logprobs(void)
{
    reset_fake();
    ms_engine *e = make_engine(2, 2, 64, 128);
    int32_t prompt[8];
    make_prompt(prompt, 8, 11);
    collector c;
    coll_init(&c);
    ms_request r = greedy_req(prompt, 8, 6);
    r.logprobs = 1;
    r.sampling.top_logprobs = 3;
    if (e && submit(e, &r, &c) == MS_OK) {
        CHECK(coll_wait(&c), "no final event");
        int32_t seq[20];
        memcpy(seq, prompt, sizeof prompt);
        for (int k = 0; k < c.n_tokens; k++) {
            float l[V];
            fake_logits(seq, 8 + k, l);
            double mx = -INFINITY, z = 0;
            for (int v = 0; v < V; v++) mx = fmax(mx, l[v]);
            for (int v = 0; v < V; v++) z += exp(l[v] - mx);
            double want = l[c.tokens[k]] - mx - log(z);
            CHECK(fabs(c.lps[k] - want) < 1e-4, "token %d logprob %g, want %g", k, c.lps[k], want);
            CHECK(c.top0[k] == c.tokens[k], "greedy token %d is not the top logprob %d", c.tokens[k], c.top0[k]);
            seq[8 + k] = c.tokens[k];
        }
    }
    /* top_logprobs without logprobs: the 3 best raw ids (< N_VALID) with their logprobs */
    collector d;
    coll_init(&d);
    ms_request r2 = greedy_req(prompt, 8, 5);
    r2.sampling =
        (ms_sampling){.temperature = 0.8f, .top_p = 0.9f, .repetition_penalty = 1.0f, .seed = 4, .top_logprobs = 3};
    if (e && submit(e, &r2, &d) == MS_OK) {
        CHECK(coll_wait(&d), "no final event");
        CHECK(d.n_top_seen == d.n_tokens && d.n_tokens == 5, "%d of %d events had 3 alternatives", d.n_top_seen,
              d.n_tokens);
        int32_t seq[20];
        memcpy(seq, prompt, sizeof prompt);
        for (int k = 0; k < d.n_tokens && k < 64; k++) {
            float l[V];
            fake_logits(seq, 8 + k, l);
            double mx = -INFINITY, z = 0;
            for (int v = 0; v < V; v++) mx = fmax(mx, l[v]);
            for (int v = 0; v < V; v++) z += exp(l[v] - mx);
            int32_t best[3] = {-1, -1, -1};
            for (int j = 0; j < 3; j++) /* j-th best among valid ids, lowest id on ties */
                for (int v = 0; v < N_VALID; v++) {
                    int taken = 0;
                    for (int q = 0; q < j; q++) taken |= best[q] == v;
                    if (!taken && (best[j] < 0 || l[v] > l[best[j]])) best[j] = v;
                }
            for (int j = 0; j < 3; j++) {
                CHECK(d.tops[k][j] == best[j], "token %d alternative %d is %d, want %d", k, j, d.tops[k][j], best[j]);
                CHECK(fabs(d.top_lps[k][j] - (l[best[j]] - mx - log(z))) < 1e-4, "token %d alternative %d logprob %g",
                      k, j, d.top_lps[k][j]);
            }
            seq[8 + k] = d.tokens[k];
        }
    }
    coll_destroy(&d);
    ms_engine_free(e);
    coll_destroy(&c);
}

/* Random requests, random cancels: every accepted request gets exactly one final event. */
static void t_exactly_once(void)
{
    reset_fake();
    fake.delay_us = 50;
    fake.eos_at = 0;
    ms_engine *e = make_engine(4, 64, 8, 256);
    enum { N = 40 };
    static collector c[N];
    static int32_t prompts[N][64];
    int accepted[N] = {0};
    uint64_t x = 12345;
    for (int i = 0; i < N; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        int len = 1 + (int)((x >> 33) % 60), max = 1 + (int)((x >> 20) % 60);
        make_prompt(prompts[i], len, i);
        coll_init(&c[i]);
        c[i].cancel_after = (x >> 45) % 4 == 0 ? 1 + (int)((x >> 50) % 5) : 0;
        ms_request r = greedy_req(prompts[i], len, max);
        if ((x >> 10) % 3 == 0) {
            r.sampling =
                (ms_sampling){.temperature = 0.7f, .top_p = 0.8f, .repetition_penalty = 1.0f, .seed = (uint64_t)i};
        }
        if ((x >> 12) % 5 == 0) r.stop[0] = "ab";
        accepted[i] = e && submit(e, &r, &c[i]) == MS_OK;
        if (accepted[i] && (x >> 40) % 5 == 0) ms_engine_cancel(e, c[i].id);
    }
    for (int i = 0; i < N; i++) {
        if (!accepted[i]) continue;
        CHECK(coll_wait(&c[i]), "request %d: %d final events", i, c[i].n_final);
    }
    int finals = 0;
    for (int i = 0; i < N; i++) finals += c[i].n_final;
    CHECK(e && ut_wait_until(engine_idle, e, UT_WAIT_S), "not idle within %.0f s at the end", UT_WAIT_S);
    ms_engine_free(e); /* joins the worker: every event it will ever send has been sent */
    int finals_after_free = 0, after = 0;
    for (int i = 0; i < N; i++) {
        finals_after_free += c[i].n_final;
        after += c[i].events_after_final;
        coll_destroy(&c[i]);
    }
    CHECK(after == 0, "%d events after a final event", after);
    CHECK(finals == N && finals_after_free == N, "%d / %d final events for %d requests", finals, finals_after_free, N);
}

int main(int argc, char **argv)
{
    static const test_case cases[] = {
        {"engine_greedy", t_greedy},
        {"engine_batch_invariance", t_batch_invariance},
        {"engine_chunked_prefill", t_chunked_prefill},
        {"engine_eos", t_eos},
        {"engine_stop_strings", t_stop_strings},
        {"engine_cancel", t_cancel},
        {"engine_busy_context", t_busy_and_context},
        {"engine_free_in_flight", t_free_in_flight},
        {"engine_backend_errors", t_backend_errors},
        {"engine_logprobs", t_logprobs},
        {"engine_exactly_once", t_exactly_once},
    };
    return test_main(argc, argv, cases, sizeof cases / sizeof *cases);
}
