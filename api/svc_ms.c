/* svc_ms.c: the generation service on libmedserve's engine. Interim: the
 * engine (runtime/api.c, branch eng) has not landed on this branch yet, so
 * opening a model directory reports that plainly instead of pretending. */
#include "err.h"
#include "svc.h"

ms_status svc_ms_open(const char *dir, const svc_ms_params *p, svc **out, ms_error *err)
{
    (void)p;
    *out = NULL;
    return ms_seterr(err, MS_ERR_UNSUPPORTED,
                     "%s: this build has no engine yet (runtime/api.c missing); use --fake-engine",
                     dir);
}
