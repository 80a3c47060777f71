/* kern_attn_avx512.c: the attention steps of kern_attn.h with AVX-512 BF16,
 * bit-identical to the scalar definitions in kern_attn.c.
 * Scores: 16 keys at a time, d/32 vdpbf16ps per key into its own
 * accumulator, then one transposing tree reduction (kern_avx512.h) gives the
 * 16 scores in one vector. Softmax: vector max, v_exp, 16 lane sums, the
 * tree, bf16 rounding. P.V: each value row is widened to fp32 once and fed to
 * up to 4 query heads with one FMA per 16 dims. Head dims 64, 128, 256 only
 * (registers sized at compile time); others run the scalar code. */
#include <math.h>
#include <string.h>

#include "kern_attn.h"
#include "kern_avx512.h"

/* Address of element 0 of position j (keys: base = src->k, values: src->v). */
static inline const uint16_t *kv_pos(const unsigned char *base, const kattn_src *src, int j)
{
    return (const uint16_t *)(base + (size_t)src->blocks[j / src->block_size] * src->blk_stride +
                              (size_t)(j % src->block_size) * src->pos_stride);
}

/* Mask of the first n (0..16) lanes. */
static inline __mmask16 first(int n) { return (__mmask16)(n >= 16 ? 0xffffu : (1u << n) - 1u); }

static inline __attribute__((always_inline)) void scores(const uint16_t *q, int G, const kattn_src *src, int j0,
                                                         int j1, float scale, float *s, size_t lds, const int D)
{
    enum { NZ_MAX = 8 };
    const int NZ = D / 32;
    const __m512 sc = _mm512_set1_ps(scale);
    for (int g = 0; g < G; g++) {
        __m512bh qz[NZ_MAX];
#pragma GCC unroll 8
        for (int z = 0; z < NZ; z++) qz[z] = (__m512bh)_mm512_loadu_si512(q + (size_t)g * D + 32 * z);
        for (int j = j0; j < j1; j += 16) {
            const int nk = j1 - j < 16 ? j1 - j : 16;
            __m512 acc[16];
#pragma GCC unroll 16
            for (int t = 0; t < 16; t++) {
                acc[t] = _mm512_setzero_ps();
                if (t < nk) {
                    const uint16_t *kp = kv_pos(src->k, src, j + t);
#pragma GCC unroll 8
                    for (int z = 0; z < NZ; z++)
                        acc[t] = _mm512_dpbf16_ps(acc[t], qz[z], (__m512bh)_mm512_loadu_si512(kp + 32 * z));
                }
            }
            const __m512 sv = v_round_bf16(_mm512_mul_ps(v_round_bf16(v_tree16x16(acc)), sc));
            _mm512_mask_storeu_ps(s + (size_t)g * lds + (size_t)j, first(nk), sv);
        }
    }
}

void kattn_scores_avx512(const uint16_t *q, int G, int d, const kattn_src *src, int j0, int j1, float scale,
                         float *s, size_t lds)
{
    switch (d) {
    case 64: scores(q, G, src, j0, j1, scale, s, lds, 64); break;
    case 128: scores(q, G, src, j0, j1, scale, s, lds, 128); break;
    default: scores(q, G, src, j0, j1, scale, s, lds, 256); break; /* kattn_scores passes 64/128/256 only */
    }
}

void kattn_softmax_avx512(float *s, int n)
{
    __m512 mv = _mm512_set1_ps(-INFINITY);
    for (int j = 0; j < n; j += 16) mv = _mm512_mask_max_ps(mv, first(n - j), mv, _mm512_maskz_loadu_ps(first(n - j), s + j));
    const __m512 m = _mm512_set1_ps(_mm512_reduce_max_ps(mv));
    __m512 lanes = _mm512_setzero_ps();
    for (int j = 0; j < n; j += 16) {
        const __mmask16 k = first(n - j);
        const __m512 e = _mm512_maskz_mov_ps(k, v_exp(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, s + j), m)));
        _mm512_mask_storeu_ps(s + j, k, e);
        lanes = _mm512_add_ps(lanes, e);
    }
    float a[16];
    _mm512_storeu_ps(a, lanes);
    for (int w = 8; w > 0; w /= 2)
        for (int i = 0; i < w; i++) a[i] += a[i + w];
    const __m512 inv = _mm512_set1_ps(1.0f / a[0]);
    for (int j = 0; j < n; j += 16) {
        const __mmask16 k = first(n - j);
        _mm512_mask_storeu_ps(s + j, k, v_round_bf16(_mm512_mul_ps(_mm512_maskz_loadu_ps(k, s + j), inv)));
    }
}

static inline __attribute__((always_inline)) void pv(const float *p, size_t lds, int G, const kattn_src *src,
                                                     int j0, int j1, float *o, const int D)
{
    enum { NO_MAX = 16 };
    const int NO = D / 16;                        /* fp32 zmm per row */
    const int GS = NO <= 4 ? 4 : NO <= 8 ? 2 : 1; /* heads per pass over the values (<= 16 accumulators) */
    for (int g0 = 0; g0 < G; g0 += GS) {
        const int gs = G - g0 < GS ? G - g0 : GS;
        __m512 acc[NO_MAX];
#pragma GCC unroll 16
        for (int i = 0; i < GS * NO; i++) acc[i] = _mm512_setzero_ps();
        for (int j = j0; j < j1; j++) {
            const uint16_t *vp = kv_pos(src->v, src, j);
            __m512 vf[NO_MAX];
#pragma GCC unroll 16
            for (int z = 0; z < NO; z++)
                vf[z] = _mm512_castsi512_ps(_mm512_slli_epi32(
                    _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(vp + 16 * z))), 16));
#pragma GCC unroll 4
            for (int g = 0; g < GS; g++) {
                if (g >= gs) break;
                const __m512 e = _mm512_set1_ps(p[(size_t)(g0 + g) * lds + (size_t)j]);
#pragma GCC unroll 16
                for (int z = 0; z < NO; z++) acc[g * NO + z] = _mm512_fmadd_ps(e, vf[z], acc[g * NO + z]);
            }
        }
        for (int g = 0; g < gs; g++)
            for (int z = 0; z < NO; z++) _mm512_storeu_ps(o + (size_t)(g0 + g) * D + 16 * z, acc[g * NO + z]);
    }
}

void kattn_pv_avx512(const float *p, size_t lds, int G, int d, const kattn_src *src, int j0, int j1, float *o)
{
    switch (d) {
    case 64: pv(p, lds, G, src, j0, j1, o, 64); break;
    case 128: pv(p, lds, G, src, j0, j1, o, 128); break;
    default: pv(p, lds, G, src, j0, j1, o, 256); break; /* kattn_pv passes 64/128/256 only */
    }
}
