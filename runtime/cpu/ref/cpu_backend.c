/* cpu_backend.c: the reference CPU backend, "cpu-reference" in backend.c's
 * table: create (activation buffers, RoPE tables and KV memory, all sized
 * once), forward (the Qwen3 pass of docs/numerics.md §1.3 over a batch of
 * sequences) and free. It runs every weight dtype (bf16, f16, f32) in the
 * model's activation dtype, but not int8 weights.
 *
 * A forward call concatenates the new tokens of every sequence into one
 * activation matrix [T, H]: each Linear runs once over all T rows (a prompt is
 * a matrix x matrix product; decode steps of many sequences share one weight
 * read), while attention runs per (row, head) against that row's own
 * sequence's cache. Every output element comes from one kernel with a fixed
 * summation order, so a sequence's logits are bitwise independent of the
 * other sequences in the call and of how its prompt is split into chunks.
 *
 * backend.c prefers the fast backend (cpu/fast/kern_fwd.c) for the models it
 * supports (bf16, or int8 weights); MEDSERVE_CPU_REFERENCE=1 in the
 * environment keeps bf16 models here (tests compare the two).
 *
 * It does not schedule, allocate KV blocks (kv.c and the engine do) or
 * sample. The weights stay in the safetensors mmap (zero-copy). */
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>

#include "base/err.h"
#include "cpu/ref/cpu.h"
#include "engine/backend.h"

struct backend {
    const model *m;
    int n_threads, max_seqs, max_tokens, max_pos; /* max_pos = n_blocks * block_size */
    int H, nh, nkv, d, I, V, qdim, kvdim;         /* qdim = nh*d, kvdim = nkv*d */
    st_dtype act;                                 /* activation dtype (bf16, f16 or f32) */
    float eps, attn_scale;
    cpu_rope rope;
    cpu_kv kv;
    /* activations, sized for max_tokens rows */
    float *x;               /* [T, H]  residual stream */
    float *h;               /* [T, H]  normed input of attention / MLP */
    float *q;               /* [T, qdim] */
    float *k, *v;           /* [T, kvdim] */
    float *att;             /* [T, qdim] attention output, heads concatenated */
    float *o;               /* [T, H]  o_proj / down_proj output before the residual add */
    float *gate, *up;       /* [T, I] */
    float *rcos, *rsin;     /* [T, d/2] per-row RoPE tables */
    int *row_seq, *row_pos; /* [T] which sequence and position each row is */
    float *scores;          /* [n_threads, max_pos] attention scratch, one per thread */
    int lm_rows;            /* rows per lm_head call */
    float *lm_in;           /* [lm_rows, H] final-normed rows */
    float *lm_out;          /* [lm_rows, V] */
    float **lm_dst;         /* [lm_rows] where each logits row goes */
};

/* malloc of a*b floats with the product checked; NULL on overflow or OOM. */
static float *falloc(size_t a, size_t b)
{
    size_t n;
    if (__builtin_mul_overflow(a, b, &n) || n > SIZE_MAX / sizeof(float)) return NULL;
    return malloc((n ? n : 1) * sizeof(float));
}

/* Frees the backend and everything it owns; NULL-safe. */
static void ref_free(backend *b)
{
    if (!b) return;
    cpu_rope_free(&b->rope);
    cpu_kv_free(&b->kv);
    float *bufs[] = {b->x,    b->h,  b->q,    b->k,    b->v,      b->att,   b->o,
                     b->gate, b->up, b->rcos, b->rsin, b->scores, b->lm_in, b->lm_out};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    free(b->row_seq);
    free(b->row_pos);
    free(b->lm_dst);
    free(b);
}

/* Every model with native weights; int8 weights are the fast backend's alone. */
static int ref_supports(const model *m, int weights_q8, const char **why)
{
    (void)m;
    if (why) *why = weights_q8 ? "int8 weights are not implemented in the reference backend" : NULL;
    return !weights_q8;
}

