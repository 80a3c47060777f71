/* kernel_avx2.c: the merge kernels of kernel_body.h built with AVX2+FMA+F16C
 * (the Makefile adds the flags for *_avx2.c). Chosen at run time by kernel.c. */
#include "kernel.h"

#define MG_SFX(name) name##_avx2
#include "kernel_body.h"

/* The AVX2 table. */
const mg_kernels mg_kernels_avx2 = {
    "avx2", lora_row_avx2, bf16_to_f32_avx2, f16_to_f32_avx2, f32_to_bf16_avx2, f32_to_f16_avx2,
};
