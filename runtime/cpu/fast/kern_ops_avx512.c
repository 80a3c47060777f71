/* kern_ops_avx512.c: AVX-512 copies of the row ops in kern_ops.c, operation
 * for operation (so the bits match): 16 lanes of squares (multiply, add),
 * the lane tree, scalar 1/sqrt, then vector cast-then-scale; RoPE on
 * 16-element halves; SwiGLU with v_exp. Called only with n a multiple of
 * 16 (d a multiple of 32 for heads). Compiled with the AVX-512 flags. */
#include <math.h>

#include "cpu/fast/kern_avx512.h"
#include "cpu/fast/kern_ops.h"

/* bf16 bits of 16 bf16-representable floats (truncation is exact). */
static inline __m256i v_bits(__m512 x)
{
    return _mm512_cvtepi32_epi16(_mm512_srli_epi32(_mm512_castps_si512(x), 16));
}

/* 1 / sqrt(mean(x^2) + eps) with kern_ops.c's lane order and tree. */
static float rms_scale(const float *x, int n, float eps)
{
    __m512 acc = _mm512_setzero_ps();
    for (int i = 0; i < n; i += 16) {
        const __m512 v = _mm512_loadu_ps(x + i);
        acc = _mm512_add_ps(acc, _mm512_mul_ps(v, v));
    }
    float a[16];
    _mm512_storeu_ps(a, acc);
    for (int s = 8; s > 0; s /= 2)
        for (int i = 0; i < s; i++) a[i] += a[i + s];
    return 1.0f / sqrtf(a[0] / (float)n + eps);
}

/* kops_add_norm with 16-lane vectors. */
void kops_add_norm_avx512(float *x, const float *o, const float *w, int n, float eps, uint16_t *hb)
{
    if (o)
        for (int i = 0; i < n; i += 16)
            _mm512_storeu_ps(x + i, v_round_bf16(_mm512_add_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(o + i))));
    const __m512 r = _mm512_set1_ps(rms_scale(x, n, eps));
    for (int i = 0; i < n; i += 16) {
        const __m512 h = v_round_bf16(_mm512_mul_ps(_mm512_loadu_ps(x + i), r));
        const __m512 y = v_round_bf16(_mm512_mul_ps(_mm512_loadu_ps(w + i), h));
        _mm256_storeu_si256((__m256i *)(hb + i), v_bits(y));
    }
}

/* kops_head_norm_rope with 16-lane vectors. */
void kops_head_norm_rope_avx512(float *v, const float *w, int d, float eps, const float *cos, const float *sin)
{
    const __m512 r = _mm512_set1_ps(rms_scale(v, d, eps));
    for (int i = 0; i < d; i += 16)
        _mm512_storeu_ps(v + i, v_round_bf16(_mm512_mul_ps(_mm512_loadu_ps(w + i),
                                                           v_round_bf16(_mm512_mul_ps(_mm512_loadu_ps(v + i), r)))));
    const int h = d / 2;
    const __m512 neg = _mm512_set1_ps(-0.0f);
    for (int i = 0; i < h; i += 16) {
        const __m512 x1 = _mm512_loadu_ps(v + i), x2 = _mm512_loadu_ps(v + i + h);
        const __m512 c = _mm512_loadu_ps(cos + i), s = _mm512_loadu_ps(sin + i);
        const __m512 a = v_round_bf16(
            _mm512_add_ps(v_round_bf16(_mm512_mul_ps(x1, c)), v_round_bf16(_mm512_mul_ps(_mm512_xor_ps(x2, neg), s))));
        const __m512 b =
            v_round_bf16(_mm512_add_ps(v_round_bf16(_mm512_mul_ps(x2, c)), v_round_bf16(_mm512_mul_ps(x1, s))));
        _mm512_storeu_ps(v + i, a);
        _mm512_storeu_ps(v + i + h, b);
    }
}

/* kops_swiglu with 16-lane vectors. */
void kops_swiglu_avx512(const float *g, const float *u, int n, uint16_t *out)
{
    const __m512 one = _mm512_set1_ps(1.0f), neg = _mm512_set1_ps(-0.0f);
    for (int i = 0; i < n; i += 16) {
        const __m512 gv = _mm512_loadu_ps(g + i);
        const __m512 e = v_exp(_mm512_xor_ps(gv, neg));
        const __m512 s = v_round_bf16(_mm512_div_ps(gv, _mm512_add_ps(one, e)));
        _mm256_storeu_si256((__m256i *)(out + i), v_bits(v_round_bf16(_mm512_mul_ps(s, _mm512_loadu_ps(u + i)))));
    }
}

/* Converts whole blocks of 16; the caller does the tail. Rounds (the
 * identity on the bf16-representable values callers pass) so that every
 * input, a NaN with any payload included, gets half_f32_to_bf16's bits. */
int kops_to_bf16_avx512(const float *x, int n, uint16_t *out)
{
    int i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(out + i), v_bits(v_round_bf16(_mm512_loadu_ps(x + i))));
    return i;
}
