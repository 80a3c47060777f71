/* kern_fwd.c: the fast CPU backend, "cpu-fast" in backend.c's table, for
 * bf16 models (weights and activations bf16) and for int8 weights quantised
 * at load from any dtype: weights packed once at create (kern.h panels, q/k/v
 * and gate/up stacked), one OpenMP parallel region per forward call (each op
 * split over rows, panels or attention items, a barrier between ops), fused
 * row ops (kern_ops.h), chunked attention over its own bf16 KV cache
 * (kern_attn.h), and free. The math is docs/numerics.md §1.3 with the
 * rounding points of cpu.h. Every output element is computed by the same
 * instruction sequence whatever the batch, so a sequence's logits never
 * depend on its neighbours or on chunking.
 *
 * backend.c runs a model here when fast_supports accepts it (and the
 * environment does not set MEDSERVE_CPU_REFERENCE for native weights); other
 * models run on the reference backend (cpu/ref/cpu_backend.c).
 *
 * Packing copies every matrix into anonymous, huge-page-advised memory and
 * then drops the mmap'd source pages from this process (MADV_DONTNEED), so
 * the resident size stays about one copy of the weights; the embedding rows
 * are faulted back in from the page cache when looked up.
 *
 * Attention work items are (kv head, row): all steps of kern_attn.h for a
 * row in one thread. When there are too few of them to keep every thread busy
 * (short batches on many cores), scores and P.V are split over (row, kv head,
 * chunk) and softmax and the chunk sum over (row, head), with barriers in
 * between; the arithmetic is identical either way.
 * Not here: scheduling, sampling, KV block allocation (kv.c). */
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/err.h"
#include "cpu/fast/kern.h"
#include "cpu/fast/kern_attn.h"
#include "cpu/fast/kern_ops.h"
#include "cpu/fast/q8.h"
#include "cpu/ref/cpu.h"
#include "engine/backend.h"

/* One packed matrix: bf16 panels, or int8 panels when the backend runs q8. */
typedef struct kf_mat {
    kpack bf;
    q8pack q8;
} kf_mat;

typedef struct kf_layer {
    kf_mat qkv, o, gu, down;     /* [q;k;v] x H, H x qdim, [gate;up] x H, H x I */
    float *bqkv, *bo;            /* biases (attention_bias) or NULL */
    float *attn_norm, *ffn_norm; /* [H] */
    float *q_norm, *k_norm;      /* [d] */
} kf_layer;

struct backend {
    const model *m;
    kern_isa isa;
    int q8;   /* int8 weights (q8.h) instead of bf16 panels */
    int huge; /* asking for transparent huge pages (see pack_run) */
    int nt, max_seqs, max_tokens, max_pos, max_chunks;
    int H, L, nh, nkv, d, G, I, V, qdim, kvdim, qkvdim;
    float eps, scale;
    kf_layer *layers;
    kf_mat lm;
    float *final_norm;
    cpu_rope rope;
    /* KV cache, bf16, in superblocks of sb consecutive block ids (sb * block_size
     * = KATTN_CHUNK positions): [n_blocks / sb][L][2 (K, V)][nkv][sb][block_size][d],
     * so one (layer, K or V, head) of a sequence with consecutive blocks is one
     * contiguous run per superblock (streamed at memory speed), and a superblock's
     * pages are touched only when its positions are used. */
    uint16_t *kv;
    size_t kv_bytes, blk_bytes, sb_bytes;
    int n_blocks, bs, sb;
    /* activations for max_tokens rows */
    float *x;               /* [T, H] residual stream */
    float *y;               /* [T, ydim] qkv or gate|up output */
    float *o;               /* [T, H] o_proj / down output */
    uint16_t *xb;           /* [T, ldxb] bf16 input of the next GEMM */
    uint16_t *qb;           /* [T, qdim] bf16 queries after norm + RoPE */
    float *rcos, *rsin;     /* [T, d/2] */
    int *row_seq, *row_pos; /* [T] */
    int ydim, ldxb;
    float *sc;  /* [nt][G][max_pos] per-thread scores / probabilities */
    float *oc;  /* [nt][max_chunks][G * d] per-thread P.V chunk partials */
    float *att; /* [nt][d] one head's output */
    float *ssc; /* split mode: [split_rows][nh][max_pos] scores */
    float *soc; /* split mode: [split_rows][nkv][max_chunks][G * d] partials */
    int split_rows;
    q8act qa_h, qa_q, qa_i; /* q8: quantised GEMM inputs of width H, qdim, I (shared buffers) */
    q8act qa_lm;            /* q8: quantised lm_head input rows */
    int lm_rows;            /* rows per lm_head pass */
    uint16_t *lm_in;        /* [lm_rows, H] */
    float *lm_out;          /* [lm_rows, V] */
    int *lm_row;            /* [max_tokens] rows that want logits */
    float **lm_dst;         /* [max_tokens] where each goes */
};

/* 1 if m can run here: even hidden, intermediate and head sizes, and either
 * q8 (int8 weights quantised from any dtype; activations then computed in
 * bf16) or all matrices bf16 with activation dtype bf16. Else 0 and, if
 * why != NULL, the reason. (More than KATTN_MAX_GROUP query heads per kv
 * head is refused later, by create.) */
