/* cpu.h: internals of the CPU reference backend (not a public interface).
 *
 * Numerics follow transformers' Qwen3 (docs/numerics.md §1.3-§1.5): every dot
 * product accumulates in fp32, and activations are rounded to the model's
 * activation dtype (bf16, f16 or f32) at exactly the points where HF stores a
 * tensor of that dtype: after each Linear, after RMSNorm's cast-then-scale,
 * after RoPE's products and sum, after silu, gate*up and every residual add,
 * after q.k, the scaling and the softmax, after P.v, and the logits. For f32
 * models the rounding is the identity.
 *
 * Batch invariance: each output element is computed by one kernel with one
 * fixed summation order (cpu_dot), whatever the batch, so a sequence's result
 * never depends on its neighbours in a forward call, on how a prompt is split
 * into chunks, or on the thread count. The fast backend (kern_fwd.c: packed
 * kernels, AVX-512/AVX2 with run-time dispatch) keeps the same property with
 * its own fixed sequences; backend.c chooses it for bf16 and int8 models and
 * this reference backend for the others (and tests run both). */
#ifndef MS_CPU_H
#define MS_CPU_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "base/half.h"
#include "model/config.h"
#include "model/model.h"

/* Rounds x to the activation dtype act (ST_BF16, ST_F16; ST_F32 is identity). */
static inline float round_act(float x, st_dtype act)
{
    if (act == ST_BF16) return half_bf16_to_f32(half_f32_to_bf16(x));
    if (act == ST_F16) return half_f16_to_f32(half_f32_to_f16(x));
    return x;
}

/* Element i of a contiguous array of dtype t (F32/F16/BF16), as float;
 * p need only be element-aligned or less (read through memcpy). */
static inline float elem_get(const void *p, st_dtype t, int64_t i)
{
    const unsigned char *b = (const unsigned char *)p;
    if (t == ST_BF16 || t == ST_F16) {
        uint16_t h;
        memcpy(&h, b + 2 * i, 2);
        return t == ST_BF16 ? half_bf16_to_f32(h) : half_f16_to_f32(h);
    }
    float f;
    memcpy(&f, b + 4 * i, 4);
    return f;
}

/* Stores x (already representable in t) as element i of an array of dtype t. */
static inline void elem_set(void *p, st_dtype t, int64_t i, float x)
{
    unsigned char *b = (unsigned char *)p;
    if (t == ST_BF16 || t == ST_F16) {
        uint16_t h = t == ST_BF16 ? half_f32_to_bf16(x) : half_f32_to_f16(x);
        memcpy(b + 2 * i, &h, 2);
    } else {
        memcpy(b + 4 * i, &x, 4);
    }
}

/* ---- ops (cpu_ops.c) ---- */

/* sum_k x[k] * w[k] over n elements, w of dtype wt. The one summation order
 * used for every matmul and attention score: 16 lanes (lane = k mod 16)
 * accumulated in fp32, then a fixed pairwise reduction. */
float cpu_dot(const float *x, const void *w, st_dtype wt, int64_t n);

/* out[T, N] = round(x[T, K] . W[N, K]^T + bias[N]); bias may be absent
 * (NULL or data NULL). Parallel over blocks of W rows; x and out must not alias. */
void cpu_matmul(float *out, const float *x, int T, const wmat *W, const wmat *bias, st_dtype act, int n_threads);

/* Several matmuls of the same input (q/k/v, gate/up) in one parallel region. */
#define MM_MAX_JOBS 4
typedef struct mm_job {
    float *out;       /* [T, W->rows] */
    const wmat *W;    /* [N, K] */
    const wmat *bias; /* [N] or NULL */
} mm_job;
void cpu_matmul_n(const mm_job *jobs, int n_jobs, const float *x, int T, st_dtype act, int n_threads);

/* out[n] = round(w * round(x * rsqrt(mean(x^2) + eps))) for one row (HF
 * Qwen3RMSNorm: fp32 statistics, cast, then scale). out may equal x. */
void cpu_rmsnorm(float *out, const float *x, const wmat *w, int64_t n, float eps, st_dtype act);

/* g[n] = round(round(silu(g)) * u): the SwiGLU product, in place in g. */
void cpu_swiglu(float *g, const float *u, size_t n, st_dtype act);

/* x[n] = round(x + y): a residual add. */
void cpu_add(float *x, const float *y, size_t n, st_dtype act);

/* out[H] = row id of E [V, H] as float (exact). */
void cpu_embed(float *out, const wmat *E, int32_t id);

/* ---- RoPE (cpu_rope.c) ---- */

typedef struct cpu_rope {
    int head_dim;
    float *inv_freq; /* [head_dim / 2], fp32 as HF computes it */
    float scaling;   /* attention_scaling: 1, or YaRN's factor */
} cpu_rope;

/* Builds inv_freq and scaling from the config (default RoPE or YaRN with the
 * fixed-factor behaviour of transformers PR #40320). */
ms_status cpu_rope_init(cpu_rope *r, const qwen3_config *c, ms_error *err);
void cpu_rope_free(cpu_rope *r);
/* cos[d/2], sin[d/2] for position pos, scaled and rounded to act as HF does. */
void cpu_rope_cos_sin(const cpu_rope *r, int pos, float *cos, float *sin, st_dtype act);
/* Rotates one head x[d] in place: pairs (i, i + d/2), HF rotate_half. */
void cpu_rope_apply(float *x, const float *cos, const float *sin, int d, st_dtype act);

/* ---- KV cache memory and attention (cpu_attn.c) ---- */

typedef struct cpu_kv {
    unsigned char *mem; /* [n_blocks, L, 2 (K, V), block_size, nkv, d] of dtype */
    st_dtype dtype;     /* = activation dtype, so storing is lossless */
    size_t elem;        /* bytes per element */
    size_t bytes;
    int n_blocks, block_size, n_layers, n_kv_heads, head_dim;
} cpu_kv;

/* Reserves n_blocks x block_size positions for every layer (checked sizes). */
ms_status cpu_kv_init(cpu_kv *kv, int n_blocks, int block_size, const qwen3_config *c, st_dtype dtype, ms_error *err);
void cpu_kv_free(cpu_kv *kv);
/* Stores k[nkv*d] and v[nkv*d] of one token at pos of a sequence whose block table is blocks. */
void cpu_kv_store(cpu_kv *kv, int layer, const int32_t *blocks, int pos, const float *k, const float *v);

/* One query head attending over positions 0..pos of its sequence:
 * out[d] = round(softmax(round(round(q.k_j) * scale)) . v_j) with the softmax
 * in fp32 and its probabilities rounded to act (HF eager attention).
 * scores is scratch of at least pos + 1 floats. */
void cpu_attend(float *out, const float *q, const cpu_kv *kv, int layer, int kv_head, const int32_t *blocks, int pos,
                float scale, float *scores, st_dtype act);

#endif
