/* http.h: the HTTP plumbing of medserve over GNU libmicrohttpd: binding,
 * connection limits and timeouts, body collection with a size cap, framing
 * checks, and replies (whole bodies or streamed). One thread per connection:
 * handlers may block (they wait for generation) and may poll the client's
 * socket to notice a disconnect. It knows no routes, JSON or OpenAI shapes. */
#ifndef MS_HTTP_H
#define MS_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "medserve.h"

#define HTTP_DEFAULT_MAX_BODY (1u << 20)
#define HTTP_DEFAULT_MAX_CONNS 256
#define HTTP_DEFAULT_MAX_PER_IP 32
#define HTTP_DEFAULT_IDLE_S 15
#define HTTP_CONN_MEMORY (32u << 10) /* request line + headers + I/O buffers */
#define HTTP_THREAD_STACK (1u << 20)
#define HTTP_MAX_HEADERS 64 /* more fields than this: 431 */

typedef struct http_limits {
    size_t max_body;     /* bytes; larger bodies get 413 */
    unsigned max_conns;  /* connections accepted at once */
    unsigned max_per_ip; /* connections from one address */
    unsigned idle_s;     /* idle (and header/body read) timeout */
} http_limits;

http_limits http_limits_default(void);

typedef struct http_req http_req;
typedef struct http_server http_server;

/* Why a request was flagged before its body was read. */
typedef enum http_flag {
    HTTP_FLAG_NONE = 0,
    HTTP_FLAG_TOO_LARGE,   /* body over max_body (Content-Length or counted) */
    HTTP_FLAG_BAD_FRAMING, /* Content-Length with Transfer-Encoding, or repeated */
    HTTP_FLAG_TOO_MANY_HEADERS,
} http_flag;

typedef struct http_handlers {
    /* Called once the headers are in. May reply (then the body is not read). */
    void (*on_headers)(void *ctx, http_req *r);
    /* Called with the whole body unless on_headers replied. Must reply. */
    void (*on_request)(void *ctx, http_req *r);
    /* Called once per request after its reply ended (sent, failed or cut). */
    void (*on_done)(void *ctx, http_req *r, int completed_ok);
    void *ctx;
} http_handlers;

/* Starts listening on host:port (port 0: any free port) with its own threads. */
http_server *http_start(const char *host, int port, const http_limits *lim, const http_handlers *h, ms_error *err);
/* The bound port. */
int http_port(const http_server *s);
/* Stops listening, closes every connection, joins its threads; NULL-safe. */
void http_stop(http_server *s);

/* ---- request accessors (valid until on_done returns) ------------------ */
const char *http_method(const http_req *r);
const char *http_path(const http_req *r);              /* without the query string */
const char *http_body(const http_req *r, size_t *len); /* NUL-terminated; "" if none */
http_flag http_flags(const http_req *r);
/* Value of a header (name case-insensitive), NULL if absent; first if repeated. */
const char *http_header(const http_req *r, const char *name);
/* How many times a header occurs. */
int http_header_count(const http_req *r, const char *name);
/* The client's socket, for poll(POLLRDHUP) to notice a disconnect; -1 unknown. */
int http_fd(const http_req *r);
/* Client address as text ("?" when unknown). */
const char *http_peer(const http_req *r);
/* Monotonic seconds when the request line arrived. */
double http_t_start(const http_req *r);
/* Per-request slot for the handler's own state (freed by the handler in on_done). */
void http_set_user(http_req *r, void *user);
void *http_user(const http_req *r);
/* Whether a reply was queued. */
int http_replied(const http_req *r);
/* Status of the queued reply (0 if none). */
int http_status(const http_req *r);

/* ---- replies: exactly one per request ---------------------------------- */
/* Adds a header to the reply queued next (up to 8 per request). */
void http_add_header(http_req *r, const char *name, const char *value);
/* Replies with a copy of body. */
void http_reply(http_req *r, int status, const char *content_type, const char *body, size_t len);

/* A streamed body (chunked): fn fills buf with up to max bytes and returns the
 * count, 0 never, -1 at the end, -2 on an error (connection cut). It runs on
 * the connection's thread and may block. free_fn runs once when done. */
typedef ssize_t (*http_stream_fn)(void *ctx, char *buf, size_t max);
void http_reply_stream(http_req *r, int status, const char *content_type, http_stream_fn fn, void *ctx,
                       void (*free_fn)(void *ctx));

/* Sends nothing and closes the connection (the client already left). */
void http_abort(http_req *r);

/* Monotonic clock in seconds. */
double http_now(void);

#endif
