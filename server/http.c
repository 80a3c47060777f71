/* http.c: libmicrohttpd glue (see http.h), written for the libmicrohttpd of
 * Debian 12 (0.9.75). One thread per connection (MHD's internal poll thread
 * accepts); handlers block, so an epoll thread pool is not an option.
 *
 * Connection limits (docs/threats.md E5, E3): every connection is tracked
 * (MHD_OPTION_NOTIFY_CONNECTION) with its peer address. A connection is
 * "admitted" by its first complete request head; once admitted it stays so
 * until it closes. Over the soft limits a request is answered, never dropped:
 * a connection whose first request arrives while max_conns connections are
 * admitted gets 503; a client address over max_per_ip gets 429 (both with
 * Connection: close; the words are routes.c's). For a peer that is not a
 * trusted proxy, max_per_ip counts its admitted connections; for a trusted
 * proxy, it counts the requests in flight per client address taken from
 * X-Forwarded-For (the proxy's own connections only count to max_conns).
 * Connections that never complete a request head (slow or idle) are not
 * admitted and do not count to the soft limits; they are bounded by hard
 * caps checked at accept (http_hard_conns, http_hard_per_ip: soft + max(16,
 * soft/4)), beyond which a connection is closed unanswered (an answer needs
 * a thread and a socket, which is what the cap protects), and by a header
 * deadline: a watchdog thread shuts down a connection whose request head is
 * not complete header_s after it opened (idle_s + header_s after its previous
 * reply, so keep-alive idling is left to idle_s), however slowly it trickles.
 *
 * Errors libmicrohttpd answers itself (header block over the connection
 * memory: 431, request line too long: 414, malformed: 400, ...) have no hook
 * in 0.9.75; it logs "Error processing request (HTTP response code is %u"
 * on the connection's own thread just before queueing its HTML page. The
 * logger (mhd_log) recognises that line, finds the connection through a
 * thread-local set by the URI callback, lets the handlers answer with their
 * JSON body written straight to the socket, and shuts down the write side so
 * libmicrohttpd's page is never sent. A request line that cannot be parsed on
 * a fresh connection comes before any callback and keeps libmicrohttpd's page.
 *
 * Also: header memory cap; body cap: a Content-Length far over it is refused
 * before reading; a body somewhat over it (declared or chunked) is read and
 * discarded, never buffered, so the 413 reaches the client; a client that
 * keeps sending far past the cap is disconnected; rejection of ambiguous
 * framing (Content-Length together with Transfer-Encoding, or twice). It does
 * not parse HTTP itself and knows nothing of routes or JSON. */
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>

#include "base/err.h"
#include "http.h"

#define HTTP_MAX_REPLY_HEADERS 8
#define HTTP_DISCARD_FACTOR 8 /* close after discarding this many times max_body */
#define HTTP_STREAM_BLOCK (16u << 10)
#define HTTP_HARD_SLACK 32     /* MHD's own cap sits this far above ours (a backstop) */
#define HTTP_ADDR_BUCKETS 1024 /* address table: entries exist while counted */
#define HTTP_XFF_MAX 2048      /* X-Forwarded-For bytes looked at (longer: malformed) */
#define HTTP_WATCHDOG_MS 200   /* header-deadline scan period */
#define HTTP_LABEL_MAX 48
/* libmicrohttpd 0.9.75 logs this (then the status) just before answering a request itself */
#define MHD_ERROR_REPLY_LOG "Error processing request (HTTP response code is %u"

/* An address as the limits see it: IPv4 (family 4, a[0..3]) or IPv6 (6);
 * IPv4-mapped IPv6 addresses are stored as IPv4. */
typedef struct addr_key {
    unsigned char fam;
    unsigned char a[16];
} addr_key;

/* What is counted for one address; freed when every count is 0. */
typedef struct addr_ent {
    addr_key k;
    unsigned open;     /* connections from this peer */
    unsigned admitted; /* admitted connections from this (untrusted) peer */
    unsigned inflight; /* requests in flight from this client behind a trusted proxy */
    struct addr_ent *next;
} addr_ent;

typedef struct http_conn http_conn;

