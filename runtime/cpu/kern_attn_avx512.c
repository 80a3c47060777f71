/* kern_attn_avx512.c: the attention steps of kern_attn.h with AVX-512 BF16,
 * bit-identical to the scalar definitions in kern_attn.c.
 * Scores: 16 / G keys at a time for all G query heads, each key row loaded
 * once, d/32 vdpbf16ps per (head, key) into its own accumulator, then one
 * transposing tree reduction (kern_avx512.h) gives the 16 scores in one vector. Softmax: vector max, v_exp, 16 lane sums, the
 * tree, bf16 rounding. P.V: each value row is widened to fp32 once and fed to
 * up to 4 query heads with one FMA per 16 dims. Head dims 64, 128, 256 only
 * (registers sized at compile time); others run the scalar code. */
#include <math.h>
#include <string.h>

#include "kern_attn.h"
#include "kern_avx512.h"

/* Walks positions j0 .. j1-1 of one base (k or v) without a division per
 * step, prefetching the first row of the next block of the range. */
typedef struct kv_iter {
    const unsigned char *base, *blk; /* blk: the current block's row 0 */
    const kattn_src *src;
    int b, o, last_b;                /* block index, offset in block, last block of the range */
} kv_iter;

/* Starts a walk over positions j0 .. j1-1. */
static inline kv_iter kv_begin(const unsigned char *base, const kattn_src *src, int j0, int j1)
{
    kv_iter it = {base, NULL, src, j0 / src->block_size, j0 % src->block_size, (j1 - 1) / src->block_size};
    it.blk = kattn_block(base, src, it.b);
    return it;
}

/* The current position's row; then advance. Call at most j1 - j0 times.
 * Blocks may be scattered, so row o of the block a few ahead is prefetched
 * with row o here (the hardware prefetcher sees only contiguous runs). */
static inline const uint16_t *kv_next(kv_iter *it, const int row_bytes)
{
    if (it->o == it->src->block_size) {
        it->o = 0;
        it->b++;
        it->blk = kattn_block(it->base, it->src, it->b);
    }
    if (it->b + 2 <= it->last_b) {
        const char *pf = (const char *)(kattn_block(it->base, it->src, it->b + 2) + (size_t)it->o * it->src->pos_stride);
        for (int c = 0; c < row_bytes; c += 64) _mm_prefetch(pf + c, _MM_HINT_T0);
    }
    return (const uint16_t *)(it->blk + (size_t)(it->o++) * it->src->pos_stride);
}

/* Mask of the first n (0..16) lanes. */
static inline __mmask16 first(int n) { return (__mmask16)(n >= 16 ? 0xffffu : (1u << n) - 1u); }

/* Scores for keys [j0, j1): each pass takes kpp = 16 / G keys for all G heads
 * (G * kpp <= 16 accumulators, one per (head, key)), so every key row is
 * loaded once per pass; one transposing tree reduces the whole pass. */
static inline __attribute__((always_inline)) void scores(const uint16_t *q, int G, const kattn_src *src, int j0,
                                                         int j1, float scale, float *s, size_t lds, const int D)
{
    enum { NZ_MAX = 8 };
    const int NZ = D / 32, kpp = 16 / G;
    const __m512 sc = _mm512_set1_ps(scale);
    float red[16] __attribute__((aligned(64)));
    kv_iter it = kv_begin(src->k, src, j0, j1);
    for (int j = j0; j < j1; j += kpp) {
        const int nk = j1 - j < kpp ? j1 - j : kpp;
        __m512 acc[16];
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++) acc[i] = _mm512_setzero_ps();
        for (int t = 0; t < nk; t++) {
            const uint16_t *kp = kv_next(&it, D * 2);
            __m512bh kz[NZ_MAX];
#pragma GCC unroll 8
            for (int z = 0; z < NZ; z++) kz[z] = (__m512bh)_mm512_loadu_si512(kp + 32 * z);
            for (int g = 0; g < G; g++) {
                __m512 a = _mm512_setzero_ps();
#pragma GCC unroll 8
                for (int z = 0; z < NZ; z++)
                    a = _mm512_dpbf16_ps(a, (__m512bh)_mm512_loadu_si512(q + (size_t)g * D + 32 * z), kz[z]);
                acc[g * kpp + t] = a;
            }
        }
        /* red[g * kpp + t] = score of key j + t for head g */
        _mm512_store_ps(red, v_round_bf16(_mm512_mul_ps(v_round_bf16(v_tree16x16(acc)), sc)));
        for (int g = 0; g < G; g++)
            for (int t = 0; t < nk; t++) s[(size_t)g * lds + (size_t)(j + t)] = red[g * kpp + t];
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

/* kattn_softmax with 16-lane vectors and masked tails. */
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

/* P.V for keys [j0, j1): each value row widened once, then GS heads per pass. */
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
        kv_iter it = kv_begin(src->v, src, j0, j1);
        for (int j = j0; j < j1; j++) {
            const uint16_t *vp = kv_next(&it, D * 2);
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

/* Dispatches P.V to the head-dim specialisation. */
void kattn_pv_avx512(const float *p, size_t lds, int G, int d, const kattn_src *src, int j0, int j1, float *o)
{
    switch (d) {
    case 64: pv(p, lds, G, src, j0, j1, o, 64); break;
    case 128: pv(p, lds, G, src, j0, j1, o, 128); break;
    default: pv(p, lds, G, src, j0, j1, o, 256); break; /* kattn_pv passes 64/128/256 only */
    }
}
