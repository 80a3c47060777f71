/* kern_fwd.h: the fast CPU forward pass for bf16 models (weights and
 * activations bf16), behind the same backend.h interface as the reference:
 * weights packed once at create (kern.h panels, q/k/v and gate/up stacked),
 * one OpenMP parallel region per forward call, fused row ops (kern_ops.h),
 * chunked attention over its own bf16 KV cache (kern_attn.h). Every output
 * element is computed by the same instruction sequence whatever the batch,
 * so a sequence's logits never depend on its neighbours or on chunking.
 *
 * kfwd_supported says whether a model can take this path; other models stay
 * on the reference backend. */
#ifndef MS_KERN_FWD_H
#define MS_KERN_FWD_H

#include "backend.h"

/* 1 if m can run on the fast path: even hidden, intermediate and head sizes,
 * and either q8 (int8 weights quantised from any dtype; activations then
 * computed in bf16) or all matrices bf16 with activation dtype bf16. Else 0
 * and, if why != NULL, the reason. */
int kfwd_supported(const model *m, int q8, const char **why);

extern const backend_ops kfwd_backend_ops;

#endif
