/* http.h: the HTTP plumbing of medserve over GNU libmicrohttpd: binding,
 * connection limits and timeouts, client addresses (X-Forwarded-For from
 * trusted proxies), body collection with a size cap, framing checks, and
 * replies (whole bodies or streamed). One thread per connection: handlers
 * may block (they wait for generation) and may poll the client's socket to
 * notice a disconnect. It knows no routes, JSON or OpenAI shapes: every
 * refusal (limits, framing, what libmicrohttpd's parser refused) is a flag on
 * the request that the handlers answer. */
#ifndef MS_HTTP_H
#define MS_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "medserve.h"

#define HTTP_DEFAULT_MAX_BODY (1u << 20)
#define HTTP_DEFAULT_MAX_CONNS 512 /* connections served at once (soft: 503 over it) */
#define HTTP_DEFAULT_MAX_PER_IP 64 /* per client address (soft: 429 over it) */
#define HTTP_DEFAULT_IDLE_S 15
#define HTTP_DEFAULT_HEADER_S 10                    /* a request head must be complete this soon */
#define HTTP_DEFAULT_TRUSTED "127.0.0.1/32,::1/128" /* a proxy on the same host */
#define HTTP_CONN_MEMORY (32u << 10)                /* request line + headers + I/O buffers */
#define HTTP_THREAD_STACK (1u << 20)
#define HTTP_MAX_HEADERS 64 /* more fields than this: 431 */
#define HTTP_MAX_PROXIES 32 /* --trusted-proxy entries */

/* One --trusted-proxy entry: an IPv4 (family 4) or IPv6 (6) prefix. */
typedef struct http_cidr {
    int family;
    unsigned char addr[16];
    int bits;
} http_cidr;

typedef struct http_limits {
    size_t max_body;     /* bytes; larger bodies get 413 */
    unsigned max_conns;  /* soft: connections served at once; a new one over it gets 503 */
    unsigned max_per_ip; /* soft: per client address; over it 429 (see http.c) */
    unsigned idle_s;     /* idle timeout while a request is read or answered, and between requests */
    unsigned header_s;   /* a request line + headers must be complete within this many seconds of
                          * the connection opening (idle_s + header_s after a previous reply);
                          * trickling does not extend it */
    int n_proxies;       /* --trusted-proxy: peers whose X-Forwarded-For is believed */
    http_cidr proxies[HTTP_MAX_PROXIES];
} http_limits;

/* The defaults of docs/threats.md §5 (trusted proxies: HTTP_DEFAULT_TRUSTED). */
http_limits http_limits_default(void);
/* Parses a comma-separated --trusted-proxy list (IPv4/IPv6 addresses or
 * CIDRs; "none" for no proxy) into l; 0 ok, else -1 with err naming the bad
 * entry and the check. */
int http_parse_trusted(const char *list, http_limits *l, char *err, size_t cap);
/* l's trusted proxies as text ("none" when empty). */
void http_format_trusted(const http_limits *l, char *out, size_t cap);
/* Hard caps (connections closed at accept, unanswered): soft + max(16, soft/4),
 * for all connections and for one untrusted peer address. */
unsigned http_hard_conns(const http_limits *l);
unsigned http_hard_per_ip(const http_limits *l);

typedef struct http_req http_req;
typedef struct http_server http_server;

/* Why the HTTP layer flagged a request for the handlers to refuse. */
typedef enum http_flag {
    HTTP_FLAG_NONE = 0,
    HTTP_FLAG_TOO_LARGE,   /* body over max_body (Content-Length or counted) */
    HTTP_FLAG_BAD_FRAMING, /* Content-Length with Transfer-Encoding, or repeated */
    HTTP_FLAG_TOO_MANY_HEADERS,
    HTTP_FLAG_OVER_CONNECTIONS, /* a new connection while max_conns are served: 503 */
    HTTP_FLAG_OVER_PER_ADDRESS, /* over max_per_ip for the client address: 429 */
    HTTP_FLAG_PROTOCOL,         /* libmicrohttpd's parser refused the request; the status it
                                 * chose (400, 413, 414, 431, 505) is http_flag_status */
} http_flag;

/* Connection events, for metrics (called from any thread; must not block). */
typedef enum http_event {
    HTTP_EV_OPENED,              /* a connection was accepted */
    HTTP_EV_CLOSED,              /* ... and closed */
    HTTP_EV_ADMITTED,            /* a connection's first request was let in (counts to max_conns) */
    HTTP_EV_RELEASED,            /* an admitted connection closed */
    HTTP_EV_DROPPED_TOTAL,       /* closed at accept, unanswered: the hard cap on connections */
    HTTP_EV_DROPPED_PER_ADDRESS, /* closed at accept, unanswered: the hard cap for one address */
    HTTP_EV_HEADER_TIMEOUT,      /* closed: no complete request head within header_s */
    HTTP_EV_XFF_INVALID,         /* a trusted proxy sent a malformed X-Forwarded-For */
} http_event;

typedef struct http_handlers {
    /* Called once the headers are in. May reply (then the body is not read). */
    void (*on_headers)(void *ctx, http_req *r);
    /* Called with the whole body unless on_headers replied. Must reply. */
    void (*on_request)(void *ctx, http_req *r);
    /* Called once per request after its reply ended (sent, failed or cut). */
    void (*on_done)(void *ctx, http_req *r, int completed_ok);
    /* Connection events (optional). */
    void (*on_event)(void *ctx, http_event ev);
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
/* With HTTP_FLAG_PROTOCOL: the status libmicrohttpd's parser chose; else 0. */
int http_flag_status(const http_req *r);
/* Value of a header (name case-insensitive), NULL if absent; first if repeated. */
const char *http_header(const http_req *r, const char *name);
/* How many times a header occurs. */
int http_header_count(const http_req *r, const char *name);
/* The client's socket, for poll(POLLRDHUP) to notice a disconnect; -1 unknown. */
int http_fd(const http_req *r);
/* The socket peer's address as text ("?" when unknown). */
const char *http_peer(const http_req *r);
/* The client's address as text: from X-Forwarded-For when the peer is a
 * trusted proxy (the rightmost entry that is not itself a trusted proxy),
 * else the peer's. Used for the per-address limit and the log. */
const char *http_client(const http_req *r);
/* Monotonic seconds when the request line arrived. */
double http_t_start(const http_req *r);
/* Per-request slot for the handler's own state (freed by the handler in on_done). */
void http_set_user(http_req *r, void *user);
void *http_user(const http_req *r);
/* Whether a reply was queued. */
int http_replied(const http_req *r);
/* Status of the queued reply (0 if none). */
int http_status(const http_req *r);
/* A short label the handler attaches to its reply (an error code) and reads
 * back in on_done; copied, at most 47 bytes. NULL when none. */
void http_set_label(http_req *r, const char *label);
const char *http_label(const http_req *r);

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
