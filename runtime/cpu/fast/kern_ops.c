/* kern_ops.c: scalar definitions of the fused row ops of kern_ops.h and the
 * dispatch to their AVX-512 and AVX2 copies (used when the length is a
 * multiple of their block, else these run). Every float operation is written out so the vector code can
 * repeat it exactly: squares are a multiply then an add (no FMA), the 16
 * lane sums use lane = i mod 16 and the tree (i,i+8),(i,i+4),(i,i+2),(i,i+1). */
#include <math.h>

#include "base/half.h"
#include "cpu/fast/kern_attn.h"
#include "cpu/fast/kern_ops.h"

/* Rounds to the nearest bf16 value (ties to even), as a float. */
static inline float rb(float x)
{
    return half_bf16_to_f32(half_f32_to_bf16(x));
}

/* 1 / sqrt(mean(x^2) + eps) with the fixed 16-lane order. */
static float rms_scale(const float *x, int n, float eps)
{
    float acc[16] = {0};
    for (int i = 0; i < n; i++) acc[i % 16] = acc[i % 16] + x[i] * x[i];
    for (int s = 8; s > 0; s /= 2)
        for (int i = 0; i < s; i++) acc[i] += acc[i + s];
    return 1.0f / sqrtf(acc[0] / (float)n + eps);
}

/* Residual add then RMSNorm, written as bf16 (scalar definition or vector copy). */
void kops_add_norm(kern_isa isa, float *x, const float *o, const float *w, int n, float eps, uint16_t *hb)
{
    if (isa == KERN_AVX512 && n % 16 == 0) {
        kops_add_norm_avx512(x, o, w, n, eps, hb);
        return;
    }
    if (isa == KERN_AVX2 && n % 16 == 0) {
        kops_add_norm_avx2(x, o, w, n, eps, hb);
        return;
    }
    if (o)
        for (int i = 0; i < n; i++) x[i] = rb(x[i] + o[i]);
    const float r = rms_scale(x, n, eps);
    for (int i = 0; i < n; i++) hb[i] = half_f32_to_bf16(w[i] * rb(x[i] * r));
}

void kops_head_norm_rope(kern_isa isa, float *v, const float *w, int d, float eps, const float *cos, const float *sin)
{
    if (isa == KERN_AVX512 && d % 32 == 0) {
        kops_head_norm_rope_avx512(v, w, d, eps, cos, sin);
        return;
    }
    if (isa == KERN_AVX2 && d % 16 == 0) {
        kops_head_norm_rope_avx2(v, w, d, eps, cos, sin);
        return;
    }
    const float r = rms_scale(v, d, eps);
    for (int i = 0; i < d; i++) v[i] = rb(w[i] * rb(v[i] * r));
    const int h = d / 2;
    for (int i = 0; i < h; i++) {
        const float x1 = v[i], x2 = v[i + h];
        v[i] = rb(rb(x1 * cos[i]) + rb(-x2 * sin[i]));
        v[i + h] = rb(rb(x2 * cos[i]) + rb(x1 * sin[i]));
    }
}

/* silu(gate) * up, written as bf16. */
void kops_swiglu(kern_isa isa, const float *g, const float *u, int n, uint16_t *out)
{
    if (isa == KERN_AVX512 && n % 16 == 0) {
        kops_swiglu_avx512(g, u, n, out);
        return;
    }
    if (isa == KERN_AVX2 && n % 8 == 0) {
        kops_swiglu_avx2(g, u, n, out);
        return;
    }
    for (int i = 0; i < n; i++) {
        const float s = rb(g[i] / (1.0f + kattn_exp(-g[i])));
        out[i] = half_f32_to_bf16(s * u[i]);
    }
}

/* Float to bf16 bits (values already bf16-representable). */
void kops_to_bf16(kern_isa isa, const float *x, int n, uint16_t *out)
{
    int i = 0;
    if (isa == KERN_AVX512) i = kops_to_bf16_avx512(x, n, out);
    for (; i < n; i++) out[i] = half_f32_to_bf16(x[i]);
}