struct http_server {
    struct MHD_Daemon *d;
    http_limits lim;
    http_handlers h;
    int port;
    unsigned hard_conns, hard_per_ip;
    uint32_t hash_seed;
    pthread_mutex_t mu; /* guards everything below and each http_conn's counted fields */
    pthread_cond_t cv;
    http_conn *conns; /* every open connection, for the watchdog */
    unsigned n_open, n_admitted;
    addr_ent *buckets[HTTP_ADDR_BUCKETS];
    int stop;
    pthread_t watchdog;
    int watchdog_started;
};

/* One open connection (MHD's socket context). */
struct http_conn {
    http_server *srv;
    struct MHD_Connection *mc;
    int fd;
    addr_key peer;
    char peer_txt[INET6_ADDRSTRLEN];
    int trusted;
    /* under srv->mu: */
    int admitted, in_request, served, killed;
    double t_wait; /* since when it owes a request head */
    /* on the connection's own thread only: */
    double t_line;  /* when the current request line was parsed */
    char path[256]; /* and its path (truncated), "" until then */
    http_req *cur;  /* the request on_access is serving, until it completes */
    http_conn *prev, *next;
};

struct http_req {
    http_server *srv;
    struct MHD_Connection *conn;
    http_conn *c;
    char method[16];
    char *path;
    char *body;
    size_t body_len, body_cap, discarded;
    http_flag flag;
    int flag_status;
    int in_headers; /* on_headers is running: a reply now skips the body */
    int raw;        /* replies go straight to the socket (libmicrohttpd is answering itself) */
    int replied, status;
    double t_start;
    void *user;
    char peer[INET6_ADDRSTRLEN], client[INET6_ADDRSTRLEN];
    addr_key client_key;
    int held; /* counted in client_key's inflight */
    char label[HTTP_LABEL_MAX];
    char *hdr_name[HTTP_MAX_REPLY_HEADERS], *hdr_value[HTTP_MAX_REPLY_HEADERS];
    int n_hdr;
};

/* The connection whose MHD thread this is (set by the URI and access callbacks). */
static __thread http_conn *tls_conn;

/* CLOCK_MONOTONIC in seconds. */
double http_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- addresses and trusted proxies ------------------------------------- */

