/* kern_avx2.h: inline AVX2/FMA helpers shared by the *_avx2.c kernel files:
 * bf16 rounding and widening, the fixed exp polynomial and the 16-lane tree,
 * each mirroring the scalar definition (base/half.h half_f32_to_bf16 and
 * half_bf16_to_f32, kern_attn.c kattn_exp and tree16) operation for
 * operation. Include only from files compiled with the AVX2 flags. */
#ifndef MS_KERN_AVX2_H
#define MS_KERN_AVX2_H

#include <immintrin.h>
#include <stdint.h>

#include "base/half.h"

/* half_bf16_to_f32(half_f32_to_bf16(x)) on 8 lanes: the bf16 value nearest
 * x (ties to even), kept as a float; a NaN lane becomes the canonical quiet
 * NaN with its sign, as in the scalar rule (without the blend, the rounding
 * add would carry a NaN's payload into the exponent, e.g. 0x7fffffff into
 * -0). The blend is four more vector operations than the rounding alone;
 * the kernels that call this are bound by their dot products and loads, and
 * kern_bench attn shows no difference. */
static inline __m256 v8_round_bf16(__m256 x)
{
    const __m256i u = _mm256_castps_si256(x);
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    const __m256i r = _mm256_and_si256(_mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff))),
                                       _mm256_set1_epi32((int)0xffff0000u));
    const __m256i qnan = _mm256_or_si256(_mm256_and_si256(u, _mm256_set1_epi32((int)0x80000000u)),
                                         _mm256_set1_epi32((int)(HALF_BF16_QNAN << 16)));
    const __m256 nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
    return _mm256_blendv_ps(_mm256_castsi256_ps(r), _mm256_castsi256_ps(qnan), nan);
}

/* 8 bf16 (16 bytes at p) widened to floats. */
static inline __m256 v8_bf16(const uint16_t *p)
{
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
}

/* bf16 bits of 8 bf16-representable floats, stored at p (truncation is exact). */
static inline void v8_store_bits(uint16_t *p, __m256 x)
{
    const __m256i u = _mm256_srli_epi32(_mm256_castps_si256(x), 16);
    const __m128i packed = _mm_packus_epi32(_mm256_castsi256_si128(u), _mm256_extracti128_si256(u, 1));
    _mm_storeu_si128((__m128i *)p, packed);
}

/* kattn_exp on 8 lanes (same clamps, same FMA sequence). */
static inline __m256 v8_exp(__m256 x)
{
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.0f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fmadd_ps(n, _mm256_set1_ps(-0.693359375f), x);
    r = _mm256_fmadd_ps(n, _mm256_set1_ps(2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    const __m256 r2 = _mm256_mul_ps(r, r);
    __m256 y = _mm256_fmadd_ps(p, r2, r);
    y = _mm256_add_ps(y, _mm256_set1_ps(1.0f));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

/* tree16 of lanes lo (0..7) and hi (8..15): (i, i+8), (i, i+4), (i, i+2), (i, i+1). */
static inline float v8_tree16(__m256 lo, __m256 hi)
{
    const __m256 a = _mm256_add_ps(lo, hi);                                        /* i, i+8 */
    __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1)); /* i, i+4 */
    b = _mm_add_ps(b, _mm_movehl_ps(b, b));                                        /* i, i+2 */
    b = _mm_add_ss(b, _mm_shuffle_ps(b, b, 1));                                    /* i, i+1 */
    return _mm_cvtss_f32(b);
}

#endif
