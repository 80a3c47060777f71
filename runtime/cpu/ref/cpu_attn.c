/* cpu_attn.c: KV-cache memory in fixed-size blocks and causal grouped-query
 * attention for one query head (docs/numerics.md §1.3 d-e). The memory for
 * n_blocks x block_size positions of every layer is reserved once; which
 * blocks a sequence uses is decided by kv.c (its block table is passed in).
 * K is stored after QK-norm and RoPE, V as projected, both in the activation
 * dtype, so caching loses nothing. No threading here: the caller splits work
 * over (token, head). */
#include <math.h>
#include <stdlib.h>

#include "base/err.h"
#include "cpu/ref/cpu.h"

/* Reserves the whole KV memory with every size product checked. */
ms_status cpu_kv_init(cpu_kv *kv, int n_blocks, int block_size, const qwen3_config *c, st_dtype dtype, ms_error *err)
{
    memset(kv, 0, sizeof *kv);
    kv->dtype = dtype;
    kv->elem = dtype == ST_F32 ? 4 : 2;
    kv->n_blocks = n_blocks;
    kv->block_size = block_size;
    kv->n_layers = c->n_layers;
    kv->n_kv_heads = c->n_kv_heads;
    kv->head_dim = c->head_dim;
    /* bytes = n_blocks * L * 2 * block_size * nkv * d * elem, every step checked */
    size_t b = kv->elem;
    const size_t f[6] = {(size_t)n_blocks,   (size_t)c->n_layers,   2,
                         (size_t)block_size, (size_t)c->n_kv_heads, (size_t)c->head_dim};
    for (int i = 0; i < 6; i++)
        if (__builtin_mul_overflow(b, f[i], &b))
            return ms_seterr(err, MS_ERR_NOMEM,
                             "cpu backend: KV cache of %d blocks x %d tokens x %d layers x %d kv heads "
                             "x %d dims overflows size_t",
                             n_blocks, block_size, c->n_layers, c->n_kv_heads, c->head_dim);
    kv->mem = calloc(1, b);
    if (!kv->mem)
        return ms_seterr(err, MS_ERR_NOMEM,
                         "cpu backend: cannot allocate %zu bytes of KV cache (%d blocks x %d tokens)", b, n_blocks,
                         block_size);
    kv->bytes = b;
    return MS_OK;
}

/* Frees the KV memory; NULL-safe. */
void cpu_kv_free(cpu_kv *kv)
{
    if (!kv) return;
    free(kv->mem);
    kv->mem = NULL;
}

/* Address of [kind] (0 K, 1 V) for layer at pos of a sequence, kv head 0. */
static unsigned char *kv_at(const cpu_kv *kv, int layer, int kind, const int32_t *blocks, int pos)
{
    const size_t row = (size_t)kv->n_kv_heads * (size_t)kv->head_dim; /* elements per token */
    size_t blk = (size_t)blocks[pos / kv->block_size], off = (size_t)(pos % kv->block_size);
    size_t idx = ((blk * (size_t)kv->n_layers + (size_t)layer) * 2 + (size_t)kind) * (size_t)kv->block_size + off;
    return kv->mem + idx * row * kv->elem;
}

/* Writes one token's K and V (already in the KV dtype's values) at its position. */
void cpu_kv_store(cpu_kv *kv, int layer, const int32_t *blocks, int pos, const float *k, const float *v)
{
    const int64_t n = (int64_t)kv->n_kv_heads * kv->head_dim;
    unsigned char *kd = kv_at(kv, layer, 0, blocks, pos), *vd = kv_at(kv, layer, 1, blocks, pos);
    for (int64_t i = 0; i < n; i++) {
        elem_set(kd, kv->dtype, i, k[i]);
        elem_set(vd, kv->dtype, i, v[i]);
    }
}

/* Causal attention of one query head over its sequence's cached keys and values. */
void cpu_attend(float *out, const float *q, const cpu_kv *kv, int layer, int kv_head, const int32_t *blocks, int pos,
                float scale, float *scores, st_dtype act)
{
    const int d = kv->head_dim;
    const size_t head_off = (size_t)kv_head * (size_t)d * kv->elem;
    /* scores[j] = round(round(q . k_j) * scale), j = 0..pos (causal: keys <= pos) */
    float mx = -INFINITY;
    for (int j = 0; j <= pos; j++) {
        const unsigned char *kj = kv_at(kv, layer, 0, blocks, j) + head_off;
        float s = round_act(round_act(cpu_dot(q, kj, kv->dtype, d), act) * scale, act);
        scores[j] = s;
        if (s > mx) mx = s;
    }
    /* softmax in fp32, probabilities rounded to act */
    float sum = 0.0f;
    for (int j = 0; j <= pos; j++) {
        scores[j] = expf(scores[j] - mx);
        sum += scores[j];
    }
    const float inv = 1.0f / sum;
    for (int j = 0; j <= pos; j++) scores[j] = round_act(scores[j] * inv, act);
    /* out = P . V, accumulated in fp32 in key order */
    for (int i = 0; i < d; i++) out[i] = 0.0f;
    for (int j = 0; j <= pos; j++) {
        const unsigned char *vj = kv_at(kv, layer, 1, blocks, j) + head_off;
        const float p = scores[j];
        for (int i = 0; i < d; i++) out[i] += p * elem_get(vj, kv->dtype, i);
    }
    for (int i = 0; i < d; i++) out[i] = round_act(out[i], act);
}
