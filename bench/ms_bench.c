/* ms_bench.c: medserve's side of bench/run.sh, with llama-bench semantics,
 * driving the CPU backend (backend.h) directly as llama-bench drives
 * llama_decode: no sampling, no scheduler. One JSON line per test.
 *
 *   ms_bench DIR pp      --p P [--reps R]          one forward over P tokens (chunks of
 *                                                  --ubatch, default 512), logits of the last
 *   ms_bench DIR tg      --n N [--depth D]         N one-token forwards after D prompt tokens
 *                                                  (not timed); random next token each step
 *   ms_bench DIR batched --p P --n N --batch B     B prompts of P tokens, then N steps of B
 *                                                  tokens: aggregate decode tok/s
 *   ms_bench DIR ttft    --prompt-file F           load, tokenize, prefill, first token (greedy):
 *                                                  the caller times the whole process
 *   ms_bench DIR agree   --p P                     int8 vs bf16 weights on one P-token prompt:
 *                                                  top-1 agreement and logit drift per position
 * Common: --threads T, --q8 (int8 weights), --ctx C (KV positions per sequence
 * reserved, default: what the test needs), --reps R (default 3, after one
 * warm-up). Token ids are pseudo-random below 151643 (plain text ids). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/backend.h"
#include "engine/kv.h"
#include "model/model.h"
#include "text/tokenizer.h"

#define BLOCK 16

/* Monotonic seconds. */
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* VmHWM and VmRSS of this process in kB (-1 if unreadable). */
static void mem_kb(long *hwm, long *rss)
{
    *hwm = *rss = -1;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "VmHWM:", 6)) *hwm = atol(line + 6);
        if (!strncmp(line, "VmRSS:", 6)) *rss = atol(line + 6);
    }
    fclose(f);
}

static uint32_t rng_s = 12345;
/* Next pseudo-random plain-text token id. */
static int32_t rand_tok(void)
{
    rng_s = rng_s * 1664525u + 1013904223u;
    return (int32_t)((rng_s >> 8) % 151643u);
}

typedef struct opts {
    const char *dir, *mode, *prompt_file;
    int threads, p, n, depth, batch, reps, q8, ctx, ubatch;
} opts;

typedef struct bench {
    const backend_ops *ops;
    model *m;
    backend *b;
    kv_pool *kv;
    float *logits; /* [batch, V] */
    int V;
    double t_load, t_create;
} bench;

/* Loads the model and creates a backend sized for n_seqs sequences of ctx positions. */
static int bench_open(bench *B, const opts *o, int n_seqs, int ctx)
{
    ms_error e = {0};
    double t0 = now_s();
    if (model_load(o->dir, &B->m, &e) != MS_OK) {
        fprintf(stderr, "ms_bench: %s\n", e.message);
        return -1;
    }
    B->t_load = now_s() - t0;
    B->V = B->m->cfg.vocab_size;
    const int per_seq = (ctx + BLOCK - 1) / BLOCK;
    backend_params bp = {.n_threads = o->threads,
                         .max_seqs = n_seqs,
                         .max_tokens = o->ubatch,
                         .n_blocks = per_seq * n_seqs,
                         .block_size = BLOCK,
                         .weights_q8 = o->q8};
    /* the backend the engine would get (backend_select); MS_BENCH_BACKEND=ref forces the reference */
    const char *which = getenv("MS_BENCH_BACKEND");
    B->ops = which && !strcmp(which, "ref") ? &cpu_ref_backend_ops : backend_select(MS_BACKEND_CPU, B->m, o->q8, &e);
    t0 = now_s();
    if (!B->ops || B->ops->create(B->m, &bp, &B->b, &e) != MS_OK ||
        kv_pool_create(bp.n_blocks, BLOCK, n_seqs, per_seq, &B->kv, &e) != MS_OK) {
        fprintf(stderr, "ms_bench: %s\n", e.message);
        return -1;
    }
    B->t_create = now_s() - t0;
    for (int s = 0; s < n_seqs; s++)
        if (kv_reserve(B->kv, s, ctx, &e) != MS_OK) {
            fprintf(stderr, "ms_bench: %s\n", e.message);
            return -1;
        }
    B->logits = malloc(sizeof(float) * (size_t)B->V * (size_t)n_seqs);
    return B->logits ? 0 : -1;
}

/* Frees what bench_open made. */
static void bench_close(bench *B)
{
    free(B->logits);
    kv_pool_free(B->kv);
    if (B->b) B->ops->free(B->b);
    model_free(B->m);
}

