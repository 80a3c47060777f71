/* serve.c: `medserve DIR [options]`: parses options, opens the request log
 * and the key file, starts HTTP (answering 503 while the model loads), loads
 * the model and its engine, serves until SIGTERM/SIGINT, then drains: stops
 * accepting work, lets requests in flight finish for up to --drain-timeout,
 * ends the rest with an error, and exits 0. An engine fault ends every
 * request with an error and exits 1 so a supervisor restarts the process.
 * Only this file prints and exits. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "routes.h"
#include "serve.h"
#include "server.h"

#define ABORT_GRACE_S 3.0 /* after aborting, how long requests get to send their error */
#define FD_RESERVE 64     /* open files besides connections: listener, log, model, engine */

/* Prints the options of `medserve DIR`. */
static void usage(FILE *f)
{
    fprintf(f,
            "usage: medserve DIR [options]        serve an export directory (OpenAI API)\n"
            "  --host ADDR              numeric IPv4/IPv6 address or localhost (default 127.0.0.1)\n"
            "  --port N                 TCP port (default 8080; 0 picks a free one)\n"
            "  --api-key-file F         keys, one 'id:key' per line; file mode must be 0600\n"
            "  --model-name NAME        model id in the API (default: DIR's basename)\n"
            "  --threads N              CPU threads (default: all)\n"
            "  --weights native|q8      q8: quantise weights to int8 (per-row scales) at load\n"
            "  --ctx N                  tokens per sequence (default: model max, capped 4096)\n"
            "  --max-seqs N             sequences decoded together (default 8)\n"
            "  --queue N                waiting requests before 429 (default 64)\n"
            "  --max-n N                most choices per request (default %d)\n"
            "  --timeout S              per-request deadline in seconds (default 600)\n"
            "  --drain-timeout S        on SIGTERM, time given to requests in flight (default 30)\n"
            "  --log FILE               request log, JSON lines (default: standard error)\n"
            "  --log-text               also log prompt and completion text (patient data!)\n"
            "  --log-required           refuse requests (503) while the log cannot be written\n"
            "  --max-body BYTES         request body limit (default 1048576)\n"
            "  --max-connections N      connections served at once; a new one over it gets 503\n"
            "                           (default %d; accept closes unanswered past N + max(16, N/4))\n"
            "  --max-connections-per-ip N  per client address, 429 over it (default %d): connections\n"
            "                           of a direct peer, requests in flight behind a trusted proxy\n"
            "  --trusted-proxy CIDR[,CIDR...]  peers whose X-Forwarded-For names the client\n"
            "                           (default %s; 'none': no proxy is trusted)\n"
            "  --idle-timeout S         close idle or stalled connections (default %d)\n"
            "  --header-timeout S       a request line + headers must arrive within S (default %d)\n"
            "  --fake-engine            no model: a deterministic fake engine (tests, load tests)\n"
            "  --fake-step-us N         fake engine: microseconds per decode step (default 2000)\n"
            "  --fake-fault-after N     fake engine: fail like a broken engine after N tokens\n",
            SRV_DEFAULT_MAX_N, HTTP_DEFAULT_MAX_CONNS, HTTP_DEFAULT_MAX_PER_IP, HTTP_DEFAULT_TRUSTED,
            HTTP_DEFAULT_IDLE_S, HTTP_DEFAULT_HEADER_S);
}

/* Parses a whole decimal integer in [lo, hi]; 0 ok. */
static int parse_int(const char *opt, const char *v, long long lo, long long hi, long long *out)
{
    char *end;
    errno = 0;
    long long x = v ? strtoll(v, &end, 10) : 0;
    if (!v || !*v || *end || errno || x < lo || x > hi) {
        fprintf(stderr, "medserve: %s: expected an integer in [%lld, %lld], got '%s'\n", opt, lo, hi, v ? v : "");
        return -1;
    }
    *out = x;
    return 0;
}

