/* backend.c: where backends register. */
#include "backend.h"

#include "err.h"

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
