/* q8_avx2.c: the int8 GEMM of q8.h for CPUs with AVX2 but no AVX-512 VNNI,
 * bit-identical to q8_gemm_scalar. Each 32-byte slice of a column quad (8
 * rows x 4 columns) is widened to int16 and multiplied with the token's 4
 * activations by vpmaddwd (two exact int32 partial sums per row; u8 x s8
 * products cannot saturate there, unlike vpmaddubsw); at the end of each
 * group the partials are added per row (vphaddd), corrected, converted and
 * folded into fp32 accumulators with one FMA, as the scalar code does.
 * One token x one panel (32 rows) per tile. Compiled with the AVX2 flags. */
#include <immintrin.h>
#include <string.h>

#include "base/half.h"
#include "cpu/fast/q8.h"

void q8_gemm_avx2(const q8pack *w, const q8act *x, int T, float *y, int64_t ldy, const float *bias, int64_t p0,
                  int64_t p1)
{
    const size_t pstride = (size_t)w->kq * 128;
    float out[32] __attribute__((aligned(32)));
    for (int64_t p = p0; p < p1; p++) {
        const uint8_t *wp = w->data + (size_t)p * pstride;
        for (int t = 0; t < T; t++) {
            const int8_t *xt = x->q + (size_t)t * (size_t)x->ld;
            __m256 fa[4];
            for (int i = 0; i < 4; i++) fa[i] = _mm256_setzero_ps();
            for (int64_t g = 0; g < w->groups; g++) {
                const int64_t j0 = g * (Q8_GROUP / 4), j1 = j0 + Q8_GROUP / 4 < w->kq ? j0 + Q8_GROUP / 4 : w->kq;
                __m256i acc[8];
                for (int i = 0; i < 8; i++) acc[i] = _mm256_setzero_si256();
                for (int64_t j = j0; j < j1; j++) {
                    int32_t xq;
                    memcpy(&xq, xt + 4 * j, 4);
                    /* [x0 x1 x2 x3] repeated as int16 */
                    const __m256i xb = _mm256_cvtepi8_epi16(_mm_set1_epi32(xq));
                    const uint8_t *wj = wp + (size_t)j * 128;
#pragma GCC unroll 4
                    for (int s = 0; s < 4; s++) {
                        const __m256i v = _mm256_loadu_si256((const __m256i *)(wj + 32 * s));
                        const __m256i lo = _mm256_cvtepu8_epi16(_mm256_castsi256_si128(v));
                        const __m256i hi = _mm256_cvtepu8_epi16(_mm256_extracti128_si256(v, 1));
                        acc[2 * s] = _mm256_add_epi32(acc[2 * s], _mm256_madd_epi16(lo, xb));
                        acc[2 * s + 1] = _mm256_add_epi32(acc[2 * s + 1], _mm256_madd_epi16(hi, xb));
                    }
                }
                const size_t gi = (size_t)t * (size_t)x->groups + (size_t)g;
                const __m256i corr = _mm256_set1_epi32(x->corr[gi]);
                const __m256 sx = _mm256_set1_ps(x->sx[gi]);
                for (int s = 0; s < 4; s++) {
                    /* rows 8s..8s+3 in acc[2s] (two partials each), rows 8s+4..8s+7 in acc[2s+1] */
                    const __m256i h = _mm256_hadd_epi32(acc[2 * s], acc[2 * s + 1]);
                    const __m256i rows = _mm256_permute4x64_epi64(h, 0xd8);
                    fa[s] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(rows, corr)), sx, fa[s]);
                }
            }
            for (int s = 0; s < 4; s++) _mm256_store_ps(out + 8 * s, fa[s]);
            const int64_t n0 = p * KERN_PW, nc = w->n - n0 < KERN_PW ? w->n - n0 : KERN_PW;
            float *yr = y + (size_t)t * (size_t)ldy + n0;
            for (int64_t c = 0; c < nc; c++) {
                float v = out[c] * w->scale[n0 + c];
                if (bias) v += bias[n0 + c];
                yr[c] = half_bf16_to_f32(half_f32_to_bf16(v));
            }
        }
    }
}
