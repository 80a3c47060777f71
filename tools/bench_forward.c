/* bench_forward.c: times the CPU backend's forward pass on a model directory
 * (a first figure, not a test): one prefill of P tokens per sequence, then G
 * decode steps of B sequences together, reporting tokens per second.
 *
 *   build/tools/bench_forward DIR [--threads N] [--prompt P] [--gen G] [--batch B]
 *
 * Token ids are a fixed pseudo-random sequence below 151643 (text tokens). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/backend.h"
#include "engine/kv.h"
#include "model/model.h"

#define BLOCK 16

/* Process CPU seconds (all threads): under a loaded machine this shows the work done. */
static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Wall-clock seconds. */
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR [--threads N] [--prompt P] [--gen G] [--batch B]\n", argv[0]);
        return 2;
    }
    int threads = 2, P = 128, G = 32, B = 1;
    for (int i = 2; i + 1 < argc; i += 2) {
        int v = atoi(argv[i + 1]);
        if (v <= 0) {
            fprintf(stderr, "%s: %s must be positive\n", argv[0], argv[i]);
            return 2;
        }
        if (!strcmp(argv[i], "--threads")) threads = v;
        else if (!strcmp(argv[i], "--prompt")) P = v;
        else if (!strcmp(argv[i], "--gen")) G = v;
        else if (!strcmp(argv[i], "--batch")) B = v;
        else {
            fprintf(stderr, "%s: unknown option %s\n", argv[0], argv[i]);
            return 2;
        }
    }
    ms_error e = {0};
    model *m = NULL;
    double t0 = now_s();
    if (model_load(argv[1], &m, &e) != MS_OK) {
        fprintf(stderr, "%s\n", e.message);
        return 2;
    }
    double t_load = now_s() - t0;
    const int ctx = P + G, per_seq = (ctx + BLOCK - 1) / BLOCK, V = m->cfg.vocab_size;
    backend_params bp = {
        .n_threads = threads, .max_seqs = B, .max_tokens = P, .n_blocks = per_seq * B, .block_size = BLOCK};
    const backend_ops *ops = backend_select(MS_BACKEND_CPU, m, 0, &e);
    backend *b = NULL;
    kv_pool *kv = NULL;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)P * (size_t)B);
    float *logits = malloc(sizeof(float) * (size_t)V * (size_t)B);
    fwd_seq *seqs = calloc((size_t)B, sizeof *seqs);
    if (!ids || !logits || !seqs || !ops || ops->create(m, &bp, &b, &e) != MS_OK ||
        kv_pool_create(bp.n_blocks, BLOCK, B, per_seq, &kv, &e) != MS_OK) {
        fprintf(stderr, "setup: %s\n", e.message[0] ? e.message : "out of memory");
        return 1;
    }
    uint32_t s = 12345;
    for (int i = 0; i < P * B; i++) {
        s = s * 1664525u + 1013904223u;
        ids[i] = (int32_t)((s >> 8) % 151643u);
    }
    /* prefill: one sequence per call (each a P x H matrix through every layer) */
    t0 = now_s();
    double c0 = cpu_s();
    for (int q = 0; q < B; q++) {
        kv_reserve(kv, q, ctx, &e);
        fwd_seq one = {ids + (size_t)q * P, P, 0, kv_blocks(kv, q), 1, logits + (size_t)q * V};
        if (ops->forward(b, &one, 1, &e) != MS_OK) {
            fprintf(stderr, "prefill: %s\n", e.message);
            return 1;
        }
    }
    double t_pre = now_s() - t0, c_pre = cpu_s() - c0;
    /* decode: B sequences per call, G steps; feed a fixed token (sampling is not timed) */
    int32_t *next = malloc(sizeof(int32_t) * (size_t)B);
    for (int q = 0; q < B; q++) next[q] = ids[(size_t)q * P + P - 1];
    t0 = now_s();
    c0 = cpu_s();
    for (int g = 0; g < G; g++) {
        for (int q = 0; q < B; q++)
            seqs[q] = (fwd_seq){&next[q], 1, P + g, kv_blocks(kv, q), 1, logits + (size_t)q * V};
        if (ops->forward(b, seqs, B, &e) != MS_OK) {
            fprintf(stderr, "decode: %s\n", e.message);
            return 1;
        }
    }
    double t_dec = now_s() - t0, c_dec = cpu_s() - c0;
    printf("model %s: H %d, L %d, V %d, dtype %s; %d threads\n", argv[1], m->cfg.hidden_size, m->cfg.n_layers, V,
           st_dtype_name(m->embed.dtype), threads);
    printf("load %.2f s; prefill %d x %d tokens: %.2f s = %.1f tok/s; decode %d steps x %d seqs: "
           "%.2f s = %.2f tok/s (%.1f ms/step)\n",
           t_load, B, P, t_pre, (double)P * B / t_pre, G, B, t_dec, (double)G * B / t_dec, 1e3 * t_dec / G);
    printf("cpu time (all threads): prefill %.2f s, decode %.2f s\n", c_pre, c_dec);
    free(next);
    free(ids);
    free(logits);
    free(seqs);
    kv_pool_free(kv);
    ops->free(b);
    model_free(m);
    return 0;
}
