/* kern_avx512.c: the bf16 GEMM/GEMV of kern.h with vdpbf16ps (AVX-512 BF16).
 *
 * A register tile is MR activation rows x NP panels (32 output rows each,
 * two zmm accumulators per row and panel). Per column pair: one 64-byte load
 * per 16 output rows, one broadcast of the activation pair per row, one
 * vdpbf16ps per accumulator. Every accumulator lane runs the kern.h sequence
 * from zero over all pairs, so the tile shape never changes a result.
 * Decode (T <= 2) walks 4 panels at once (4 weight streams, 8-16 independent
 * chains); prefill walks one panel at a time, reusing it from L2 for every
 * block of 8 rows. Compiled with -mavx512bf16; only called when
 * kern_isa_best() said the CPU has it. */
#include <immintrin.h>
#include <string.h>

#include "cpu/fast/kern.h"
#include "cpu/fast/kern_avx512.h"

#define MR_MAX 8

/* acc tile for MR rows x NP panels starting at panel pointer w (panel stride
 * kp * 64 u16); writes fp32 sums to out [MR][NP * 32]. */
static inline __attribute__((always_inline)) void tile(const uint16_t *x, int64_t ldx, const uint16_t *w, int64_t kp,
                                                       float *out, const int MR, const int NP)
{
    __m512 acc[MR_MAX][8];
    const size_t pstride = (size_t)kp * 64;
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 8
        for (int c = 0; c < 2 * NP; c++) acc[r][c] = _mm512_setzero_ps();
    for (int64_t j = 0; j < kp; j++) {
        __m512bh wv[8];
#pragma GCC unroll 8
        for (int q = 0; q < NP; q++) {
            const uint16_t *wj = w + q * pstride + (size_t)j * 64;
            wv[2 * q] = (__m512bh)_mm512_loadu_si512(wj);
            wv[2 * q + 1] = (__m512bh)_mm512_loadu_si512(wj + 32);
        }
#pragma GCC unroll 8
        for (int r = 0; r < MR; r++) {
            uint32_t xp;
            memcpy(&xp, x + (size_t)r * (size_t)ldx + 2 * (size_t)j, 4);
            const __m512bh xb = (__m512bh)_mm512_set1_epi32((int)xp);
#pragma GCC unroll 8
            for (int c = 0; c < 2 * NP; c++) acc[r][c] = _mm512_dpbf16_ps(acc[r][c], xb, wv[c]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 8
        for (int c = 0; c < 2 * NP; c++) _mm512_storeu_ps(out + r * NP * 32 + c * 16, acc[r][c]);
}

/* Specialised tiles (constant MR and NP, so acc lives in registers). */
#define TILE_FN(MR, NP)                                                                                     \
    static void tile_##MR##_##NP(const uint16_t *x, int64_t ldx, const uint16_t *w, int64_t kp, float *out) \
    {                                                                                                       \
        tile(x, ldx, w, kp, out, MR, NP);                                                                   \
    }
TILE_FN(1, 4)
TILE_FN(2, 4)
TILE_FN(1, 1)
TILE_FN(2, 1)
TILE_FN(3, 1)
TILE_FN(4, 1)
TILE_FN(5, 1)
TILE_FN(6, 1)
TILE_FN(7, 1)
TILE_FN(8, 1)

/* kern_store_tile with vectors: y = round_bf16(tile + bias) for the valid rows and columns. */
static void store(const float *tile, int rows, int np, const kpack *w, int64_t panel, float *y, int64_t ldy,
                  const float *bias)
{
    const int64_t n0 = panel * KERN_PW;
    const int64_t ncols = w->n - n0 < (int64_t)np * KERN_PW ? w->n - n0 : (int64_t)np * KERN_PW;
    for (int r = 0; r < rows; r++) {
        const float *tr = tile + (size_t)r * (size_t)np * KERN_PW;
        float *yr = y + (size_t)r * (size_t)ldy + n0;
        for (int64_t c = 0; c < ncols; c += 16) {
            const __mmask16 m = ncols - c >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (ncols - c)) - 1u);
            __m512 v = _mm512_load_ps(tr + c);
            if (bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, bias + n0 + c));
            _mm512_mask_storeu_ps(yr + c, m, v_round_bf16(v));
        }
    }
}

