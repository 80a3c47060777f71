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

#include "cpu/fast/kern_attn.h"
#include "cpu/fast/kern_avx512.h"

/* Walks positions j0 .. j1-1 of one base (k or v) without a division per
 * step, prefetching the first row of the next block of the range. */
typedef struct kv_iter {
    const unsigned char *base, *blk; /* blk: the current block's row 0 */
    const kattn_src *src;
    int b, o, last_b; /* block index, offset in block, last block of the range */
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
        const char *pf =
            (const char *)(kattn_block(it->base, it->src, it->b + 2) + (size_t)it->o * it->src->pos_stride);
        for (int c = 0; c < row_bytes; c += 64) _mm_prefetch(pf + c, _MM_HINT_T0);
    }
    return (const uint16_t *)(it->blk + (size_t)(it->o++) * it->src->pos_stride);
}

/* Mask of the first n (0..16) lanes. */
static inline __mmask16 first(int n)
{
    return (__mmask16)(n >= 16 ? 0xffffu : (1u << n) - 1u);
}

/* Scores for keys [j0, j1): each pass takes KPP = 16 / G keys for all G heads
 * (G * KPP <= 16 accumulators, one per (head, key)), so every key row is
 * loaded once per pass; one transposing tree reduces the whole pass. G and D
 * are compile-time constants here, so the accumulators stay in registers;
 * accumulators without a key (a short last pass, or 16 % G) are zero. */
static inline __attribute__((always_inline)) void scores(const uint16_t *q, const kattn_src *src, int j0, int j1,
                                                         float scale, float *s, size_t lds, const int D, const int G)
{
    enum { NZ_MAX = 8 };
    const int NZ = D / 32, KPP = 16 / G;
    const __m512 sc = _mm512_set1_ps(scale);
    kv_iter it = kv_begin(src->k, src, j0, j1);
    for (int j = j0; j < j1; j += KPP) {
        const int nk = j1 - j < KPP ? j1 - j : KPP;
        __m512 acc[16];
#pragma GCC unroll 16
        for (int i = G * KPP; i < 16; i++) acc[i] = _mm512_setzero_ps();
#pragma GCC unroll 16
        for (int t = 0; t < KPP; t++) {
            if (t >= nk) {
#pragma GCC unroll 16
                for (int g = 0; g < G; g++) acc[g * KPP + t] = _mm512_setzero_ps();
                continue;
            }
            const uint16_t *kp = kv_next(&it, D * 2);
            __m512bh kz[NZ_MAX];
#pragma GCC unroll 8
            for (int z = 0; z < NZ; z++) kz[z] = (__m512bh)_mm512_loadu_si512(kp + 32 * z);
#pragma GCC unroll 16
            for (int g = 0; g < G; g++) {
                __m512 a = _mm512_setzero_ps();
#pragma GCC unroll 8
                for (int z = 0; z < NZ; z++)
                    a = _mm512_dpbf16_ps(a, (__m512bh)_mm512_loadu_si512(q + (size_t)g * D + 32 * z), kz[z]);
                acc[g * KPP + t] = a;
            }
        }
        /* lane g * KPP + t = score of key j + t for head g: rotate head g's lanes
         * down to 0 .. nk-1 and store those */
        const __m512 red = v_round_bf16(_mm512_mul_ps(v_round_bf16(v_tree16x16(acc)), sc));
        const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
#pragma GCC unroll 16
        for (int g = 0; g < G; g++) {
            const __m512 rg =
                g == 0 ? red
                       : _mm512_permutexvar_ps(_mm512_and_si512(_mm512_add_epi32(iota, _mm512_set1_epi32(g * KPP)),
                                                                _mm512_set1_epi32(15)),
                                               red);
            _mm512_mask_storeu_ps(s + (size_t)g * lds + (size_t)j, first(nk), rg);
        }
    }
}

/* scores() for a head dim known at compile time and any G in 1..16 (Qwen3
 * models have G = 2, 4, 5 or 8). */
static inline __attribute__((always_inline)) void scores_d(const uint16_t *q, int G, const kattn_src *src, int j0,
                                                           int j1, float scale, float *s, size_t lds, const int D)
{
    switch (G) {
    case 1: scores(q, src, j0, j1, scale, s, lds, D, 1); break;
    case 2: scores(q, src, j0, j1, scale, s, lds, D, 2); break;
    case 3: scores(q, src, j0, j1, scale, s, lds, D, 3); break;
    case 4: scores(q, src, j0, j1, scale, s, lds, D, 4); break;
    case 5: scores(q, src, j0, j1, scale, s, lds, D, 5); break;
    case 6: scores(q, src, j0, j1, scale, s, lds, D, 6); break;
    case 8: scores(q, src, j0, j1, scale, s, lds, D, 8); break;
    case 16: scores(q, src, j0, j1, scale, s, lds, D, 16); break;
    default: /* 7, 9..15: one head at a time (the same bits per head) */
        for (int g = 0; g < G; g++) scores(q + (size_t)g * D, src, j0, j1, scale, s + (size_t)g * lds, lds, D, 1);
    }
}