static int fast_supports(const model *m, int q8, const char **why)
{
    const char *r = NULL;
    const qwen3_config *c = &m->cfg;
    st_dtype act =
        c->dtype_given && (c->dtype == ST_F32 || c->dtype == ST_BF16 || c->dtype == ST_F16) ? c->dtype : m->embed.dtype;
    if (c->hidden_size % 2 || c->intermediate_size % 2 || c->head_dim % 2) r = "odd hidden, intermediate or head size";
    else if (q8) r = NULL; /* int8 weights: any weight dtype, activations computed in bf16 */
    else if (act != ST_BF16) r = "activation dtype is not bf16";
    else if (m->embed.dtype != ST_BF16 || m->lm_head.dtype != ST_BF16) r = "embedding or lm_head is not bf16";
    for (int l = 0; !q8 && !r && l < c->n_layers; l++) {
        const layer_weights *w = &m->layers[l];
        const wmat *ms[] = {&w->wq, &w->wk, &w->wv, &w->wo, &w->w_gate, &w->w_up, &w->w_down};
        for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++)
            if (ms[i]->dtype != ST_BF16) r = "a layer matrix is not bf16";
    }
    if (why) *why = r;
    return r == NULL;
}

/* ---- create / free ---- */

/* Copies a weight vector (any dtype) to a new float array; NULL on OOM or if absent. */
static float *vec_f32(const wmat *w, int64_t n)
{
    if (!w->data) return NULL;
    float *v = malloc(sizeof(float) * (size_t)n);
    if (v)
        for (int64_t i = 0; i < n; i++) v[i] = elem_get(w->data, w->dtype, i);
    return v;
}

/* Drops this process's mapping of the whole pages inside [p, p + bytes) (advice; contents unchanged). */
static void drop_pages(const void *p, size_t bytes)
{
    const uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = ((uintptr_t)p + pg - 1) / pg * pg, e = ((uintptr_t)p + bytes) / pg * pg;
    if (e > a) madvise((void *)a, e - a, MADV_DONTNEED);
}

/* One slice of packing work: panels [p0, p1) of dst taken from source src,
 * whose rows start at row0 of dst. */
typedef struct pack_job {
    kf_mat *dst;
    const wmat *src;
    int64_t row0, p0, p1;
} pack_job;

/* Packing work list: every matrix allocated up front, its panels cut into
 * slices of about PACK_SLICE source bytes. */
#define PACK_SLICE ((int64_t)16 << 20)
typedef struct pack_list {
    pack_job *jobs;
    size_t n, cap;
} pack_list;

/* Allocates dst for srcs[0..n) stacked along rows and queues its slices. */
static ms_status pack_add(backend *b, pack_list *pl, kf_mat *dst, const wmat *const *srcs, int n, ms_error *err)
{
    int64_t rows = 0;
    for (int i = 0; i < n; i++) rows += srcs[i]->rows;
    ms_status st = b->q8 ? q8pack_alloc(&dst->q8, rows, srcs[0]->cols, b->huge, err)
                         : kpack_alloc(&dst->bf, rows, srcs[0]->cols, b->huge, err);
    if (st != MS_OK) return st;
    int64_t row0 = 0;
    for (int i = 0; i < n; i++) {
        const wmat *w = srcs[i];
        const int64_t row_bytes = w->cols * (w->dtype == ST_F32 ? 4 : 2);
        const int64_t pa = row0 / KERN_PW, pb = (row0 + w->rows + KERN_PW - 1) / KERN_PW;
        int64_t per = PACK_SLICE / (row_bytes * KERN_PW);
        if (per < 1) per = 1;
        for (int64_t s0 = pa; s0 < pb; s0 += per) {
            if (pl->n == pl->cap) {
                size_t cap = pl->cap ? 2 * pl->cap : 256;
                pack_job *nj = realloc(pl->jobs, cap * sizeof *nj);
                if (!nj) return ms_seterr(err, MS_ERR_NOMEM, "cpu fast backend: out of memory for the packing list");
                pl->jobs = nj;
                pl->cap = cap;
            }
            pl->jobs[pl->n++] = (pack_job){dst, w, row0, s0, s0 + per < pb ? s0 + per : pb};
        }
        row0 += w->rows;
    }
    return MS_OK;
}

/* The packed memory of m (bf16 or int8 form). */
static void mat_mem(const kf_mat *m, void **p, size_t *bytes)
{
    *p = m->bf.data ? (void *)m->bf.data : (void *)m->q8.data;
    *bytes = m->bf.data ? m->bf.bytes : m->q8.bytes;
}

/* The mmap'd source bytes of job j (whole rows of its slice). */
static void job_src(const pack_job *j, const unsigned char **p, size_t *bytes)
{
    const wmat *w = j->src;
    const size_t row_bytes = (size_t)w->cols * (w->dtype == ST_F32 ? 4 : 2);
    int64_t r0 = j->p0 * KERN_PW - j->row0, r1 = j->p1 * KERN_PW - j->row0;
    r0 = r0 < 0 ? 0 : r0;
    r1 = r1 > w->rows ? w->rows : r1;
    *p = (const unsigned char *)w->data + (size_t)(r1 > r0 ? r0 : 0) * row_bytes;
    *bytes = r1 > r0 ? (size_t)(r1 - r0) * row_bytes : 0;
}

/* Asks the kernel to start reading the source of job j from disk now
 * (advice; a cold page cache is then read in large requests ahead of the
 * packing threads instead of page fault by page fault). */
static void prefetch_job(const pack_job *j)
{
    const unsigned char *p;
    size_t bytes;
    job_src(j, &p, &bytes);
    const uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE), a = (uintptr_t)p / pg * pg;
    if (bytes) madvise((void *)a, (uintptr_t)p + bytes - a, MADV_WILLNEED);
}