/* Prefills ids[0..n) of sequence slot s from position pos0 in chunks of ubatch. */
static int prefill(bench *B, const opts *o, int s, const int32_t *ids, int n, int pos0)
{
    ms_error e = {0};
    for (int i = 0; i < n; i += o->ubatch) {
        int c = n - i < o->ubatch ? n - i : o->ubatch;
        fwd_seq q = {ids + i, c, pos0 + i, kv_blocks(B->kv, s), i + c == n, B->logits};
        if (B->ops->forward(B->b, &q, 1, &e) != MS_OK) {
            fprintf(stderr, "ms_bench: forward: %s\n", e.message);
            return -1;
        }
    }
    return 0;
}

/* mean and sample standard deviation of v[0..n) */
static void stats(const double *v, int n, double *mean, double *sd)
{
    double s = 0, q = 0;
    for (int i = 0; i < n; i++) s += v[i];
    *mean = s / n;
    for (int i = 0; i < n; i++) q += (v[i] - *mean) * (v[i] - *mean);
    *sd = n > 1 ? sqrt(q / (n - 1)) : 0;
}

/* One JSON line: tok/s samples, load times, memory. */
static void print_result(const opts *o, const bench *B, const double *ts, int n, const char *extra)
{
    double mean, sd;
    long hwm, rss;
    stats(ts, n, &mean, &sd);
    mem_kb(&hwm, &rss);
    printf("{\"runtime\":\"medserve\",\"mode\":\"%s\",\"weights\":\"%s\",\"threads\":%d,\"p\":%d,\"n\":%d,"
           "\"depth\":%d,\"batch\":%d,\"avg_ts\":%.3f,\"stddev_ts\":%.3f,\"samples_ts\":[",
           o->mode, o->q8 ? "q8" : "native", o->threads, o->p, o->n, o->depth, o->batch, mean, sd);
    for (int i = 0; i < n; i++) printf("%s%.3f", i ? "," : "", ts[i]);
    printf("],\"backend\":\"%s\",\"load_s\":%.3f,\"create_s\":%.3f,\"vmhwm_kb\":%ld,\"vmrss_kb\":%ld%s}\n",
           backend_name(B->ops, B->b), B->t_load, B->t_create, hwm, rss, extra ? extra : "");
    fflush(stdout);
}

/* Prompt processing: P tokens, logits of the last. */
static int run_pp(const opts *o)
{
    bench B = {0};
    int rc = -1;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)o->p);
    double *ts = malloc(sizeof(double) * (size_t)o->reps);
    if (!ids || !ts || bench_open(&B, o, 1, o->ctx > o->p ? o->ctx : o->p) != 0) goto out;
    for (int r = -1; r < o->reps; r++) {
        for (int i = 0; i < o->p; i++) ids[i] = rand_tok();
        double t0 = now_s();
        if (prefill(&B, o, 0, ids, o->p, 0) != 0) goto out;
        if (r >= 0) ts[r] = o->p / (now_s() - t0);
    }
    print_result(o, &B, ts, o->reps, NULL);
    rc = 0;
out:
    bench_close(&B);
    free(ids);
    free(ts);
    return rc;
}

/* Generation: N one-token steps after D prompt tokens. */
static int run_tg(const opts *o)
{
    bench B = {0};
    int rc = -1;
    const int need = o->depth + o->n;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(o->depth + 1));
    double *ts = malloc(sizeof(double) * (size_t)o->reps);
    if (!ids || !ts || bench_open(&B, o, 1, o->ctx > need ? o->ctx : need) != 0) goto out;
    for (int r = -1; r < o->reps; r++) {
        for (int i = 0; i < o->depth; i++) ids[i] = rand_tok();
        if (o->depth && prefill(&B, o, 0, ids, o->depth, 0) != 0) goto out;
        double t0 = now_s();
        for (int g = 0; g < o->n; g++) {
            int32_t tok = rand_tok();
            ms_error e = {0};
            fwd_seq q = {&tok, 1, o->depth + g, kv_blocks(B.kv, 0), 1, B.logits};
            if (B.ops->forward(B.b, &q, 1, &e) != MS_OK) {
                fprintf(stderr, "ms_bench: forward: %s\n", e.message);
                goto out;
            }
        }
        if (r >= 0) ts[r] = o->n / (now_s() - t0);
    }
    print_result(o, &B, ts, o->reps, NULL);
    rc = 0;
out:
    bench_close(&B);
    free(ids);
    free(ts);
    return rc;
}

