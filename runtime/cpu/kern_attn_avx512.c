/* kern_attn_avx512.c: the chunk partials of kern_attn.h with AVX-512 BF16,
 * bit-identical to kattn_chunk_scalar. Scores: 16 keys at a time, d/32
 * vdpbf16ps per key into its own accumulator, then one transposing tree
 * reduction (kern_avx512.h) gives the 16 scores in one vector. P.V: each
 * value row is widened to fp32 once and fed to up to 4 query heads of the
 * group with one FMA per 16 dims. Head dims 64, 128 and 256 only (registers
 * sized at compile time); others run the scalar code. Compiled with the
 * AVX-512 flags. */
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

/* Lane tree of kern_attn.c on a stored vector (same pairs, same order). */
static float tree16_store(__m512 v)
{
    float a[16];
    _mm512_storeu_ps(a, v);
    for (int s = 8; s > 0; s /= 2)
        for (int i = 0; i < s; i++) a[i] += a[i + s];
    return a[0];
}

static inline __attribute__((always_inline)) void chunk(const uint16_t *q, int G, const kattn_src *src,
                                                        int j0, int j1, float scale, float *part,
                                                        const int D)
{
    enum { NZ_MAX = 8, NO_MAX = 16 };
    const int NZ = D / 32, NO = D / 16; /* bf16 zmm per row, fp32 zmm per row */
    const int GS = NO <= 4 ? 4 : NO <= 8 ? 2 : 1; /* heads per P.V pass (<= 16 accumulators) */
    float s[KATTN_MAX_GROUP][KATTN_CHUNK + 16] __attribute__((aligned(64)));
    const int n = j1 - j0;

    /* scores, max, exp and lane sums, one query head at a time */
    for (int g = 0; g < G; g++) {
        __m512bh qz[NZ_MAX];
#pragma GCC unroll 8
        for (int z = 0; z < NZ; z++) qz[z] = (__m512bh)_mm512_loadu_si512(q + (size_t)g * D + 32 * z);
        __m512 mv = _mm512_set1_ps(-INFINITY);
        for (int b = 0; b < n; b += 16) {
            const int nk = n - b < 16 ? n - b : 16;
            __m512 acc[16];
#pragma GCC unroll 16
            for (int t = 0; t < 16; t++) {
                acc[t] = _mm512_setzero_ps();
                if (t < nk) {
                    const uint16_t *kp = kv_pos(src->k, src, j0 + b + t);
#pragma GCC unroll 8
                    for (int z = 0; z < NZ; z++)
                        acc[t] = _mm512_dpbf16_ps(acc[t], qz[z], (__m512bh)_mm512_loadu_si512(kp + 32 * z));
                }
            }
            __m512 sv = v_tree16x16(acc);
            sv = v_round_bf16(_mm512_mul_ps(v_round_bf16(sv), _mm512_set1_ps(scale)));
            _mm512_store_ps(&s[g][b], sv);
            mv = _mm512_mask_max_ps(mv, (__mmask16)((1u << nk) - 1u), mv, sv);
        }
        const float m = _mm512_reduce_max_ps(mv);
        const __m512 mb = _mm512_set1_ps(m);
        __m512 lanes = _mm512_setzero_ps();
        for (int b = 0; b < n; b += 16) {
            const int nk = n - b < 16 ? n - b : 16;
            const __m512 e = _mm512_maskz_mov_ps((__mmask16)((1u << nk) - 1u),
                                                 v_exp(_mm512_sub_ps(_mm512_load_ps(&s[g][b]), mb)));
            _mm512_store_ps(&s[g][b], e);
            lanes = _mm512_add_ps(lanes, e);
        }
        float *pg = part + (size_t)g * KATTN_PART(D);
        pg[0] = m;
        pg[1] = tree16_store(lanes);
    }

    /* o = sum_j e_j v_j for GS heads per pass over the values */
    for (int g0 = 0; g0 < G; g0 += GS) {
        const int gs = G - g0 < GS ? G - g0 : GS;
        __m512 o[NO_MAX];
#pragma GCC unroll 16
        for (int i = 0; i < GS * NO; i++) o[i] = _mm512_setzero_ps();
        for (int j = 0; j < n; j++) {
            const uint16_t *vp = kv_pos(src->v, src, j0 + j);
            __m512 vf[NO_MAX];
#pragma GCC unroll 16
            for (int z = 0; z < NO; z++)
                vf[z] = _mm512_castsi512_ps(_mm512_slli_epi32(
                    _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(vp + 16 * z))), 16));
#pragma GCC unroll 4
            for (int g = 0; g < GS; g++) {
                if (g >= gs) break;
                const __m512 e = _mm512_set1_ps(s[g0 + g][j]);
#pragma GCC unroll 16
                for (int z = 0; z < NO; z++) o[g * NO + z] = _mm512_fmadd_ps(e, vf[z], o[g * NO + z]);
            }
        }
        for (int g = 0; g < gs; g++) {
            float *og = part + (size_t)(g0 + g) * KATTN_PART(D) + 2;
            for (int z = 0; z < NO; z++) _mm512_storeu_ps(og + 16 * z, o[g * NO + z]);
        }
    }
}

void kattn_chunk_avx512(const uint16_t *q, int G, int d, const kattn_src *src, int j0, int j1, float scale,
                        float *part)
{
    switch (d) {
    case 64: chunk(q, G, src, j0, j1, scale, part, 64); break;
    case 128: chunk(q, G, src, j0, j1, scale, part, 128); break;
    default: chunk(q, G, src, j0, j1, scale, part, 256); break; /* kattn_chunk passes only 64/128/256 */
    }
}