/* Runs every queued slice in one parallel region (threads never sleep between
 * matrices) and drops each slice's mmap'd source pages from this process as
 * soon as it is packed, so the peak resident size never holds a whole source
 * matrix and its copy.
 *
 * Huge pages: faulting them in stalls while the kernel compacts fragmented
 * memory (seen here: all weights packed in 0.25 s on a quiet machine, 1-3 s
 * right after another large process exited). Once at least 8 slices, and
 * more than a tenth of those done, have packed slower than 0.8 GB/s (a single
 * slow slice happens anyway), every packed matrix is re-advised to ordinary
 * pages from then on: the decode is then about 10 % slower, but the load
 * never stalls for long. */
static void pack_run(backend *b, const pack_list *pl)
{
    int slow = 0, done = 0, advised = 0;
    const size_t ahead = (size_t)(2 * b->nt); /* slices read ahead of the packing threads */
    for (size_t i = 0; i < ahead && i < pl->n; i++) prefetch_job(&pl->jobs[i]);
#pragma omp parallel for schedule(dynamic, 1) num_threads(b->nt)
    for (size_t i = 0; i < pl->n; i++) {
        const pack_job *j = &pl->jobs[i];
        const wmat *w = j->src;
        if (i + ahead < pl->n) prefetch_job(&pl->jobs[i + ahead]);
        const double t0 = omp_get_wtime();
        if (b->q8) q8pack_fill(&j->dst->q8, j->row0, w->data, w->dtype, w->rows, j->p0, j->p1);
        else kpack_fill(&j->dst->bf, j->row0, w->data, w->rows, j->p0, j->p1);
        const unsigned char *src;
        size_t src_bytes;
        job_src(j, &src, &src_bytes);
        if (src_bytes) drop_pages(src, src_bytes);
        const double dt = omp_get_wtime() - t0, bytes = (double)src_bytes;
        const int nd = __atomic_add_fetch(&done, 1, __ATOMIC_RELAXED);
        const int ns = b->huge && dt > 0.005 && bytes / dt < 0.8e9 ? __atomic_add_fetch(&slow, 1, __ATOMIC_RELAXED)
                                                                   : __atomic_load_n(&slow, __ATOMIC_RELAXED);
        if (ns >= 8 && ns * 10 > nd && !__atomic_exchange_n(&advised, 1, __ATOMIC_ACQ_REL)) {
            for (size_t k = 0; k < pl->n; k++)
                if (k == 0 || pl->jobs[k].dst != pl->jobs[k - 1].dst) {
                    void *mem;
                    size_t len;
                    mat_mem(pl->jobs[k].dst, &mem, &len);
                    madvise(mem, len, MADV_NOHUGEPAGE);
                }
        }
    }
    if (advised) b->huge = 0;
}

/* Frees the packed weights, KV cache and buffers; NULL-safe. */
static void fast_free(backend *b)
{
    if (!b) return;
    if (b->layers)
        for (int l = 0; l < b->L; l++) {
            kf_layer *w = &b->layers[l];
            kf_mat *ms[] = {&w->qkv, &w->o, &w->gu, &w->down};
            for (int i = 0; i < 4; i++) {
                kpack_free(&ms[i]->bf);
                q8pack_free(&ms[i]->q8);
            }
            free(w->bqkv);
            free(w->bo);
            free(w->attn_norm);
            free(w->ffn_norm);
            free(w->q_norm);
            free(w->k_norm);
        }
    free(b->layers);
    kpack_free(&b->lm.bf);
    q8pack_free(&b->lm.q8);
    free(b->final_norm);
    free(b->qa_h.q);
    free(b->qa_h.sx);
    free(b->qa_h.corr);
    free(b->qa_lm.q);
    free(b->qa_lm.sx);
    free(b->qa_lm.corr);
    cpu_rope_free(&b->rope);
    kern_free_huge(b->kv, b->kv_bytes);
    void *bufs[] = {b->x,  b->y,  b->o,   b->xb,  b->qb,  b->rcos,  b->rsin,   b->row_seq, b->row_pos,
                    b->sc, b->oc, b->att, b->ssc, b->soc, b->lm_in, b->lm_out, b->lm_row,  b->lm_dst};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    free(b);
}

/* malloc of a*b*c elements of size es, products checked; NULL on overflow or OOM. */
static void *alloc3(size_t a, size_t b, size_t c, size_t es)
{
    size_t n;
    if (__builtin_mul_overflow(a, b, &n) || __builtin_mul_overflow(n, c, &n) || __builtin_mul_overflow(n, es, &n))
        return NULL;
    return malloc(n ? n : 1);
}

