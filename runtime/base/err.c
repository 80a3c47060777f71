/* err.c: ms_error helpers and status names. */
#include "base/err.h"

#include <stdarg.h>
#include <stdio.h>

ms_status ms_seterr(ms_error *err, ms_status status, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
        err->status = status;
    }
    return status;
}

void ms_clearerr(ms_error *err)
{
    if (err) {
        err->status = MS_OK;
        err->message[0] = '\0';
    }
}

const char *ms_status_name(ms_status s)
{
    switch (s) {
    case MS_OK: return "ok";
    case MS_ERR_INVALID: return "invalid";
    case MS_ERR_FORMAT: return "format";
    case MS_ERR_UNSUPPORTED: return "unsupported";
    case MS_ERR_IO: return "io";
    case MS_ERR_NOMEM: return "nomem";
    case MS_ERR_CONTEXT: return "context";
    case MS_ERR_BUSY: return "busy";
    case MS_ERR_CANCELLED: return "cancelled";
    case MS_ERR_NOTFOUND: return "notfound";
    case MS_ERR_INTERNAL: return "internal";
    }
    return "unknown";
}

const char *ms_version(void)
{
    return MS_VERSION_STRING;
}
