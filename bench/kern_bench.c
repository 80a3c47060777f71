/* kern_bench.c: kernel-level ceilings of the packed bf16 kernels (kern.h),
 * separate from the model: not a test, a measuring tool for bench/README.md.
 *
 *   kern_bench gemv [--threads N] [--shape 0.6b|1.7b] [--reps R]
 *       every matrix of one decode token of the shape (q, k, v, o, gate, up,
 *       down x layers, plus the tied lm_head), y = W x, one parallel region
 *       per token with a barrier after each matrix: tok/s and GB/s.
 *   kern_bench gemm [--threads N] [--m M] [--k K] [--n N] [--reps R]
 *       C[M, N] = X[M, K] W[N, K]^T: GFLOP/s.
 *   kern_bench attn [--threads N] [--ctx C] [--reps R]
 *       decode attention of one token at context C for the 0.6B shape (28 layers,
 *       8 kv heads x 2 query heads, d 128, bf16 KV in blocks of 16): ms per token
 *       and GB/s of KV read.
 * Weights are random bf16; timings are CLOCK_MONOTONIC, best and median. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cpu/fast/kern.h"
#include "cpu/fast/kern_attn.h"
#include "cpu/ref/cpu.h"

/* Monotonic seconds. */
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* qsort order for doubles. */
static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* A packed [n, k] matrix of small pseudo-random bf16 values (filled in place). */
static int make_pack(kpack *p, int64_t n, int64_t k, uint32_t seed)
{
    ms_error e = {0};
    if (kpack_alloc(p, n, k, kern_huge_default(), &e) != MS_OK) {
        fprintf(stderr, "%s\n", e.message);
        return -1;
    }
    size_t cnt = (size_t)p->n_panels * (size_t)p->kp * 64;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < cnt; i++) {
        uint32_t s = (uint32_t)i * 2654435761u + seed;
        p->data[i] = (uint16_t)(0x3c00u | ((s >> 13) & 0x7f) | ((s >> 5) & 0x8000u)); /* ~±0.01 */
    }
    return 0;
}

/* Decode GEMV over every matrix of one token, one region per token. */
static int run_gemv(int threads, int shape17, int reps)
{
    const int64_t H = shape17 ? 2048 : 1024, I = shape17 ? 6144 : 3072, L = 28, V = 151936;
    const int64_t dims[7][2] = {{2048, H}, {1024, H}, {1024, H}, {H, 2048}, {I, H}, {I, H}, {H, I}};
    const int nmat = (int)(L * 7 + 1);
    kpack *w = calloc((size_t)nmat, sizeof *w);
    double bytes = 0;
    for (int i = 0; i < nmat; i++) {
        int64_t n = i == nmat - 1 ? V : dims[i % 7][0], k = i == nmat - 1 ? H : dims[i % 7][1];
        if (make_pack(&w[i], n, k, (uint32_t)i) != 0) return 1;
        bytes += (double)n * (double)k * 2;
    }
    uint16_t *x = calloc(8192, sizeof(uint16_t));
    float *y = calloc((size_t)V, sizeof(float));
    for (int i = 0; i < 8192; i++) x[i] = half_f32_to_bf16((float)((i * 37) % 101) / 50.0f - 1.0f);
    kern_isa isa = kern_isa_best();
    double *tps = malloc(sizeof(double) * (size_t)reps);
    for (int r = -1; r < reps; r++) { /* r = -1: warm-up */
        double t0 = now_s();
#pragma omp parallel num_threads(threads)
        {
            const int id = omp_get_thread_num(), nt = omp_get_num_threads();
            for (int i = 0; i < nmat; i++) {
                int64_t np = w[i].n_panels;
                kern_gemm_bf16(isa, &w[i], x, 2 * w[i].kp, 1, y, w[i].n, NULL, np * id / nt, np * (id + 1) / nt);
#pragma omp barrier
            }
        }
        if (r >= 0) tps[r] = 1.0 / (now_s() - t0);
    }
    qsort(tps, (size_t)reps, sizeof(double), cmp_d);
    printf("{\"bench\":\"gemv\",\"isa\":\"%s\",\"threads\":%d,\"shape\":\"%s\",\"gb_per_token\":%.3f,"
           "\"best_tok_s\":%.2f,\"median_tok_s\":%.2f,\"best_gbs\":%.1f,\"median_gbs\":%.1f}\n",
           kern_isa_name(isa), threads, shape17 ? "1.7b" : "0.6b", bytes / 1e9, tps[reps - 1], tps[reps / 2],
           bytes * tps[reps - 1] / 1e9, bytes * tps[reps / 2] / 1e9);
    for (int i = 0; i < nmat; i++) kpack_free(&w[i]);
    free(w);
    free(x);
    free(y);
    free(tps);
    return 0;
}