/* Queues one layer's matrices for packing and converts its vectors. */
static ms_status pack_layer(backend *b, pack_list *pl, int l, ms_error *err)
{
    const layer_weights *w = &b->m->layers[l];
    kf_layer *k = &b->layers[l];
    const wmat *qkv[] = {&w->wq, &w->wk, &w->wv}, *o[] = {&w->wo}, *gu[] = {&w->w_gate, &w->w_up},
               *down[] = {&w->w_down};
    ms_status st;
    if ((st = pack_add(b, pl, &k->qkv, qkv, 3, err)) != MS_OK || (st = pack_add(b, pl, &k->o, o, 1, err)) != MS_OK ||
        (st = pack_add(b, pl, &k->gu, gu, 2, err)) != MS_OK || (st = pack_add(b, pl, &k->down, down, 1, err)) != MS_OK)
        return st;
    k->attn_norm = vec_f32(&w->attn_norm, b->H);
    k->ffn_norm = vec_f32(&w->ffn_norm, b->H);
    k->q_norm = vec_f32(&w->q_norm, b->d);
    k->k_norm = vec_f32(&w->k_norm, b->d);
    if (!k->attn_norm || !k->ffn_norm || !k->q_norm || !k->k_norm)
        return ms_seterr(err, MS_ERR_NOMEM, "cpu fast backend: out of memory for layer %d norms", l);
    if (w->bq.data) {
        k->bqkv = malloc(sizeof(float) * (size_t)b->qkvdim);
        k->bo = vec_f32(&w->bo, b->H);
        if (!k->bqkv || (w->bo.data && !k->bo))
            return ms_seterr(err, MS_ERR_NOMEM, "cpu fast backend: out of memory for layer %d biases", l);
        for (int i = 0; i < b->qdim; i++) k->bqkv[i] = elem_get(w->bq.data, w->bq.dtype, i);
        for (int i = 0; i < b->kvdim; i++) {
            k->bqkv[b->qdim + i] = elem_get(w->bk.data, w->bk.dtype, i);
            k->bqkv[b->qdim + b->kvdim + i] = elem_get(w->bv.data, w->bv.dtype, i);
        }
    }
    return MS_OK;
}

/* The KV cache, bf16, in the superblock layout described in struct backend:
 * n_sb * (sb * L * 2 * nkv * bs * d * 2) bytes, the size checked, mapped
 * with huge-page advice; its pages are touched only as positions are used. */
static ms_status alloc_kv(backend *b, ms_error *err)
{
    b->sb = b->bs < KATTN_CHUNK ? KATTN_CHUNK / b->bs : 1;
    const int n_sb = b->n_blocks / b->sb + (b->n_blocks % b->sb != 0);
    size_t kvb = 2;
    const size_t f[7] = {(size_t)n_sb, (size_t)b->sb, (size_t)b->L, 2, (size_t)b->nkv, (size_t)b->bs, (size_t)b->d};
    for (int i = 0; i < 7; i++)
        if (__builtin_mul_overflow(kvb, f[i], &kvb))
            return ms_seterr(err, MS_ERR_NOMEM, "cpu fast backend: KV cache of %d blocks overflows size_t",
                             b->n_blocks);
    size_t kv_map = 0;
    b->kv = kern_alloc_huge(kvb, &kv_map, b->huge); /* pages are touched only as positions are used */
    if (!b->kv) return ms_seterr(err, MS_ERR_NOMEM, "cpu fast backend: cannot map %zu bytes of KV cache", kvb);
    b->kv_bytes = kv_map;
    b->sb_bytes = kvb / (size_t)n_sb;
    b->blk_bytes = (size_t)b->bs * (size_t)b->d * 2;
    return MS_OK;
}

/* Packs every layer's matrices and lm_head (bf16 panels, or int8 in q8 mode)
 * in one parallel pass, and converts the norm and bias vectors to float. */
static ms_status pack_weights(backend *b, ms_error *err)
{
    b->layers = calloc((size_t)b->L, sizeof *b->layers);
    if (!b->layers) return ms_seterr(err, MS_ERR_NOMEM, "cpu fast backend: out of memory");
    ms_status st = MS_OK;
    pack_list pl = {0};
    for (int l = 0; l < b->L && st == MS_OK; l++) st = pack_layer(b, &pl, l, err);
    const wmat *lm[] = {&b->m->lm_head};
    if (st == MS_OK) st = pack_add(b, &pl, &b->lm, lm, 1, err);
    if (st == MS_OK) pack_run(b, &pl);
    free(pl.jobs);
    if (st != MS_OK) return st;
    b->final_norm = vec_f32(&b->m->final_norm, b->H);
    if (!b->final_norm) return ms_seterr(err, MS_ERR_NOMEM, "cpu fast backend: out of memory for the final norm");
    return MS_OK;
}

/* Sizes and allocates every activation and scratch buffer once, for the
 * limits in b (T = max_tokens rows, nt threads, max_pos positions), so a
 * forward call never allocates:
 *   - per row: x and o [T, H] (residual stream; o_proj / down output, added
 *     into x by the next norm), y [T, ydim] (the q|k|v output, later gate|up,
 *     so ydim = max(qkvdim, 2 I)), xb [T, ldxb] bf16 (the next GEMM's input:
 *     the normed x, the attention output or silu(gate) * up, so ldxb =
 *     max(H, qdim, I)), qb [T, qdim] bf16 (queries after norm and RoPE,
 *     read while attention writes xb), rcos / rsin [T, d/2], row_seq /
 *     row_pos [T];
 *   - per thread, for attention by (kv head, row): sc [nt][G][max_pos]
 *     (scores of a kv head's G query heads over every cached position),
 *     oc [nt][max_chunks][G d] (P.V partial of each chunk), att [nt][d];
 *   - for attention split over chunks, which attention() uses only when
 *     T * nkv < 2 nt and T <= split_rows = ceil(2 nt / nkv) (few rows, many
 *     threads): ssc [split_rows][nh][max_pos], soc [split_rows][nkv][max_chunks][G d];
 *   - logits: lm_rows = min(max_seqs, max_tokens) rows per lm_head pass
 *     (lm_in [lm_rows, H] bf16, lm_out [lm_rows, V]); lm_row / lm_dst [T],
 *     as every row may want logits;
 *   - q8 mode: the int8 form of the GEMM input, one set of buffers of the
 *     widest width (ldxb rounded up to 4) viewed with the group count of
 *     width H, qdim or I (one is live at a time), and one for lm_in rows. */
