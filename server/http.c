/* http.c: libmicrohttpd glue (see http.h). One thread per connection
 * (MHD's internal poll thread accepts), connection / per-IP / idle limits,
 * header memory cap (MHD answers 431 itself when headers overflow it),
 * body cap: a Content-Length far over it is refused before reading; a body
 * somewhat over it (declared or chunked) is read and discarded, never
 * buffered, so the 413 reaches the client; a client that keeps sending far
 * past the cap is disconnected. Also rejection of ambiguous
 * framing (Content-Length together with Transfer-Encoding, or twice). It does
 * not parse HTTP itself and knows nothing of routes or JSON. */
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "base/err.h"
#include "http.h"

#define HTTP_MAX_REPLY_HEADERS 8
#define HTTP_DISCARD_FACTOR 8 /* close after discarding this many times max_body */
#define HTTP_STREAM_BLOCK (16u << 10)

struct http_server {
    struct MHD_Daemon *d;
    http_limits lim;
    http_handlers h;
    int port;
};

struct http_req {
    http_server *srv;
    struct MHD_Connection *conn;
    char method[16];
    char *path;
    char *body;
    size_t body_len, body_cap, discarded;
    http_flag flag;
    int in_headers; /* on_headers is running: a reply now skips the body */
    int replied, status;
    double t_start;
    void *user;
    char peer[64];
    char *hdr_name[HTTP_MAX_REPLY_HEADERS], *hdr_value[HTTP_MAX_REPLY_HEADERS];
    int n_hdr;
};

/* The T4 defaults of docs/threats.md. */
http_limits http_limits_default(void)
{
    http_limits l = {HTTP_DEFAULT_MAX_BODY, HTTP_DEFAULT_MAX_CONNS, HTTP_DEFAULT_MAX_PER_IP, HTTP_DEFAULT_IDLE_S};
    return l;
}

/* CLOCK_MONOTONIC in seconds. */
double http_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Frees a request context and what it owns. */
static void req_free(http_req *r)
{
    if (!r) return;
    for (int i = 0; i < r->n_hdr; i++) {
        free(r->hdr_name[i]);
        free(r->hdr_value[i]);
    }
    free(r->path);
    free(r->body);
    free(r);
}

/* Fills r->peer with the client's address. */
static void set_peer(http_req *r)
{
    strcpy(r->peer, "?");
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (!ci || !ci->client_addr) return;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, r->peer, sizeof r->peer);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, r->peer, sizeof r->peer);
}

/* Parses a Content-Length value strictly (digits only); -1 if malformed. */
static long long parse_content_length(const char *v)
{
    if (!v || !*v) return -1;
    long long n = 0;
    for (const char *p = v; *p; p++) {
        if (*p < '0' || *p > '9') return -1;
        if (n > (long long)1 << 50) return (long long)1 << 50; /* clamp: "huge" */
        n = n * 10 + (*p - '0');
    }
    return n;
}

/* Sets r->flag from the request's headers (framing, size, field count). */
static void check_headers(http_req *r)
{
    int n_fields = MHD_get_connection_values(r->conn, MHD_HEADER_KIND, NULL, NULL);
    int n_cl = http_header_count(r, MHD_HTTP_HEADER_CONTENT_LENGTH);
    int n_te = http_header_count(r, MHD_HTTP_HEADER_TRANSFER_ENCODING);
    if (n_fields > HTTP_MAX_HEADERS) {
        r->flag = HTTP_FLAG_TOO_MANY_HEADERS;
        return;
    }
    if (n_cl > 1 || (n_cl && n_te) || n_te > 1) {
        r->flag = HTTP_FLAG_BAD_FRAMING;
        return;
    }
    if (n_cl) {
        long long cl = parse_content_length(http_header(r, MHD_HTTP_HEADER_CONTENT_LENGTH));
        if (cl < 0) r->flag = HTTP_FLAG_BAD_FRAMING;
        else if ((unsigned long long)cl / HTTP_DISCARD_FACTOR > r->srv->lim.max_body)
            r->flag = HTTP_FLAG_TOO_LARGE; /* refuse now, unread: the connection closes */
        /* a body a little over the cap is read and discarded (take_body), so the
         * 413 reaches a client still sending instead of being lost to a reset */
    }
}

/* Appends an upload chunk, or counts it as discarded past the cap; 0 = close. */
static int take_body(http_req *r, const char *data, size_t n)
{
    size_t max = r->srv->lim.max_body;
    if (r->flag == HTTP_FLAG_TOO_LARGE || n > max - r->body_len) {
        r->flag = HTTP_FLAG_TOO_LARGE;
        free(r->body);
        r->body = NULL;
        r->body_cap = 0;
        r->discarded += r->body_len + n;
        r->body_len = 0;
        return r->discarded / HTTP_DISCARD_FACTOR <= max;
    }
    if (r->body_len + n + 1 > r->body_cap) {
        size_t cap = r->body_cap ? r->body_cap : 4096;
        while (cap < r->body_len + n + 1) cap *= 2;
        if (cap > max + 1) cap = max + 1;
        char *p = realloc(r->body, cap);
        if (!p) return 0;
        r->body = p;
        r->body_cap = cap;
    }
    memcpy(r->body + r->body_len, data, n);
    r->body_len += n;
    r->body[r->body_len] = 0;
    return 1;
}

