/* cpu_ops.c: the elementwise and matrix ops of the CPU reference backend:
 * the one dot-product kernel, matmul over a weight matrix,
 * RMSNorm, SwiGLU, residual add, embedding lookup. Plain portable C (GCC
 * vector extensions, baseline SSE); OpenMP only in cpu_matmul_n. Rounding points
 * and the summation order are described in cpu.h. No allocation here. */
#include <math.h>

#include "cpu/ref/cpu.h"

#define LANES 16   /* partial sums per dot product: fixes the summation order */
#define MM_ROWS 16 /* weight rows per matmul work item (16 x K stays in L1/L2) */

/* The 16 fp32 lanes as four 4-wide GCC vectors (lanes 0-3, 4-7, 8-11, 12-15):
 * vector arithmetic is lane-wise IEEE, so this is exactly the scalar definition
 * "lane j accumulates the products k = j mod 16"; 4-wide vectors map onto the
 * baseline x86-64 SSE registers, so the sums stay in registers. */
typedef float v4f __attribute__((vector_size(16)));
typedef uint32_t v4u __attribute__((vector_size(16)));
typedef uint16_t v4h __attribute__((vector_size(8)));

typedef struct lanes {
    v4f v[LANES / 4];
} lanes;

/* Fixed pairwise reduction of the lane sums: lane j += lane j+8 (j < 8), then
 * j += j+4, j += j+2, j += j+1. With lanes 0-3 in v[0] ... 12-15 in v[3], the
 * first two steps are v[0]+v[2], v[1]+v[3] and their sum. */
static inline float reduce_lanes(const lanes *l)
{
    v4f c = (l->v[0] + l->v[2]) + (l->v[1] + l->v[3]);
    return (c[0] + c[2]) + (c[1] + c[3]);
}

/* Adds the partial last block (k < n) lane by lane, then reduces. */
static inline float finish_dot(lanes *l, const float *x, const unsigned char *w, st_dtype wt, int64_t k, int64_t n)
{
    if (k < n) {
        float a[LANES];
        memcpy(a, l->v, sizeof a);
        for (int j = 0; k + j < n; j++) a[j] += x[k + j] * elem_get(w, wt, k + j);
        memcpy(l->v, a, sizeof a);
    }
    return reduce_lanes(l);
}

/* 4 weights of dtype wt starting at element k, as floats. */
static inline v4f load4(const unsigned char *w, st_dtype wt, int64_t k)
{
    v4f f;
    if (wt == ST_F32) {
        memcpy(&f, w + 4 * k, sizeof f);
    } else if (wt == ST_BF16) {
        v4h h;
        memcpy(&h, w + 2 * k, sizeof h);
        v4u u = __builtin_convertvector(h, v4u) << 16;
        memcpy(&f, &u, sizeof f);
    } else {
        float t[4];
        for (int j = 0; j < 4; j++) t[j] = elem_get(w, ST_F16, k + j);
        memcpy(&f, t, sizeof f);
    }
    return f;
}

/* 4 activations starting at x. */
static inline v4f loadx(const float *x)
{
    v4f f;
    memcpy(&f, x, sizeof f);
    return f;
}

/* x . w over n elements for one weight dtype (inlined per dtype below). */
static inline float dot_impl(const float *x, const unsigned char *w, st_dtype wt, int64_t n)
{
    lanes l = {{{0}}};
    v4f a0 = l.v[0], a1 = l.v[1], a2 = l.v[2], a3 = l.v[3];
    int64_t k = 0;
    for (; k + LANES <= n; k += LANES) {
        a0 += loadx(x + k) * load4(w, wt, k);
        a1 += loadx(x + k + 4) * load4(w, wt, k + 4);
        a2 += loadx(x + k + 8) * load4(w, wt, k + 8);
        a3 += loadx(x + k + 12) * load4(w, wt, k + 12);
    }
    l.v[0] = a0, l.v[1] = a1, l.v[2] = a2, l.v[3] = a3;
    return finish_dot(&l, x, w, wt, k, n);
}

static float dot_f32(const float *x, const unsigned char *w, int64_t n)
{
    return dot_impl(x, w, ST_F32, n);
}
static float dot_bf16(const float *x, const unsigned char *w, int64_t n)
{
    return dot_impl(x, w, ST_BF16, n);
}
static float dot_f16(const float *x, const unsigned char *w, int64_t n)
{
    return dot_impl(x, w, ST_F16, n);
}

