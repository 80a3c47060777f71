/* apply.c: the per-tensor merge executor (see apply.h). For each chunk of
 * rows: load the source rows to f32, run each adapter's op (replacement,
 * delta, token rows), round to the output dtype, count changed elements,
 * check for NaN/Inf, convert and hand to the sink. LoRA factors are
 * converted to f32 once per tensor, laid out so that every output row is
 * one call of the lora_row kernel: coefficients c[0..r) and a matrix
 * M [r, cols]:
 *   Linear:    c = B[o, :],   M = A           (ΔW[o,j] = Σ_k B[o,k]·A[k,j])
 *   Embedding: c = A_e[:, v], M = B_eᵀ        (ΔW[v,h] = Σ_k B_e[h,k]·A_e[k,v])
 * Parallel over the rows of a chunk with OpenMP; each element's arithmetic
 * does not depend on the thread count. Does not plan or write files. */
#include "apply.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <omp.h>

#include "base/err.h"

#define MG_CHUNK_ELEMS (1u << 22) /* f32 elements per row chunk (16 MiB) */

/* Drops whole pages of [p, p+n) from this process's mapping. */
void mg_release_pages(const void *p, size_t n)
{
    static long pg;
    if (!pg) pg = sysconf(_SC_PAGESIZE);
    if (pg <= 0 || !p || !n) return;
    uintptr_t a = (uintptr_t)p, e = a + n;
    uintptr_t s = (a + (uintptr_t)pg - 1) & ~((uintptr_t)pg - 1);
    e &= ~((uintptr_t)pg - 1);
    if (e > s) madvise((void *)s, e - s, MADV_DONTNEED);
}

/* Per-op f32 factors. */
typedef struct prepared {
    float *c;            /* [rows, r] coefficients per output row */
    float *M;            /* [r, cols] */
    float *mag;          /* [rows] (DoRA) */
    int32_t *tok_of_row; /* [rows]: index into the token rows, or -1 */
} prepared;

/* Frees prepared factors. */
static void prep_free(prepared *pp, int n)
{
    for (int i = 0; i < n; i++) {
        free(pp[i].c);
        free(pp[i].M);
        free(pp[i].mag);
        free(pp[i].tok_of_row);
    }
}

/* Converts a whole small tensor to a fresh f32 array. */
static float *to_f32_alloc(const mg_kernels *k, const st_tensor *t)
{
    float *x = malloc((size_t)t->numel * sizeof(float) + 1);
    if (x) mg_to_f32(k, x, t->data, t->dtype, (size_t)t->numel);
    return x;
}

/* Converts the LoRA factors of one op into the kernel layout. */
static ms_status prepare(const mg_kernels *k, const mg_otensor *o, const mg_op *op, prepared *pp, ms_error *err)
{
    memset(pp, 0, sizeof *pp);
    if (op->tokens) {
        if (!(pp->tok_of_row = malloc(o->rows * sizeof(int32_t) + 1)))
            return ms_seterr(err, MS_ERR_NOMEM, "%s: out of memory", o->name);
        for (uint64_t i = 0; i < o->rows; i++) pp->tok_of_row[i] = -1;
        for (size_t i = 0; i < op->n_tok; i++) pp->tok_of_row[op->tok_idx[i]] = (int32_t)i;
    }
    if (op->delta == MG_DELTA_NONE) return MS_OK;
    size_t r = (size_t)op->r, rows = o->rows, cols = o->cols;
    if (op->delta == MG_DELTA_EMBED) {
        float *a = to_f32_alloc(k, op->A); /* [r, rows] */
        float *b = to_f32_alloc(k, op->B); /* [cols, r] */
        pp->c = malloc(rows * r * sizeof(float) + 1);
        pp->M = malloc(r * cols * sizeof(float) + 1);
        if (!a || !b || !pp->c || !pp->M) {
            free(a);
            free(b);
            return ms_seterr(err, MS_ERR_NOMEM, "%s: out of memory for the LoRA factors", o->name);
        }
        for (size_t kk = 0; kk < r; kk++)
            for (size_t v = 0; v < rows; v++) pp->c[v * r + kk] = a[kk * rows + v];
        for (size_t h = 0; h < cols; h++)
            for (size_t kk = 0; kk < r; kk++) pp->M[kk * cols + h] = b[h * r + kk];
        free(a);
        free(b);
    } else {
        pp->M = to_f32_alloc(k, op->A); /* [r, cols] */
        pp->c = to_f32_alloc(k, op->B); /* [rows, r] */
        if (!pp->M || !pp->c) return ms_seterr(err, MS_ERR_NOMEM, "%s: out of memory for the LoRA factors", o->name);
        if (op->delta == MG_DELTA_DORA && !(pp->mag = to_f32_alloc(k, op->mag)))
            return ms_seterr(err, MS_ERR_NOMEM, "%s: out of memory", o->name);
    }
    mg_release_pages(op->A->data, (size_t)op->A->nbytes);
    mg_release_pages(op->B->data, (size_t)op->B->nbytes);
    return MS_OK;
}

