/* q8.h: int8 weights for the fast CPU path (`--weights q8`, MS_WEIGHTS_Q8):
 * each bf16/f16/f32 weight row is quantised at load to int8 with one fp32
 * scale per row, and packed in panels like kern.h's bf16 panels; the
 * activations are quantised per token in groups of Q8_GROUP columns just
 * before each matmul. Products are accumulated in int32 (exact) with AVX-512
 * VNNI (vpdpbusd), so a result never depends on tile or batch shape.
 *
 * Quantisation (round half to even, as nearbyintf):
 *   weights:     sw[n] = amax(w[n]) / 127;  q = clamp(round(w * (127 / amax)), -127, 127),
 *                stored as the byte q + 128 (vpdpbusd's unsigned operand); an all-zero row
 *                has sw = 0 and q = 0
 *   activations: per token t and group g: sx = amax / 127, q = clamp(round(x * (127 / amax)));
 *                corr[t][g] = 128 * sum of the group's q (removes the +128 of the weights)
 * Per output element:
 *   facc = 0; for each group g: d = sum_k (wq + 128) * xq - corr (int32, exact);
 *                               facc = fma((float)d, sx[g], facc)
 *   y = round_bf16(facc * sw[n] + bias[n])
 * Every path (VNNI, AVX2, scalar) runs this sequence, so they agree bit for bit.
 *
 * Layout: panel p (32 rows), quad j (4 columns), row r: 4 bytes at
 * (p * kq + j) * 128 + 4 r, kq = ceil(k / 4); rows past n and columns past k
 * are zero bytes; padded columns add nothing because the activations there
 * are zero (and so is their share of corr). */
#ifndef MS_Q8_H
#define MS_Q8_H

#include <stddef.h>
#include <stdint.h>

#include "cpu/fast/kern.h"
#include "medserve.h"

#define Q8_GROUP 128 /* activation columns per scale */

typedef struct q8pack {
    int64_t n, k;
    int64_t kq;       /* column quads: ceil(k / 4) */
    int64_t n_panels; /* ceil(n / KERN_PW) */
    int64_t groups;   /* ceil(k / Q8_GROUP) */
    uint8_t *data;    /* n_panels * kq * 128 bytes, 64-byte aligned, owned */
    float *scale;     /* [n_panels * KERN_PW] per-row scales (0 past n) */
    size_t bytes;
} q8pack;

/* Activations of T tokens quantised for one matmul input width k. */
typedef struct q8act {
    int8_t *q;     /* [T, ld] (ld >= 4 * kq, zero past k) */
    float *sx;     /* [T, groups] */
    int32_t *corr; /* [T, groups] */
    int64_t ld, groups;
} q8act;

/* Allocates an [n, k] int8 matrix (huge: advise transparent huge pages, as kpack_alloc). */
ms_status q8pack_alloc(q8pack *p, int64_t n, int64_t k, int huge, ms_error *err);
/* Quantises src, a row-major [rows, p->k] matrix of dtype (ST_BF16, ST_F16 or
 * ST_F32; element-aligned is enough), into rows [row0, row0 + rows) of p,
 * touching only panels in [p0, p1). */
void q8pack_fill(q8pack *p, int64_t row0, const void *src, int dtype, int64_t rows, int64_t p0, int64_t p1);
void q8pack_free(q8pack *p); /* NULL-safe; leaves p zeroed */

/* Quantises one activation row x[k] (floats) into row t of a (groups of Q8_GROUP). */
void q8_quant_row(const float *x, int64_t k, q8act *a, int t);
/* Same from bf16 bits (the AVX-512 copy when isa allows; same bytes). */
void q8_quant_row_bf16(kern_isa isa, const uint16_t *x, int64_t k, q8act *a, int t);

/* y[t * ldy + n] for t < T, rows n of panels [p0, p1): the sequence above. */
void q8_gemm(kern_isa isa, const q8pack *w, const q8act *x, int T, float *y, int64_t ldy, const float *bias, int64_t p0,
             int64_t p1);
void q8_gemm_scalar(const q8pack *w, const q8act *x, int T, float *y, int64_t ldy, const float *bias, int64_t p0,
                    int64_t p1);
/* AVX-512 copies of the bf16 quantisation loops (same bytes as the scalar ones);
 * tmp holds k bytes. */
void q8_quant_wrow_avx512(q8pack *p, int64_t r, const uint16_t *w, uint8_t *tmp);
void q8_quant_act_avx512(const uint16_t *x, int64_t k, q8act *a, int t);
void q8_gemm_avx2(const q8pack *w, const q8act *x, int T, float *y, int64_t ldy, const float *bias, int64_t p0,
                  int64_t p1);
void q8_gemm_avx512(const q8pack *w, const q8act *x, int T, float *y, int64_t ldy, const float *bias, int64_t p0,
                    int64_t p1);

#endif
