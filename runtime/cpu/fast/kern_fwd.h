/* kern_fwd.h: the fast CPU forward pass for bf16 models (weights and
 * activations bf16), behind the same backend.h interface as the reference:
 * weights packed once at create (kern.h panels, q/k/v and gate/up stacked),
 * one OpenMP parallel region per forward call, fused row ops (kern_ops.h),
 * chunked attention over its own bf16 KV cache (kern_attn.h). Every output
 * element is computed by the same instruction sequence whatever the batch,
 * so a sequence's logits never depend on its neighbours or on chunking.
 *
 * cpu_backend.c runs a model here when kfwd_supported says it can (and the
 * environment does not set MEDSERVE_CPU_REFERENCE); other models stay on the
 * reference code. */
#ifndef MS_KERN_FWD_H
#define MS_KERN_FWD_H

#include "engine/backend.h"

/* 1 if m can run on the fast path: even hidden, intermediate and head sizes,
 * and either q8 (int8 weights quantised from any dtype; activations then
 * computed in bf16) or all matrices bf16 with activation dtype bf16. Else 0
 * and, if why != NULL, the reason. */
int kfwd_supported(const model *m, int q8, const char **why);

typedef struct kfwd kfwd;

/* The backend.h operations of the fast path (cpu_backend.c dispatches to them). */
ms_status kfwd_create(const model *m, const backend_params *p, kfwd **out, ms_error *err);
ms_status kfwd_forward(kfwd *b, const fwd_seq *seqs, int n, ms_error *err);
void kfwd_free(kfwd *b); /* NULL-safe */
/* "cpu-fast-bf16" or "cpu-fast-q8". */
const char *kfwd_name(const kfwd *b);

#endif