/* An addr_key from a socket address; -1 for other families. */
static int key_from_sockaddr(const struct sockaddr *sa, addr_key *k)
{
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    memset(k, 0, sizeof *k);
    if (!sa) return -1;
    if (sa->sa_family == AF_INET) {
        k->fam = 4;
        memcpy(k->a, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        const unsigned char *b = ((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr.s6_addr;
        if (!memcmp(b, mapped, 12)) {
            k->fam = 4;
            memcpy(k->a, b + 12, 4);
        } else {
            k->fam = 6;
            memcpy(k->a, b, 16);
        }
        return 0;
    }
    return -1;
}

/* Parses exactly an IPv4 or IPv6 literal of n bytes; -1 if it is not one. */
static int key_parse(const char *p, size_t n, addr_key *k)
{
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    char buf[INET6_ADDRSTRLEN + 1];
    memset(k, 0, sizeof *k);
    if (n == 0 || n >= sizeof buf) return -1;
    memcpy(buf, p, n);
    buf[n] = 0;
    if (inet_pton(AF_INET, buf, k->a) == 1) {
        k->fam = 4;
        return 0;
    }
    if (inet_pton(AF_INET6, buf, k->a) == 1) {
        k->fam = 6;
        if (!memcmp(k->a, mapped, 12)) {
            memmove(k->a, k->a + 12, 4);
            memset(k->a + 4, 0, 12);
            k->fam = 4;
        }
        return 0;
    }
    return -1;
}

/* The address as text. */
static void key_text(const addr_key *k, char *out, size_t cap)
{
    if (!inet_ntop(k->fam == 4 ? AF_INET : AF_INET6, k->a, out, (socklen_t)cap)) snprintf(out, cap, "?");
}

/* Whether k lies in the prefix c. */
static int cidr_has(const http_cidr *c, const addr_key *k)
{
    if (c->family != k->fam) return 0;
    int full = c->bits / 8, rem = c->bits % 8;
    if (memcmp(c->addr, k->a, (size_t)full)) return 0;
    if (rem && ((c->addr[full] ^ k->a[full]) & (unsigned char)(0xff << (8 - rem)))) return 0;
    return 1;
}

/* Whether k is one of the trusted proxies. */
static int is_trusted(const http_limits *l, const addr_key *k)
{
    for (int i = 0; i < l->n_proxies; i++)
        if (cidr_has(&l->proxies[i], k)) return 1;
    return 0;
}

/* Parses one entry "ADDR" or "ADDR/BITS" of n bytes; 0 ok, else -1 with err. */
static int parse_cidr(const char *p, size_t n, http_cidr *c, char *err, size_t cap)
{
    const char *slash = memchr(p, '/', n);
    size_t alen = slash ? (size_t)(slash - p) : n;
    addr_key k;
    if (key_parse(p, alen, &k)) {
        snprintf(err, cap, "'%.*s' is not an IPv4 or IPv6 address or CIDR (a.b.c.d/n or x:y::/n)", (int)n, p);
        return -1;
    }
    int max = k.fam == 4 ? 32 : 128, bits = max;
    if (slash) {
        const char *b = slash + 1, *e = p + n;
        if (b == e || e - b > 3) bits = -1;
        else {
            bits = 0;
            for (const char *q = b; q < e; q++)
                bits = *q >= '0' && *q <= '9' && bits >= 0 ? bits * 10 + (*q - '0') : -1;
        }
        /* an IPv4-mapped prefix (::ffff:a.b.c.d/n, n >= 96) is the IPv4 prefix /n-96 */
        if (k.fam == 4 && memchr(p, ':', alen) && bits >= 0) bits = bits >= 96 ? bits - 96 : -1;
        if (bits < 0 || bits > max) {
            snprintf(err, cap, "'%.*s': the prefix length must be a number in 0..%d", (int)n, p, max);
            return -1;
        }
    }
    c->family = k.fam;
    c->bits = bits;
    memcpy(c->addr, k.a, sizeof c->addr);
    http_cidr net = *c;
    for (int i = bits; i < max; i++) net.addr[i / 8] &= (unsigned char)~(0x80 >> (i % 8));
    if (memcmp(net.addr, c->addr, sizeof c->addr)) {
        char t[INET6_ADDRSTRLEN];
        addr_key nk = {(unsigned char)net.family, {0}};
        memcpy(nk.a, net.addr, sizeof nk.a);
        key_text(&nk, t, sizeof t);
        snprintf(err, cap, "'%.*s' has address bits set past the /%d prefix (did you mean %s/%d?)", (int)n, p, bits, t,
                 bits);
        return -1;
    }
    return 0;
}

/* Comma-separated entries, spaces around them ignored; "none" alone: no proxy. */
int http_parse_trusted(const char *list, http_limits *l, char *err, size_t cap)
{
    http_cidr out[HTTP_MAX_PROXIES];
    int n = 0;
    const char *p = list ? list : "";
    while (*p == ' ') p++;
    if (!strcmp(p, "none")) {
        l->n_proxies = 0;
        return 0;
    }
    for (;;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        while (len && (p[len - 1] == ' ' || p[len - 1] == '\t')) len--;
        while (len && (*p == ' ' || *p == '\t')) {
            p++;
            len--;
        }
        if (!len) {
            snprintf(err, cap, "an empty entry in '%s' (give CIDRs separated by commas, or 'none')", list ? list : "");
            return -1;
        }
        if (n == HTTP_MAX_PROXIES) {
            snprintf(err, cap, "more than %d entries", HTTP_MAX_PROXIES);
            return -1;
        }
        if (parse_cidr(p, len, &out[n], err, cap)) return -1;
        n++;
        if (!e) break;
        p = e + 1;
    }
    memcpy(l->proxies, out, sizeof out[0] * (size_t)n);
    l->n_proxies = n;
    return 0;
}

/* "a/n,b/m" or "none". */
void http_format_trusted(const http_limits *l, char *out, size_t cap)
{
    size_t used = 0;
    out[0] = 0;
    if (l->n_proxies == 0) snprintf(out, cap, "none");
    for (int i = 0; i < l->n_proxies && used < cap; i++) {
        char t[INET6_ADDRSTRLEN];
        addr_key k = {(unsigned char)l->proxies[i].family, {0}};
        memcpy(k.a, l->proxies[i].addr, sizeof k.a);
        key_text(&k, t, sizeof t);
        int w = snprintf(out + used, cap - used, "%s%s/%d", i ? "," : "", t, l->proxies[i].bits);
        if (w < 0) break;
        used += (size_t)w;
    }
}

/* The T4 defaults of docs/threats.md. */
http_limits http_limits_default(void)
{
    http_limits l;
    memset(&l, 0, sizeof l);
    l.max_body = HTTP_DEFAULT_MAX_BODY;
    l.max_conns = HTTP_DEFAULT_MAX_CONNS;
    l.max_per_ip = HTTP_DEFAULT_MAX_PER_IP;
    l.idle_s = HTTP_DEFAULT_IDLE_S;
    l.header_s = HTTP_DEFAULT_HEADER_S;
    char err[16];
    http_parse_trusted(HTTP_DEFAULT_TRUSTED, &l, err, sizeof err);
    return l;
}

/* soft + max(16, soft/4). */
static unsigned hard_of(unsigned soft)
{
    unsigned extra = soft / 4 > 16 ? soft / 4 : 16;
    return soft + extra;
}
/* The hard cap on open connections. */
unsigned http_hard_conns(const http_limits *l)
{
    return hard_of(l->max_conns);
}
/* The hard cap on open connections from one untrusted peer address. */
unsigned http_hard_per_ip(const http_limits *l)
{
    return hard_of(l->max_per_ip);
}

/* ---- the address table (under srv->mu) --------------------------------- */

/* FNV-1a over the key, seeded per process so addresses cannot be chosen to collide. */
static unsigned key_hash(const http_server *s, const addr_key *k)
{
    uint32_t h = 2166136261u ^ s->hash_seed;
    h = (h ^ k->fam) * 16777619u;
    for (int i = 0; i < (k->fam == 4 ? 4 : 16); i++) h = (h ^ k->a[i]) * 16777619u;
    return h % HTTP_ADDR_BUCKETS;
}

/* The entry of k; created (zeroed) when create is set; NULL if absent or out of memory. */
static addr_ent *ent_get(http_server *s, const addr_key *k, int create)
{
    unsigned b = key_hash(s, k);
    for (addr_ent *e = s->buckets[b]; e; e = e->next)
        if (!memcmp(&e->k, k, sizeof *k)) return e;
    if (!create) return NULL;
    addr_ent *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    e->k = *k;
    e->next = s->buckets[b];
    s->buckets[b] = e;
    return e;
}

/* Frees e when nothing counts it any more. */
static void ent_release(http_server *s, addr_ent *e)
{
    if (!e || e->open || e->admitted || e->inflight) return;
    addr_ent **pp = &s->buckets[key_hash(s, &e->k)];
    while (*pp && *pp != e) pp = &(*pp)->next;
    if (*pp) *pp = e->next;
    free(e);
}

/* Reports a connection event to the handlers. */
static void emit(http_server *s, http_event ev)
{
    if (s->h.on_event) s->h.on_event(s->h.ctx, ev);
}

/* ---- connections -------------------------------------------------------- */

/* MHD accept policy: the hard caps (an unanswered close). */
static enum MHD_Result on_accept(void *cls, const struct sockaddr *sa, socklen_t len)
{
    http_server *s = cls;
    (void)len;
    addr_key k;
    if (key_from_sockaddr(sa, &k)) return MHD_YES;
    int trusted = is_trusted(&s->lim, &k);
    http_event ev = HTTP_EV_OPENED;
    pthread_mutex_lock(&s->mu);
    if (s->n_open >= s->hard_conns) ev = HTTP_EV_DROPPED_TOTAL;
    else if (!trusted) {
        addr_ent *e = ent_get(s, &k, 0);
        if (e && e->open >= s->hard_per_ip) ev = HTTP_EV_DROPPED_PER_ADDRESS;
    }
    pthread_mutex_unlock(&s->mu);
    if (ev == HTTP_EV_OPENED) return MHD_YES;
    emit(s, ev);
    return MHD_NO;
}

/* The tracked record of an MHD connection (NULL if it could not be made). */
static http_conn *conn_of(struct MHD_Connection *mc)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

/* MHD connection notice: tracks a connection from accept to close. */
static void on_connection(void *cls, struct MHD_Connection *mc, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    http_server *s = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ai = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        const union MHD_ConnectionInfo *fi = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CONNECTION_FD);
        int fd = fi ? fi->connect_fd : -1;
        http_conn *c = calloc(1, sizeof *c);
        addr_ent *e = NULL;
        *socket_context = NULL;
        if (c) {
            c->srv = s;
            c->mc = mc;
            c->fd = fd;
            if (key_from_sockaddr(ai ? ai->client_addr : NULL, &c->peer) == 0)
                key_text(&c->peer, c->peer_txt, sizeof c->peer_txt);
            else snprintf(c->peer_txt, sizeof c->peer_txt, "?");
            c->trusted = is_trusted(&s->lim, &c->peer);
            c->t_wait = http_now();
            pthread_mutex_lock(&s->mu);
            e = ent_get(s, &c->peer, 1);
            if (e) {
                e->open++;
                s->n_open++;
                c->next = s->conns;
                if (s->conns) s->conns->prev = c;
                s->conns = c;
            }
            pthread_mutex_unlock(&s->mu);
        }
        if (!e) { /* out of memory: not tracked, so not served */
            free(c);
            if (fd >= 0) shutdown(fd, SHUT_RDWR);
            emit(s, HTTP_EV_DROPPED_TOTAL);
            return;
        }
        *socket_context = c;
        emit(s, HTTP_EV_OPENED);
        return;
    }
    http_conn *c = *socket_context;
    if (!c) return;
    int was_admitted;
    pthread_mutex_lock(&s->mu);
    if (c->prev) c->prev->next = c->next;
    else s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    s->n_open--;
    was_admitted = c->admitted;
    if (was_admitted) s->n_admitted--;
    addr_ent *e = ent_get(s, &c->peer, 0);
    if (e) {
        e->open--;
        if (was_admitted && !c->trusted) e->admitted--;
        ent_release(s, e);
    }
    pthread_mutex_unlock(&s->mu);
    if (tls_conn == c) tls_conn = NULL;
    free(c);
    *socket_context = NULL;
    if (was_admitted) emit(s, HTTP_EV_RELEASED);
    emit(s, HTTP_EV_CLOSED);
}

/* Watchdog thread: shuts down connections that owe a request head past the
 * deadline (the connection's MHD thread then sees the end and closes it). */
static void *watchdog_main(void *arg)
{
    http_server *s = arg;
    pthread_mutex_lock(&s->mu);
    while (!s->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += HTTP_WATCHDOG_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&s->cv, &s->mu, &ts);
        double now = http_now();
        for (http_conn *c = s->conns; c; c = c->next) {
            double limit = (double)s->lim.header_s + (c->served ? (double)s->lim.idle_s : 0.0);
            if (c->in_request || c->killed || now - c->t_wait < limit || c->fd < 0) continue;
            emit(s, HTTP_EV_HEADER_TIMEOUT); /* counted before the client can see the close */
            /* the record lives (and the fd stays open) until on_connection's
             * CLOSED notice, which takes s->mu: shutdown cannot hit a reused fd */
            shutdown(c->fd, SHUT_RDWR);
            c->killed = 1;
        }
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ---- requests ----------------------------------------------------------- */

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

/* Fills r->peer with the client's address from MHD (untracked connections). */
static void set_peer(http_req *r)
{
    strcpy(r->peer, "?");
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    addr_key k;
    if (ci && key_from_sockaddr(ci->client_addr, &k) == 0) key_text(&k, r->peer, sizeof r->peer);
}

typedef struct xff_buf {
    char b[HTTP_XFF_MAX];
    size_t n;
    int seen, overflow;
} xff_buf;

/* Header iterator: joins every X-Forwarded-For field, in order, with commas. */
static enum MHD_Result xff_iter(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    xff_buf *x = cls;
    (void)kind;
    if (!key || strcasecmp(key, "X-Forwarded-For")) return MHD_YES;
    size_t len = value ? strlen(value) : 0;
    if (x->n + len + 2 > sizeof x->b) {
        x->overflow = 1;
        return MHD_NO;
    }
    if (x->seen) x->b[x->n++] = ',';
    memcpy(x->b + x->n, value ? value : "", len);
    x->n += len;
    x->b[x->n] = 0;
    x->seen = 1;
    return MHD_YES;
}

/* The client behind a trusted proxy: walking X-Forwarded-For from the right,
 * the first address that is not a trusted proxy (the leftmost if all are).
 * 1: found; 0: no X-Forwarded-For; -1: malformed (an entry examined is not
 * an address, or the field is over HTTP_XFF_MAX). */
static int forwarded_client(http_req *r, addr_key *out)
{
    xff_buf x;
    x.n = 0;
    x.seen = x.overflow = 0;
    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, xff_iter, &x);
    if (x.overflow) return -1;
    if (!x.seen) return 0;
    size_t end = x.n;
    for (;;) {
        const char *comma = memrchr(x.b, ',', end);
        size_t start = comma ? (size_t)(comma - x.b) + 1 : 0, e = end;
        while (start < e && (x.b[start] == ' ' || x.b[start] == '\t')) start++;
        while (e > start && (x.b[e - 1] == ' ' || x.b[e - 1] == '\t')) e--;
        addr_key k;
        if (key_parse(x.b + start, e - start, &k)) return -1;
        if (!is_trusted(&r->srv->lim, &k) || !comma) {
            *out = k;
            return 1;
        }
        end = (size_t)(comma - x.b);
    }
}

/* Decides the client address and whether the request is within the limits
 * (see the top of this file); sets r->flag when it is not. */
static void admit(http_server *s, http_req *r)
{
    http_conn *c = r->c;
    if (!c) {
        r->flag = HTTP_FLAG_OVER_CONNECTIONS;
        return;
    }
    addr_key client = c->peer;
    int xff_bad = 0;
    if (c->trusted) {
        addr_key k;
        int f = forwarded_client(r, &k);
        if (f > 0) client = k;
        xff_bad = f < 0;
    }
    r->client_key = client;
    key_text(&client, r->client, sizeof r->client);
    int admitted = 0;
    pthread_mutex_lock(&s->mu);
    c->in_request = 1;
    if (!c->admitted) {
        addr_ent *pe = c->trusted ? NULL : ent_get(s, &c->peer, 0);
        if (s->n_admitted >= s->lim.max_conns) r->flag = HTTP_FLAG_OVER_CONNECTIONS;
        else if (pe && pe->admitted >= s->lim.max_per_ip) r->flag = HTTP_FLAG_OVER_PER_ADDRESS;
        else {
            c->admitted = admitted = 1;
            s->n_admitted++;
            if (pe) pe->admitted++;
        }
    }
    if (r->flag == HTTP_FLAG_NONE && c->trusted) {
        addr_ent *e = ent_get(s, &client, 1);
        if (!e) r->flag = HTTP_FLAG_OVER_CONNECTIONS;
        else if (e->inflight >= s->lim.max_per_ip) {
            r->flag = HTTP_FLAG_OVER_PER_ADDRESS;
            ent_release(s, e);
        } else {
            e->inflight++;
            r->held = 1;
        }
    }
    pthread_mutex_unlock(&s->mu);
    if (admitted) emit(s, HTTP_EV_ADMITTED);
    if (xff_bad) emit(s, HTTP_EV_XFF_INVALID);
}

/* Undoes admit's per-request counts and restarts the connection's head deadline. */
static void finish(http_server *s, http_req *r)
{
    pthread_mutex_lock(&s->mu);
    if (r->held) {
        addr_ent *e = ent_get(s, &r->client_key, 0);
        if (e) {
            e->inflight--;
            ent_release(s, e);
        }
        r->held = 0;
    }
    if (r->c) {
        r->c->in_request = 0;
        r->c->served = 1;
        r->c->t_wait = http_now();
        r->c->path[0] = 0;
        if (r->c->cur == r) r->c->cur = NULL;
    }
    pthread_mutex_unlock(&s->mu);
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

/* MHD URI callback (the request line is in): remembers, on the connection's
 * thread, which connection it serves, for mhd_log. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *mc)
{
    (void)cls;
    http_conn *c = conn_of(mc);
    tls_conn = c;
    if (c) {
        c->t_line = http_now();
        size_t n = uri ? strcspn(uri, "?") : 0;
        if (n >= sizeof c->path) n = sizeof c->path - 1;
        memcpy(c->path, uri ? uri : "", n);
        c->path[n] = 0;
    }
    return NULL; /* MHD's per-request pointer stays NULL until on_access */
}

/* MHD access handler: builds the request, applies the limits, runs
 * on_headers, collects the body, runs on_request. */
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
        r->c = conn_of(conn);
        r->t_start = http_now();
        snprintf(r->method, sizeof r->method, "%s", method ? method : "");
        r->path = strdup(url ? url : "/");
        if (!r->path) {
            free(r);
            return MHD_NO;
        }
        if (r->c) {
            tls_conn = r->c;
            r->c->cur = r;
            snprintf(r->peer, sizeof r->peer, "%s", r->c->peer_txt);
        } else set_peer(r);
        snprintf(r->client, sizeof r->client, "%s", r->peer);
        *con_cls = r;
        admit(s, r);
        if (r->flag == HTTP_FLAG_NONE) check_headers(r);
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

/* MHD completion notice: reports to on_done, releases the limits, frees the request. */
static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe)
{
    http_server *s = cls;
    (void)conn;
    http_req *r = *con_cls;
    if (!r) return;
    s->h.on_done(s->h.ctx, r, toe == MHD_REQUEST_TERMINATED_COMPLETED_OK);
    finish(s, r);
    req_free(r);
    *con_cls = NULL;
}

