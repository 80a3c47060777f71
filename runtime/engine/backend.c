/* backend.c: where backends register (one table, the only `#ifdef MS_CUDA`
 * of the runtime's C code), the choice of a backend for a model, and the
 * forward-call checks every backend shares. */
#include "engine/backend.h"

#include <stdlib.h>
#include <string.h>

#include "base/err.h"

/* Every backend built in, in order of preference within its kind. prefer_env
 * names an environment variable that, when set (non-empty, not "0"), puts
 * the entry first for the models it supports. */
static const struct backend_entry {
    ms_backend_kind kind;
    const backend_ops *ops;
    const char *prefer_env;
} backend_table[] = {
#ifdef MS_CUDA
    {MS_BACKEND_CUDA, &cuda_backend_ops, NULL},
#endif
    {MS_BACKEND_CPU, &cpu_fast_backend_ops, NULL},
    {MS_BACKEND_CPU, &cpu_ref_backend_ops, "MEDSERVE_CPU_REFERENCE"},
};
#define N_BACKENDS (sizeof backend_table / sizeof backend_table[0])

/* Reports kind as not built in (CUDA) or unknown; always an error status. */
static ms_status kind_missing(ms_backend_kind kind, ms_error *err)
{
    if (kind == MS_BACKEND_CUDA)
        return ms_seterr(err, MS_ERR_UNSUPPORTED, "backend: CUDA was not built in (rebuild with make CUDA=1)");
    return ms_seterr(err, MS_ERR_INVALID, "backend: unknown kind %d", (int)kind);
}

/* Whether the table has an entry of kind (backend.h). */
ms_status backend_available(ms_backend_kind kind, ms_error *err)
{
    for (size_t i = 0; i < N_BACKENDS; i++)
        if (backend_table[i].kind == kind) return MS_OK;
    return kind_missing(kind, err);
}

/* 1 if e accepts m (its reason, if not, into *why). */
static int entry_supports(const struct backend_entry *e, const model *m, int weights_q8, const char **why)
{
    *why = NULL;
    return !e->ops->supports || e->ops->supports(m, weights_q8, why);
}

/* 1 if e's prefer_env is set to something other than "" or "0". */
static int entry_preferred(const struct backend_entry *e)
{
    const char *v = e->prefer_env ? getenv(e->prefer_env) : NULL;
    return v && *v && strcmp(v, "0") != 0;
}

/* First a supporting entry of kind whose prefer_env is set, then the first
 * supporting entry of kind in table order (backend.h states the rule). */
const backend_ops *backend_select(ms_backend_kind kind, const model *m, int weights_q8, ms_error *err)
{
    if (!m) {
        ms_seterr(err, MS_ERR_INVALID, "backend: NULL model");
        return NULL;
    }
    const char *why = NULL;
    for (size_t i = 0; i < N_BACKENDS; i++)
        if (backend_table[i].kind == kind && entry_preferred(&backend_table[i]) &&
            entry_supports(&backend_table[i], m, weights_q8, &why))
            return backend_table[i].ops;
    const char *first_why = NULL;
    int seen = 0;
    for (size_t i = 0; i < N_BACKENDS; i++) {
        if (backend_table[i].kind != kind) continue;
        if (entry_supports(&backend_table[i], m, weights_q8, &why)) return backend_table[i].ops;
        if (!seen++) first_why = why;
    }
    if (!seen) {
        kind_missing(kind, err);
        return NULL;
    }
    ms_seterr(err, MS_ERR_UNSUPPORTED, "%s backend: %s%s", kind == MS_BACKEND_CPU ? "cpu" : "cuda",
              weights_q8 ? "int8 weights: " : "", first_why ? first_why : "not supported");
    return NULL;
}

/* The instance's own report name when the backend has one. */
const char *backend_name(const backend_ops *ops, const backend *b)
{
    return ops->variant && b ? ops->variant(b) : ops->name;
}

ms_status fwd_check(const fwd_limits *lim, const fwd_seq *seqs, int n, int *T, ms_error *err)
{
    if (!seqs || n <= 0 || n > lim->max_seqs)
        return ms_seterr(err, MS_ERR_INVALID, "forward: %d sequences, expected 1..%d", n, lim->max_seqs);
    int total = 0;
    for (int s = 0; s < n; s++) {
        const fwd_seq *q = &seqs[s];
        if (!q->tokens || q->n_tokens <= 0)
            return ms_seterr(err, MS_ERR_INVALID, "forward: sequence %d has no tokens", s);
        if (__builtin_add_overflow(total, q->n_tokens, &total) || total > lim->max_tokens)
            return ms_seterr(err, MS_ERR_INVALID, "forward: more than %d tokens in one call", lim->max_tokens);
        if (q->pos0 < 0 || q->pos0 > lim->max_pos - q->n_tokens)
            return ms_seterr(err, MS_ERR_CONTEXT,
                             "forward: sequence %d positions %d..%lld exceed the %d cached positions", s, q->pos0,
                             (long long)q->pos0 + q->n_tokens - 1, lim->max_pos);
        if (!q->blocks) return ms_seterr(err, MS_ERR_INVALID, "forward: sequence %d has no block table", s);
        const int last_block = (q->pos0 + q->n_tokens - 1) / lim->block_size;
        for (int i = 0; i <= last_block; i++)
            if (q->blocks[i] < 0 || q->blocks[i] >= lim->n_blocks)
                return ms_seterr(err, MS_ERR_INVALID, "forward: sequence %d block %d id %d not in [0, %d)", s, i,
                                 q->blocks[i], lim->n_blocks);
        for (int t = 0; t < q->n_tokens; t++)
            if (q->tokens[t] < 0 || q->tokens[t] >= lim->vocab)
                return ms_seterr(err, MS_ERR_INVALID, "forward: sequence %d token %d id %d not in [0, %d)", s, t,
                                 q->tokens[t], lim->vocab);
        if (q->logits_mode < 0 || q->logits_mode > 2 || (q->logits_mode && !q->logits))
            return ms_seterr(err, MS_ERR_INVALID, "forward: sequence %d logits_mode %d without a buffer", s,
                             q->logits_mode);
    }
    *T = total;
    return MS_OK;
}
