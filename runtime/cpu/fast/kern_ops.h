/* kern_ops.h: the per-row elementwise ops of the fast bf16 forward pass,
 * each reading the fp32 activations the GEMMs write and (where the next
 * step is a GEMM) writing bf16 bits directly, so no separate conversion pass
 * is needed. Rounding points are those of cpu.h / docs/numerics.md §1.5 (HF
 * bf16): residual add, RMSNorm cast-then-scale, RoPE products and sum,
 * silu, silu*up. The scalar definitions are in kern_ops.c; the AVX-512 and
 * AVX2 copies (kern_ops_avx512.c, kern_ops_avx2.c) give the same bits (sum of squares in 16
 * lanes with the tree of kern_attn.h, exp from kattn_exp).
 * Activation dtype must be bf16 for this path. */
#ifndef MS_KERN_OPS_H
#define MS_KERN_OPS_H

#include <stdint.h>

#include "cpu/fast/kern.h"

/* If o: x[i] = round(x[i] + o[i]). Then hb = bf16(round(w * round(x * r))),
 * r = 1 / sqrt(mean(x^2) + eps): the residual add fused with the next RMSNorm. */
void kops_add_norm(kern_isa isa, float *x, const float *o, const float *w, int n, float eps, uint16_t *hb);
/* One q or k head in place: RMSNorm over d with w, then RoPE (pairs i, i + d/2)
 * with cos/sin tables of d/2 entries. */
void kops_head_norm_rope(kern_isa isa, float *v, const float *w, int d, float eps, const float *cos, const float *sin);
/* out[i] = bf16(round(round(silu(g[i])) * u[i])), silu(g) = g / (1 + exp(-g)). */
void kops_swiglu(kern_isa isa, const float *g, const float *u, int n, uint16_t *out);
/* out[i] = half_f32_to_bf16(x[i]) (exact for the bf16-representable x callers pass). */
void kops_to_bf16(kern_isa isa, const float *x, int n, uint16_t *out);

void kops_add_norm_avx2(float *x, const float *o, const float *w, int n, float eps, uint16_t *hb);
void kops_head_norm_rope_avx2(float *v, const float *w, int d, float eps, const float *cos, const float *sin);
void kops_swiglu_avx2(const float *g, const float *u, int n, uint16_t *out);
void kops_add_norm_avx512(float *x, const float *o, const float *w, int n, float eps, uint16_t *hb);
void kops_head_norm_rope_avx512(float *v, const float *w, int d, float eps, const float *cos, const float *sin);
void kops_swiglu_avx512(const float *g, const float *u, int n, uint16_t *out);
/* Converts the first n / 16 * 16 elements; returns how many it did. */
int kops_to_bf16_avx512(const float *x, int n, uint16_t *out);

#endif
