/* kernel_body.h: the merge kernels, included by kernel.c (generic),
 * kernel_avx2.c and kernel_avx512.c, each defining MG_SFX(name) to give the
 * functions distinct names. The code is plain C written to vectorize under
 * `#pragma omp simd`; fmaf is an exact fused multiply-add in every build, so
 * every variant returns the same bits. Not a header for general use. */
#include <math.h>
#include <stdint.h>
#include <string.h>

/* bf16 -> f32: the bf16 bits are the top half of the f32 (exact). */
static inline float MG_SFX(bf2f)(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* f32 -> bf16, round to nearest even; NaN -> 0x7fc0 with the sign (as torch). */
static inline uint16_t MG_SFX(f2bf)(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)(((u >> 16) & 0x8000u) | 0x7fc0u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* f16 -> f32 (exact, subnormals included). */
static inline float MG_SFX(h2f)(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu, u;
    if (e == 0) {
        float f = (float)m * 0x1p-24f; /* exact: m < 2^10 */
        memcpy(&u, &f, 4);
        u |= sign;
    } else if (e == 31) {
        u = sign | 0x7f800000u | (m << 13);
    } else {
        u = sign | ((e + 112u) << 23) | (m << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* f32 -> f16, round to nearest even; |x| >= 65520 -> Inf; NaN -> quiet NaN. */
static inline uint16_t MG_SFX(f2h)(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);
    if (ax < 0x38800000u) {
        /* Below 2^-14: add 0.5 so the hardware rounds to the 2^-24 quantum. */
        float a, t;
        memcpy(&a, &ax, 4);
        t = a + 0.5f;
        uint32_t u;
        memcpy(&u, &t, 4);
        return (uint16_t)(sign | (u - 0x3f000000u));
    }
    ax += 0xc8000fffu + ((ax >> 13) & 1u); /* rebias exponent by -112, round */
    return (uint16_t)(sign | (ax >> 13));
}

/* y[j] = (sum_k fmaf chain of c[k]*M[k*ld+j]) * s. */
static void MG_SFX(lora_row)(float *restrict y, const float *restrict c, const float *restrict M,
                             size_t ld, int r, size_t n, float s)
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
    for (size_t i = 0; i < n; i++) dst[i] = MG_SFX(bf2f)(src[i]);
}

/* f16 array -> f32 array. */
static void MG_SFX(f16_to_f32)(float *restrict dst, const uint16_t *restrict src, size_t n)
{
#pragma omp simd
    for (size_t i = 0; i < n; i++) dst[i] = MG_SFX(h2f)(src[i]);
}

/* f32 array -> bf16 array (RNE). */
static void MG_SFX(f32_to_bf16)(uint16_t *restrict dst, const float *restrict src, size_t n)
{
#pragma omp simd
    for (size_t i = 0; i < n; i++) dst[i] = MG_SFX(f2bf)(src[i]);
}

/* f32 array -> f16 array (RNE). */
static void MG_SFX(f32_to_f16)(uint16_t *restrict dst, const float *restrict src, size_t n)
{
#pragma omp simd
    for (size_t i = 0; i < n; i++) dst[i] = MG_SFX(f2h)(src[i]);
}
