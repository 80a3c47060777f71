/* q8_avx512.c: the int8 GEMM/GEMV of q8.h with AVX-512 VNNI (vpdpbusd),
 * bit-identical to q8_gemm_scalar. A register tile is MR tokens x NP panels
 * (32 rows each): per column quad one 64-byte load per 16 rows and one
 * broadcast of 4 activation bytes per token; after each group of Q8_GROUP
 * columns the exact int32 sums are corrected, converted and folded into the
 * fp32 accumulators with one FMA. Decode (T <= 2) walks 4 or 2 panels at once;
 * prefill walks one panel at a time for blocks of 6 tokens. Compiled with the
 * AVX-512 flags; called only when kern_isa_best() says the CPU has them. */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "base/half.h"
#include "cpu/fast/q8.h"

#define MR_MAX 6

/* MR tokens x NP panels: int32 group sums folded into fp32 accumulators (see q8.h). */
static inline __attribute__((always_inline)) void tile(const q8pack *w, const q8act *x, int t0, int64_t p, float *out,
                                                       const int MR, const int NP)
{
    __m512i ia[MR_MAX][8];
    __m512 fa[MR_MAX][8];
    const size_t pstride = (size_t)w->kq * 128;
    const uint8_t *wp = w->data + (size_t)p * pstride;
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 8
        for (int c = 0; c < 2 * NP; c++) fa[r][c] = _mm512_setzero_ps();
    for (int64_t g = 0; g < w->groups; g++) {
        const int64_t j0 = g * (Q8_GROUP / 4), j1 = j0 + Q8_GROUP / 4 < w->kq ? j0 + Q8_GROUP / 4 : w->kq;
#pragma GCC unroll 6
        for (int r = 0; r < MR; r++)
#pragma GCC unroll 8
            for (int c = 0; c < 2 * NP; c++) ia[r][c] = _mm512_setzero_si512();
        for (int64_t j = j0; j < j1; j++) {
            __m512i wv[8];
#pragma GCC unroll 8
            for (int q = 0; q < NP; q++) {
                const uint8_t *wj = wp + q * pstride + (size_t)j * 128;
                wv[2 * q] = _mm512_loadu_si512(wj);
                wv[2 * q + 1] = _mm512_loadu_si512(wj + 64);
            }
#pragma GCC unroll 6
            for (int r = 0; r < MR; r++) {
                int32_t xq;
                memcpy(&xq, x->q + (size_t)(t0 + r) * (size_t)x->ld + 4 * (size_t)j, 4);
                const __m512i xb = _mm512_set1_epi32(xq);
#pragma GCC unroll 8
                for (int c = 0; c < 2 * NP; c++) ia[r][c] = _mm512_dpbusd_epi32(ia[r][c], wv[c], xb);
            }
        }
#pragma GCC unroll 6
        for (int r = 0; r < MR; r++) {
            const size_t gi = (size_t)(t0 + r) * (size_t)x->groups + (size_t)g;
            const __m512i corr = _mm512_set1_epi32(x->corr[gi]);
            const __m512 sx = _mm512_set1_ps(x->sx[gi]);
#pragma GCC unroll 8
            for (int c = 0; c < 2 * NP; c++)
                fa[r][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(ia[r][c], corr)), sx, fa[r][c]);
        }
    }
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 8
        for (int c = 0; c < 2 * NP; c++) _mm512_storeu_ps(out + r * NP * 32 + c * 16, fa[r][c]);
}

#define TILE_FN(MR, NP)                                                                          \
    static void tile_##MR##_##NP(const q8pack *w, const q8act *x, int t0, int64_t p, float *out) \
    {                                                                                            \
        tile(w, x, t0, p, out, MR, NP);                                                          \
    }
TILE_FN(1, 4)
TILE_FN(2, 2)
TILE_FN(1, 1)
TILE_FN(2, 1)
TILE_FN(3, 1)
TILE_FN(4, 1)
TILE_FN(5, 1)
TILE_FN(6, 1)

typedef void (*tile_fn)(const q8pack *, const q8act *, int, int64_t, float *);
static const tile_fn TILES_1[MR_MAX + 1] = {NULL, tile_1_1, tile_2_1, tile_3_1, tile_4_1, tile_5_1, tile_6_1};

/* Writes rows [t0, t0 + rows) x panels [p, p + np) of the fp32 tile: y = round_bf16(facc * sw + bias). */
static void store(const q8pack *w, const float *tile, int t0, int rows, int64_t p, int np, float *y, int64_t ldy,
                  const float *bias)
{
    const int64_t n0 = p * KERN_PW, nc = w->n - n0 < (int64_t)np * KERN_PW ? w->n - n0 : (int64_t)np * KERN_PW;
    for (int r = 0; r < rows; r++) {
        const float *tr = tile + (size_t)r * (size_t)np * KERN_PW;
        float *yr = y + (size_t)(t0 + r) * (size_t)ldy + n0;
        for (int64_t c = 0; c < nc; c++) {
            float v = tr[c] * w->scale[n0 + c];
            if (bias) v += bias[n0 + c];
            yr[c] = half_bf16_to_f32(half_f32_to_bf16(v));
        }
    }
}