/* Parses a number of seconds in (0, 1e6]; 0 ok. */
static int parse_secs(const char *opt, const char *v, double *out)
{
    char *end;
    errno = 0;
    double x = v ? strtod(v, &end) : 0;
    if (!v || !*v || *end || errno || !(x > 0) || x > 1e6) {
        fprintf(stderr, "medserve: %s: expected seconds in (0, 1000000], got '%s'\n", opt, v ? v : "");
        return -1;
    }
    *out = x;
    return 0;
}

/* Fills c from argv; returns 0, or the exit code (2 usage, -1 for --help). */
static int parse_args(int argc, char **argv, srv_config *c)
{
    memset(c, 0, sizeof *c);
    c->host = "127.0.0.1";
    c->port = 8080;
    c->max_seqs = 8;
    c->queue = 64;
    c->max_n = SRV_DEFAULT_MAX_N;
    c->timeout_s = 600;
    c->drain_timeout_s = 30;
    c->lim = http_limits_default();
    c->fake_step_us = 2000;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long long x;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return -1;
        }
        if (a[0] != '-') {
            if (c->dir) {
                fprintf(stderr, "medserve: more than one directory given ('%s', '%s')\n", c->dir, a);
                return 2;
            }
            c->dir = a;
            continue;
        }
        int takes = 1;
        if (!strcmp(a, "--log-text")) {
            c->log_text = 1;
            takes = 0;
        } else if (!strcmp(a, "--log-required")) {
            c->log_required = 1;
            takes = 0;
        } else if (!strcmp(a, "--fake-engine")) {
            c->fake = 1;
            takes = 0;
        } else if (!v) {
            fprintf(stderr, "medserve: %s needs a value\n", a);
            return 2;
        } else if (!strcmp(a, "--host")) {
            c->host = v;
        } else if (!strcmp(a, "--port")) {
            if (parse_int(a, v, 0, 65535, &x)) return 2;
            c->port = (int)x;
        } else if (!strcmp(a, "--api-key-file")) {
            c->api_key_file = v;
        } else if (!strcmp(a, "--model-name")) {
            c->model_name = v;
        } else if (!strcmp(a, "--threads")) {
            if (parse_int(a, v, 1, 1024, &x)) return 2;
            c->threads = (int)x;
        } else if (!strcmp(a, "--weights")) {
            if (strcmp(v, "native") && strcmp(v, "q8")) {
                fprintf(stderr, "medserve: --weights must be native or q8, not '%s'\n", v);
                return 2;
            }
            c->q8 = !strcmp(v, "q8");
        } else if (!strcmp(a, "--ctx")) {
            if (parse_int(a, v, 16, 1 << 24, &x)) return 2;
            c->ctx = (int)x;
        } else if (!strcmp(a, "--max-seqs")) {
            if (parse_int(a, v, 1, 1024, &x)) return 2;
            c->max_seqs = (int)x;
        } else if (!strcmp(a, "--queue")) {
            if (parse_int(a, v, 0, 1 << 20, &x)) return 2;
            c->queue = (int)x;
        } else if (!strcmp(a, "--max-n")) {
            if (parse_int(a, v, 1, 128, &x)) return 2;
            c->max_n = (int)x;
        } else if (!strcmp(a, "--timeout")) {
            if (parse_secs(a, v, &c->timeout_s)) return 2;
        } else if (!strcmp(a, "--drain-timeout")) {
            if (parse_secs(a, v, &c->drain_timeout_s)) return 2;
        } else if (!strcmp(a, "--log")) {
            c->log_path = v;
        } else if (!strcmp(a, "--max-body")) {
            if (parse_int(a, v, 1024, 1LL << 30, &x)) return 2;
            c->lim.max_body = (size_t)x;
        } else if (!strcmp(a, "--max-connections")) {
            if (parse_int(a, v, 1, 65536, &x)) return 2;
            c->lim.max_conns = (unsigned)x;
        } else if (!strcmp(a, "--max-connections-per-ip")) {
            if (parse_int(a, v, 1, 65536, &x)) return 2;
            c->lim.max_per_ip = (unsigned)x;
        } else if (!strcmp(a, "--trusted-proxy")) {
            char why[256];
            if (http_parse_trusted(v, &c->lim, why, sizeof why)) {
                fprintf(stderr, "medserve: --trusted-proxy: %s\n", why);
                return 2;
            }
        } else if (!strcmp(a, "--idle-timeout")) {
            if (parse_int(a, v, 1, 3600, &x)) return 2;
            c->lim.idle_s = (unsigned)x;
        } else if (!strcmp(a, "--header-timeout")) {
            if (parse_int(a, v, 1, 3600, &x)) return 2;
            c->lim.header_s = (unsigned)x;
        } else if (!strcmp(a, "--fake-step-us")) {
            if (parse_int(a, v, 0, 10000000, &x)) return 2;
            c->fake_step_us = (int)x;
        } else if (!strcmp(a, "--fake-fault-after")) {
            if (parse_int(a, v, 1, 1LL << 40, &x)) return 2;
            c->fake_fault_after = (long)x;
        } else {
            fprintf(stderr, "medserve: unknown option '%s' (see medserve --help)\n", a);
            return 2;
        }
        i += takes;
    }
    if (!c->dir && !c->fake) {
        usage(stderr);
        return 2;
    }
    return 0;
}