static ms_status alloc_bufs(backend *b, ms_error *err)
{
    const size_t T = (size_t)b->max_tokens, nt = (size_t)b->nt;
    b->ydim = b->qkvdim > 2 * b->I ? b->qkvdim : 2 * b->I;
    b->ldxb = b->H > b->qdim ? b->H : b->qdim;
    if (b->I > b->ldxb) b->ldxb = b->I;
    b->lm_rows = b->max_seqs < b->max_tokens ? b->max_seqs : b->max_tokens;
    b->split_rows = (2 * b->nt + b->nkv - 1) / b->nkv;
    const size_t gd = (size_t)b->G * (size_t)b->d, mp = (size_t)b->max_pos, mcg = (size_t)b->max_chunks * gd;
    b->x = alloc3(T, (size_t)b->H, 1, sizeof(float));
    b->y = alloc3(T, (size_t)b->ydim, 1, sizeof(float));
    b->o = alloc3(T, (size_t)b->H, 1, sizeof(float));
    b->xb = alloc3(T, (size_t)b->ldxb, 1, sizeof(uint16_t));
    b->qb = alloc3(T, (size_t)b->qdim, 1, sizeof(uint16_t));
    b->rcos = alloc3(T, (size_t)b->d / 2, 1, sizeof(float));
    b->rsin = alloc3(T, (size_t)b->d / 2, 1, sizeof(float));
    b->row_seq = alloc3(T, 1, 1, sizeof(int));
    b->row_pos = alloc3(T, 1, 1, sizeof(int));
    b->sc = alloc3(nt, (size_t)b->G, mp, sizeof(float));
    b->oc = alloc3(nt, mcg, 1, sizeof(float));
    b->att = alloc3(nt, (size_t)b->d, 1, sizeof(float));
    b->ssc = alloc3((size_t)b->split_rows, (size_t)b->nh, mp, sizeof(float));
    b->soc = alloc3((size_t)b->split_rows, (size_t)b->nkv, mcg, sizeof(float));
    b->lm_in = alloc3((size_t)b->lm_rows, (size_t)b->H, 1, sizeof(uint16_t));
    b->lm_out = alloc3((size_t)b->lm_rows, (size_t)b->V, 1, sizeof(float));
    b->lm_row = alloc3(T, 1, 1, sizeof(int));
    b->lm_dst = alloc3(T, 1, 1, sizeof(float *));
    if (b->q8) {
        /* one set of buffers sized for the widest input, viewed with each width's group count */
        const int64_t ld = ((int64_t)b->ldxb + 3) / 4 * 4, gmax = (ld + Q8_GROUP - 1) / Q8_GROUP;
        q8act a = {alloc3(T, (size_t)ld, 1, 1), alloc3(T, (size_t)gmax, 1, sizeof(float)),
                   alloc3(T, (size_t)gmax, 1, sizeof(int32_t)), ld, 0};
        b->qa_h = b->qa_q = b->qa_i = a;
        b->qa_h.groups = (b->H + Q8_GROUP - 1) / Q8_GROUP;
        b->qa_q.groups = (b->qdim + Q8_GROUP - 1) / Q8_GROUP;
        b->qa_i.groups = (b->I + Q8_GROUP - 1) / Q8_GROUP;
        const int64_t ldl = ((int64_t)b->H + 3) / 4 * 4;
        q8act l = {alloc3((size_t)b->lm_rows, (size_t)ldl, 1, 1),
                   alloc3((size_t)b->lm_rows, (size_t)b->qa_h.groups, 1, sizeof(float)),
                   alloc3((size_t)b->lm_rows, (size_t)b->qa_h.groups, 1, sizeof(int32_t)), ldl, b->qa_h.groups};
        b->qa_lm = l;
        if (!a.q || !a.sx || !a.corr || !l.q || !l.sx || !l.corr)
            return ms_seterr(err, MS_ERR_NOMEM, "cpu fast backend: cannot allocate int8 activations");
    }
    if (!b->x || !b->y || !b->o || !b->xb || !b->qb || !b->rcos || !b->rsin || !b->row_seq || !b->row_pos || !b->sc ||
        !b->oc || !b->att || !b->ssc || !b->soc || !b->lm_in || !b->lm_out || !b->lm_row || !b->lm_dst)
        return ms_seterr(err, MS_ERR_NOMEM, "cpu fast backend: cannot allocate activations for %d tokens, %d threads",
                         b->max_tokens, b->nt);
    return MS_OK;
}

/* Checks the limits and takes the model's sizes, then allocates the KV cache,
 * packs the weights and allocates the activation buffers, each once. */