/* B prompts, then N steps of B tokens: aggregate decode tok/s. */
static int run_batched(const opts *o)
{
    bench B = {0};
    int rc = -1;
    const int nb = o->batch, need = o->p + o->n;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)o->p);
    int32_t *toks = malloc(sizeof(int32_t) * (size_t)nb);
    fwd_seq *qs = calloc((size_t)nb, sizeof *qs);
    double *ts = malloc(sizeof(double) * (size_t)o->reps), *pp = malloc(sizeof(double) * (size_t)o->reps);
    if (!ids || !toks || !qs || !ts || !pp || bench_open(&B, o, nb, need) != 0) goto out;
    for (int r = -1; r < o->reps; r++) {
        double t0 = now_s();
        for (int s = 0; s < nb; s++) {
            for (int i = 0; i < o->p; i++) ids[i] = rand_tok();
            if (prefill(&B, o, s, ids, o->p, 0) != 0) goto out;
        }
        double t1 = now_s();
        for (int g = 0; g < o->n; g++) {
            for (int s = 0; s < nb; s++) {
                toks[s] = rand_tok();
                qs[s] = (fwd_seq){&toks[s], 1, o->p + g, kv_blocks(B.kv, s), 1, B.logits + (size_t)s * B.V};
            }
            ms_error e = {0};
            if (B.ops->forward(B.b, qs, nb, &e) != MS_OK) {
                fprintf(stderr, "ms_bench: forward: %s\n", e.message);
                goto out;
            }
        }
        if (r >= 0) {
            pp[r] = (double)nb * o->p / (t1 - t0);
            ts[r] = (double)nb * o->n / (now_s() - t1);
        }
    }
    double ppm, ppsd;
    stats(pp, o->reps, &ppm, &ppsd);
    char extra[96];
    snprintf(extra, sizeof extra, ",\"prefill_ts\":%.3f", ppm);
    print_result(o, &B, ts, o->reps, extra);
    rc = 0;
out:
    bench_close(&B);
    free(ids);
    free(toks);
    free(qs);
    free(ts);
    free(pp);
    return rc;
}

/* Reads a whole text file (malloc'd, NUL-terminated). */
static char *read_text(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    size_t cap = 0, n = 0, got;
    char tmp[65536];
    while ((got = fread(tmp, 1, sizeof tmp, f)) > 0) {
        if (n + got + 1 > cap) {
            cap = (n + got + 1) * 2;
            char *nb = realloc(buf, cap);
            if (!nb) break;
            buf = nb;
        }
        memcpy(buf + n, tmp, got);
        n += got;
    }
    fclose(f);
    if (buf) buf[n] = 0;
    *len = n;
    return buf;
}

/* Load, tokenize, prefill, first token; times from process start. */
static int run_ttft(const opts *o, double t_start)
{
    bench B = {0};
    int rc = -1;
    size_t len = 0, n_ids = 0;
    int32_t *ids = NULL;
    char *text = read_text(o->prompt_file, &len);
    ms_error e = {0};
    if (!text) {
        fprintf(stderr, "ms_bench: cannot read %s\n", o->prompt_file);
        return -1;
    }
    if (bench_open(&B, o, 1, o->ctx) != 0) goto out;
    if (tok_encode(B.m->tok, text, len, &ids, &n_ids, &e) != MS_OK || n_ids == 0 || (int)n_ids >= o->ctx) {
        fprintf(stderr, "ms_bench: prompt: %s\n", e.message[0] ? e.message : "empty or longer than --ctx");
        goto out;
    }
    double t0 = now_s();
    if (prefill(&B, o, 0, ids, (int)n_ids, 0) != 0) goto out;
    int best = 0;
    for (int v = 1; v < B.V; v++)
        if (B.logits[v] > B.logits[best]) best = v;
    double t1 = now_s();
    long hwm, rss;
    mem_kb(&hwm, &rss);
    printf("{\"runtime\":\"medserve\",\"mode\":\"ttft\",\"weights\":\"%s\",\"threads\":%d,\"prompt_tokens\":%zu,"
           "\"ctx\":%d,\"load_s\":%.3f,\"create_s\":%.3f,\"prefill_s\":%.3f,\"start_to_token_s\":%.3f,"
           "\"first_token\":%d,\"vmhwm_kb\":%ld,\"vmrss_kb\":%ld}\n",
           o->q8 ? "q8" : "native", o->threads, n_ids, o->ctx, B.t_load, B.t_create, t1 - t0, t1 - t_start, best, hwm,
           rss);
    rc = 0;
out:
    bench_close(&B);
    free(ids);
    free(text);
    return rc;
}