/* Raises the soft open-file limit to what the hard connection cap needs (a
 * socket and a job's wake-up descriptor per connection, plus FD_RESERVE), so
 * a flood meets the cap (docs/threats.md E5), never EMFILE; 0 ok, -1 after
 * saying why it cannot. */
static int fit_open_files(const http_limits *l)
{
    struct rlimit rl;
    rlim_t need = (rlim_t)http_hard_conns(l) * 2 + FD_RESERVE;
    if (getrlimit(RLIMIT_NOFILE, &rl) || rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= need) return 0;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need) {
        fprintf(stderr,
                "medserve: --max-connections %u needs up to %llu open files (%u connections at the hard cap, "
                "each a socket and a wake-up descriptor, plus %d), but RLIMIT_NOFILE allows %llu: raise it "
                "(ulimit -n, or LimitNOFILE= in the systemd unit) or lower --max-connections\n",
                l->max_conns, (unsigned long long)need, http_hard_conns(l), FD_RESERVE,
                (unsigned long long)rl.rlim_max);
        return -1;
    }
    rl.rlim_cur = need;
    if (setrlimit(RLIMIT_NOFILE, &rl)) {
        fprintf(stderr, "medserve: cannot raise the open-file limit to %llu: %s\n", (unsigned long long)need,
                strerror(errno));
        return -1;
    }
    return 0;
}

/* Model id: --model-name, else the directory's basename. */
static int set_model_name(server *S)
{
    const char *n = S->cfg.model_name;
    char buf[256];
    if (!n) {
        const char *d = S->cfg.dir ? S->cfg.dir : "fake";
        size_t len = strlen(d);
        while (len > 1 && d[len - 1] == '/') len--;
        size_t b = len;
        while (b > 0 && d[b - 1] != '/') b--;
        snprintf(buf, sizeof buf, "%.*s", (int)(len - b), d + b);
        n = buf;
    }
    if (!*n || strlen(n) >= sizeof S->model_name) {
        fprintf(stderr, "medserve: --model-name must have 1..%zu bytes\n", sizeof S->model_name - 1);
        return -1;
    }
    snprintf(S->model_name, sizeof S->model_name, "%s", n);
    return 0;
}

