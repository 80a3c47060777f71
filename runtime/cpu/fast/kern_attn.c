/* kern_attn.c: the portable definition of the attention steps of
 * kern_attn.h (scores, softmax, P.V, chunk sum) and the dispatch to the
 * AVX-512 and AVX2 copies, which must give the same bits. The scalar code is also
 * what CPUs without AVX-512 BF16 run. No threading and no allocation: the
 * backend decides which thread runs which head and chunk. */
#include <math.h>

#include "base/half.h"
#include "cpu/fast/kern_attn.h"

/* Rounds to the nearest bf16 value (ties to even), as a float. */
static inline float rb(float x)
{
    return half_bf16_to_f32(half_f32_to_bf16(x));
}

/* The fixed reduction tree of 16 lane sums: (i, i+8), (i, i+4), (i, i+2), (i, i+1). */
static float tree16(float a[16])
{
    for (int s = 8; s > 0; s /= 2)
        for (int i = 0; i < s; i++) a[i] += a[i + s];
    return a[0];
}

/* exp(x) by the fixed Cephes-form polynomial shared with the vector code. */
float kattn_exp(float x)
{
    x = x < -87.3f ? -87.3f : x > 88.0f ? 88.0f : x;
    const float n = nearbyintf(x * 1.44269504088896341f);
    float r = fmaf(n, -0.693359375f, x);
    r = fmaf(n, 2.12194440e-4f, r);
    float p = 1.9875691500e-4f;
    p = fmaf(p, r, 1.3981999507e-3f);
    p = fmaf(p, r, 8.3334519073e-3f);
    p = fmaf(p, r, 4.1665795894e-2f);
    p = fmaf(p, r, 1.6666665459e-1f);
    p = fmaf(p, r, 5.0000001201e-1f);
    const float r2 = r * r;
    float y = fmaf(p, r2, r);
    y = y + 1.0f;
    const uint32_t bits = (uint32_t)((int32_t)n + 127) << 23; /* 2^n, n in [-126, 127] */
    float scale;
    memcpy(&scale, &bits, 4);
    return y * scale;
}

/* Address of element 0 of position j (keys: base = src->k, values: src->v). */
static inline const uint16_t *kv_pos(const unsigned char *base, const kattn_src *src, int j)
{
    return (const uint16_t *)(kattn_block(base, src, j / src->block_size) +
                              (size_t)(j % src->block_size) * src->pos_stride);
}

/* q . k as 16 vdpbf16ps-style lanes over blocks of 32 dims, then tree16. */
static float dot_lanes(const uint16_t *q, const uint16_t *k, int d)
{
    float acc[16] = {0};
    for (int z = 0; z * 32 < d; z++)
        for (int i = 0; i < 16 && 32 * z + 2 * i < d; i++) {
            const int e = 32 * z + 2 * i;
            acc[i] = acc[i] + half_bf16_to_f32(q[e + 1]) * half_bf16_to_f32(k[e + 1]);
            acc[i] = acc[i] + half_bf16_to_f32(q[e]) * half_bf16_to_f32(k[e]);
        }
    return tree16(acc);
}

/* Key range [*j0, *j1) of chunk c of keys 0..pos. */
static inline void chunk_range(int pos, int c, int *j0, int *j1)
{
    *j0 = c * KATTN_CHUNK;
    *j1 = *j0 + KATTN_CHUNK < pos + 1 ? *j0 + KATTN_CHUNK : pos + 1;
}

void kattn_scores(kern_isa isa, const uint16_t *q, int G, int d, const kattn_src *src, int pos, int c, float scale,
                  float *s, size_t lds)
{
    int j0, j1;
    chunk_range(pos, c, &j0, &j1);
    if (isa == KERN_AVX512 && (d == 64 || d == 128 || d == 256)) {
        kattn_scores_avx512(q, G, d, src, j0, j1, scale, s, lds);
        return;
    }
    if (isa >= KERN_AVX2 && d % 32 == 0) {
        kattn_scores_avx2(q, G, d, src, j0, j1, scale, s, lds);
        return;
    }
    for (int g = 0; g < G; g++)
        for (int j = j0; j < j1; j++)
            s[(size_t)g * lds + (size_t)j] =
                rb(rb(dot_lanes(q + (size_t)g * (size_t)d, kv_pos(src->k, src, j), d)) * scale);
}

/* Scores to bf16-rounded probabilities in place (max, exp, lane sums, 1/l). */
void kattn_softmax(kern_isa isa, float *s, int n)
{
    if (isa == KERN_AVX512) {
        kattn_softmax_avx512(s, n);
        return;
    }
    if (isa == KERN_AVX2) {
        kattn_softmax_avx2(s, n);
        return;
    }
    float m = -INFINITY, lanes[16] = {0};
    for (int j = 0; j < n; j++) m = s[j] > m ? s[j] : m;
    for (int j = 0; j < n; j++) {
        s[j] = kattn_exp(s[j] - m);
        lanes[j % 16] += s[j];
    }
    const float inv = 1.0f / tree16(lanes);
    for (int j = 0; j < n; j++) s[j] = rb(s[j] * inv);
}

void kattn_pv(kern_isa isa, const float *p, size_t lds, int G, int d, const kattn_src *src, int pos, int c, float *o)
{
    int j0, j1;
    chunk_range(pos, c, &j0, &j1);
    if (isa == KERN_AVX512 && (d == 64 || d == 128 || d == 256)) {
        kattn_pv_avx512(p, lds, G, d, src, j0, j1, o);
        return;
    }
    if (isa >= KERN_AVX2 && d % 32 == 0) {
        kattn_pv_avx2(p, lds, G, d, src, j0, j1, o);
        return;
    }
    for (int g = 0; g < G; g++) {
        float *og = o + (size_t)g * (size_t)d;
        const float *pg = p + (size_t)g * lds;
        for (int i = 0; i < d; i++) og[i] = 0.0f;
        for (int j = j0; j < j1; j++) {
            const uint16_t *vj = kv_pos(src->v, src, j);
            for (int i = 0; i < d; i++) og[i] = fmaf(pg[j], half_bf16_to_f32(vj[i]), og[i]);
        }
    }
}

/* Adds the chunk partials in chunk order and rounds to bf16. */
void kattn_sum(kern_isa isa, const float *oc, size_t stride, int n_chunks, int d, float *out)
{
    if (isa == KERN_AVX512 && d % 16 == 0) {
        kattn_sum_avx512(oc, stride, n_chunks, d, out);
        return;
    }
    for (int i = 0; i < d; i++) {
        float v = oc[i];
        for (int c = 1; c < n_chunks; c++) v = v + oc[(size_t)c * stride + (size_t)i];
        out[i] = rb(v);
    }
}