typedef void (*tile_fn)(const uint16_t *, int64_t, const uint16_t *, int64_t, float *);
static const tile_fn TILES_1[MR_MAX + 1] = {NULL,     tile_1_1, tile_2_1, tile_3_1, tile_4_1,
                                            tile_5_1, tile_6_1, tile_7_1, tile_8_1};

void kern_gemm_bf16_avx512(const kpack *w, const uint16_t *x, int64_t ldx, int T, float *y, int64_t ldy,
                           const float *bias, int64_t p0, int64_t p1)
{
    float out[MR_MAX * 4 * 32] __attribute__((aligned(64)));
    const size_t pstride = (size_t)w->kp * 64;
    int64_t p = p0;
    if (T <= 2) {
        for (; p + 4 <= p1; p += 4) {
            if (T == 1) tile_1_4(x, ldx, w->data + (size_t)p * pstride, w->kp, out);
            else tile_2_4(x, ldx, w->data + (size_t)p * pstride, w->kp, out);
            store(out, T, 4, w, p, y, ldy, bias);
        }
    }
    for (; p < p1; p++) {
        const uint16_t *wp = w->data + (size_t)p * pstride;
        for (int t0 = 0; t0 < T; t0 += MR_MAX) {
            const int mr = T - t0 < MR_MAX ? T - t0 : MR_MAX;
            TILES_1[mr](x + (size_t)t0 * (size_t)ldx, ldx, wp, w->kp, out);
            store(out, mr, 1, w, p, y + (size_t)t0 * (size_t)ldy, ldy, bias);
        }
    }
}

/* Packs rows r0 .. r0+15 (r0 % 16 == 0, all inside one panel and the
 * source) for pairs [j0, j1) with (j1 - j0) % 16 == 0: 16x16 dword transposes,
 * so each 64-byte store is one pair of 16 rows. src points at row r0, pair 0;
 * ld is the source row length in bytes. */
void kpack_rows16_avx512(kpack *p, int64_t r0, const unsigned char *src, size_t ld, int64_t j0, int64_t j1)
{
    uint16_t *base = p->data + (size_t)(r0 / KERN_PW) * (size_t)p->kp * 64 + 2 * (size_t)(r0 % KERN_PW);
    for (int64_t j = j0; j < j1; j += 16) {
        __m512i a[16], b[16];
        for (int r = 0; r < 16; r++) a[r] = _mm512_loadu_si512(src + (size_t)r * ld + 4 * (size_t)j);
        /* stage 1: 32-bit interleave of row pairs */
        for (int r = 0; r < 16; r += 2) {
            b[r] = _mm512_unpacklo_epi32(a[r], a[r + 1]);
            b[r + 1] = _mm512_unpackhi_epi32(a[r], a[r + 1]);
        }
        /* stage 2: 64-bit interleave */
        for (int r = 0; r < 16; r += 4) {
            a[r] = _mm512_unpacklo_epi64(b[r], b[r + 2]);
            a[r + 1] = _mm512_unpackhi_epi64(b[r], b[r + 2]);
            a[r + 2] = _mm512_unpacklo_epi64(b[r + 1], b[r + 3]);
            a[r + 3] = _mm512_unpackhi_epi64(b[r + 1], b[r + 3]);
        }
        /* stage 3: 128-bit lanes between groups of 4 rows */
        for (int r = 0; r < 4; r++) {
            b[r] = _mm512_shuffle_i32x4(a[r], a[r + 4], 0x88);
            b[r + 4] = _mm512_shuffle_i32x4(a[r], a[r + 4], 0xdd);
            b[r + 8] = _mm512_shuffle_i32x4(a[r + 8], a[r + 12], 0x88);
            b[r + 12] = _mm512_shuffle_i32x4(a[r + 8], a[r + 12], 0xdd);
        }
        /* stage 4: 256-bit halves between groups of 8 rows */
        for (int r = 0; r < 8; r++) {
            a[r] = _mm512_shuffle_i32x4(b[r], b[r + 8], 0x88);
            a[r + 8] = _mm512_shuffle_i32x4(b[r], b[r + 8], 0xdd);
        }
        /* a[t] now holds pair j + t of the 16 rows, row order kept */
        for (int t = 0; t < 16; t++) _mm512_storeu_si512(base + (size_t)(j + t) * 64, a[t]);
    }
}
