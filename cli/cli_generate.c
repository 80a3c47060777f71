/* cli_generate.c: `medserve generate DIR`: one-shot local generation through
 * the public library API (ms_model_load, ms_chat_tokenize, ms_engine_*).
 * The prompt is a chat (--prompt with optional --system, or --messages FILE,
 * an OpenAI-style JSON array) rendered with the model's Qwen3 template so that
 * message text can never produce control tokens, or raw text (--raw, encoded
 * like HF tokenizers, added tokens included). Sampling defaults come from
 * generation_config.json; flags override them (--temperature 0 = greedy; a
 * positive --temperature turns sampling on). Text is streamed to stdout as
 * it is generated; a one-line summary (tokens, prefill and decode tok/s, the
 * seed) goes to stderr. Ctrl-C cancels the generation and still prints the
 * summary. Exit 0 ok, 1 runtime failure, 2 bad usage or bad input, 130 after
 * Ctrl-C. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/err.h"
#include "base/json.h"
#include "cli.h"
#include "medserve.h"
#include "text/chat.h"

#define GEN_MAX_MESSAGES_FILE ((size_t)64 << 20)
#define GEN_DEFAULT_MAX_TOKENS 512

/* Prints the options. */
static void usage(FILE *f)
{
    fprintf(f,
            "usage: medserve generate DIR (--prompt TEXT | --messages FILE) [options]\n"
            "  --prompt TEXT            user message (or raw text with --raw)\n"
            "  --system TEXT            system message before the prompt or messages\n"
            "  --messages FILE          OpenAI-style JSON array of messages\n"
            "  --raw                    --prompt is raw model input, no chat template\n"
            "  --no-think               disable thinking (enable_thinking=false)\n"
            "  --max-tokens N           tokens to generate (default: generation_config\n"
            "                           max_new_tokens, else %d, cut to fit the context)\n"
            "  --temperature X          0 = greedy; > 0 samples (default: generation_config)\n"
            "  --top-k N  --top-p X  --min-p X  --repetition-penalty X\n"
            "  --seed N                 sampling seed (default: random, printed in the summary)\n"
            "  --threads N              CPU threads (default: all)\n"
            "  --weights native|q8      q8: quantise weights to int8 (per-row scales) at load\n"
            "  --ctx N                  context tokens (default: prompt + max tokens)\n"
            "Streams the text to stdout; a summary line goes to stderr.\n",
            GEN_DEFAULT_MAX_TOKENS);
}

typedef struct gen_args {
    const char *dir, *prompt, *system, *messages;
    int raw, no_think, threads, ctx, max_tokens, top_k, q8;
    int has_max_tokens, has_temperature, has_top_k, has_top_p, has_min_p, has_rep, has_seed;
    double temperature, top_p, min_p, rep;
    unsigned long long seed;
} gen_args;

/* Parses a whole-string integer in [lo, hi]; 0 on success. */
static int parse_int(const char *s, long lo, long hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = (int)v;
    return 0;
}