void kattn_scores_avx512(const uint16_t *q, int G, int d, const kattn_src *src, int j0, int j1, float scale, float *s,
                         size_t lds)
{
    switch (d) {
    case 64: scores_d(q, G, src, j0, j1, scale, s, lds, 64); break;
    case 128: scores_d(q, G, src, j0, j1, scale, s, lds, 128); break;
    default: scores_d(q, G, src, j0, j1, scale, s, lds, 256); break; /* kattn_scores passes 64/128/256 only */
    }
}

/* kattn_softmax with 16-lane vectors and masked tails. */
void kattn_softmax_avx512(float *s, int n)
{
    __m512 mv = _mm512_set1_ps(-INFINITY);
    for (int j = 0; j < n; j += 16)
        mv = _mm512_mask_max_ps(mv, first(n - j), mv, _mm512_maskz_loadu_ps(first(n - j), s + j));
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

/* P.V for keys [j0, j1): each value row widened once, then GS heads per pass.
 * Widening without lane crossing: a 64-byte load holds dims 32z .. 32z+31 as
 * 16 pairs; shifting each 32-bit lane left by 16 gives the even dims as fp32,
 * masking its low half gives the odd dims. The accumulators hold the dims in
 * that (even | odd) order and are interleaved back at the store; the
 * arithmetic per dim is the same fma chain in key order. */
static inline __attribute__((always_inline)) void pv(const float *p, size_t lds, int G, const kattn_src *src, int j0,
                                                     int j1, float *o, const int D)
{
    enum { NO_MAX = 16 };
    const int NO = D / 16;                        /* fp32 zmm per row */
    const int GS = NO <= 4 ? 4 : NO <= 8 ? 2 : 1; /* heads per pass over the values (<= 16 accumulators) */
    const __m512i hi_mask = _mm512_set1_epi32((int)0xffff0000u);
    const __m512i lo_idx = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i hi_idx = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    for (int g0 = 0; g0 < G; g0 += GS) {
        const int gs = G - g0 < GS ? G - g0 : GS;
        __m512 acc[NO_MAX];
#pragma GCC unroll 16
        for (int i = 0; i < GS * NO; i++) acc[i] = _mm512_setzero_ps();
        kv_iter it = kv_begin(src->v, src, j0, j1);
        for (int j = j0; j < j1; j++) {
            const uint16_t *vp = kv_next(&it, D * 2);
            __m512 vf[NO_MAX]; /* vf[2z]: even dims of 32z.., vf[2z + 1]: odd dims */
#pragma GCC unroll 8
            for (int z = 0; z < NO / 2; z++) {
                const __m512i w = _mm512_loadu_si512(vp + 32 * z);
                vf[2 * z] = _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
                vf[2 * z + 1] = _mm512_castsi512_ps(_mm512_and_si512(w, hi_mask));
            }
#pragma GCC unroll 4
            for (int g = 0; g < GS; g++) {
                if (g >= gs) break;
                const __m512 e = _mm512_set1_ps(p[(size_t)(g0 + g) * lds + (size_t)j]);
#pragma GCC unroll 16
                for (int z = 0; z < NO; z++) acc[g * NO + z] = _mm512_fmadd_ps(e, vf[z], acc[g * NO + z]);
            }
        }
        for (int g = 0; g < gs; g++)
            for (int z = 0; z < NO / 2; z++) {
                const __m512 ev = acc[g * NO + 2 * z], od = acc[g * NO + 2 * z + 1];
                float *dst = o + (size_t)(g0 + g) * D + 32 * z;
                _mm512_storeu_ps(dst, _mm512_permutex2var_ps(ev, lo_idx, od));
                _mm512_storeu_ps(dst + 16, _mm512_permutex2var_ps(ev, hi_idx, od));
            }
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

/* kattn_sum, 16 dims at a time; v_round_bf16 turns NaN lanes into the
 * signed canonical NaN exactly as half_f32_to_bf16 does. */
void kattn_sum_avx512(const float *oc, size_t stride, int n_chunks, int d, float *out)
{
    for (int i = 0; i < d; i += 16) {
        __m512 v = _mm512_loadu_ps(oc + i);
        for (int c = 1; c < n_chunks; c++) v = _mm512_add_ps(v, _mm512_loadu_ps(oc + (size_t)c * stride + (size_t)i));
        _mm512_storeu_ps(out + i, v_round_bf16(v));
    }
}
