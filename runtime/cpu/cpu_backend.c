/* cpu_backend.c: placeholder CPU backend until the forward pass lands. */
#include "backend.h"
#include "err.h"

static ms_status cpu_create(const model *m, const backend_params *p, backend **out, ms_error *err)
{
    (void)m;
    (void)p;
    *out = NULL;
    return ms_seterr(err, MS_ERR_UNSUPPORTED, "cpu backend: not built yet");
}

static ms_status cpu_forward(backend *b, const fwd_seq *s, int n, ms_error *err)
{
    (void)b;
    (void)s;
    (void)n;
    return ms_seterr(err, MS_ERR_UNSUPPORTED, "cpu backend: not built yet");
}

static void cpu_free(backend *b) { (void)b; }

const backend_ops cpu_backend_ops = {"cpu", cpu_create, cpu_forward, cpu_free};