/* Parses a whole-string finite number; 0 on success. */
static int parse_num(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

/* 1 if o is an option that takes a value. */
static int is_value_option(const char *o)
{
    static const char *const opts[] = {"--prompt",  "--system", "--messages", "--max-tokens",         "--temperature",
                                       "--top-k",   "--top-p",  "--min-p",    "--repetition-penalty", "--seed",
                                       "--threads", "--ctx",    "--weights"};
    for (size_t i = 0; i < sizeof opts / sizeof *opts; i++)
        if (!strcmp(o, opts[i])) return 1;
    return 0;
}

/* Fills a from argv; returns 0, or 2 after printing the problem. */
static int parse_args(int argc, char **argv, gen_args *a)
{
    memset(a, 0, sizeof *a);
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0, takes = 1;
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
            usage(stdout);
            exit(0); /* main-level code: the CLI may exit on --help */
        } else if (!strcmp(o, "--raw")) {
            a->raw = 1, takes = 0;
        } else if (!strcmp(o, "--no-think")) {
            a->no_think = 1, takes = 0;
        } else if (o[0] == '-' && is_value_option(o) && !v) {
            fprintf(stderr, "medserve generate: %s needs a value\n", o);
            return 2;
        } else if (!strcmp(o, "--prompt")) {
            a->prompt = v;
        } else if (!strcmp(o, "--system")) {
            a->system = v;
        } else if (!strcmp(o, "--messages")) {
            a->messages = v;
        } else if (!strcmp(o, "--max-tokens")) {
            bad = parse_int(v, 1, INT_MAX, &a->max_tokens), a->has_max_tokens = 1;
        } else if (!strcmp(o, "--temperature")) {
            bad = parse_num(v, &a->temperature) || a->temperature < 0, a->has_temperature = 1;
        } else if (!strcmp(o, "--top-k")) {
            bad = parse_int(v, 0, INT_MAX, &a->top_k), a->has_top_k = 1;
        } else if (!strcmp(o, "--top-p")) {
            bad = parse_num(v, &a->top_p), a->has_top_p = 1;
        } else if (!strcmp(o, "--min-p")) {
            bad = parse_num(v, &a->min_p), a->has_min_p = 1;
        } else if (!strcmp(o, "--repetition-penalty")) {
            bad = parse_num(v, &a->rep), a->has_rep = 1;
        } else if (!strcmp(o, "--seed")) {
            char *end;
            errno = 0;
            a->seed = strtoull(v, &end, 10);
            bad = errno || end == v || *end || v[0] == '-';
            a->has_seed = 1;
        } else if (!strcmp(o, "--threads")) {
            bad = parse_int(v, 1, 1024, &a->threads);
        } else if (!strcmp(o, "--ctx")) {
            bad = parse_int(v, 1, INT_MAX, &a->ctx);
        } else if (!strcmp(o, "--weights")) {
            bad = strcmp(v, "native") && strcmp(v, "q8");
            a->q8 = !strcmp(v, "q8");
        } else if (o[0] == '-') {
            fprintf(stderr, "medserve generate: unknown option %s (see --help)\n", o);
            return 2;
        } else if (!a->dir) {
            a->dir = o, takes = 0;
        } else {
            fprintf(stderr, "medserve generate: unexpected argument %s\n", o);
            return 2;
        }
        if (bad) {
            fprintf(stderr, "medserve generate: bad value for %s: '%s'\n", o, v);
            return 2;
        }
        i += takes;
    }
    if (!a->dir) {
        usage(stderr);
        return 2;
    }
    if (!!a->prompt + !!a->messages != 1) {
        fprintf(stderr, "medserve generate: give exactly one of --prompt and --messages\n");
        return 2;
    }
    if (a->raw && (a->messages || a->system || a->no_think)) {
        fprintf(stderr, "medserve generate: --raw takes --prompt only (no --system, --messages, --no-think)\n");
        return 2;
    }
    return 0;
}

/* Exit code for a library status: bad input 2, runtime failure 1. */
static int exit_code(ms_status st)
{
    return st == MS_ERR_NOMEM || st == MS_ERR_INTERNAL ? 1 : 2;
}

/* Builds the prompt ids from --raw/--prompt/--system/--messages. */
static ms_status build_prompt(const ms_model *m, const gen_args *a, int32_t **ids, size_t *n, ms_error *err)
{
    if (a->raw) return ms_tokenize(m, a->prompt, strlen(a->prompt), 1, ids, n, err);
    cJSON *root = NULL;
    chat_conv conv = {0};
    ms_message *msgs = NULL;
    size_t n_msgs = 0;
    ms_status st = MS_OK;
    if (a->messages) {
        root = json_load_file(a->messages, GEN_MAX_MESSAGES_FILE, err);
        if (!root) return err ? err->status : MS_ERR_FORMAT;
        if (!cJSON_IsArray(root)) {
            st = ms_seterr(err, MS_ERR_INVALID, "%s: expected a JSON array of messages", a->messages);
            goto out;
        }
        if ((st = chat_conv_from_json(root, NULL, &conv, a->messages, err)) != MS_OK) goto out;
        if (a->system && conv.n > 0 && conv.msgs[0].role && !strcmp(conv.msgs[0].role, "system")) {
            st = ms_seterr(err, MS_ERR_INVALID, "%s: starts with a system message; drop --system or that message",
                           a->messages);
            goto out;
        }
    }
    msgs = calloc(conv.n + 2, sizeof *msgs);
    if (!msgs) {
        st = ms_seterr(err, MS_ERR_NOMEM, "out of memory");
        goto out;
    }
    if (a->system) msgs[n_msgs++] = (ms_message){.role = "system", .content = a->system};
    for (size_t i = 0; i < conv.n; i++)
        msgs[n_msgs++] = (ms_message){conv.msgs[i].role, conv.msgs[i].content, conv.msgs[i].reasoning_content,
                                      conv.msgs[i].tool_calls_json};
    if (a->prompt) msgs[n_msgs++] = (ms_message){.role = "user", .content = a->prompt};
    st = ms_chat_tokenize(m, msgs, n_msgs, conv.tools_json, 1, a->no_think ? 0 : -1, ids, n, NULL, err);
out:
    free(msgs);
    chat_conv_free(&conv);
    cJSON_Delete(root);
    return st;
}