/* One GEMM of the given shape, panels split over threads. */
static int run_gemm(int threads, int64_t M, int64_t K, int64_t N, int reps)
{
    kpack w;
    if (make_pack(&w, N, K, 7) != 0) return 1;
    const int64_t ldx = 2 * w.kp;
    uint16_t *x = calloc((size_t)(M * ldx), sizeof(uint16_t));
    float *y = calloc((size_t)(M * N), sizeof(float));
    for (int64_t i = 0; i < M * ldx; i++) x[i] = half_f32_to_bf16((float)((i * 37) % 101) / 50.0f - 1.0f);
    kern_isa isa = kern_isa_best();
    double *gf = malloc(sizeof(double) * (size_t)reps);
    for (int r = -1; r < reps; r++) {
        double t0 = now_s();
#pragma omp parallel num_threads(threads)
        {
            const int id = omp_get_thread_num(), nt = omp_get_num_threads();
            kern_gemm_bf16(isa, &w, x, ldx, (int)M, y, N, NULL, w.n_panels * id / nt, w.n_panels * (id + 1) / nt);
        }
        if (r >= 0) gf[r] = 2.0 * (double)M * (double)K * (double)N / (now_s() - t0) / 1e9;
    }
    qsort(gf, (size_t)reps, sizeof(double), cmp_d);
    printf("{\"bench\":\"gemm\",\"isa\":\"%s\",\"threads\":%d,\"m\":%lld,\"k\":%lld,\"n\":%lld,"
           "\"best_gflops\":%.1f,\"median_gflops\":%.1f}\n",
           kern_isa_name(isa), threads, (long long)M, (long long)K, (long long)N, gf[reps - 1], gf[reps / 2]);
    kpack_free(&w);
    free(x);
    free(y);
    free(gf);
    return 0;
}

