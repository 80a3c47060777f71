/* kern_attn.h: fast causal attention over a bf16 KV cache in blocks, in
 * three steps (scores, softmax, P.V) whose position ranges are fixed
 * chunks, so the work can be split over heads and over key positions while
 * every output stays bitwise the same however it is scheduled.
 *
 * Arithmetic for one query head q[d] and keys 0..pos (the scalar code in
 * kern_attn.c defines it; the AVX-512 code reproduces it bit for bit):
 *   s_j = round_bf16(round_bf16(dot(q, k_j)) * scale)  (HF eager: bf16 matmul, bf16 scaling)
 *   dot = 16 lanes, lane i takes dims 32z+2i+1 then 32z+2i for z = 0..d/32-1
 *         (one vdpbf16ps lane), then the tree (i, i+8), (i, i+4), (i, i+2), (i, i+1)
 *   m = max_j s_j;  e_j = kattn_exp(s_j - m)
 *   l = tree of 16 lane sums (lane = j mod 16, keys in order)
 *   p_j = round_bf16(e_j * (1 / l))                    (HF: fp32 softmax cast to bf16)
 *   o_c = sum over keys j of chunk c (positions [c*C, (c+1)*C), C = KATTN_CHUNK)
 *         of p_j * v_j, one fma per key and dim in key order, from 0
 *   out = round_bf16(((o_0 + o_1) + o_2) + ...)
 * kattn_exp is a fixed polynomial (Cephes expf form, FMA-evaluated), not
 * libm's expf, so vector and scalar code agree. */
#ifndef MS_KERN_ATTN_H
#define MS_KERN_ATTN_H

#include <stddef.h>
#include <stdint.h>

#include "cpu/fast/kern.h"

#define KATTN_CHUNK 256    /* keys per chunk: the unit of the split over positions */
#define KATTN_MAX_GROUP 16 /* query heads per KV head handled in one call */

/* Where one (sequence, layer, KV head)'s keys and values live. Block ids are
 * grouped in superblocks of sb consecutive ids: element i of position j is the
 * bf16 at base + (id / sb) * sb_stride + (id % sb) * blk_stride +
 * (j % block_size) * pos_stride + 2 * i, id = blocks[j / block_size],
 * base = k or v (sb = 1 with sb_stride = blk_stride: plain blocks). */
typedef struct kattn_src {
    const unsigned char *k, *v;
    const int32_t *blocks;
    size_t blk_stride, pos_stride;
    int block_size;
    int sb;
    size_t sb_stride;
} kattn_src;

/* Row 0 of the b-th block of a sequence (base = src->k or src->v). */
static inline const unsigned char *kattn_block(const unsigned char *base, const kattn_src *src, int b)
{
    const size_t id = (size_t)src->blocks[b];
    return base + id / (size_t)src->sb * src->sb_stride + id % (size_t)src->sb * src->blk_stride;
}

/* Chunks covering keys 0..pos. */
static inline int kattn_n_chunks(int pos)
{
    return pos / KATTN_CHUNK + 1;
}

/* Scores of the keys of chunk c (of 0..pos) for G query heads q[G][d] (bf16
 * bits) sharing one KV head: s[g * lds + j] for j in the chunk (absolute
 * position index). G <= KATTN_MAX_GROUP, d even. */
void kattn_scores(kern_isa isa, const uint16_t *q, int G, int d, const kattn_src *src, int pos, int c, float scale,
                  float *s, size_t lds);
/* Turns the scores s[0..n) of one head into bf16-rounded probabilities, in place. */
void kattn_softmax(kern_isa isa, float *s, int n);
/* o[g * d + i] = sum over the keys j of chunk c of p[g * lds + j] * v_j[i] (fma chain, key order). */
void kattn_pv(kern_isa isa, const float *p, size_t lds, int G, int d, const kattn_src *src, int pos, int c, float *o);
/* out[i] = round_bf16(sum_c o_c[i]) over n_chunks partials o_c = oc + c * stride, in order
 * (a NaN becomes the signed canonical NaN, as half_f32_to_bf16 does). */
void kattn_sum(kern_isa isa, const float *oc, size_t stride, int n_chunks, int d, float *out);

/* The exp of the header comment, scalar form: any finite x, clamped to [-87.3, 88]. */
float kattn_exp(float x);

/* AVX2 copies (d a multiple of 32 for scores and pv; softmax any n). */
void kattn_scores_avx2(const uint16_t *q, int G, int d, const kattn_src *src, int j0, int j1, float scale, float *s,
                       size_t lds);
void kattn_softmax_avx2(float *s, int n);
void kattn_pv_avx2(const float *p, size_t lds, int G, int d, const kattn_src *src, int j0, int j1, float *o);

/* AVX-512 copies (d = 64, 128 or 256 for scores and pv; softmax any n). */
void kattn_scores_avx512(const uint16_t *q, int G, int d, const kattn_src *src, int j0, int j1, float scale, float *s,
                         size_t lds);
void kattn_softmax_avx512(float *s, int n);
void kattn_pv_avx512(const float *p, size_t lds, int G, int d, const kattn_src *src, int j0, int j1, float *o);
void kattn_sum_avx512(const float *oc, size_t stride, int n_chunks, int d, float *out); /* d % 16 == 0 */

#endif
