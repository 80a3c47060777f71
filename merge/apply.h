/* apply.h: computing one output tensor of the plan, streamed in row chunks
 * (the memory bound: a chunk of rows in f32 plus the current module's LoRA
 * factors in f32, never a whole large tensor), and handing the bytes to a
 * sink in row order. Numerics follow PEFT merge_and_unload on CPU:
 *   Linear:    W' = rnd(f32(W + (B·A)·s))
 *   Embedding: W' = rnd(f32(W + rnd((B·A)ᵀ·s)))    (PEFT rounds the delta first)
 *   DoRA:      U = f32(W + (B·A)·s); W'[o,:] = rnd((m_o / ‖U[o,:]‖) · U[o,:])
 *   tokens:    W'[idx[i],:] = rnd(delta[i,:])
 * with rnd = round to nearest even into the output dtype after every adapter.
 * Rejects non-finite results and DoRA rows of zero norm. */
#ifndef MG_APPLY_H
#define MG_APPLY_H

#include "kernel.h"
#include "plan.h"

typedef struct mg_sink {
    /* Receives consecutive bytes of the tensor. */
    ms_status (*write)(void *user, const void *data, size_t n, ms_error *err);
    void *user;
} mg_sink;

typedef struct mg_apply_stats {
    uint64_t changed[MG_MAX_ADAPTERS]; /* elements each adapter changed (after rounding) */
} mg_apply_stats;

/* Computes o and streams it to sink. labels[a] names adapter a in errors.
 * Releases the input pages it has consumed (madvise) to bound RSS. */
ms_status mg_apply_tensor(const mg_otensor *o, st_dtype out_dtype, const mg_kernels *k, const char *const *labels,
                          const mg_sink *sink, mg_apply_stats *stats, ms_error *err);

/* Drops the whole pages inside [p, p+n) of a read-only file mapping from
 * this process (they are re-read from the file if touched again). */
void mg_release_pages(const void *p, size_t n);

#endif
