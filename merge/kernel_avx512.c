/* kernel_avx512.c: the merge kernels of kernel_body.h built with AVX-512 (F, BW, VL, DQ) + FMA
 * (the Makefile adds the flags for *_avx512.c). Chosen at run time by kernel.c. */
#include "kernel.h"

#define MG_SFX(name) name##_avx512
#include "kernel_body.h"

/* The AVX-512 table. */
const mg_kernels mg_kernels_avx512 = {
    "avx512", lora_row_avx512, bf16_to_f32_avx512, f16_to_f32_avx512, f32_to_bf16_avx512, f32_to_f16_avx512,
};