/* MHD access handler: builds the request, runs on_headers, collects the body,
 * runs on_request. */
static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                 const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
    http_server *s = cls;
    (void)version;
    http_req *r = *con_cls;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r) return MHD_NO;
        r->srv = s;
        r->conn = conn;
        r->t_start = http_now();
        snprintf(r->method, sizeof r->method, "%s", method ? method : "");
        r->path = strdup(url ? url : "/");
        if (!r->path) {
            free(r);
            return MHD_NO;
        }
        set_peer(r);
        *con_cls = r;
        check_headers(r);
        r->in_headers = 1;
        s->h.on_headers(s->h.ctx, r);
        r->in_headers = 0;
        return MHD_YES;
    }
    if (r->replied) { /* replied early: drop whatever body arrives */
        *upload_size = 0;
        return MHD_YES;
    }
    if (*upload_size) {
        int ok = take_body(r, upload, *upload_size);
        *upload_size = 0;
        return ok ? MHD_YES : MHD_NO;
    }
    s->h.on_request(s->h.ctx, r);
    if (!r->replied) http_reply(r, 500, "text/plain", "no reply\n", 9);
    return r->replied > 0 ? MHD_YES : MHD_NO;
}

/* MHD completion notice: reports to on_done and frees the request. */
static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe)
{
    http_server *s = cls;
    (void)conn;
    http_req *r = *con_cls;
    if (!r) return;
    s->h.on_done(s->h.ctx, r, toe == MHD_REQUEST_TERMINATED_COMPLETED_OK);
    req_free(r);
    *con_cls = NULL;
}

/* Adds the queued extra headers to resp and queues it; records the outcome. */
static void queue(http_req *r, int status, struct MHD_Response *resp, const char *content_type)
{
    if (!resp) {
        r->replied = -1;
        return;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    for (int i = 0; i < r->n_hdr; i++) MHD_add_response_header(resp, r->hdr_name[i], r->hdr_value[i]);
    /* a body left unread (or an ambiguous one) leaves the stream out of step */
    const char *cl = http_header(r, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (r->flag != HTTP_FLAG_NONE ||
        (r->in_headers && ((cl && strcmp(cl, "0")) || http_header(r, "Transfer-Encoding"))))
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result q = MHD_queue_response(r->conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    r->replied = q == MHD_YES ? 1 : -1;
    r->status = status;
}

/* Copies name and value; silently capped at HTTP_MAX_REPLY_HEADERS. */
void http_add_header(http_req *r, const char *name, const char *value)
{
    if (r->n_hdr >= HTTP_MAX_REPLY_HEADERS) return;
    char *n = strdup(name), *v = strdup(value);
    if (!n || !v) {
        free(n);
        free(v);
        return;
    }
    r->hdr_name[r->n_hdr] = n;
    r->hdr_value[r->n_hdr] = v;
    r->n_hdr++;
}

/* Queues a copy of body with status and content type. */
void http_reply(http_req *r, int status, const char *content_type, const char *body, size_t len)
{
    if (r->replied) return;
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    queue(r, status, resp, content_type);
}

typedef struct stream_glue {
    http_stream_fn fn;
    void *ctx;
    void (*free_fn)(void *);
} stream_glue;

/* MHD content reader: forwards to the handler's stream function. */
static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    stream_glue *g = cls;
    (void)pos;
    ssize_t n = g->fn(g->ctx, buf, max);
    if (n == -1) return MHD_CONTENT_READER_END_OF_STREAM;
    if (n < 0 || n == 0) return MHD_CONTENT_READER_END_WITH_ERROR;
    return n;
}

/* MHD content reader cleanup. */
static void stream_free(void *cls)
{
    stream_glue *g = cls;
    if (g->free_fn) g->free_fn(g->ctx);
    free(g);
}

/* Queues a chunked response whose body comes from fn (see http.h). */
void http_reply_stream(http_req *r, int status, const char *content_type, http_stream_fn fn, void *ctx,
                       void (*free_fn)(void *ctx))
{
    stream_glue *g = r->replied ? NULL : malloc(sizeof *g);
    if (!g) {
        if (free_fn) free_fn(ctx);
        if (!r->replied) r->replied = -1;
        return;
    }
    g->fn = fn;
    g->ctx = ctx;
    g->free_fn = free_fn;
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, HTTP_STREAM_BLOCK, stream_read, g, stream_free);
    if (!resp) {
        stream_free(g);
        r->replied = -1;
        return;
    }
    queue(r, status, resp, content_type);
}

/* Marks the request so the access handler returns MHD_NO (connection closed). */
void http_abort(http_req *r)
{
    if (!r->replied) r->replied = -1;
}

const char *http_method(const http_req *r)
{
    return r->method;
}
const char *http_path(const http_req *r)
{
    return r->path;
}
http_flag http_flags(const http_req *r)
{
    return r->flag;
}
const char *http_peer(const http_req *r)
{
    return r->peer;
}
double http_t_start(const http_req *r)
{
    return r->t_start;
}
void http_set_user(http_req *r, void *user)
{
    r->user = user;
}
void *http_user(const http_req *r)
{
    return r->user;
}
int http_replied(const http_req *r)
{
    return r->replied != 0;
}
int http_status(const http_req *r)
{
    return r->status;
}

/* The collected body, "" when there is none. */
const char *http_body(const http_req *r, size_t *len)
{
    if (len) *len = r->body ? r->body_len : 0;
    return r->body ? r->body : "";
}

/* First value of a header (MHD compares names case-insensitively). */
const char *http_header(const http_req *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

typedef struct count_ctx {
    const char *name;
    int n;
} count_ctx;

/* Header iterator: counts fields named c->name (case-insensitive). */
static enum MHD_Result count_iter(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    count_ctx *c = cls;
    (void)kind;
    (void)value;
    if (key && !strcasecmp(key, c->name)) c->n++;
    return MHD_YES;
}

/* Counts every occurrence of a header name. */
int http_header_count(const http_req *r, const char *name)
{
    count_ctx c = {name, 0};
    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, count_iter, &c);
    return c.n;
}

/* The connection's socket descriptor from MHD. */
int http_fd(const http_req *r)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? ci->connect_fd : -1;
}