/* Loads the model (or the fake) into S->svc; prints the error on failure. */
static int load(server *S)
{
    ms_error err;
    ms_status st;
    svc *s = NULL;
    if (S->cfg.fake) {
        svc_fake_params fp = {S->cfg.ctx ? S->cfg.ctx : 4096, S->cfg.max_seqs, S->cfg.queue, S->cfg.fake_step_us,
                              S->cfg.fake_fault_after};
        st = svc_fake_open(&fp, &s, &err);
    } else {
        svc_ms_params p = {S->cfg.threads, S->cfg.ctx, S->cfg.max_seqs, S->cfg.queue, S->cfg.q8};
        st = svc_ms_open(S->cfg.dir, &p, &s, &err);
    }
    if (st != MS_OK) {
        fprintf(stderr, "medserve: %s\n", err.message);
        return st == MS_ERR_IO || st == MS_ERR_NOMEM || st == MS_ERR_INTERNAL ? 1 : 2;
    }
    S->svc = s;
    snprintf(S->fingerprint, sizeof S->fingerprint, "fp_ms%s_%.12s", MS_VERSION_STRING,
             s->manifest_sha256[0] ? s->manifest_sha256 : "nomanifest");
    for (char *p = S->fingerprint; *p; p++)
        if (*p == '.') *p = '-';
    return 0;
}