/* libmicrohttpd is about to answer connection c itself with status: the
 * handlers answer instead (JSON), straight to the socket (see the top). */
static void early_reply(http_server *s, http_conn *c, unsigned status)
{
    http_req *r = c->cur;
    int temp = !r;
    if (r && r->replied) return; /* already answered; libmicrohttpd closes */
    if (temp) {
        r = calloc(1, sizeof *r);
        if (!r || !(r->path = strdup(c->path))) {
            free(r);
            return;
        }
        r->srv = s;
        r->conn = c->mc;
        r->c = c;
        r->t_start = c->t_line > 0 ? c->t_line : http_now();
        snprintf(r->peer, sizeof r->peer, "%s", c->peer_txt);
        snprintf(r->client, sizeof r->client, "%s", c->peer_txt);
    }
    r->flag = HTTP_FLAG_PROTOCOL;
    r->flag_status = (int)status;
    r->raw = 1;
    if (temp) {
        r->in_headers = 1;
        s->h.on_headers(s->h.ctx, r);
        r->in_headers = 0;
    } else s->h.on_request(s->h.ctx, r);
    if (!r->replied) http_reply(r, (int)status, "text/plain", "", 0);
    if (temp) { /* libmicrohttpd never hands this request to on_completed */
        s->h.on_done(s->h.ctx, r, r->replied > 0);
        req_free(r);
    }
}