/* MHD's error log: dropped (see below). */
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    (void)fmt;
    (void)ap;
    /* MHD logs every client misbehaviour (timeouts, oversized headers); the
     * request log already records what matters, so these are dropped. */
}

/* Binds host:port and starts MHD with one thread per connection and the limits. */
http_server *http_start(const char *host, int port, const http_limits *lim, const http_handlers *h, ms_error *err)
{
    if (port < 0 || port > 65535) {
        ms_seterr(err, MS_ERR_INVALID, "--port: %d is not in 0..65535", port);
        return NULL;
    }
    http_server *s = calloc(1, sizeof *s);
    if (!s) {
        ms_seterr(err, MS_ERR_NOMEM, "http: out of memory");
        return NULL;
    }
    s->lim = *lim;
    s->h = *h;
    struct sockaddr_in a4;
    struct sockaddr_in6 a6;
    memset(&a4, 0, sizeof a4);
    memset(&a6, 0, sizeof a6);
    const struct sockaddr *sa;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL | MHD_USE_ERROR_LOG;
    if (!strcmp(host, "localhost")) host = "127.0.0.1"; /* the one name taken; no resolver */
    if (inet_pton(AF_INET, host, &a4.sin_addr) == 1) {
        a4.sin_family = AF_INET;
        a4.sin_port = htons((uint16_t)port);
        sa = (const struct sockaddr *)&a4;
    } else if (inet_pton(AF_INET6, host, &a6.sin6_addr) == 1) {
        a6.sin6_family = AF_INET6;
        a6.sin6_port = htons((uint16_t)port);
        sa = (const struct sockaddr *)&a6;
        flags |= MHD_USE_IPv6;
    } else {
        free(s);
        ms_seterr(err, MS_ERR_INVALID, "--host: '%s' is not a numeric IPv4 or IPv6 address", host);
        return NULL;
    }
    s->d = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, on_access, s, MHD_OPTION_SOCK_ADDR, sa,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_CONNECTION_LIMIT, lim->max_conns,
                            MHD_OPTION_PER_IP_CONNECTION_LIMIT, lim->max_per_ip, MHD_OPTION_CONNECTION_TIMEOUT,
                            lim->idle_s, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HTTP_CONN_MEMORY,
                            MHD_OPTION_THREAD_STACK_SIZE, (size_t)HTTP_THREAD_STACK, MHD_OPTION_STRICT_FOR_CLIENT, 1,
                            MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_END);
    if (!s->d) {
        ms_seterr(err, MS_ERR_IO, "http: cannot listen on %s:%d (%s)", host, port, strerror(errno));
        free(s);
        return NULL;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : port;
    return s;
}

int http_port(const http_server *s)
{
    return s->port;
}

/* Stops MHD (closing connections, joining threads) and frees. */
void http_stop(http_server *s)
{
    if (!s) return;
    if (s->d) MHD_stop_daemon(s->d);
    free(s);
}
