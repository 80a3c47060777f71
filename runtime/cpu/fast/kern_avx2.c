/* kern_avx2.c: the bf16 GEMM/GEMV of kern.h for CPUs without AVX-512 BF16
 * (AVX2 + FMA). bf16 -> fp32 is a shift (even element) or a mask (odd
 * element) of the packed dword; each lane then runs the kern.h sequence with
 * two FMAs per pair, odd element first. Products of two bf16 are exact in
 * fp32, so FMA and multiply-then-add agree and the result equals the scalar
 * path bit for bit. A tile is MR rows x NP panels with 4 ymm accumulators
 * per row and panel (at most 8 accumulators: AVX2 has 16 registers).
 * Compiled with -mavx2 -mfma; only called when kern_isa_best() allows. */
#include <immintrin.h>
#include <string.h>

#include "cpu/fast/kern.h"

/* acc tile for MR rows x NP panels; writes fp32 sums to out [MR][NP * 32]. */
static inline __attribute__((always_inline)) void tile(const uint16_t *x, int64_t ldx, const uint16_t *w, int64_t kp,
                                                       float *out, const int MR, const int NP)
{
    __m256 acc[2][8];
    const size_t pstride = (size_t)kp * 64;
    const __m256i hi = _mm256_set1_epi32((int)0xffff0000u);
#pragma GCC unroll 2
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 8
        for (int c = 0; c < 4 * NP; c++) acc[r][c] = _mm256_setzero_ps();
    for (int64_t j = 0; j < kp; j++) {
        __m256 x0[2], x1[2];
#pragma GCC unroll 2
        for (int r = 0; r < MR; r++) {
            const uint16_t *xr = x + (size_t)r * (size_t)ldx + 2 * (size_t)j;
            uint32_t e0 = (uint32_t)xr[0] << 16, e1 = (uint32_t)xr[1] << 16;
            float f0, f1;
            memcpy(&f0, &e0, 4);
            memcpy(&f1, &e1, 4);
            x0[r] = _mm256_set1_ps(f0);
            x1[r] = _mm256_set1_ps(f1);
        }
#pragma GCC unroll 8
        for (int c = 0; c < 4 * NP; c++) {
            const __m256i v = _mm256_loadu_si256(
                (const __m256i *)(w + (size_t)(c / 4) * pstride + (size_t)j * 64 + (size_t)(c % 4) * 16));
            const __m256 w0 = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
            const __m256 w1 = _mm256_castsi256_ps(_mm256_and_si256(v, hi));
#pragma GCC unroll 2
            for (int r = 0; r < MR; r++) {
                acc[r][c] = _mm256_fmadd_ps(x1[r], w1, acc[r][c]);
                acc[r][c] = _mm256_fmadd_ps(x0[r], w0, acc[r][c]);
            }
        }
    }
#pragma GCC unroll 2
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 8
        for (int c = 0; c < 4 * NP; c++) _mm256_storeu_ps(out + r * NP * 32 + c * 8, acc[r][c]);
}

/* Decode tile: 1 row x 2 panels. */
static void tile_1_2(const uint16_t *x, int64_t ldx, const uint16_t *w, int64_t kp, float *out)
{
    tile(x, ldx, w, kp, out, 1, 2);
}

/* Tail tile: 1 row x 1 panel. */
static void tile_1_1(const uint16_t *x, int64_t ldx, const uint16_t *w, int64_t kp, float *out)
{
    tile(x, ldx, w, kp, out, 1, 1);
}

/* Prefill tile: 2 rows x 1 panel. */
static void tile_2_1(const uint16_t *x, int64_t ldx, const uint16_t *w, int64_t kp, float *out)
{
    tile(x, ldx, w, kp, out, 2, 1);
}

void kern_gemm_bf16_avx2(const kpack *w, const uint16_t *x, int64_t ldx, int T, float *y, int64_t ldy,
                         const float *bias, int64_t p0, int64_t p1)
{
    float out[2 * 2 * 32] __attribute__((aligned(32)));
    const size_t pstride = (size_t)w->kp * 64;
    int64_t p = p0;
    if (T == 1)
        for (; p + 2 <= p1; p += 2) {
            tile_1_2(x, ldx, w->data + (size_t)p * pstride, w->kp, out);
            kern_store_tile(out, 1, 2, w, p, y, ldy, bias);
        }
    for (; p < p1; p++) {
        const uint16_t *wp = w->data + (size_t)p * pstride;
        int t0 = 0;
        for (; t0 + 2 <= T; t0 += 2) {
            tile_2_1(x + (size_t)t0 * (size_t)ldx, ldx, wp, w->kp, out);
            kern_store_tile(out, 2, 1, w, p, y + (size_t)t0 * (size_t)ldy, ldy, bias);
        }
        if (t0 < T) {
            tile_1_1(x + (size_t)t0 * (size_t)ldx, ldx, wp, w->kp, out);
            kern_store_tile(out, 1, 1, w, p, y + (size_t)t0 * (size_t)ldy, ldy, bias);
        }
    }
}
