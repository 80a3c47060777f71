/* backend.h: the one seam between the model and hardware. A backend owns its
 * copy or view of the weights, its activations and the KV block memory; the
 * engine owns scheduling and block allocation (kv.h). Chosen once at load;
 * `#ifdef MS_CUDA` appears only in backend.c where backends register. */
#ifndef MS_BACKEND_H
#define MS_BACKEND_H

#include <stdint.h>

#include "medserve.h"
#include "model/model.h"

typedef struct backend_params {
    int n_threads;
    int max_seqs;      /* sequences per forward call */
    int max_tokens;    /* tokens per forward call, all sequences together */
    int n_blocks;      /* KV blocks to reserve */
    int block_size;    /* tokens per KV block */
    int weights_q8;    /* quantise weights to int8 at load */
} backend_params;

/* One sequence's part of a batched forward step. Its tokens take positions
 * pos0 .. pos0+n_tokens-1; positions < pos0 are already in the KV cache. The
 * result for a sequence never depends on the other sequences in the call.
 * Sequences in one call must not share KV blocks. Token ids, positions and
 * block ids are checked (MS_ERR_INVALID / MS_ERR_CONTEXT) before any work. */
typedef struct fwd_seq {
    const int32_t *tokens;
    int n_tokens;
    int pos0;
    const int32_t *blocks; /* KV block ids covering positions 0 .. pos0+n_tokens-1 */
    int logits_mode;       /* 0 none, 1 last position, 2 every position */
    float *logits;         /* [1 or n_tokens, vocab] when logits_mode != 0 */
} fwd_seq;

typedef struct backend backend;

typedef struct backend_ops {
    const char *name;
    ms_status (*create)(const model *m, const backend_params *p, backend **out, ms_error *err);
    ms_status (*forward)(backend *b, const fwd_seq *seqs, int n_seqs, ms_error *err);
    void (*free)(backend *b);
} backend_ops;

/* What a backend was sized for: the limits every forward call is checked against. */
typedef struct fwd_limits {
    int max_seqs, max_tokens, max_pos, block_size, n_blocks, vocab;
} fwd_limits;

/* The checks of a forward call that every backend makes before touching
 * anything (sequence count, token count and ids, positions, block ids,
 * logits buffers); *T gets the total token count. */
ms_status fwd_check(const fwd_limits *lim, const fwd_seq *seqs, int n, int *T, ms_error *err);

/* The ops table for kind, or NULL if not built in (sets err). */
const backend_ops *backend_get(ms_backend_kind kind, ms_error *err);

extern const backend_ops cpu_backend_ops;
#ifdef MS_CUDA
extern const backend_ops cuda_backend_ops;
#endif

#endif
