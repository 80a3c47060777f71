/* backend.h: the one seam between the model and hardware. A backend owns its
 * copy or view of the weights, its activations and the KV block memory; the
 * engine owns scheduling and block allocation (kv.h). Backends register in
 * one table in backend.c (the only place `#ifdef MS_CUDA` appears), and
 * backend_select picks one per model at engine creation. */
#ifndef MS_BACKEND_H
#define MS_BACKEND_H

#include <stdint.h>

#include "medserve.h"
#include "model/model.h"

typedef struct backend_params {
    int n_threads;
    int max_seqs;   /* sequences per forward call */
    int max_tokens; /* tokens per forward call, all sequences together */
    int n_blocks;   /* KV blocks to reserve */
    int block_size; /* tokens per KV block */
    int weights_q8; /* quantise weights to int8 at load */
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

/* One backend. Each defines its own struct backend (its instance state). */
typedef struct backend_ops {
    const char *name; /* "cpu-reference", "cpu-fast" */
    /* 1 if this backend can run m (with int8 weights when weights_q8), else 0
     * and, if why != NULL, the reason; what create's sizes allow is create's
     * to check. NULL: supports every model (a backend outside the table). */
    int (*supports)(const model *m, int weights_q8, const char **why);
    ms_status (*create)(const model *m, const backend_params *p, backend **out, ms_error *err);
    ms_status (*forward)(backend *b, const fwd_seq *seqs, int n_seqs, ms_error *err);
    void (*free)(backend *b);
    /* What one instance runs, for reports ("cpu-fast-bf16", "cpu-fast-q8");
     * NULL: the name. */
    const char *(*variant)(const backend *b);
} backend_ops;

/* What a backend was sized for: the limits every forward call is checked against. */
typedef struct fwd_limits {
    int max_seqs, max_tokens, max_pos, block_size, n_blocks, vocab;
} fwd_limits;

/* The checks of a forward call that every backend makes before touching
 * anything (sequence count, token count and ids, positions, block ids,
 * logits buffers); *T gets the total token count. */
ms_status fwd_check(const fwd_limits *lim, const fwd_seq *seqs, int n, int *T, ms_error *err);

/* MS_OK if a backend of kind is built in; else MS_ERR_UNSUPPORTED (CUDA not
 * built) or MS_ERR_INVALID (unknown kind), with the reason in err. */
ms_status backend_available(ms_backend_kind kind, ms_error *err);

/* The backend of kind that runs m: the first table entry of that kind whose
 * supports accepts m, except that an entry whose environment variable is set
 * (non-empty, not "0") goes first when it supports m. For MS_BACKEND_CPU:
 * cpu-fast when it supports m and MEDSERVE_CPU_REFERENCE is not set, else
 * cpu-reference; with int8 weights only cpu-fast can run, so the variable
 * does not apply. NULL and err (MS_ERR_UNSUPPORTED with the first entry's
 * reason) when none can run m. */
const backend_ops *backend_select(ms_backend_kind kind, const model *m, int weights_q8, ms_error *err);

/* What instance b of ops runs, for reports: ops->variant(b), or ops->name. */
const char *backend_name(const backend_ops *ops, const backend *b);

/* The backends backend.c can register (a table entry each). */
extern const backend_ops cpu_ref_backend_ops;  /* cpu/ref/cpu_backend.c: every dtype, the numerics of record */
extern const backend_ops cpu_fast_backend_ops; /* cpu/fast/kern_fwd.c: packed bf16 or int8 kernels */
extern const backend_ops cuda_backend_ops;     /* runtime/cuda/, with make CUDA=1: not written yet */

#endif
