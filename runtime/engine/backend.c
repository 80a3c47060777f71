/* backend.c: where backends register. */
#include "engine/backend.h"

#include "base/err.h"

const backend_ops *backend_get(ms_backend_kind kind, ms_error *err)
{
    switch (kind) {
    case MS_BACKEND_CPU: return &cpu_backend_ops;
    case MS_BACKEND_CUDA:
#ifdef MS_CUDA
        return &cuda_backend_ops;
#else
        ms_seterr(err, MS_ERR_UNSUPPORTED, "backend: CUDA was not built in (rebuild with make CUDA=1)");
        return NULL;
#endif
    }
    ms_seterr(err, MS_ERR_INVALID, "backend: unknown kind %d", (int)kind);
    return NULL;
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
            return ms_seterr(err, MS_ERR_CONTEXT, "forward: sequence %d positions %d..%lld exceed the %d cached positions",
                             s, q->pos0, (long long)q->pos0 + q->n_tokens - 1, lim->max_pos);
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
