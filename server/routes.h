/* routes.h: medserve's HTTP routes, plugged into http.h's handlers. */
#ifndef MS_ROUTES_H
#define MS_ROUTES_H

#include "http.h"
#include "server.h"

/* Fills h so that requests are served from S. */
void routes_handlers(server *S, http_handlers *h);

#endif