/* ---- the generation, watched from the token callback ---------------------- */

static volatile sig_atomic_t g_interrupted;

/* Ctrl-C: ask the token callback to cancel. */
static void on_sigint(int sig)
{
    (void)sig;
    g_interrupted = 1;
}

typedef struct gen_state {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
    struct timespec t_submit, t_first, t_last;
    size_t n_prompt, n_generated;
    ms_finish finish;
    ms_status status;
    char error[512];
    int last_newline;
} gen_state;

/* Seconds from a to b. */
static double secs(struct timespec a, struct timespec b)
{
    return (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
}

/* Streams text to stdout and records timings; asks to stop after Ctrl-C. */
static int on_token(const ms_token_event *ev, void *user)
{
    gen_state *g = user;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (ev->text_len) {
        fwrite(ev->text, 1, ev->text_len, stdout);
        fflush(stdout);
        g->last_newline = ev->text[ev->text_len - 1] == '\n';
    }
    pthread_mutex_lock(&g->mu);
    if (ev->token >= 0) {
        if (ev->n_generated == 1) g->t_first = now;
        g->t_last = now;
    }
    if (ev->finish != MS_FINISH_NONE) {
        g->done = 1;
        g->finish = ev->finish;
        g->status = ev->status;
        g->n_prompt = ev->n_prompt;
        g->n_generated = ev->n_generated;
        snprintf(g->error, sizeof g->error, "%s", ev->error ? ev->error : "");
        pthread_cond_signal(&g->cv);
    }
    pthread_mutex_unlock(&g->mu);
    return g_interrupted != 0;
}

/* The summary word for a finish reason. */
static const char *finish_name(ms_finish f)
{
    switch (f) {
    case MS_FINISH_STOP: return "stop";
    case MS_FINISH_LENGTH: return "length";
    case MS_FINISH_CANCELLED: return "cancelled";
    case MS_FINISH_ERROR: return "error";
    default: return "none";
    }
}

/* Applies the sampling flags over the generation_config defaults. */
static ms_sampling sampling_of(const ms_model *m, const gen_args *a)
{
    ms_sampling s = ms_sampling_default(m);
    if (a->has_temperature) {
        s.temperature = (float)a->temperature;
        s.greedy = a->temperature == 0.0;
    }
    if (a->has_top_k) s.top_k = a->top_k;
    if (a->has_top_p) s.top_p = (float)a->top_p;
    if (a->has_min_p) s.min_p = (float)a->min_p;
    if (a->has_rep) s.repetition_penalty = (float)a->rep;
    if (a->has_seed) {
        s.seed = a->seed;
    } else {
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        s.seed = ((uint64_t)t.tv_sec * 1000000007ull) ^ (uint64_t)t.tv_nsec ^ ((uint64_t)getpid() << 32);
    }
    return s;
}

/* Submits req, waits for its final event and prints the summary; returns the exit code. */
static int run(ms_engine *e, const ms_request *req)
{
    gen_state g = {.finish = MS_FINISH_NONE};
    pthread_mutex_init(&g.mu, NULL);
    pthread_cond_init(&g.cv, NULL);
    struct sigaction sa, old_sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, &old_sa);
    clock_gettime(CLOCK_MONOTONIC, &g.t_submit);
    ms_error err = {0};
    uint64_t id = 0;
    int rc = 0;
    ms_status st = ms_engine_submit(e, req, on_token, &g, &id, &err);
    if (st != MS_OK) {
        fprintf(stderr, "medserve generate: %s\n", err.message);
        rc = exit_code(st);
    } else {
        pthread_mutex_lock(&g.mu);
        while (!g.done) pthread_cond_wait(&g.cv, &g.mu);
        pthread_mutex_unlock(&g.mu);
        if (isatty(STDOUT_FILENO) && !g.last_newline) fputc('\n', stdout);
        fflush(stdout);
        double prefill = g.n_generated ? secs(g.t_submit, g.t_first) : 0;
        double decode = g.n_generated > 1 ? secs(g.t_first, g.t_last) : 0;
        char seed[40] = "greedy";
        if (!req->sampling.greedy && req->sampling.temperature > 0)
            snprintf(seed, sizeof seed, "seed %llu", (unsigned long long)req->sampling.seed);
        fprintf(stderr,
                "[medserve] prompt %zu tokens, generated %zu tokens (finish: %s), prefill %.1f tok/s "
                "(%.3f s), decode %.2f tok/s (%.3f s), %s\n",
                g.n_prompt, g.n_generated, finish_name(g.finish), prefill > 0 ? (double)g.n_prompt / prefill : 0.0,
                prefill, decode > 0 ? (double)(g.n_generated - 1) / decode : 0.0, decode, seed);
        if (g.finish == MS_FINISH_ERROR) {
            fprintf(stderr, "medserve generate: %s\n", g.error);
            rc = 1;
        } else if (g.finish == MS_FINISH_CANCELLED && g_interrupted) {
            rc = 130; /* the shell's code for a Ctrl-C */
        }
    }
    sigaction(SIGINT, &old_sa, NULL);
    pthread_mutex_destroy(&g.mu);
    pthread_cond_destroy(&g.cv);
    return rc;
}