/* Decode attention of one token at the given context. */
static int run_attn(int threads, int ctx, int reps)
{
    /* the backend's layout: superblocks of 16 blocks of 16 positions, blocks of a sequence consecutive */
    const int L = 28, nkv = 8, G = 2, d = 128, bs = 16, sb = 16, nb = (ctx + bs) / bs, nsb = (nb + sb - 1) / sb;
    const size_t blkb = (size_t)bs * d * 2, run = (size_t)sb * blkb, sbb = run * L * 2 * nkv;
    size_t kv_map = 0;
    unsigned char *kv =
        kern_alloc_huge(sbb * (size_t)nsb, &kv_map, kern_huge_default()); /* as the backend maps its KV */
    int32_t *blocks = malloc(sizeof(int32_t) * (size_t)nb);
    uint16_t q[KATTN_MAX_GROUP * 256];
    for (size_t i = 0; i < sbb * (size_t)nsb / 2; i++)
        ((uint16_t *)kv)[i] = half_f32_to_bf16((float)((i * 7) % 13) / 13.0f - 0.5f);
    for (int i = 0; i < nb; i++) blocks[i] = i;
    for (int i = 0; i < G * d; i++) q[i] = half_f32_to_bf16((float)(i % 11) / 11.0f);
    const kern_isa isa = kern_isa_best();
    const int pos = ctx, nc = kattn_n_chunks(pos);
    double *ms = malloc(sizeof(double) * (size_t)reps);
    for (int r = -1; r < reps; r++) {
        double t0 = now_s();
#pragma omp parallel num_threads(threads)
        {
            float *sc = malloc(sizeof(float) * (size_t)G * (size_t)(pos + 16)),
                  *oc = malloc(sizeof(float) * (size_t)nc * G * d);
            float out[256];
            for (int l = 0; l < L; l++) {
#pragma omp for schedule(dynamic, 1)
                for (int h = 0; h < nkv; h++) {
                    const unsigned char *base = kv + ((size_t)l * 2 * nkv + (size_t)h) * run;
                    kattn_src src = {base, base + (size_t)nkv * run, blocks, blkb, (size_t)d * 2, bs, sb, sbb};
                    for (int c = 0; c < nc; c++) kattn_scores(isa, q, G, d, &src, pos, c, 0.088f, sc, (size_t)pos + 16);
                    for (int g = 0; g < G; g++) kattn_softmax(isa, sc + (size_t)g * (pos + 16), pos + 1);
                    for (int c = 0; c < nc; c++)
                        kattn_pv(isa, sc, (size_t)pos + 16, G, d, &src, pos, c, oc + (size_t)c * G * d);
                    for (int g = 0; g < G; g++) kattn_sum(isa, oc + (size_t)g * d, (size_t)G * d, nc, d, out);
                }
            }
            free(sc);
            free(oc);
        }
        if (r >= 0) ms[r] = (now_s() - t0) * 1e3;
    }
    qsort(ms, (size_t)reps, sizeof(double), cmp_d);
    const double bytes = (double)(pos + 1) * L * 2 * nkv * d * 2;
    printf("{\"bench\":\"attn\",\"isa\":\"%s\",\"threads\":%d,\"ctx\":%d,\"best_ms\":%.3f,\"median_ms\":%.3f,"
           "\"kv_gb_per_token\":%.3f,\"best_gbs\":%.1f}\n",
           kern_isa_name(isa), threads, ctx, ms[0], ms[reps / 2], bytes / 1e9, bytes / ms[0] / 1e6);
    kern_free_huge(kv, kv_map);
    free(blocks);
    free(ms);
    return 0;
}

/* Parses the mode and options. */
int main(int argc, char **argv)
{
    if (argc < 2 || (strcmp(argv[1], "gemv") && strcmp(argv[1], "gemm") && strcmp(argv[1], "attn"))) {
        fprintf(stderr,
                "usage: %s gemv|gemm|attn [--threads N] [--shape 0.6b|1.7b] [--m M --k K --n N] [--ctx C] [--reps R]\n",
                argv[0]);
        return 2;
    }
    int threads = 1, reps = 10, shape17 = 0, ctx = 2048;
    int64_t M = 512, K = 1024, N = 3072;
    for (int i = 2; i + 1 < argc; i += 2) {
        const char *o = argv[i], *v = argv[i + 1];
        if (!strcmp(o, "--threads")) threads = atoi(v);
        else if (!strcmp(o, "--reps")) reps = atoi(v);
        else if (!strcmp(o, "--shape")) shape17 = !strcmp(v, "1.7b");
        else if (!strcmp(o, "--ctx")) ctx = atoi(v);
        else if (!strcmp(o, "--m")) M = atol(v);
        else if (!strcmp(o, "--k")) K = atol(v);
        else if (!strcmp(o, "--n")) N = atol(v);
        else {
            fprintf(stderr, "%s: unknown option %s\n", argv[0], o);
            return 2;
        }
    }
    if (threads < 1 || reps < 1 || reps > 10000 || M < 1 || K < 1 || N < 1) {
        fprintf(stderr, "%s: every number must be positive\n", argv[0]);
        return 2;
    }
    if (!strcmp(argv[1], "attn")) return ctx > 0 && ctx < (1 << 20) ? run_attn(threads, ctx, reps) : 2;
    return !strcmp(argv[1], "gemv") ? run_gemv(threads, shape17, reps) : run_gemm(threads, M, K, N, reps);
}