static ms_status fast_create(const model *m, const backend_params *p, backend **out, ms_error *err)
{
    *out = NULL;
    const char *why = NULL;
    if (!m || !p) return ms_seterr(err, MS_ERR_INVALID, "cpu fast backend: NULL model or params");
    if (!fast_supports(m, p->weights_q8, &why)) return ms_seterr(err, MS_ERR_UNSUPPORTED, "cpu fast backend: %s", why);
    if (p->max_seqs <= 0 || p->max_tokens <= 0 || p->n_blocks <= 0 || p->block_size <= 0)
        return ms_seterr(
            err, MS_ERR_INVALID,
            "cpu fast backend: max_seqs %d, max_tokens %d, n_blocks %d, block_size %d: each must be positive",
            p->max_seqs, p->max_tokens, p->n_blocks, p->block_size);
    int max_pos;
    if (__builtin_mul_overflow(p->n_blocks, p->block_size, &max_pos))
        return ms_seterr(err, MS_ERR_NOMEM, "cpu fast backend: %d blocks x %d tokens overflow int positions",
                         p->n_blocks, p->block_size);
    const qwen3_config *c = &m->cfg;
    backend *b = calloc(1, sizeof *b);
    if (!b) return ms_seterr(err, MS_ERR_NOMEM, "cpu fast backend: out of memory");
    b->m = m;
    b->isa = kern_isa_best();
    b->q8 = p->weights_q8 != 0;
    b->huge = kern_huge_default();
    b->nt = p->n_threads > 0 ? p->n_threads : omp_get_num_procs();
    b->max_seqs = p->max_seqs;
    b->max_tokens = p->max_tokens;
    b->max_pos = max_pos;
    b->max_chunks = kattn_n_chunks(max_pos - 1);
    b->H = c->hidden_size;
    b->L = c->n_layers;
    b->nh = c->n_heads;
    b->nkv = c->n_kv_heads;
    b->d = c->head_dim;
    b->G = c->n_heads / c->n_kv_heads;
    b->I = c->intermediate_size;
    b->V = c->vocab_size;
    b->qdim = b->nh * b->d;
    b->kvdim = b->nkv * b->d;
    b->qkvdim = b->qdim + 2 * b->kvdim;
    b->eps = (float)c->rms_norm_eps;
    b->scale = (float)pow((double)c->head_dim, -0.5);
    b->n_blocks = p->n_blocks;
    b->bs = p->block_size;
    ms_status st = MS_OK;
    if (b->G > KATTN_MAX_GROUP) {
        st = ms_seterr(err, MS_ERR_UNSUPPORTED, "cpu fast backend: %d query heads per kv head (max %d)", b->G,
                       KATTN_MAX_GROUP);
        goto fail;
    }
    if ((st = cpu_rope_init(&b->rope, c, err)) != MS_OK || (st = alloc_kv(b, err)) != MS_OK ||
        (st = pack_weights(b, err)) != MS_OK || (st = alloc_bufs(b, err)) != MS_OK)
        goto fail;
    *out = b;
    return MS_OK;
fail:
    fast_free(b);
    return st;
}

/* ---- forward ---- */

/* y = x W^T (x: bf16 rows with leading dim ldx, or their int8 form qa in q8
 * mode), panels handed out in chunks through a shared counter so a thread
 * slowed down by the machine does not hold the others at the barrier; then
 * a barrier. Which thread computes a panel never changes its bits. */
static void gemm(const backend *b, const kf_mat *w, const uint16_t *x, int ldx, const q8act *qa, int T, float *y,
                 int ldy, const float *bias, int id, int nt)
{
    (void)id;
    (void)nt;
    const int64_t np = b->q8 ? w->q8.n_panels : w->bf.n_panels, cs = T <= 2 ? 8 : 2;
    const int64_t nc = (np + cs - 1) / cs;
#pragma omp for schedule(dynamic, 1) nowait
    for (int64_t c = 0; c < nc; c++) {
        const int64_t p0 = c * cs, p1 = p0 + cs < np ? p0 + cs : np;
        if (b->q8) q8_gemm(b->isa, &w->q8, qa, T, y, ldy, bias, p0, p1);
        else kern_gemm_bf16(b->isa, &w->bf, x, ldx, T, y, ldy, bias, p0, p1);
    }
#pragma omp barrier
}

/* q8 mode: row r of xb (width k) into its int8 form. */
static inline void quant(const backend *b, q8act *qa, int r, int k)
{
    if (b->q8) q8_quant_row_bf16(b->isa, b->xb + (size_t)r * b->ldxb, k, qa, r);
}

/* Where (layer, kv head) of one sequence lives (K and V bases inside superblock 0). */
static kattn_src kv_src(const backend *b, int l, int kh, const int32_t *blocks)
{
    const size_t run = (size_t)b->sb * b->blk_bytes; /* one (layer, kind, head) slab of a superblock */
    const unsigned char *base = (const unsigned char *)b->kv + ((size_t)l * 2 * (size_t)b->nkv + (size_t)kh) * run;
    kattn_src s = {base,       base + (size_t)b->nkv * run, blocks, b->blk_bytes, (size_t)b->d * 2, b->bs, b->sb,
                   b->sb_bytes};
    return s;
}

/* Stores one head vector (bf16-representable floats) at pos of (layer, kind, kv head). */
static void kv_put(backend *b, int l, int kind, int kh, const int32_t *blocks, int pos, const float *v)
{
    kattn_src s = kv_src(b, l, kh, blocks);
    unsigned char *dst =
        (unsigned char *)kattn_block(kind ? s.v : s.k, &s, pos / b->bs) + (size_t)(pos % b->bs) * s.pos_stride;
    kops_to_bf16(b->isa, v, b->d, (uint16_t *)dst);
}

/* Attention of row r, kv head kh (its G query heads), every step in this thread, into xb (bf16). */
static void attend_row(backend *b, int l, int r, int kh, const fwd_seq *seqs, int id)
{
    const int G = b->G, d = b->d, pos = b->row_pos[r], nc = kattn_n_chunks(pos);
    const size_t lds = (size_t)b->max_pos, gd = (size_t)G * (size_t)d;
    float *sc = b->sc + (size_t)id * (size_t)G * lds, *oc = b->oc + (size_t)id * (size_t)b->max_chunks * gd;
    float *att = b->att + (size_t)id * (size_t)d;
    const kattn_src src = kv_src(b, l, kh, seqs[b->row_seq[r]].blocks);
    const uint16_t *q = b->qb + (size_t)r * (size_t)b->qdim + (size_t)kh * gd;
    for (int c = 0; c < nc; c++) kattn_scores(b->isa, q, G, d, &src, pos, c, b->scale, sc, lds);
    for (int g = 0; g < G; g++) kattn_softmax(b->isa, sc + (size_t)g * lds, pos + 1);
    for (int c = 0; c < nc; c++) kattn_pv(b->isa, sc, lds, G, d, &src, pos, c, oc + (size_t)c * gd);
    for (int g = 0; g < G; g++) {
        kattn_sum(b->isa, oc + (size_t)g * d, gd, nc, d, att);
        kops_to_bf16(b->isa, att, d, b->xb + (size_t)r * b->ldxb + (size_t)(kh * G + g) * d);
    }
}

