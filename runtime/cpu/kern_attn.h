/* kern_attn.h: fast causal attention over a bf16 KV cache in blocks, as
 * chunk partials that are combined in a fixed order (flash-decoding), so
 * that the work can be split over heads and over key positions while every
 * output stays bitwise the same however it is scheduled.
 *
 * Arithmetic (one query head q[d], keys 0..pos; all of it is what the
 * scalar code in kern_attn.c does and the AVX-512 code reproduces bit for
 * bit). Keys are cut into chunks of KATTN_CHUNK positions at fixed
 * multiples of KATTN_CHUNK. For chunk c:
 *   s_j  = round_bf16(round_bf16(dot(q, k_j)) * scale)   (HF: bf16 matmul, bf16 scaling)
 *   dot  = 16 lanes, lane i takes dims 32z+2i+1 then 32z+2i for z = 0..d/32-1
 *          (a vdpbf16ps lane), then the fixed tree (i, i+8), (i, i+4), (i, i+2), (i, i+1)
 *   m_c  = max_j s_j;  e_j = kattn_exp(s_j - m_c)
 *   l_c  = 16 lane sums (lane = (j - chunk start) mod 16, in key order), same tree
 *   o_c  = sum_j e_j * v_j in key order, one fma per key and dim
 * Combine, chunks in order: m = max m_c, w_c = kattn_exp(m_c - m),
 *   l = fma(l_c, w_c, l), o = fma(o_c, w_c, o); out = round_bf16(o * (1 / l)).
 * The probabilities stay fp32 (HF eager rounds them to bf16 before P.V; the
 * difference is below one bf16 step of the output). kattn_exp is a fixed
 * polynomial (Cephes expf form, FMA-evaluated), not libm's expf. */
#ifndef MS_KERN_ATTN_H
#define MS_KERN_ATTN_H

#include <stddef.h>
#include <stdint.h>

#include "kern.h"

#define KATTN_CHUNK 256     /* keys per chunk: the split unit over positions */
#define KATTN_MAX_GROUP 16  /* query heads per KV head handled in one call */

/* Where one (sequence, layer, KV head)'s keys and values live: element i of
 * position j is the bf16 at base + blocks[j / block_size] * blk_stride +
 * (j % block_size) * pos_stride + 2 * i, base = k or v. */
typedef struct kattn_src {
    const unsigned char *k, *v;
    const int32_t *blocks;
    size_t blk_stride, pos_stride;
    int block_size;
} kattn_src;

/* Floats per chunk partial of one query head: m, l, then o[d]. */
#define KATTN_PART(d) ((size_t)(d) + 2)

/* Partials of chunk c (keys [c*KATTN_CHUNK, min((c+1)*KATTN_CHUNK, pos+1)))
 * for G query heads q[G][d] (bf16 bits, head g at q + g*d) sharing one KV
 * head: part[g * KATTN_PART(d) ...] = {m, l, o[d]}. G <= KATTN_MAX_GROUP,
 * d even. */
void kattn_chunk(kern_isa isa, const uint16_t *q, int G, int d, const kattn_src *src, int pos, int c,
                 float scale, float *part);
/* out[d] = the combined attention output (each element rounded to bf16) from
 * n_chunks partials of one query head, partial c at parts + c * stride. */
void kattn_combine(const float *parts, size_t stride, int n_chunks, int d, float *out);
/* Chunks covering keys 0..pos. */
static inline int kattn_n_chunks(int pos) { return pos / KATTN_CHUNK + 1; }

/* The vectorised exp of the header comment, scalar form: valid for any
 * finite x, clamped to [-87.3, 88.7]. */
float kattn_exp(float x);

/* Per-ISA implementations of kattn_chunk (AVX-512: d = 64, 128 or 256 only). */
void kattn_chunk_scalar(const uint16_t *q, int G, int d, const kattn_src *src, int j0, int j1, float scale,
                        float *part);
void kattn_chunk_avx512(const uint16_t *q, int G, int d, const kattn_src *src, int j0, int j1, float scale,
                        float *part);

#endif