/* Sizes and allocates every buffer of the reference path once for the given limits. */
static ms_status ref_create(const model *m, const backend_params *p, backend **out, ms_error *err)
{
    *out = NULL;
    if (!m || !p) return ms_seterr(err, MS_ERR_INVALID, "cpu backend: NULL model or params");
    if (p->weights_q8)
        return ms_seterr(err, MS_ERR_UNSUPPORTED,
                         "cpu backend: int8 weights are not implemented in the reference backend");
    if (p->max_seqs <= 0 || p->max_tokens <= 0 || p->n_blocks <= 0 || p->block_size <= 0)
        return ms_seterr(err, MS_ERR_INVALID,
                         "cpu backend: max_seqs %d, max_tokens %d, n_blocks %d, block_size %d: "
                         "each must be positive",
                         p->max_seqs, p->max_tokens, p->n_blocks, p->block_size);
    int max_pos;
    if (__builtin_mul_overflow(p->n_blocks, p->block_size, &max_pos))
        return ms_seterr(err, MS_ERR_NOMEM, "cpu backend: %d blocks x %d tokens overflow int positions", p->n_blocks,
                         p->block_size);
    const qwen3_config *c = &m->cfg;
    backend *b = calloc(1, sizeof *b);
    if (!b) return ms_seterr(err, MS_ERR_NOMEM, "cpu backend: out of memory");
    b->m = m;
    b->n_threads = p->n_threads > 0 ? p->n_threads : omp_get_num_procs();
    b->max_seqs = p->max_seqs;
    b->max_tokens = p->max_tokens;
    b->max_pos = max_pos;
    b->H = c->hidden_size;
    b->nh = c->n_heads;
    b->nkv = c->n_kv_heads;
    b->d = c->head_dim;
    b->I = c->intermediate_size;
    b->V = c->vocab_size;
    b->qdim = c->n_heads * c->head_dim; /* config.c bounds keep these in int */
    b->kvdim = c->n_kv_heads * c->head_dim;
    /* HF computes in the config's dtype; without one ("auto"), in the weights' dtype. */
    b->act =
        c->dtype_given && (c->dtype == ST_F32 || c->dtype == ST_BF16 || c->dtype == ST_F16) ? c->dtype : m->embed.dtype;
    b->eps = (float)c->rms_norm_eps;
    b->attn_scale = (float)pow((double)c->head_dim, -0.5); /* HF: head_dim ** -0.5 */

    ms_status st = cpu_rope_init(&b->rope, c, err);
    if (st != MS_OK) goto fail;
    st = cpu_kv_init(&b->kv, p->n_blocks, p->block_size, c, b->act, err);
    if (st != MS_OK) goto fail;

    const size_t T = (size_t)p->max_tokens;
    b->lm_rows = p->max_seqs < p->max_tokens ? p->max_seqs : p->max_tokens;
    b->x = falloc(T, b->H);
    b->h = falloc(T, b->H);
    b->q = falloc(T, b->qdim);
    b->k = falloc(T, b->kvdim);
    b->v = falloc(T, b->kvdim);
    b->att = falloc(T, b->qdim);
    b->o = falloc(T, b->H);
    b->gate = falloc(T, b->I);
    b->up = falloc(T, b->I);
    b->rcos = falloc(T, (size_t)b->d / 2);
    b->rsin = falloc(T, (size_t)b->d / 2);
    b->scores = falloc((size_t)b->n_threads, (size_t)max_pos);
    b->lm_in = falloc((size_t)b->lm_rows, b->H);
    b->lm_out = falloc((size_t)b->lm_rows, b->V);
    b->row_seq = malloc(T * sizeof(int));
    b->row_pos = malloc(T * sizeof(int));
    b->lm_dst = malloc((size_t)b->lm_rows * sizeof(float *));
    if (!b->x || !b->h || !b->q || !b->k || !b->v || !b->att || !b->o || !b->gate || !b->up || !b->rcos || !b->rsin ||
        !b->scores || !b->lm_in || !b->lm_out || !b->row_seq || !b->row_pos || !b->lm_dst) {
        st = ms_seterr(err, MS_ERR_NOMEM,
                       "cpu backend: cannot allocate activations for %d tokens, %d sequences, %d threads",
                       p->max_tokens, p->max_seqs, b->n_threads);
        goto fail;
    }
    *out = b;
    return MS_OK;
fail:
    ref_free(b);
    return st;
}

/* Row-wise RMSNorm of x [T, H] into out, parallel over rows. */
static void norm_rows(backend *b, float *out, const float *x, const wmat *w, int T)
{
#pragma omp parallel for schedule(static) num_threads(b->n_threads)
    for (int r = 0; r < T; r++) cpu_rmsnorm(out + (size_t)r * b->H, x + (size_t)r * b->H, w, b->H, b->eps, b->act);
}

/* One decoder layer over all T rows (docs/numerics.md §1.3 steps a-g). */
static void layer_forward(backend *b, int l, const fwd_seq *seqs, int T)
{
    const layer_weights *w = &b->m->layers[l];
    const int H = b->H, d = b->d, nt = b->n_threads, group = b->nh / b->nkv;
    const st_dtype act = b->act;

    /* a-b. h = RMSNorm(x); q = h Wq^T [T, nh*d]; k, v = h Wk^T, h Wv^T [T, nkv*d] */
    norm_rows(b, b->h, b->x, &w->attn_norm, T);
    const mm_job qkv[3] = {{b->q, &w->wq, &w->bq}, {b->k, &w->wk, &w->bk}, {b->v, &w->wv, &w->bv}};
    cpu_matmul_n(qkv, 3, b->h, T, act, nt);

    /* c-d. per-head QK-norm, then RoPE; cache k (post-RoPE) and v */
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int r = 0; r < T; r++) {
        const float *c = b->rcos + (size_t)r * (d / 2), *s = b->rsin + (size_t)r * (d / 2);
        float *qr = b->q + (size_t)r * b->qdim, *kr = b->k + (size_t)r * b->kvdim;
        for (int hq = 0; hq < b->nh; hq++) {
            cpu_rmsnorm(qr + hq * d, qr + hq * d, &w->q_norm, d, b->eps, act);
            cpu_rope_apply(qr + hq * d, c, s, d, act);
        }
        for (int hk = 0; hk < b->nkv; hk++) {
            cpu_rmsnorm(kr + hk * d, kr + hk * d, &w->k_norm, d, b->eps, act);
            cpu_rope_apply(kr + hk * d, c, s, d, act);
        }
        cpu_kv_store(&b->kv, l, seqs[b->row_seq[r]].blocks, b->row_pos[r], kr, b->v + (size_t)r * b->kvdim);
    }

    /* e. causal GQA: query head hq reads kv head hq / group, keys 0..pos of its own sequence */
    const int64_t items = (int64_t)T * b->nh;