/* e. attention for all rows into xb: (kv head, row) items, or, when those are
 * too few for the threads, each step split over (row, kv head, chunk). */
static void attention(backend *b, int l, const fwd_seq *seqs, int T, int id, int nt)
{
    const int nkv = b->nkv, G = b->G, d = b->d, nh = b->nh, mc = b->max_chunks;
    if ((int64_t)T * nkv >= 2 * nt || T > b->split_rows) {
#pragma omp for schedule(dynamic, 1)
        for (int64_t it = 0; it < (int64_t)T * nkv; it++) attend_row(b, l, (int)(it % T), (int)(it / T), seqs, id);
        return;
    }
    const size_t lds = (size_t)b->max_pos, gd = (size_t)G * (size_t)d;
    const int64_t n_chunk_items = (int64_t)T * nkv * mc;
#pragma omp for schedule(dynamic, 1)
    for (int64_t it = 0; it < n_chunk_items; it++) {
        const int c = (int)(it % mc), kh = (int)(it / mc % nkv), r = (int)(it / mc / nkv);
        if (c >= kattn_n_chunks(b->row_pos[r])) continue;
        const kattn_src src = kv_src(b, l, kh, seqs[b->row_seq[r]].blocks);
        kattn_scores(b->isa, b->qb + (size_t)r * (size_t)b->qdim + (size_t)kh * gd, G, d, &src, b->row_pos[r], c,
                     b->scale, b->ssc + ((size_t)r * nh + (size_t)kh * G) * lds, lds);
    }
#pragma omp for schedule(static)
    for (int64_t it = 0; it < (int64_t)T * nh; it++)
        kattn_softmax(b->isa, b->ssc + (size_t)it * lds, b->row_pos[it / nh] + 1);
#pragma omp for schedule(dynamic, 1)
    for (int64_t it = 0; it < n_chunk_items; it++) {
        const int c = (int)(it % mc), kh = (int)(it / mc % nkv), r = (int)(it / mc / nkv);
        if (c >= kattn_n_chunks(b->row_pos[r])) continue;
        const kattn_src src = kv_src(b, l, kh, seqs[b->row_seq[r]].blocks);
        kattn_pv(b->isa, b->ssc + ((size_t)r * nh + (size_t)kh * G) * lds, lds, G, d, &src, b->row_pos[r], c,
                 b->soc + (((size_t)r * nkv + kh) * mc + c) * gd);
    }
#pragma omp for schedule(static)
    for (int64_t it = 0; it < (int64_t)T * nh; it++) {
        const int r = (int)(it / nh), hq = (int)(it % nh), kh = hq / G, g = hq % G;
        float *att = b->att + (size_t)id * (size_t)d;
        kattn_sum(b->isa, b->soc + ((size_t)r * nkv + kh) * mc * gd + (size_t)g * d, gd, kattn_n_chunks(b->row_pos[r]),
                  d, att);
        kops_to_bf16(b->isa, att, d, b->xb + (size_t)r * b->ldxb + (size_t)hq * d);
    }
}