/* L2 norm of a row in f32 with the summation order of torch.linalg.norm on
 * CPU (checked bit for bit against torch 2.x for widths >= 8): eight lanes
 * accumulate x*x (product rounded, then added: no FMA), the lanes are added
 * in order, the tail elements follow one by one, then sqrtf. */
static float row_norm(const float *x, size_t n)
{
    float lane[8] = {0};
    size_t m = n - n % 8;
    for (size_t j = 0; j < m; j += 8)
        for (int l = 0; l < 8; l++) {
            float sq = x[j + l] * x[j + l];
            lane[l] = lane[l] + sq;
        }
    float s = 0;
    for (int l = 0; l < 8; l++) s = s + lane[l];
    for (size_t j = m; j < n; j++) {
        float sq = x[j] * x[j];
        s = s + sq;
    }
    return sqrtf(s);
}

/* Applies one delta to one row w (row index `row` of the tensor) using the
 * thread's scratch y [cols]; returns 0, or -1 for a DoRA row of zero norm. */
static int delta_row(const mg_kernels *k, const mg_op *op, const prepared *pp, float *w, uint64_t row, size_t cols,
                     st_dtype dt, float *y)
{
    k->lora_row(y, pp->c + row * (size_t)op->r, pp->M, cols, op->r, cols, op->scale);
    if (op->delta == MG_DELTA_LORA) {
        for (size_t j = 0; j < cols; j++) w[j] = w[j] + y[j];
    } else if (op->delta == MG_DELTA_EMBED) {
        mg_round_inplace(k, y, dt, cols);
        for (size_t j = 0; j < cols; j++) w[j] = w[j] + y[j];
    } else {
        for (size_t j = 0; j < cols; j++) w[j] = w[j] + y[j];
        float norm = row_norm(w, cols);
        if (!(norm > 0) || !isfinite(norm)) return -1;
        float f = pp->mag[row] / norm;
        for (size_t j = 0; j < cols; j++) w[j] = f * w[j];
    }
    return 0;
}

/* Counts elements whose bits differ. */
static uint64_t count_changed(const float *a, const float *b, size_t n)
{
    uint64_t c = 0;
    const uint32_t *x = (const uint32_t *)a, *y = (const uint32_t *)b;
    for (size_t i = 0; i < n; i++) c += x[i] != y[i];
    return c;
}

/* Work below this many elements runs on one thread (a parallel region's
 * barrier costs more than it saves, a lot more on a busy machine). */
#define MG_PAR_MIN (1u << 18)

typedef struct chunk_job {
    const mg_otensor *o;
    const mg_kernels *k;
    const prepared *pp;
    st_dtype dt;
    float *cur; /* [nr, cols] */
    void *out;  /* [nr, cols] in dt */
    uint64_t r0;
    size_t nr;
    float *scratch; /* per thread: 2 * cols floats */
    /* results */
    uint64_t changed[MG_MAX_ADAPTERS];
    long bad_dora_row; /* first row with DoRA norm zero, or -1 (op in bad_op) */
    int bad_op;
    long bad_value_idx; /* first non-finite element (chunk index), or -1 */
} chunk_job;