void q8_gemm_avx512(const q8pack *w, const q8act *x, int T, float *y, int64_t ldy, const float *bias, int64_t p0,
                    int64_t p1)
{
    float out[MR_MAX * 4 * 32] __attribute__((aligned(64)));
    int64_t p = p0;
    if (T == 1)
        for (; p + 4 <= p1; p += 4) {
            tile_1_4(w, x, 0, p, out);
            store(w, out, 0, 1, p, 4, y, ldy, bias);
        }
    if (T == 2)
        for (; p + 2 <= p1; p += 2) {
            tile_2_2(w, x, 0, p, out);
            store(w, out, 0, 2, p, 2, y, ldy, bias);
        }
    for (; p < p1; p++)
        for (int t0 = 0; t0 < T; t0 += MR_MAX) {
            const int mr = T - t0 < MR_MAX ? T - t0 : MR_MAX;
            TILES_1[mr](w, x, t0, p, out);
            store(w, out, t0, mr, p, 1, y, ldy, bias);
        }
}

/* The quantised bytes of n bf16 values x with multiplier inv (clamp(round(x * inv), -127, 127)
 * + off, off = 128 for weights, 0 for activations) into out; returns the sum of the
 * unoffset values. Same operations as q8.c's scalar loops. */
static int32_t quant_bf16(const uint16_t *x, int64_t n, float inv, int off, uint8_t *out)
{
    const __m512 vi = _mm512_set1_ps(inv), lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
    const __m512i vo = _mm512_set1_epi32(off);
    __m512i sum = _mm512_setzero_si512();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 v = _mm512_castsi512_ps(
            _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(x + i))), 16));
        __m512 q = _mm512_roundscale_ps(_mm512_mul_ps(v, vi), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        q = _mm512_min_ps(_mm512_max_ps(q, lo), hi);
        const __m512i qi = _mm512_cvtps_epi32(q);
        sum = _mm512_add_epi32(sum, qi);
        _mm_storeu_si128((__m128i *)(out + i), _mm512_cvtepi32_epi8(_mm512_add_epi32(qi, vo)));
    }
    int32_t total = _mm512_reduce_add_epi32(sum);
    for (; i < n; i++) {
        float q = nearbyintf(half_bf16_to_f32(x[i]) * inv);
        q = q > 127.0f ? 127.0f : q < -127.0f ? -127.0f : q;
        out[i] = (uint8_t)((int)q + off);
        total += (int32_t)q;
    }
    return total;
}

/* Largest |x| of n bf16 values (exact). */
static float amax_bf16(const uint16_t *x, int64_t n)
{
    __m512i m = _mm512_setzero_si512();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) /* |bf16| as 15-bit integers orders like the values */
        m = _mm512_max_epu16(m, _mm512_and_si512(_mm512_loadu_si512(x + i), _mm512_set1_epi16(0x7fff)));
    uint16_t lanes[32], best = 0;
    _mm512_storeu_si512(lanes, m);
    for (int j = 0; j < 32; j++) best = lanes[j] > best ? lanes[j] : best;
    for (; i < n; i++) best = (uint16_t)(x[i] & 0x7fff) > best ? (uint16_t)(x[i] & 0x7fff) : best;
    return half_bf16_to_f32(best);
}

/* One weight row: scale, bytes (+128) into tmp, then into the panel layout. */
void q8_quant_wrow_avx512(q8pack *p, int64_t r, const uint16_t *w, uint8_t *tmp)
{
    const float amax = amax_bf16(w, p->k);
    p->scale[r] = amax / 127.0f;
    quant_bf16(w, p->k, amax > 0.0f ? 127.0f / amax : 0.0f, 128, tmp);
    uint8_t *d = p->data + (size_t)(r / KERN_PW) * (size_t)p->kq * 128 + 4 * (size_t)(r % KERN_PW);
    const int64_t full = p->k / 4;
    for (int64_t j = 0; j < full; j++) memcpy(d + (size_t)j * 128, tmp + 4 * j, 4);
    for (int64_t i = full * 4; i < p->k; i++) d[(size_t)full * 128 + (size_t)(i - full * 4)] = tmp[i];
}

/* One activation row in groups: scales, bytes and corrections. */
void q8_quant_act_avx512(const uint16_t *x, int64_t k, q8act *a, int t)
{
    int8_t *q = a->q + (size_t)t * (size_t)a->ld;
    for (int64_t g = 0; g * Q8_GROUP < k; g++) {
        const int64_t i0 = g * Q8_GROUP, n = i0 + Q8_GROUP < k ? Q8_GROUP : k - i0;
        const float amax = amax_bf16(x + i0, n);
        const int32_t sum = quant_bf16(x + i0, n, amax > 0.0f ? 127.0f / amax : 0.0f, 0, (uint8_t *)q + i0);
        a->sx[(size_t)t * (size_t)a->groups + (size_t)g] = amax / 127.0f;
        a->corr[(size_t)t * (size_t)a->groups + (size_t)g] = 128 * sum;
    }
    for (int64_t i = k; i < a->ld; i++) q[i] = 0;
}
