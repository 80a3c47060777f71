/* kern.h: the fast matmul kernels of the CPU backend: bf16 weights packed
 * once at load into panels, a GEMM/GEMV over them with register tiles, and
 * the run-time choice of instruction set (AVX-512 BF16, AVX2+FMA, portable
 * scalar) so one binary runs on any x86-64. Not here: the reference
 * kernels (cpu_ops.c), attention (kern_attn.c), int8 weights (q8.h).
 *
 * Layout. A kpack holds an [n, k] bf16 weight matrix (several matrices may
 * be stacked along n, e.g. q, k and v) as panels of KERN_PW = 32 output rows.
 * With kp = ceil(k / 2) column pairs, element pair j of row 32p + r, i.e.
 * (w[32p + r][2j], w[32p + r][2j + 1]), sits at u16 offset
 * (p * kp + j) * 64 + 2r. One 64-byte load thus feeds 16 output rows and
 * no horizontal reduction is ever needed. Rows past n and the odd tail
 * column are zero.
 *
 * Numerics (the batch-invariance contract). Every output element is
 *     acc = 0; for j = 0 .. kp-1: acc = (acc + x[2j+1]*w[2j+1]) + x[2j]*w[2j]
 *     y = round_bf16(acc + bias)
 * where each product is exact in fp32 (bf16 x bf16) and each add rounds to
 * nearest even: the operation of one vdpbf16ps lane. Every ISA path and every
 * tile shape runs exactly this sequence for every element, so a row's result
 * does not depend on how many rows are in the call, which tile it lands in,
 * or how panels are split over threads. Across ISAs results are equal too,
 * except that vdpbf16ps flushes denormal inputs and results to zero. */
#ifndef MS_KERN_H
#define MS_KERN_H

#include <stddef.h>
#include <stdint.h>

#include "medserve.h"

typedef enum kern_isa { KERN_SCALAR = 0, KERN_AVX2 = 1, KERN_AVX512 = 2 } kern_isa;

/* The best ISA this CPU runs (AVX512 needs F/BW/VL/DQ + BF16 + VNNI, AVX2 needs
 * FMA + F16C); the environment variable MEDSERVE_ISA=scalar|avx2|avx512 may
 * lower it, never raise it past what the CPU supports. */
kern_isa kern_isa_best(void);
const char *kern_isa_name(kern_isa isa);

#define KERN_PW 32 /* output rows per panel */

typedef struct kpack {
    int64_t n, k;     /* logical rows (outputs) and columns (inputs) */
    int64_t kp;       /* column pairs: ceil(k / 2) */
    int64_t n_panels; /* ceil(n / KERN_PW) */
    uint16_t *data;   /* n_panels * kp * 64 u16, 64-byte aligned, owned */
    size_t bytes;
} kpack;

/* Zeroed anonymous memory of at least bytes, 2 MiB aligned and, if huge,
 * advised for transparent huge pages; *mapped gets the size to pass to
 * kern_free_huge. NULL if it cannot be mapped. */
void *kern_alloc_huge(size_t bytes, size_t *mapped, int huge);
/* 1 unless the environment sets MEDSERVE_NO_HUGEPAGES. */
int kern_huge_default(void);
void kern_free_huge(void *p, size_t mapped); /* NULL-safe */

/* Allocates (zeroed) room for an [n, k] matrix; sizes checked. With huge the
 * memory is advised for transparent huge pages (fewer TLB misses when
 * streaming; faulting them in can stall while the kernel compacts memory). */
ms_status kpack_alloc(kpack *p, int64_t n, int64_t k, int huge, ms_error *err);
/* Copies src, a row-major bf16 [rows, p->k] matrix (2-byte aligned is
 * enough), into rows [row0, row0 + rows) of p, touching only panels in
 * [p0, p1) so threads can split the work by panel. */
void kpack_fill(kpack *p, int64_t row0, const void *src, int64_t rows, int64_t p0, int64_t p1);
/* Element (row, col) of a packed matrix as bf16 bits (for tests). */
uint16_t kpack_get(const kpack *p, int64_t row, int64_t col);
void kpack_free(kpack *p); /* NULL-safe; leaves p zeroed */

/* Writes k floats (each already representable in bf16) as bf16 bits into
 * dst and zeroes dst[k .. kpad); kpad >= k. */
void kern_to_bf16(uint16_t *dst, const float *src, int64_t k, int64_t kpad);

/* y[t * ldy + n] = round_bf16(acc(t, n) + (bias ? bias[n] : 0)) for t < T and
 * every row n < w->n of panels [p0, p1). x is bf16 [T, ldx] with
 * ldx >= 2 * w->kp and zeros in columns k .. 2*kp-1. */
void kern_gemm_bf16(kern_isa isa, const kpack *w, const uint16_t *x, int64_t ldx, int T, float *y, int64_t ldy,
                    const float *bias, int64_t p0, int64_t p1);

/* The per-ISA implementations behind kern_gemm_bf16 (same contract). */
void kern_gemm_bf16_scalar(const kpack *w, const uint16_t *x, int64_t ldx, int T, float *y, int64_t ldy,
                           const float *bias, int64_t p0, int64_t p1);
void kern_gemm_bf16_avx2(const kpack *w, const uint16_t *x, int64_t ldx, int T, float *y, int64_t ldy,
                         const float *bias, int64_t p0, int64_t p1);
void kern_gemm_bf16_avx512(const kpack *w, const uint16_t *x, int64_t ldx, int T, float *y, int64_t ldy,
                           const float *bias, int64_t p0, int64_t p1);

/* AVX-512 packing of 16 whole rows (see kern_avx512.c); used by kpack_fill. */
void kpack_rows16_avx512(kpack *p, int64_t r0, const unsigned char *src, size_t ld, int64_t j0, int64_t j1);

/* Shared epilogue: writes an [rows, 32*np] fp32 tile (row stride 32*np) to y
 * for the valid rows/columns, adding bias and rounding to bf16. */
void kern_store_tile(const float *tile, int rows, int np, const kpack *w, int64_t panel, float *y, int64_t ldy,
                     const float *bias);

#endif