/* One row through the whole pipeline: source, each adapter's op, rounding,
 * change count, non-finite check, conversion to the output dtype. */
static void row_pipeline(chunk_job *J, size_t i, float *y, float *prev, uint64_t *changed)
{
    const mg_otensor *o = J->o;
    const mg_kernels *k = J->k;
    const size_t cols = (size_t)o->cols;
    const uint64_t row = J->r0 + i;
    float *w = J->cur + i * cols;
    const st_tensor *src = o->src;
    if (row < o->src_rows)
        mg_to_f32(k, w, (const char *)src->data + row * cols * st_dtype_size(src->dtype), src->dtype, cols);
    else memset(w, 0, cols * sizeof(float)); /* resized vocabulary: replaced below */
    for (int q = 0; q < o->n_ops; q++) {
        const mg_op *op = &o->ops[q];
        memcpy(prev, w, cols * sizeof(float));
        mg_round_inplace(k, prev, J->dt, cols);
        if (op->replace)
            mg_to_f32(k, w, (const char *)op->replace->data + row * cols * st_dtype_size(op->replace->dtype),
                      op->replace->dtype, cols);
        if (op->delta != MG_DELTA_NONE && delta_row(k, op, &J->pp[q], w, row, cols, J->dt, y)) {
#pragma omp critical(mg_bad)
            if (J->bad_dora_row < 0 || (long)row < J->bad_dora_row) J->bad_dora_row = (long)row, J->bad_op = q;
        }
        if (op->tokens && J->pp[q].tok_of_row && J->pp[q].tok_of_row[row] >= 0) {
            size_t t = (size_t)J->pp[q].tok_of_row[row], es = st_dtype_size(op->tokens->dtype);
            mg_to_f32(k, w, (const char *)op->tokens->data + t * cols * es, op->tokens->dtype, cols);
        }
        mg_round_inplace(k, w, J->dt, cols);
        changed[op->adapter] += count_changed(prev, w, cols);
    }
    if (o->n_ops)
        for (size_t j = 0; j < cols; j++)
            if (!isfinite(w[j])) {
#pragma omp critical(mg_bad)
                if (J->bad_value_idx < 0 || (long)(i * cols + j) < J->bad_value_idx)
                    J->bad_value_idx = (long)(i * cols + j);
                break;
            }
    mg_from_f32(k, (char *)J->out + i * cols * st_dtype_size(J->dt), w, J->dt, cols);
}

/* Runs the rows of a chunk, in parallel when it is big enough. */
static void run_chunk(chunk_job *J)
{
    const size_t cols = (size_t)J->o->cols;
    int par = J->nr > 1 && J->nr * cols * (size_t)(1 + J->o->n_ops) >= MG_PAR_MIN;
#pragma omp parallel if (par)
    {
        uint64_t changed[MG_MAX_ADAPTERS] = {0};
        float *y = J->scratch + (size_t)omp_get_thread_num() * 2 * cols, *prev = y + cols;
#pragma omp for schedule(static)
        for (size_t i = 0; i < J->nr; i++) row_pipeline(J, i, y, prev, changed);
#pragma omp critical(mg_count)
        for (int a = 0; a < MG_MAX_ADAPTERS; a++) J->changed[a] += changed[a];
    }
}

