/* kernel.h: the merge arithmetic on rows of fp32, and dtype conversions.
 * Bit-exact with PyTorch/PEFT on CPU: ΔW = (B·A)·s where every output element
 * is a sequential fused multiply-add over the rank index k (what MKL's sgemm
 * does for these shapes; checked against torch in tests/ref), then one fp32
 * multiply by the scale. Rounding to bf16/f16 is base/half.h's rule
 * (round to nearest even; for scalar conversions call half.h directly).
 * One C source (kernel_body.h) is compiled three times: generic, AVX2+FMA and
 * AVX-512; the fastest the CPU supports is chosen once at run time. All three
 * give identical bits (fmaf is exact everywhere). */
#ifndef MG_KERNEL_H
#define MG_KERNEL_H

#include <stddef.h>
#include <stdint.h>

#include "io/st.h"

typedef struct mg_kernels {
    const char *name; /* "generic", "avx2", "avx512" */
    /* y[j] = fl(fl(sum_k c[k]*M[k*ld+j]) * s) for j < n, the sum a chain of
     * fmaf over k = 0..r-1 starting from 0. */
    void (*lora_row)(float *y, const float *c, const float *M, size_t ld, int r, size_t n, float s);
    /* dst[j] = (float)src[j] for bf16/f16/f32 sources. */
    void (*bf16_to_f32)(float *dst, const uint16_t *src, size_t n);
    void (*f16_to_f32)(float *dst, const uint16_t *src, size_t n);
    /* RNE conversions; NaN becomes the signed canonical quiet NaN, overflow
     * becomes Inf (the rule of base/half.h, whose scalar functions these
     * apply element by element). */
    void (*f32_to_bf16)(uint16_t *dst, const float *src, size_t n);
    void (*f32_to_f16)(uint16_t *dst, const float *src, size_t n);
} mg_kernels;

/* The kernel table for this CPU (chosen once; thread-safe). */
const mg_kernels *mg_kernels_get(void);
/* A specific table by name ("generic", "avx2", "avx512"), or NULL if this CPU
 * cannot run it. For tests. */
const mg_kernels *mg_kernels_named(const char *name);

/* Converts n elements of any of BF16/F16/F32 (possibly unaligned bytes) to f32. */
void mg_to_f32(const mg_kernels *k, float *dst, const void *src, st_dtype t, size_t n);
/* Converts n f32 to t (BF16/F16/F32) into dst bytes. */
void mg_from_f32(const mg_kernels *k, void *dst, const float *src, st_dtype t, size_t n);
/* Rounds x in place to dtype t and back to f32 (identity for F32). */
void mg_round_inplace(const mg_kernels *k, float *x, st_dtype t, size_t n);

#endif