/* One decoder layer (docs/numerics.md §1.3 a-g); x += o of the previous layer is fused into step a. */
static void layer(backend *b, int l, const fwd_seq *seqs, int T, int id, int nt)
{
    const kf_layer *w = &b->layers[l];
    const int H = b->H, d = b->d;
    /* a. (x += o); h = RMSNorm(x) -> xb */
#pragma omp for schedule(static)
    for (int r = 0; r < T; r++) {
        kops_add_norm(b->isa, b->x + (size_t)r * H, l ? b->o + (size_t)r * H : NULL, w->attn_norm, H, b->eps,
                      b->xb + (size_t)r * b->ldxb);
        quant(b, &b->qa_h, r, H);
    }
    /* b. [q|k|v] = h [Wq;Wk;Wv]^T (+ bias) */
    gemm(b, &w->qkv, b->xb, b->ldxb, &b->qa_h, T, b->y, b->qkvdim, w->bqkv, id, nt);
    /* c-d. QK-norm + RoPE per head; q -> qb, k and v -> cache */
    const int heads = b->nh + b->nkv;
#pragma omp for schedule(static)
    for (int64_t it = 0; it < (int64_t)T * heads; it++) {
        const int r = (int)(it / heads), h = (int)(it % heads);
        float *yr = b->y + (size_t)r * b->qkvdim;
        const float *c = b->rcos + (size_t)r * (d / 2), *s = b->rsin + (size_t)r * (d / 2);
        const int32_t *blocks = seqs[b->row_seq[r]].blocks;
        if (h < b->nh) {
            kops_head_norm_rope(b->isa, yr + (size_t)h * d, w->q_norm, d, b->eps, c, s);
            kops_to_bf16(b->isa, yr + (size_t)h * d, d, b->qb + (size_t)r * b->qdim + (size_t)h * d);
        } else {
            const int kh = h - b->nh;
            float *k = yr + b->qdim + (size_t)kh * d, *v = yr + b->qdim + b->kvdim + (size_t)kh * d;
            kops_head_norm_rope(b->isa, k, w->k_norm, d, b->eps, c, s);
            kv_put(b, l, 0, kh, blocks, b->row_pos[r], k);
            kv_put(b, l, 1, kh, blocks, b->row_pos[r], v);
        }
    }
    /* e. attention -> xb */
    attention(b, l, seqs, T, id, nt);
    if (b->q8) {
#pragma omp for schedule(static)
        for (int r = 0; r < T; r++) quant(b, &b->qa_q, r, b->qdim);
    }
    /* f. o = att Wo^T (the residual add is fused into the next norm) */
    gemm(b, &w->o, b->xb, b->ldxb, &b->qa_q, T, b->o, H, w->bo, id, nt);
    /* g. x += o; h = RMSNorm(x) -> xb; [gate|up] = h [Wg;Wu]^T; xb = silu(gate) * up; o = xb Wd^T */
#pragma omp for schedule(static)
    for (int r = 0; r < T; r++) {
        kops_add_norm(b->isa, b->x + (size_t)r * H, b->o + (size_t)r * H, w->ffn_norm, H, b->eps,
                      b->xb + (size_t)r * b->ldxb);
        quant(b, &b->qa_h, r, H);
    }
    gemm(b, &w->gu, b->xb, b->ldxb, &b->qa_h, T, b->y, 2 * b->I, NULL, id, nt);
#pragma omp for schedule(static)
    for (int r = 0; r < T; r++) {
        const float *yr = b->y + (size_t)r * 2 * b->I;
        kops_swiglu(b->isa, yr, yr + b->I, b->I, b->xb + (size_t)r * b->ldxb);
        quant(b, &b->qa_i, r, b->I);
    }
    gemm(b, &w->down, b->xb, b->ldxb, &b->qa_i, T, b->o, H, NULL, id, nt);
}

/* One batched forward step: checks the call, then one parallel region for every layer and the logits. */
static ms_status fast_forward(backend *b, const fwd_seq *seqs, int n, ms_error *err)
{
    if (!b) return ms_seterr(err, MS_ERR_INVALID, "forward: NULL backend");
    int T = 0;
    const fwd_limits lim = {b->max_seqs, b->max_tokens, b->max_pos, b->bs, b->n_blocks, b->V};
    ms_status st = fwd_check(&lim, seqs, n, &T, err);
    if (st != MS_OK) return st;
    int r = 0, nl = 0;
    for (int s = 0; s < n; s++)
        for (int t = 0; t < seqs[s].n_tokens; t++, r++) {
            b->row_seq[r] = s;
            b->row_pos[r] = seqs[s].pos0 + t;
            const int mode = seqs[s].logits_mode;
            if (mode == 2 || (mode == 1 && t == seqs[s].n_tokens - 1)) {
                b->lm_row[nl] = r;
                b->lm_dst[nl++] = seqs[s].logits + (size_t)(mode == 2 ? t : 0) * (size_t)b->V;
            }
        }
    const int H = b->H;
#pragma omp parallel num_threads(b->nt)
    {
        const int id = omp_get_thread_num(), nt = omp_get_num_threads();
        /* 1. x = E[ids]; RoPE tables per row */
#pragma omp for schedule(static)
        for (int i = 0; i < T; i++) {
            cpu_embed(b->x + (size_t)i * H, &b->m->embed,
                      seqs[b->row_seq[i]].tokens[b->row_pos[i] - seqs[b->row_seq[i]].pos0]);
            cpu_rope_cos_sin(&b->rope, b->row_pos[i], b->rcos + (size_t)i * (b->d / 2),
                             b->rsin + (size_t)i * (b->d / 2), ST_BF16);
        }
        /* 2. layers */
        for (int l = 0; l < b->L; l++) layer(b, l, seqs, T, id, nt);
        /* 3. x += o; logits = RMSNorm(x) W_lm^T for the rows that want them, lm_rows at a time */
        for (int i0 = 0; i0 < nl; i0 += b->lm_rows) {
            const int cnt = nl - i0 < b->lm_rows ? nl - i0 : b->lm_rows;
#pragma omp for schedule(static)
            for (int i = 0; i < cnt; i++) {
                const int rr = b->lm_row[i0 + i];
                kops_add_norm(b->isa, b->x + (size_t)rr * H, b->o + (size_t)rr * H, b->final_norm, H, b->eps,
                              b->lm_in + (size_t)i * H);
                if (b->q8) q8_quant_row_bf16(b->isa, b->lm_in + (size_t)i * H, H, &b->qa_lm, i);
            }
            gemm(b, &b->lm, b->lm_in, H, &b->qa_lm, cnt, b->lm_out, b->V, NULL, id, nt);
#pragma omp for schedule(static)
            for (int i = 0; i < cnt; i++)
                memcpy(b->lm_dst[i0 + i], b->lm_out + (size_t)i * b->V, sizeof(float) * (size_t)b->V);
        }
    }
    return MS_OK;
}

/* Which weights this instance runs, for reports. */
static const char *fast_variant(const backend *b)
{
    return b->q8 ? "cpu-fast-q8" : "cpu-fast-bf16";
}

const backend_ops cpu_fast_backend_ops = {.name = "cpu-fast",
                                          .supports = fast_supports,
                                          .create = fast_create,
                                          .forward = fast_forward,
                                          .free = fast_free,
                                          .variant = fast_variant};