/* Computes one output tensor chunk by chunk and streams it to the sink. */
ms_status mg_apply_tensor(const mg_otensor *o, st_dtype dt, const mg_kernels *k, const char *const *labels,
                          const mg_sink *sink, mg_apply_stats *stats, ms_error *err)
{
    const st_tensor *src = o->src;
    const size_t cols = (size_t)o->cols, rows = (size_t)o->rows;
    const size_t src_es = st_dtype_size(src->dtype), out_es = st_dtype_size(dt);
    ms_status st = MS_OK;
    if (stats) memset(stats, 0, sizeof *stats);
    /* Fast path: untouched and already in the output dtype. */
    if (o->n_ops == 0 && src->dtype == dt && o->src_rows == o->rows) {
        const char *p = src->data;
        uint64_t left = src->nbytes;
        while (left) {
            size_t n = left > (64u << 20) ? (64u << 20) : (size_t)left;
            if ((st = sink->write(sink->user, p, n, err))) return st;
            mg_release_pages(p, n);
            p += n;
            left -= n;
        }
        return MS_OK;
    }
    size_t chunk_rows = MG_CHUNK_ELEMS / (cols ? cols : 1);
    if (chunk_rows < 1) chunk_rows = 1;
    if (chunk_rows > rows) chunk_rows = rows;
    int nthreads = omp_get_max_threads();
    prepared pp[MG_MAX_ADAPTERS];
    memset(pp, 0, sizeof pp);
    chunk_job J;
    memset(&J, 0, sizeof J);
    J.o = o, J.k = k, J.pp = pp, J.dt = dt;
    J.cur = malloc(chunk_rows * cols * sizeof(float) + 1);
    J.scratch = malloc((size_t)nthreads * 2 * cols * sizeof(float) + 1);
    J.out = malloc(chunk_rows * cols * out_es + 1);
    if (!J.cur || !J.scratch || !J.out) {
        st = ms_seterr(err, MS_ERR_NOMEM, "%s: out of memory for a %zu x %zu chunk", o->name, chunk_rows, cols);
        goto out;
    }
    for (int i = 0; i < o->n_ops; i++)
        if ((st = prepare(k, o, &o->ops[i], &pp[i], err))) goto out;
    for (size_t r0 = 0; r0 < rows; r0 += chunk_rows) {
        size_t nr = rows - r0 < chunk_rows ? rows - r0 : chunk_rows;
        J.r0 = r0, J.nr = nr, J.bad_dora_row = -1, J.bad_value_idx = -1;
        run_chunk(&J);
        /* the source rows and replacement rows of this chunk are consumed */
        if (r0 < o->src_rows) {
            size_t have = o->src_rows - r0 < nr ? (size_t)(o->src_rows - r0) : nr;
            mg_release_pages((const char *)src->data + r0 * cols * src_es, have * cols * src_es);
        }
        for (int i = 0; i < o->n_ops; i++)
            if (o->ops[i].replace) {
                size_t es = st_dtype_size(o->ops[i].replace->dtype);
                mg_release_pages((const char *)o->ops[i].replace->data + r0 * cols * es, nr * cols * es);
            }
        if (J.bad_dora_row >= 0) {
            st = ms_seterr(err, MS_ERR_INVALID,
                           "%s: DoRA on \"%s\": row %ld of W + BA·s has norm zero (or non-finite); PEFT divides by it "
                           "without epsilon, so this adapter cannot be merged",
                           labels[o->ops[J.bad_op].adapter], o->name, J.bad_dora_row);
            goto out;
        }
        if (J.bad_value_idx >= 0) {
            size_t j = (size_t)J.bad_value_idx;
            st = ms_seterr(err, MS_ERR_INVALID,
                           "merged tensor \"%s\" has a non-finite value (%g) at row %zu, column %zu; the adapter(s) "
                           "(%s%s) seem broken or overflow the output dtype",
                           o->name, (double)J.cur[j], r0 + j / cols, j % cols, labels[o->ops[0].adapter],
                           o->n_ops > 1 ? ", ..." : "");
            goto out;
        }
        if ((st = sink->write(sink->user, J.out, nr * cols * out_es, err))) goto out;
    }
    if (stats)
        for (int a = 0; a < MG_MAX_ADAPTERS; a++) stats->changed[a] = J.changed[a];
    for (int i = 0; i < o->n_ops; i++) {
        const mg_op *op = &o->ops[i];
        if (op->tokens) mg_release_pages(op->tokens->data, (size_t)op->tokens->nbytes);
        if (op->mag) mg_release_pages(op->mag->data, (size_t)op->mag->nbytes);
    }
out:
    prep_free(pp, o->n_ops);
    free(J.cur);
    free(J.scratch);
    free(J.out);
    return st;
}
