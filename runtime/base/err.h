/* err.h: filling an ms_error. Library code reports failures through these
 * helpers and returns the status; it never prints or exits. */
#ifndef MS_ERR_H
#define MS_ERR_H

#include "medserve.h"

/* Sets err (if non-NULL) to status and a printf-formatted message; returns status. */
ms_status ms_seterr(ms_error *err, ms_status status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Clears err to MS_OK and an empty message. */
void ms_clearerr(ms_error *err);

#endif
