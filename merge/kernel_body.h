/* kernel_body.h: the merge kernels, included by kernel.c (generic),
 * kernel_avx2.c and kernel_avx512.c, each defining MG_SFX(name) to give the
 * functions distinct names. The code is plain C written to vectorize under
 * `#pragma omp simd`; fmaf is an exact fused multiply-add in every build, and
 * the conversion loops apply base/half.h's scalar functions element by
 * element, so every variant returns the same bits as those functions, NaN
 * included. Not a header for general use. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "base/half.h"

/* y[j] = (sum_k fmaf chain of c[k]*M[k*ld+j]) * s. */
static void MG_SFX(lora_row)(float *restrict y, const float *restrict c, const float *restrict M, size_t ld, int r,
                             size_t n, float s)
{
    enum { JB = 512 };
    float acc[JB];
    for (size_t j0 = 0; j0 < n; j0 += JB) {
        size_t jn = n - j0 < JB ? n - j0 : JB;
#pragma omp simd
        for (size_t j = 0; j < jn; j++) acc[j] = 0.0f;
        for (int k = 0; k < r; k++) {
            const float ck = c[k];
            const float *restrict mk = M + (size_t)k * ld + j0;
#pragma omp simd
            for (size_t j = 0; j < jn; j++) acc[j] = fmaf(ck, mk[j], acc[j]);
        }
#pragma omp simd
        for (size_t j = 0; j < jn; j++) y[j0 + j] = acc[j] * s;
    }
}

/* bf16 array -> f32 array. */
static void MG_SFX(bf16_to_f32)(float *restrict dst, const uint16_t *restrict src, size_t n)
{
#pragma omp simd
    for (size_t i = 0; i < n; i++) dst[i] = half_bf16_to_f32(src[i]);
}

/* f16 array -> f32 array. */
static void MG_SFX(f16_to_f32)(float *restrict dst, const uint16_t *restrict src, size_t n)
{
#pragma omp simd
    for (size_t i = 0; i < n; i++) dst[i] = half_f16_to_f32(src[i]);
}

/* f32 array -> bf16 array (half.h: nearest even, canonical NaN). */
static void MG_SFX(f32_to_bf16)(uint16_t *restrict dst, const float *restrict src, size_t n)
{
#pragma omp simd
    for (size_t i = 0; i < n; i++) dst[i] = half_f32_to_bf16(src[i]);
}

/* f32 array -> f16 array (half.h: nearest even, canonical NaN). */
static void MG_SFX(f32_to_f16)(uint16_t *restrict dst, const float *restrict src, size_t n)
{
#pragma omp simd
    for (size_t i = 0; i < n; i++) dst[i] = half_f32_to_f16(src[i]);
}
