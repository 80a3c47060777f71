/* kern_avx512.h: inline AVX-512 helpers shared by the *_avx512.c kernel
 * files: bf16 rounding, the fixed exp polynomial and the 16x16 transposing
 * lane reduction. Each mirrors a scalar definition (base/half.h
 * half_f32_to_bf16, kern_attn.c kattn_exp and tree16) operation for
 * operation, so vector and scalar code give the same bits. Include only
 * from files compiled with the AVX-512 flags. */
#ifndef MS_KERN_AVX512_H
#define MS_KERN_AVX512_H

#include <immintrin.h>

#include "base/half.h"

/* half_bf16_to_f32(half_f32_to_bf16(x)) on 16 lanes: the bf16 value nearest
 * x (ties to even), kept as a float; a NaN lane becomes the canonical quiet
 * NaN with its sign, as in the scalar rule (without the blend, the rounding
 * add would carry a NaN's payload into the exponent, e.g. 0x7fffffff into
 * -0). */
static inline __m512 v_round_bf16(__m512 x)
{
    const __m512i u = _mm512_castps_si512(x);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    const __m512i r = _mm512_and_si512(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))),
                                       _mm512_set1_epi32((int)0xffff0000u));
    const __m512i qnan = _mm512_or_si512(_mm512_and_si512(u, _mm512_set1_epi32((int)0x80000000u)),
                                         _mm512_set1_epi32((int)(HALF_BF16_QNAN << 16)));
    const __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
    return _mm512_castsi512_ps(_mm512_mask_mov_epi32(r, nan, qnan));
}

/* kattn_exp on 16 lanes (same clamps, same FMA sequence). */
static inline __m512 v_exp(__m512 x)
{
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.3f)), _mm512_set1_ps(88.0f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fmadd_ps(n, _mm512_set1_ps(-0.693359375f), x);
    r = _mm512_fmadd_ps(n, _mm512_set1_ps(2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    const __m512 r2 = _mm512_mul_ps(r, r);
    __m512 y = _mm512_fmadd_ps(p, r2, r);
    y = _mm512_add_ps(y, _mm512_set1_ps(1.0f));
    const __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    return _mm512_mul_ps(y, _mm512_castsi512_ps(e));
}

/* Reduces a[0..15] (16 lanes each) to one vector whose lane t is a[t]
 * summed by the tree (i, i+8), (i, i+4), (i, i+2), (i, i+1). a is clobbered. */
static inline __attribute__((always_inline)) __m512 v_tree16x16(__m512 a[16])
{
    /* fold 8: key pairs (2m, 2m+1) -> [lo 8 of 2m | lo 8 of 2m+1] */
    for (int m = 0; m < 8; m++)
        a[m] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * m], a[2 * m + 1], 0x44),
                             _mm512_shuffle_f32x4(a[2 * m], a[2 * m + 1], 0xee));
    /* fold 4: quarter t of result m holds key 4m + t, 4 lanes */
    for (int m = 0; m < 4; m++)
        a[m] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * m], a[2 * m + 1], 0x88),
                             _mm512_shuffle_f32x4(a[2 * m], a[2 * m + 1], 0xdd));
    /* fold 2: quarter t of result n: lanes 0,1 key 8n + t; lanes 2,3 key 8n + 4 + t */
    for (int m = 0; m < 2; m++)
        a[m] = _mm512_add_ps(_mm512_shuffle_ps(a[2 * m], a[2 * m + 1], 0x44),
                             _mm512_shuffle_ps(a[2 * m], a[2 * m + 1], 0xee));
    /* fold 1: lane 4t + u holds key 4u + t */
    __m512 r = _mm512_add_ps(_mm512_shuffle_ps(a[0], a[1], 0x88), _mm512_shuffle_ps(a[0], a[1], 0xdd));
    const __m512i idx = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    return _mm512_permutexvar_ps(idx, r);
}

#endif