/* medserve generate: load, build the prompt, generate, summarise. */
int cli_generate(int argc, char **argv)
{
    gen_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc;
    ms_error err = {0};
    ms_load_params lp = ms_load_params_default();
    lp.n_threads = a.threads;
    if (a.q8) lp.weights = MS_WEIGHTS_Q8;
    ms_model *m = ms_model_load(a.dir, &lp, &err);
    if (!m) {
        fprintf(stderr, "medserve generate: %s\n", err.message);
        return exit_code(err.status);
    }
    int32_t *ids = NULL;
    size_t n_ids = 0;
    ms_engine *e = NULL;
    ms_model_info info;
    ms_model_get_info(m, &info);
    ms_status st = build_prompt(m, &a, &ids, &n_ids, &err);
    if (st != MS_OK) {
        fprintf(stderr, "medserve generate: %s\n", err.message);
        rc = exit_code(st);
        goto out;
    }
    if (n_ids == 0) {
        fprintf(stderr, "medserve generate: the prompt encodes to no tokens\n");
        rc = 2;
        goto out;
    }
    if (a.ctx > info.max_position_embeddings) {
        fprintf(stderr, "medserve generate: --ctx %d exceeds max_position_embeddings %d\n", a.ctx,
                info.max_position_embeddings);
        rc = 2;
        goto out;
    }
    long limit = a.ctx ? a.ctx : info.max_position_embeddings;
    long room = limit - (long)n_ids;
    int max_tokens = a.max_tokens;
    if (!a.has_max_tokens) { /* the default is cut to fit the context */
        max_tokens = info.max_new_tokens > 0 ? info.max_new_tokens : GEN_DEFAULT_MAX_TOKENS;
        if (room < max_tokens) max_tokens = room > 0 ? (int)room : 1;
    }
    if (room < 1 || (long)max_tokens > room) {
        fprintf(stderr,
                "medserve generate: prompt of %zu tokens + max_tokens %d exceeds the context of %ld "
                "tokens\n",
                n_ids, max_tokens, limit);
        rc = 2;
        goto out;
    }
    ms_engine_params ep = ms_engine_params_default();
    ep.max_seqs = 1;
    ep.max_queue = 0;
    ep.n_ctx = a.ctx ? a.ctx : (int)n_ids + max_tokens;
    e = ms_engine_create(m, &ep, &err);
    if (!e) {
        fprintf(stderr, "medserve generate: %s\n", err.message);
        rc = exit_code(err.status);
        goto out;
    }
    ms_request req = {.prompt = ids, .n_prompt = n_ids, .max_tokens = max_tokens};
    req.sampling = sampling_of(m, &a);
    rc = run(e, &req);
out:
    ms_engine_free(e);
    free(ids);
    ms_model_free(m);
    return rc;
}