/* int8 (q8) against native weights on the same prompt: every position's logits. */
static int run_agree(const opts *o)
{
    bench A = {0}, Q = {0};
    opts oq = *o, on = *o;
    oq.q8 = 1;
    on.q8 = 0;
    int rc = -1;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)o->p);
    float *la = NULL, *lq = NULL;
    if (!ids || bench_open(&A, &on, 1, o->p) != 0 || bench_open(&Q, &oq, 1, o->p) != 0) goto out;
    const size_t V = (size_t)A.V;
    la = malloc(sizeof(float) * V * (size_t)o->p);
    lq = malloc(sizeof(float) * V * (size_t)o->p);
    if (!la || !lq) goto out;
    for (int i = 0; i < o->p; i++) ids[i] = rand_tok();
    ms_error e = {0};
    fwd_seq qa = {ids, o->p, 0, kv_blocks(A.kv, 0), 2, la}, qq = {ids, o->p, 0, kv_blocks(Q.kv, 0), 2, lq};
    if (o->p > o->ubatch || A.ops->forward(A.b, &qa, 1, &e) != MS_OK || Q.ops->forward(Q.b, &qq, 1, &e) != MS_OK) {
        fprintf(stderr, "ms_bench: agree: %s\n", e.message[0] ? e.message : "--p must be <= --ubatch");
        goto out;
    }
    int agree = 0;
    double drift = 0, sum = 0;
    for (int t = 0; t < o->p; t++) {
        const float *a = la + (size_t)t * V, *q = lq + (size_t)t * V;
        size_t ba = 0, bq = 0;
        for (size_t v = 0; v < V; v++) {
            if (a[v] > a[ba]) ba = v;
            if (q[v] > q[bq]) bq = v;
            double d = fabs((double)a[v] - q[v]);
            drift = d > drift ? d : drift;
            sum += d;
        }
        agree += ba == bq;
    }
    printf("{\"runtime\":\"medserve\",\"mode\":\"agree\",\"p\":%d,\"backend\":\"%s\",\"top1_agree\":%.4f,"
           "\"max_drift\":%.4f,\"mean_drift\":%.5f}\n",
           o->p, backend_name(Q.ops, Q.b), (double)agree / o->p, drift, sum / ((double)V * o->p));
    rc = 0;
out:
    bench_close(&A);
    bench_close(&Q);
    free(ids);
    free(la);
    free(lq);
    return rc;
}

/* Parses the mode and options. */
int main(int argc, char **argv)
{
    const double t_start = now_s();
    opts o = {.threads = 2, .p = 512, .n = 128, .reps = 3, .batch = 1, .ubatch = 512};
    if (argc < 3) {
        fprintf(stderr,
                "usage: %s DIR pp|tg|batched|ttft|agree [--p P] [--n N] [--depth D] [--batch B] "
                "[--reps R] [--threads T] [--ctx C] [--ubatch U] [--q8] [--prompt-file F]\n",
                argv[0]);
        return 2;
    }
    o.dir = argv[1];
    o.mode = argv[2];
    for (int i = 3; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--q8")) {
            o.q8 = 1;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "ms_bench: %s needs a value\n", a);
            return 2;
        }
        const char *v = argv[++i];
        int *dst = !strcmp(a, "--p")         ? &o.p
                   : !strcmp(a, "--n")       ? &o.n
                   : !strcmp(a, "--depth")   ? &o.depth
                   : !strcmp(a, "--batch")   ? &o.batch
                   : !strcmp(a, "--reps")    ? &o.reps
                   : !strcmp(a, "--threads") ? &o.threads
                   : !strcmp(a, "--ctx")     ? &o.ctx
                   : !strcmp(a, "--ubatch")  ? &o.ubatch
                                             : NULL;
        if (!strcmp(a, "--prompt-file")) {
            o.prompt_file = v;
            continue;
        }
        if (!dst) {
            fprintf(stderr, "ms_bench: unknown option %s\n", a);
            return 2;
        }
        *dst = atoi(v);
        if (*dst < 0 || (*dst == 0 && dst != &o.depth && dst != &o.ctx)) {
            fprintf(stderr, "ms_bench: %s must be positive\n", a);
            return 2;
        }
    }
    if (o.reps > 1000 || o.batch > 4096 || o.p > 1 << 20 || o.n > 1 << 20 || o.depth > 1 << 20) {
        fprintf(stderr, "ms_bench: a value is out of range\n");
        return 2;
    }
    if (!strcmp(o.mode, "pp")) return run_pp(&o) ? 1 : 0;
    if (!strcmp(o.mode, "tg")) return run_tg(&o) ? 1 : 0;
    if (!strcmp(o.mode, "batched")) return run_batched(&o) ? 1 : 0;
    if (!strcmp(o.mode, "agree")) return run_agree(&o) ? 1 : 0;
    if (!strcmp(o.mode, "ttft")) {
        if (!o.prompt_file) {
            fprintf(stderr, "ms_bench: ttft needs --prompt-file\n");
            return 2;
        }
        if (!o.ctx) o.ctx = 4096;
        return run_ttft(&o, t_start) ? 1 : 0;
    }
    fprintf(stderr, "ms_bench: unknown mode %s\n", o.mode);
    return 2;
}
