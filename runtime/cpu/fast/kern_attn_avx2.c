/* kern_attn_avx2.c: the attention steps of kern_attn.h for CPUs with AVX2 +
 * FMA but no AVX-512 BF16, bit-identical to the scalar definitions in
 * kern_attn.c. Scores: the 16 dot-product lanes live in two ymm registers
 * (even/odd bf16 elements widened by shift and mask, odd first; products of
 * two bf16 are exact, so FMA equals multiply-then-add), then v8_tree16.
 * Softmax: v8_exp on blocks of 16 keys (the scalar kattn_exp on the tail,
 * same bits). P.V: 64 dims (8 accumulators) per pass over the values.
 * Head dims that are multiples of 32 only; others run the scalar code. */
#include <math.h>
#include <string.h>

#include "base/half.h"
#include "cpu/fast/kern_attn.h"
#include "cpu/fast/kern_avx2.h"

/* Address of element 0 of position j (base = src->k or src->v). */
static inline const uint16_t *kv_pos(const unsigned char *base, const kattn_src *src, int j)
{
    return (const uint16_t *)(kattn_block(base, src, j / src->block_size) +
                              (size_t)(j % src->block_size) * src->pos_stride);
}

/* Rounds to the nearest bf16 value (ties to even), as a float. */
static inline float rb(float x)
{
    return half_bf16_to_f32(half_f32_to_bf16(x));
}

void kattn_scores_avx2(const uint16_t *q, int G, int d, const kattn_src *src, int j0, int j1, float scale, float *s,
                       size_t lds)
{
    const __m256i hi16 = _mm256_set1_epi32((int)0xffff0000u);
    for (int g = 0; g < G; g++) {
        const uint16_t *qg = q + (size_t)g * (size_t)d;
        for (int j = j0; j < j1; j++) {
            const uint16_t *kp = kv_pos(src->k, src, j);
            __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
            for (int z = 0; z < d; z += 32) {
                const __m256i q0 = _mm256_loadu_si256((const __m256i *)(qg + z));
                const __m256i q1 = _mm256_loadu_si256((const __m256i *)(qg + z + 16));
                const __m256i k0 = _mm256_loadu_si256((const __m256i *)(kp + z));
                const __m256i k1 = _mm256_loadu_si256((const __m256i *)(kp + z + 16));
                lo = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_and_si256(q0, hi16)),
                                     _mm256_castsi256_ps(_mm256_and_si256(k0, hi16)), lo);
                lo = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(q0, 16)),
                                     _mm256_castsi256_ps(_mm256_slli_epi32(k0, 16)), lo);
                hi = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_and_si256(q1, hi16)),
                                     _mm256_castsi256_ps(_mm256_and_si256(k1, hi16)), hi);
                hi = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(q1, 16)),
                                     _mm256_castsi256_ps(_mm256_slli_epi32(k1, 16)), hi);
            }
            s[(size_t)g * lds + (size_t)j] = rb(rb(v8_tree16(lo, hi)) * scale);
        }
    }
}

/* kattn_softmax with 8-lane vectors (16 lane sums in two registers). */
void kattn_softmax_avx2(float *s, int n)
{
    const int nv = n / 16 * 16;
    __m256 mv = _mm256_set1_ps(-INFINITY);
    for (int j = 0; j < nv; j += 8) mv = _mm256_max_ps(mv, _mm256_loadu_ps(s + j));
    float mm[8], m = -INFINITY;
    _mm256_storeu_ps(mm, mv);
    for (int i = 0; i < 8; i++) m = mm[i] > m ? mm[i] : m;
    for (int j = nv; j < n; j++) m = s[j] > m ? s[j] : m;
    const __m256 mb = _mm256_set1_ps(m);
    __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
    for (int j = 0; j < nv; j += 16) {
        const __m256 e0 = v8_exp(_mm256_sub_ps(_mm256_loadu_ps(s + j), mb));
        const __m256 e1 = v8_exp(_mm256_sub_ps(_mm256_loadu_ps(s + j + 8), mb));
        _mm256_storeu_ps(s + j, e0);
        _mm256_storeu_ps(s + j + 8, e1);
        lo = _mm256_add_ps(lo, e0);
        hi = _mm256_add_ps(hi, e1);
    }
    float lanes[16];
    _mm256_storeu_ps(lanes, lo);
    _mm256_storeu_ps(lanes + 8, hi);
    for (int j = nv; j < n; j++) {
        s[j] = kattn_exp(s[j] - m);
        lanes[j % 16] += s[j];
    }
    for (int w = 8; w > 0; w /= 2)
        for (int i = 0; i < w; i++) lanes[i] += lanes[i + w];
    const float inv = 1.0f / lanes[0];
    const __m256 iv = _mm256_set1_ps(inv);
    int j = 0;
    for (; j + 8 <= n; j += 8) _mm256_storeu_ps(s + j, v8_round_bf16(_mm256_mul_ps(_mm256_loadu_ps(s + j), iv)));
    for (; j < n; j++) s[j] = rb(s[j] * inv);
}

/* P.V for keys [j0, j1), 64 dims per pass over the values. */
void kattn_pv_avx2(const float *p, size_t lds, int G, int d, const kattn_src *src, int j0, int j1, float *o)
{
    for (int g = 0; g < G; g++) {
        const float *pg = p + (size_t)g * lds;
        for (int z0 = 0; z0 < d; z0 += 64) {
            const int nz = d - z0 < 64 ? (d - z0) / 8 : 8; /* ymm of 8 dims in this pass */
            __m256 acc[8];
            for (int z = 0; z < 8; z++) acc[z] = _mm256_setzero_ps();
            for (int j = j0; j < j1; j++) {
                const uint16_t *vp = kv_pos(src->v, src, j) + z0;
                const __m256 e = _mm256_set1_ps(pg[j]);
                if (nz == 8) {
#pragma GCC unroll 8
                    for (int z = 0; z < 8; z++) acc[z] = _mm256_fmadd_ps(e, v8_bf16(vp + 8 * z), acc[z]);
                } else {
                    for (int z = 0; z < nz; z++) acc[z] = _mm256_fmadd_ps(e, v8_bf16(vp + 8 * z), acc[z]);
                }
            }
            for (int z = 0; z < nz; z++) _mm256_storeu_ps(o + (size_t)g * d + z0 + 8 * z, acc[z]);
        }
    }
}