/* MHD's error log: client misbehaviour is left to the request log, except
 * the line announcing an answer of libmicrohttpd's own (early_reply). */
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    http_server *s = cls;
    http_conn *c = tls_conn;
    if (!s || !c || c->srv != s || strncmp(fmt, MHD_ERROR_REPLY_LOG, sizeof MHD_ERROR_REPLY_LOG - 1)) return;
    va_list aq;
    va_copy(aq, ap);
    unsigned status = va_arg(aq, unsigned);
    va_end(aq);
    early_reply(s, c, status);
}

/* ---- replies ------------------------------------------------------------ */

/* Writes a whole reply straight to the socket and shuts down its write side
 * (r->raw: libmicrohttpd's own answer then fails and the connection closes). */
static void raw_reply(http_req *r, int status, const char *content_type, const char *body, size_t len)
{
    size_t cap = 256 + len;
    for (int i = 0; i < r->n_hdr; i++) cap += strlen(r->hdr_name[i]) + strlen(r->hdr_value[i]) + 4;
    char *buf = malloc(cap);
    int fd = r->c ? r->c->fd : -1;
    r->status = status;
    r->replied = -1;
    if (!buf || fd < 0) {
        free(buf);
        return;
    }
    const char *reason = MHD_get_reason_phrase_for((unsigned)status);
    int n = snprintf(buf, cap, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n",
                     status, reason && *reason ? reason : "Error", content_type, len);
    size_t used = n > 0 ? (size_t)n : 0;
    for (int i = 0; i < r->n_hdr && used < cap; i++) {
        n = snprintf(buf + used, cap - used, "%s: %s\r\n", r->hdr_name[i], r->hdr_value[i]);
        used += n > 0 ? (size_t)n : 0;
    }
    if (used + 2 + len <= cap) {
        memcpy(buf + used, "\r\n", 2);
        memcpy(buf + used + 2, body, len);
        used += 2 + len;
        size_t off = 0;
        while (off < used) {
            ssize_t w = send(fd, buf + off, used - off, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) break;
            off += (size_t)w;
        }
        if (off == used) r->replied = 1;
    }
    shutdown(fd, SHUT_WR);
    free(buf);
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
    /* a body left unread (or an ambiguous one) leaves the stream out of step;
     * a refused connection is not kept */
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
    if (r->raw) {
        raw_reply(r, status, content_type, body, len);
        return;
    }
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
    stream_glue *g = r->replied || r->raw ? NULL : malloc(sizeof *g);
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

/* ---- accessors ---------------------------------------------------------- */

/* The request method as sent. */
const char *http_method(const http_req *r)
{
    return r->method;
}
/* The path, without the query string. */
const char *http_path(const http_req *r)
{
    return r->path;
}
/* Why the request was flagged (HTTP_FLAG_NONE if it was not). */
http_flag http_flags(const http_req *r)
{
    return r->flag;
}
/* The status libmicrohttpd chose for a request its parser refused. */
int http_flag_status(const http_req *r)
{
    return r->flag == HTTP_FLAG_PROTOCOL ? r->flag_status : 0;
}
/* The socket peer's address as text. */
const char *http_peer(const http_req *r)
{
    return r->peer;
}
/* The client address decided by admit (the peer's until then). */
const char *http_client(const http_req *r)
{
    return r->client[0] ? r->client : r->peer;
}
/* When the request arrived (http_now seconds). */
double http_t_start(const http_req *r)
{
    return r->t_start;
}
/* Stores the handler's per-request state. */
void http_set_user(http_req *r, void *user)
{
    r->user = user;
}
/* The handler's per-request state. */
void *http_user(const http_req *r)
{
    return r->user;
}
/* Whether a reply was queued (or failed to be). */
int http_replied(const http_req *r)
{
    return r->replied != 0;
}
/* The status of the reply, 0 before one. */
int http_status(const http_req *r)
{
    return r->status;
}

/* Copies label (truncated to HTTP_LABEL_MAX - 1 bytes). */
void http_set_label(http_req *r, const char *label)
{
    snprintf(r->label, sizeof r->label, "%s", label ? label : "");
}
/* The label set by http_set_label, NULL when none. */
const char *http_label(const http_req *r)
{
    return r->label[0] ? r->label : NULL;
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

/* Binds host:port, starts MHD (one thread per connection, the hard cap as
 * MHD's own backstop, the callbacks above) and the header-deadline watchdog. */
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
    s->hard_conns = http_hard_conns(lim);
    s->hard_per_ip = http_hard_per_ip(lim);
    if (getrandom(&s->hash_seed, sizeof s->hash_seed, 0) != (ssize_t)sizeof s->hash_seed)
        s->hash_seed = (uint32_t)(http_now() * 1e6);
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
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
        ms_seterr(err, MS_ERR_INVALID, "--host: '%s' is not a numeric IPv4 or IPv6 address", host);
        http_stop(s);
        return NULL;
    }
    s->d = MHD_start_daemon(flags, (uint16_t)port, on_accept, s, on_access, s, MHD_OPTION_SOCK_ADDR, sa,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_NOTIFY_CONNECTION, on_connection,
                            s, MHD_OPTION_URI_LOG_CALLBACK, on_uri, s, MHD_OPTION_CONNECTION_LIMIT,
                            s->hard_conns + HTTP_HARD_SLACK, MHD_OPTION_CONNECTION_TIMEOUT, lim->idle_s,
                            MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HTTP_CONN_MEMORY, MHD_OPTION_THREAD_STACK_SIZE,
                            (size_t)HTTP_THREAD_STACK, MHD_OPTION_STRICT_FOR_CLIENT, 1, MHD_OPTION_EXTERNAL_LOGGER,
                            mhd_log, s, MHD_OPTION_END);
    if (!s->d) {
        ms_seterr(err, MS_ERR_IO, "http: cannot listen on %s:%d (%s)", host, port, strerror(errno));
        http_stop(s);
        return NULL;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : port;
    if (pthread_create(&s->watchdog, NULL, watchdog_main, s)) {
        ms_seterr(err, MS_ERR_NOMEM, "http: cannot start the header-deadline thread");
        http_stop(s);
        return NULL;
    }
    s->watchdog_started = 1;
    return s;
}

/* The port bound (useful with port 0). */
int http_port(const http_server *s)
{
    return s->port;
}

/* Stops the watchdog, then MHD (closing connections, joining threads), then frees. */
void http_stop(http_server *s)
{
    if (!s) return;
    if (s->watchdog_started) {
        pthread_mutex_lock(&s->mu);
        s->stop = 1;
        pthread_cond_signal(&s->cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->watchdog, NULL);
    }
    if (s->d) MHD_stop_daemon(s->d);
    for (int b = 0; b < HTTP_ADDR_BUCKETS; b++) /* empty once every connection closed */
        while (s->buckets[b]) {
            addr_ent *e = s->buckets[b];
            s->buckets[b] = e->next;
            free(e);
        }
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}