#pragma omp parallel for schedule(dynamic, 4) num_threads(nt)
    for (int64_t it = 0; it < items; it++) {
        int r = (int)(it / b->nh), hq = (int)(it % b->nh);
        float *scores = b->scores + (size_t)omp_get_thread_num() * (size_t)b->max_pos;
        size_t off = (size_t)r * b->qdim + (size_t)hq * d;
        cpu_attend(b->att + off, b->q + off, &b->kv, l, hq / group, seqs[b->row_seq[r]].blocks, b->row_pos[r],
                   b->attn_scale, scores, act);
    }

    /* f. x = x + att Wo^T */
    cpu_matmul(b->o, b->att, T, &w->wo, &w->bo, act, nt);
    cpu_add(b->x, b->o, (size_t)T * H, act);

    /* g. x = x + down(silu(gate(h)) * up(h)), h = RMSNorm(x) */
    norm_rows(b, b->h, b->x, &w->ffn_norm, T);
    const mm_job gate_up[2] = {{b->gate, &w->w_gate, NULL}, {b->up, &w->w_up, NULL}};
    cpu_matmul_n(gate_up, 2, b->h, T, act, nt);
    cpu_swiglu(b->gate, b->up, (size_t)T * b->I, act);
    cpu_matmul(b->o, b->gate, T, &w->w_down, NULL, act, nt);
    cpu_add(b->x, b->o, (size_t)T * H, act);
}

/* Runs the final norm and lm_head on the pending lm_in rows and copies them out. */
static void flush_logits(backend *b, int n_rows)
{
    if (!n_rows) return;
    cpu_matmul(b->lm_out, b->lm_in, n_rows, &b->m->lm_head, NULL, b->act, b->n_threads);
    for (int i = 0; i < n_rows; i++) memcpy(b->lm_dst[i], b->lm_out + (size_t)i * b->V, (size_t)b->V * sizeof(float));
}

/* 3. logits = RMSNorm(x) W_lm^T for the rows each sequence asked for. */
static void compute_logits(backend *b, const fwd_seq *seqs, int n)
{
    int row0 = 0, pending = 0;
    for (int s = 0; s < n; s++) {
        const fwd_seq *q = &seqs[s];
        int first = q->logits_mode == 2 ? 0 : q->n_tokens - 1;
        for (int t = first; q->logits_mode && t < q->n_tokens; t++) {
            cpu_rmsnorm(b->lm_in + (size_t)pending * b->H, b->x + (size_t)(row0 + t) * b->H, &b->m->final_norm, b->H,
                        b->eps, b->act);
            b->lm_dst[pending] = q->logits + (size_t)(q->logits_mode == 2 ? t : 0) * b->V;
            if (++pending == b->lm_rows) {
                flush_logits(b, pending);
                pending = 0;
            }
        }
        row0 += q->n_tokens;
    }
    flush_logits(b, pending);
}

/* One batched forward step over seqs (checked first, then computed). */
static ms_status ref_forward(backend *b, const fwd_seq *seqs, int n, ms_error *err)
{
    if (!b) return ms_seterr(err, MS_ERR_INVALID, "forward: NULL backend");
    int T = 0;
    const fwd_limits lim = {b->max_seqs, b->max_tokens, b->max_pos, b->kv.block_size, b->kv.n_blocks, b->V};
    ms_status st = fwd_check(&lim, seqs, n, &T, err);
    if (st != MS_OK) return st;

    /* 1. x = E[ids]; each row remembers its sequence and position; RoPE tables per row */
    int r = 0;
    for (int s = 0; s < n; s++)
        for (int t = 0; t < seqs[s].n_tokens; t++, r++) {
            b->row_seq[r] = s;
            b->row_pos[r] = seqs[s].pos0 + t;
            cpu_embed(b->x + (size_t)r * b->H, &b->m->embed, seqs[s].tokens[t]);
            cpu_rope_cos_sin(&b->rope, b->row_pos[r], b->rcos + (size_t)r * (b->d / 2),
                             b->rsin + (size_t)r * (b->d / 2), b->act);
        }
    /* 2. decoder layers */
    for (int l = 0; l < b->m->cfg.n_layers; l++) layer_forward(b, l, seqs, T);
    /* 3. final norm + lm_head */
    compute_logits(b, seqs, n);
    return MS_OK;
}

const backend_ops cpu_ref_backend_ops = {
    .name = "cpu-reference", .supports = ref_supports, .create = ref_create, .forward = ref_forward, .free = ref_free};