/* Waits up to secs for every job to end; returns the number still running. */
static int wait_jobs(server *S, double secs)
{
    double until = http_now() + secs;
    int n;
    while ((n = job_registry_count(S->jobs)) > 0 && http_now() < until) {
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return n;
}

/* What log_watch has said so far. */
typedef struct log_watch_state {
    uint64_t seen_lost;
    int warned;
    double last_warn, last_fail;
} log_watch_state;

/* Says on stderr, once, that the request log cannot be written, and when it
 * has been writable again for 2 s (so a nearly full disk that takes some
 * lines and not others is one outage); a further outage within a minute is
 * not said (the counter on /metrics has every lost line). */
static void log_watch(server *S, log_watch_state *w)
{
    const char *path = S->cfg.log_path ? S->cfg.log_path : "(standard error)";
    uint64_t lost = reqlog_errors(S->log);
    int ok = reqlog_writable(S->log), failed = !ok || lost != w->seen_lost;
    double now = http_now();
    w->seen_lost = lost;
    if (failed) w->last_fail = now;
    if (failed && !w->warned && (w->last_warn == 0 || now - w->last_warn >= 60)) {
        int e = reqlog_last_errno(S->log);
        fprintf(stderr, "medserve: --log %s: cannot write the request log (%s); %s\n", path,
                e ? strerror(e) : "unknown error",
                S->cfg.log_required ? "refusing new requests with 503 until it can be written (--log-required)"
                                    : "still serving; lost lines are counted in medserve_log_write_errors_total");
        w->warned = 1;
        w->last_warn = now;
    } else if (w->warned && ok && now - w->last_fail >= 2) {
        fprintf(stderr,
                "medserve: --log %s: the request log is writable again (%llu lines lost in all; see its "
                "log_gap line)\n",
                path, (unsigned long long)lost);
        w->warned = 0;
    }
}

/* Serves until a signal or an engine fault; returns the exit code. */
static int serve_loop(server *S, const sigset_t *sigs)
{
    log_watch_state lw = {0, 0, 0, 0};
    for (;;) {
        struct timespec ts = {0, 200 * 1000 * 1000};
        int sig = sigtimedwait(sigs, NULL, &ts);
        log_watch(S, &lw);
        if (__atomic_load_n(&S->fatal, __ATOMIC_SEQ_CST)) {
            fprintf(stderr, "medserve: engine fault; ending every request and exiting\n");
            srv_state_set(S, SRV_DRAINING);
            job_registry_abort(S->jobs, "the engine failed; the server is restarting");
            wait_jobs(S, ABORT_GRACE_S);
            return 1;
        }
        if (sig == SIGTERM || sig == SIGINT) break;
    }
    fprintf(stderr, "medserve: draining (%d requests in flight, up to %g s)\n", job_registry_count(S->jobs),
            S->cfg.drain_timeout_s);
    srv_state_set(S, SRV_DRAINING);
    int left = wait_jobs(S, S->cfg.drain_timeout_s);
    if (left > 0) {
        fprintf(stderr, "medserve: drain timeout; ending %d requests with an error\n", left);
        job_registry_abort(S->jobs, "the server is shutting down (drain timeout reached)");
        wait_jobs(S, ABORT_GRACE_S);
    }
    return __atomic_load_n(&S->fatal, __ATOMIC_SEQ_CST) ? 1 : 0;
}

/* Entry point of `medserve DIR`: see the top of this file. */
int serve_main(int argc, char **argv)
{
    server S;
    memset(&S, 0, sizeof S);
    int rc = parse_args(argc, argv, &S.cfg);
    if (rc) return rc < 0 ? 0 : rc;
    if (set_model_name(&S)) return 2;
    if (fit_open_files(&S.cfg.lim)) return 2;
    /* signals are taken synchronously by the main thread; block them before
     * any thread starts so every thread inherits the mask */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGXFSZ, SIG_IGN); /* a file size limit fails the log's write (counted) instead of killing */
    ms_error err;
    http_server *hs = NULL;
    rc = 1;
    if (S.cfg.api_key_file && auth_load(S.cfg.api_key_file, &S.auth, &err) != MS_OK) {
        fprintf(stderr, "medserve: %s\n", err.message);
        rc = 2;
        goto out;
    }
    if (reqlog_open(S.cfg.log_path, S.cfg.log_required ? REQLOG_HEADROOM : 0, &S.log, &err) != MS_OK) {
        fprintf(stderr, "medserve: %s\n", err.message);
        rc = 2;
        goto out;
    }
    if (reqlog_repaired(S.log))
        fprintf(stderr,
                "medserve: --log %s: removed a torn last line (%llu bytes) left by a crash; see its "
                "log_repaired line\n",
                S.cfg.log_path, (unsigned long long)reqlog_repaired(S.log));
    S.metrics = metrics_create();
    S.jobs = job_registry_create();
    if (!S.metrics || !S.jobs) {
        fprintf(stderr, "medserve: out of memory\n");
        goto out;
    }
    S.created = time(NULL);
    srv_state_set(&S, SRV_LOADING);
    http_handlers h;
    routes_handlers(&S, &h);
    hs = http_start(S.cfg.host, S.cfg.port, &S.cfg.lim, &h, &err);
    if (!hs) {
        fprintf(stderr, "medserve: %s\n", err.message);
        rc = err.status == MS_ERR_INVALID ? 2 : 1;
        goto out;
    }
    fprintf(stderr, "medserve: listening on http://%s%s%s:%d (loading %s)\n", strchr(S.cfg.host, ':') ? "[" : "",
            S.cfg.host, strchr(S.cfg.host, ':') ? "]" : "", http_port(hs), S.cfg.fake ? "the fake engine" : S.cfg.dir);
    char proxies[2048];
    http_format_trusted(&S.cfg.lim, proxies, sizeof proxies);
    fprintf(stderr,
            "medserve: limits: %u connections served (more get 503; closed unanswered past %u), %u per client "
            "address (more get 429; a direct peer's connections closed unanswered past %u), request heads within "
            "%u s; trusted proxies: %s\n",
            S.cfg.lim.max_conns, http_hard_conns(&S.cfg.lim), S.cfg.lim.max_per_ip, http_hard_per_ip(&S.cfg.lim),
            S.cfg.lim.header_s, proxies);
    if (!S.auth) fprintf(stderr, "medserve: no --api-key-file: every route is open\n");
    if ((rc = load(&S)) != 0) goto out;
    srv_state_set(&S, SRV_READY);
    fprintf(stderr, "medserve: ready: model '%s', context %d, %d keys\n", S.model_name, S.svc->n_ctx,
            auth_count(S.auth));
    rc = serve_loop(&S, &sigs);
out:
    http_stop(hs);   /* closes connections; joins their threads */
    svc_free(S.svc); /* engine: cancels what is left, joins */
    reqlog_close(S.log);
    job_registry_free(S.jobs);
    metrics_free(S.metrics);
    auth_free(S.auth);
    if (rc == 0) fprintf(stderr, "medserve: stopped\n");
    return rc;
}
