/* main.c: the lora-merge command line. Parses arguments into mg_opts, prints
 * warnings and the progress line on stderr, runs mg_run and maps the result
 * to an exit status: 0 done, 2 refused input (bad or unsupported adapter,
 * base or arguments), 1 I/O or other failure, 130 interrupted. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/st_shard.h"
#include "mg.h"
#include "progress.h"

static volatile int g_cancel;
static int g_quiet;
static mg_bar g_bar;

/* SIGINT/SIGTERM: ask the merge to stop (it cleans up its temp dir). */
static void on_signal(int sig)
{
    (void)sig;
    g_cancel = 1;
}

/* The log sink: warnings always, info unless --quiet. */
static void log_line(void *user, int level, const char *msg)
{
    (void)user;
    if (level == MG_LOG_INFO && g_quiet) return;
    mg_bar_clear(&g_bar);
    fprintf(stderr, "lora-merge: %s%s\n", level == MG_LOG_WARN ? "warning: " : "", msg);
}

/* Prints the usage text. */
static void usage(FILE *f)
{
    fprintf(f, "usage: lora-merge --base DIR --adapter DIR[:WEIGHT] [--adapter DIR[:WEIGHT] ...] --out DIR\n"
               "                  [--dtype bf16|f16|f32] [--max-shard-size 5GB] [--force] [--threads N] [--quiet]\n"
               "\n"
               "Merges PEFT LoRA adapters (adapter_config.json + adapter_model.safetensors) into a Hugging Face\n"
               "Qwen3 base directory, as PEFT merge_and_unload + save_pretrained would, and writes a\n"
               "self-contained export directory with a medserve-manifest.json of SHA-256 hashes.\n"
               "Several adapters are merged in order; WEIGHT multiplies an adapter's scale (default 1).\n"
               "--dtype defaults to the base config dtype (float32 becomes bf16, as LLaMA-Factory does).\n"
               "The export is built in a temp dir beside --out, verified, then renamed into place;\n"
               "an existing --out is replaced only with --force. Exit: 0 ok, 2 refused input, 1 failure.\n");
}

/* Splits "DIR[:WEIGHT]"; the weight is taken only when the text after the last
 * ':' is a whole number. */
static int parse_adapter(char *arg, mg_adapter_arg *a)
{
    a->dir = arg;
    a->weight = 1.0;
    char *c = strrchr(arg, ':');
    if (!c || c == arg) return 0;
    char *end;
    errno = 0;
    double w = strtod(c + 1, &end);
    if (c[1] && !*end && !errno) {
        if (!isfinite(w)) return -1;
        *c = '\0';
        a->weight = w;
    }
    return 0;
}

/* Exit status for a failure. */
static int exit_code(ms_status s)
{
    switch (s) {
    case MS_ERR_INVALID:
    case MS_ERR_FORMAT:
    case MS_ERR_UNSUPPORTED:
    case MS_ERR_NOTFOUND: return 2;
    case MS_ERR_CANCELLED: return 130;
    default: return 1;
    }
}

int main(int argc, char **argv)
{
    mg_opts o;
    memset(&o, 0, sizeof o);
    o.out_dtype = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--version")) {
            printf("%s %s\n", MG_TOOL_NAME, MS_VERSION_STRING);
            return 0;
        } else if (!strcmp(a, "--force")) {
            o.force = 1;
        } else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
            g_quiet = 1;
        } else if (strcmp(a, "--base") && strcmp(a, "--out") && strcmp(a, "--adapter") && strcmp(a, "--dtype") &&
                   strcmp(a, "--max-shard-size") && strcmp(a, "--threads")) {
            fprintf(stderr, "lora-merge: error: unknown argument %s\n", a);
            usage(stderr);
            return 2;
        } else if (!v) {
            fprintf(stderr, "lora-merge: error: %s needs a value\n", a);
            usage(stderr);
            return 2;
        } else if (!strcmp(a, "--base")) {
            o.base_dir = v, i++;
        } else if (!strcmp(a, "--out")) {
            o.out_dir = v, i++;
        } else if (!strcmp(a, "--adapter")) {
            if (o.n_adapters == MG_MAX_ADAPTERS) {
                fprintf(stderr, "lora-merge: error: at most %d adapters\n", MG_MAX_ADAPTERS);
                return 2;
            }
            if (parse_adapter(v, &o.adapters[o.n_adapters++])) {
                fprintf(stderr, "lora-merge: error: --adapter %s: the weight must be finite\n", v);
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--dtype")) {
            if (!strcmp(v, "bf16") || !strcmp(v, "bfloat16")) o.out_dtype = ST_BF16;
            else if (!strcmp(v, "f16") || !strcmp(v, "fp16") || !strcmp(v, "float16")) o.out_dtype = ST_F16;
            else if (!strcmp(v, "f32") || !strcmp(v, "fp32") || !strcmp(v, "float32")) o.out_dtype = ST_F32;
            else {
                fprintf(stderr, "lora-merge: error: --dtype %s: use bf16, f16 or f32\n", v);
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--max-shard-size")) {
            if (st_parse_size(v, &o.max_shard_bytes, NULL)) {
                fprintf(stderr, "lora-merge: error: --max-shard-size %s: use e.g. 5GB, 500MB or a byte count\n", v);
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--threads")) {
            char *end;
            long t = strtol(v, &end, 10);
            if (*end || t < 1 || t > 4096) {
                fprintf(stderr, "lora-merge: error: --threads %s: a number from 1 to 4096\n", v);
                return 2;
            }
            o.threads = (int)t;
            i++;
        } else {
            fprintf(stderr, "lora-merge: error: unknown argument %s\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!o.base_dir || !o.out_dir || !o.n_adapters) {
        fprintf(stderr, "lora-merge: error: --base, --adapter and --out are required\n");
        usage(stderr);
        return 2;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    mg_bar_init(&g_bar, stderr);
    if (g_quiet) g_bar.enabled = 0;
    o.log.fn = log_line;
    o.progress = mg_bar_update;
    o.progress_user = &g_bar;
    o.cancel = &g_cancel;
    /* Test hook (tests/e2e): fail the n-th checked I/O step. */
    const char *fa = getenv("MEDSERVE_MERGE_FAIL_AT");
    if (fa) o.fail_at_step = atoi(fa);
    mg_result res;
    ms_error err = {0};
    double t0 = mg_now();
    ms_status st = mg_run(&o, &res, &err);
    mg_bar_clear(&g_bar);
    if (st) {
        fprintf(stderr, "lora-merge: error: %s\n", err.message);
        return exit_code(st);
    }
    if (!g_quiet)
        fprintf(stderr,
                "lora-merge: wrote %s: %d files, %.3f GB, %zu tensors (%zu changed)%s in %.1f s (merge %.1f with "
                "inputs hashed meanwhile in %.1f, fsync %.1f, verify %.1f); manifest sha256 %s\n",
                o.out_dir, res.n_files, res.bytes_written / 1e9, res.tensors_written, res.tensors_changed,
                res.untied ? ", embeddings untied" : "", mg_now() - t0, res.t_merge, res.t_hash, res.t_sync,
                res.t_verify, res.manifest_sha256);
    return 0;
}
