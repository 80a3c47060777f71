/* kern_ops_avx2.c: AVX2/FMA copies of the row ops in kern_ops.c, operation
 * for operation (so the bits match): the 16 lanes of squares in two ymm
 * registers (multiply, add), the lane tree, scalar 1/sqrt, vector
 * cast-then-scale; RoPE on 8-element groups; SwiGLU with v8_exp. Called
 * only with n a multiple of 16 (d a multiple of 16 for heads, so that d/2
 * is a multiple of 8). Compiled with the AVX2 flags. */
#include <math.h>

#include "cpu/fast/kern_avx2.h"
#include "cpu/fast/kern_ops.h"

/* 1 / sqrt(mean(x^2) + eps) with kern_ops.c's lane order and tree. */
static float rms_scale(const float *x, int n, float eps)
{
    __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
    for (int i = 0; i < n; i += 16) {
        const __m256 a = _mm256_loadu_ps(x + i), b = _mm256_loadu_ps(x + i + 8);
        lo = _mm256_add_ps(lo, _mm256_mul_ps(a, a));
        hi = _mm256_add_ps(hi, _mm256_mul_ps(b, b));
    }
    return 1.0f / sqrtf(v8_tree16(lo, hi) / (float)n + eps);
}

/* kops_add_norm with 8-lane vectors. */
void kops_add_norm_avx2(float *x, const float *o, const float *w, int n, float eps, uint16_t *hb)
{
    if (o)
        for (int i = 0; i < n; i += 8)
            _mm256_storeu_ps(x + i, v8_round_bf16(_mm256_add_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(o + i))));
    const __m256 r = _mm256_set1_ps(rms_scale(x, n, eps));
    for (int i = 0; i < n; i += 8) {
        const __m256 h = v8_round_bf16(_mm256_mul_ps(_mm256_loadu_ps(x + i), r));
        v8_store_bits(hb + i, v8_round_bf16(_mm256_mul_ps(_mm256_loadu_ps(w + i), h)));
    }
}

/* kops_head_norm_rope with 8-lane vectors. */
void kops_head_norm_rope_avx2(float *v, const float *w, int d, float eps, const float *cos, const float *sin)
{
    const __m256 r = _mm256_set1_ps(rms_scale(v, d, eps));
    for (int i = 0; i < d; i += 8)
        _mm256_storeu_ps(v + i, v8_round_bf16(_mm256_mul_ps(_mm256_loadu_ps(w + i),
                                                            v8_round_bf16(_mm256_mul_ps(_mm256_loadu_ps(v + i), r)))));
    const int h = d / 2;
    const __m256 neg = _mm256_set1_ps(-0.0f);
    for (int i = 0; i < h; i += 8) {
        const __m256 x1 = _mm256_loadu_ps(v + i), x2 = _mm256_loadu_ps(v + i + h);
        const __m256 c = _mm256_loadu_ps(cos + i), s = _mm256_loadu_ps(sin + i);
        const __m256 a = v8_round_bf16(_mm256_add_ps(v8_round_bf16(_mm256_mul_ps(x1, c)),
                                                     v8_round_bf16(_mm256_mul_ps(_mm256_xor_ps(x2, neg), s))));
        const __m256 b =
            v8_round_bf16(_mm256_add_ps(v8_round_bf16(_mm256_mul_ps(x2, c)), v8_round_bf16(_mm256_mul_ps(x1, s))));
        _mm256_storeu_ps(v + i, a);
        _mm256_storeu_ps(v + i + h, b);
    }
}

/* kops_swiglu with 8-lane vectors. */
void kops_swiglu_avx2(const float *g, const float *u, int n, uint16_t *out)
{
    const __m256 one = _mm256_set1_ps(1.0f), neg = _mm256_set1_ps(-0.0f);
    for (int i = 0; i < n; i += 8) {
        const __m256 gv = _mm256_loadu_ps(g + i);
        const __m256 e = v8_exp(_mm256_xor_ps(gv, neg));
        const __m256 s = v8_round_bf16(_mm256_div_ps(gv, _mm256_add_ps(one, e)));
        v8_store_bits(out + i, v8_round_bf16(_mm256_mul_ps(s, _mm256_loadu_ps(u + i))));
    }
}