/* Dispatches to the dot kernel of the weight dtype. */
float cpu_dot(const float *x, const void *w, st_dtype wt, int64_t n)
{
    const unsigned char *wb = (const unsigned char *)w;
    if (wt == ST_BF16) return dot_bf16(x, wb, n);
    if (wt == ST_F16) return dot_f16(x, wb, n);
    return dot_f32(x, wb, n);
}

/* Rows [n0, n1) of one matmul for all T tokens. */
static void matmul_block(const mm_job *j, const float *x, int T, int64_t n0, int64_t n1, st_dtype act)
{
    const wmat *W = j->W;
    const int64_t N = W->rows, K = W->cols;
    const size_t row_bytes = (size_t)K * (W->dtype == ST_F32 ? 4 : 2);
    const unsigned char *wb = (const unsigned char *)W->data;
    const int has_bias = j->bias && j->bias->data;
    for (int t = 0; t < T; t++) {
        const float *xt = x + (size_t)t * (size_t)K;
        float *ot = j->out + (size_t)t * (size_t)N;
        for (int64_t n = n0; n < n1; n++) {
            float y = cpu_dot(xt, wb + (size_t)n * row_bytes, W->dtype, K);
            if (has_bias) y += elem_get(j->bias->data, j->bias->dtype, n);
            ot[n] = round_act(y, act);
        }
    }
}

/* Runs several matmuls of one input in one OpenMP region over weight-row blocks. */
void cpu_matmul_n(const mm_job *jobs, int n_jobs, const float *x, int T, st_dtype act, int n_threads)
{
    /* Work items: blocks of MM_ROWS weight rows, job after job. Each item owns
     * those output columns for all T rows: the weight rows are read once per
     * call and reused from cache across tokens. */
    int64_t first[MM_MAX_JOBS + 1] = {0};
    for (int j = 0; j < n_jobs; j++) first[j + 1] = first[j] + (jobs[j].W->rows + MM_ROWS - 1) / MM_ROWS;
#pragma omp parallel for schedule(static) num_threads(n_threads)
    for (int64_t it = 0; it < first[n_jobs]; it++) {
        int j = 0;
        while (it >= first[j + 1]) j++;
        int64_t n0 = (it - first[j]) * MM_ROWS, N = jobs[j].W->rows;
        matmul_block(&jobs[j], x, T, n0, n0 + MM_ROWS < N ? n0 + MM_ROWS : N, act);
    }
}

/* A single matmul (cpu_matmul_n with one job). */
void cpu_matmul(float *out, const float *x, int T, const wmat *W, const wmat *bias, st_dtype act, int n_threads)
{
    mm_job j = {out, W, bias};
    cpu_matmul_n(&j, 1, x, T, act, n_threads);
}

/* RMSNorm of one row as HF computes it (fp32 statistics, cast, then scale). */
void cpu_rmsnorm(float *out, const float *x, const wmat *w, int64_t n, float eps, st_dtype act)
{
    float acc[LANES] = {0};
    for (int64_t i = 0; i < n; i++) acc[i % LANES] += x[i] * x[i];
    lanes l;
    memcpy(l.v, acc, sizeof acc);
    float var = reduce_lanes(&l) / (float)n;
    float r = 1.0f / sqrtf(var + eps);
    for (int64_t i = 0; i < n; i++) out[i] = round_act(elem_get(w->data, w->dtype, i) * round_act(x[i] * r, act), act);
}

/* SwiGLU product in place, rounding where HF does. */
void cpu_swiglu(float *g, const float *u, size_t n, st_dtype act)
{
    for (size_t i = 0; i < n; i++) {
        float s = round_act(g[i] / (1.0f + expf(-g[i])), act); /* silu, as torch computes it */
        g[i] = round_act(s * u[i], act);
    }
}

/* Residual add, rounded to the activation dtype. */
void cpu_add(float *x, const float *y, size_t n, st_dtype act)
{
    for (size_t i = 0; i < n; i++) x[i] = round_act(x[i] + y[i], act);
}

/* Copies one embedding row out as float. */
void cpu_embed(float *out, const wmat *E, int32_t id)
{
    const size_t esz = E->dtype == ST_F32 ? 4 : 2;
    const unsigned char *row = (const unsigned char *)E->data + (size_t)id * (size_t)E->cols * esz;
    for (int64_t i = 0; i < E->cols; i++) out[i] = elem_get(row, E->dtype, i);
}
