/* synth_lora.c: writes a synthetic PEFT LoRA adapter for a Qwen3 base, for
 * demos and benchmarks of lora-merge: adapter_config.json with the fields
 * PEFT 0.21 writes (sorted keys, indent 2) and adapter_model.safetensors
 * with PEFT's key names ("base_model.model." + module + ".lora_A.weight" /
 * ".lora_B.weight"), __metadata__ {"format":"pt"}, F32 unless --dtype.
 *
 * Values are deterministic functions of (seed, tensor name, index): A is
 * uniform in ±1/sqrt(in) (PEFT's kaiming-uniform bound), B is about
 * N(0, std²) (Irwin-Hall of four 16-bit uniforms), so unlike a freshly
 * initialised adapter (B = 0) the merge changes the weights. Tensors are
 * generated in chunks and streamed: memory stays small for any shape.
 *
 * Does not: train anything, write DoRA magnitudes, embedding LoRA or
 * modules_to_save tensors (tests/ref/gen_merge_fixtures.py covers those). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/err.h"
#include "base/half.h"
#include "io/st.h"
#include "model/config.h"

#define CHUNK (1u << 20)
#define SUM4_SD 37837.22723720648 /* sd of a sum of four uniform 16-bit integers */
#define MAX_TARGETS 7

static const char *const ALL7[MAX_TARGETS] = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                              "gate_proj", "up_proj", "down_proj"};

typedef struct opts {
    const char *base, *out, *targets;
    int r, force, rslora, quiet;
    double alpha, std;
    uint64_t seed;
    st_dtype dtype;
    int layers[1024], n_layers; /* layers_to_transform; 0 = all */
} opts;

/* splitmix64 finaliser. */
static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* FNV-1a of a name, to give every tensor its own stream. */
static uint64_t name_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

typedef struct gen {
    const char *name;
    int is_a; /* A: uniform; B: gaussian */
    int64_t rows, cols;
} gen;

/* Element i of a tensor as float. */
static float value(const opts *o, const gen *g, uint64_t key, uint64_t i)
{
    uint64_t x = mix(key ^ mix(i));
    if (g->is_a) {
        double u = (double)(x >> 11) * 0x1p-53 * 2 - 1;
        return (float)(u / sqrt((double)g->cols));
    }
    int64_t s = (int64_t)(x & 0xffff) + (int64_t)((x >> 16) & 0xffff) + (int64_t)((x >> 32) & 0xffff) +
                (int64_t)(x >> 48) - 2 * 65535;
    return (float)((double)s / SUM4_SD * o->std);
}

/* Streams one tensor's bytes. */
static ms_status write_tensor(const opts *o, const gen *g, st_writer *w, ms_error *err)
{
    uint64_t n = (uint64_t)g->rows * (uint64_t)g->cols, key = mix(o->seed) ^ name_hash(g->name);
    size_t es = st_dtype_size(o->dtype);
    unsigned char *buf = malloc(CHUNK * es);
    if (!buf) return ms_seterr(err, MS_ERR_NOMEM, "out of memory");
    ms_status st = MS_OK;
    for (uint64_t i0 = 0; i0 < n && !st; i0 += CHUNK) {
        uint64_t m = n - i0 < CHUNK ? n - i0 : CHUNK;
        for (uint64_t j = 0; j < m; j++) {
            float f = value(o, g, key, i0 + j);
            if (o->dtype == ST_F32) memcpy(buf + 4 * j, &f, 4);
            else {
                uint16_t h = o->dtype == ST_BF16 ? half_f32_to_bf16(f) : half_f32_to_f16(f);
                memcpy(buf + 2 * j, &h, 2);
            }
        }
        st = st_writer_write(w, buf, (size_t)m * es, err);
    }
    free(buf);
    return st;
}

/* Whether layer i is selected. */
static int layer_on(const opts *o, int i)
{
    if (!o->n_layers) return 1;
    for (int k = 0; k < o->n_layers; k++)
        if (o->layers[k] == i) return 1;
    return 0;
}

/* Writes adapter_config.json as PEFT does (sorted keys, indent 2). */
static ms_status write_config(const opts *o, const char *const *t, int nt, ms_error *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/adapter_config.json", o->out);
    FILE *f = fopen(path, "w");
    if (!f) return ms_seterr(err, MS_ERR_IO, "%s: %s", path, strerror(errno));
    char layers[8192] = "null";
    if (o->n_layers) {
        size_t p = (size_t)snprintf(layers, sizeof layers, "[");
        for (int k = 0; k < o->n_layers && p < sizeof layers - 16; k++)
            p += (size_t)snprintf(layers + p, sizeof layers - p, "%s\n    %d", k ? "," : "", o->layers[k]);
        snprintf(layers + p, sizeof layers - p, "\n  ]");
    }
    char alpha[64];
    if (o->alpha == floor(o->alpha) && fabs(o->alpha) < 1e15) snprintf(alpha, sizeof alpha, "%.0f", o->alpha);
    else snprintf(alpha, sizeof alpha, "%.17g", o->alpha);
    fprintf(f,
            "{\n  \"alora_invocation_tokens\": null,\n  \"alpha_pattern\": {},\n  \"arrow_config\": null,\n"
            "  \"auto_mapping\": null,\n  \"base_model_name_or_path\": \"%s\",\n  \"bias\": \"none\",\n"
            "  \"corda_config\": null,\n  \"ensure_weight_tying\": false,\n  \"eva_config\": null,\n"
            "  \"exclude_modules\": null,\n  \"fan_in_fan_out\": false,\n  \"inference_mode\": true,\n"
            "  \"init_lora_weights\": true,\n  \"kasa_config\": null,\n  \"layer_replication\": null,\n"
            "  \"layers_pattern\": null,\n  \"layers_to_transform\": %s,\n  \"loftq_config\": {},\n"
            "  \"lora_alpha\": %s,\n  \"lora_bias\": false,\n  \"lora_dropout\": 0.0,\n  \"lora_ga_config\": null,\n"
            "  \"megatron_config\": null,\n  \"megatron_core\": \"megatron.core\",\n  \"modules_to_save\": null,\n"
            "  \"monteclora_config\": null,\n  \"peft_type\": \"LORA\",\n  \"peft_version\": \"0.21.2\",\n"
            "  \"qalora_group_size\": 16,\n  \"r\": %d,\n  \"rank_pattern\": {},\n  \"revision\": null,\n"
            "  \"target_modules\": [",
            "synthetic", layers, alpha, o->r);
    for (int k = 0; k < nt; k++) fprintf(f, "%s\n    \"%s\"", k ? "," : "", t[k]);
    fprintf(f,
            "\n  ],\n  \"target_parameters\": null,\n  \"task_type\": \"CAUSAL_LM\",\n"
            "  \"trainable_token_indices\": null,\n  \"use_bdlora\": null,\n  \"use_dora\": false,\n"
            "  \"use_qalora\": false,\n  \"use_rslora\": %s,\n  \"velora_config\": null\n}",
            o->rslora ? "true" : "false");
    if (fclose(f)) return ms_seterr(err, MS_ERR_IO, "%s: write failed", path);
    return MS_OK;
}

/* Builds the tensor list and writes both files. */
static ms_status run(const opts *o, ms_error *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", o->base);
    qwen3_config c;
    ms_status st = config_load(path, &c, err);
    if (st) return st;
    const char *t[MAX_TARGETS];
    int nt = 0;
    if (!strcmp(o->targets, "all") || !strcmp(o->targets, "all-linear")) {
        for (int k = 0; k < MAX_TARGETS; k++) t[nt++] = ALL7[k];
    } else {
        char tmp[256];
        snprintf(tmp, sizeof tmp, "%s", o->targets);
        for (char *s = strtok(tmp, ","); s; s = strtok(NULL, ",")) {
            int k = 0;
            while (k < MAX_TARGETS && strcmp(ALL7[k], s)) k++;
            if (k == MAX_TARGETS) return ms_seterr(err, MS_ERR_INVALID, "--targets: unknown module %s", s);
            t[nt++] = ALL7[k];
        }
    }
    int64_t H = c.hidden_size, q = (int64_t)c.n_heads * c.head_dim, kv = (int64_t)c.n_kv_heads * c.head_dim;
    int64_t I = c.intermediate_size;
    size_t cap = (size_t)c.n_layers * (size_t)nt * 2;
    gen *g = calloc(cap ? cap : 1, sizeof *g);
    st_wtensor *w = calloc(cap ? cap : 1, sizeof *w);
    char(*names)[128] = calloc(cap ? cap : 1, sizeof *names);
    if (!g || !w || !names) {
        free(g), free(w), free(names);
        return ms_seterr(err, MS_ERR_NOMEM, "out of memory");
    }
    size_t n = 0;
    for (int i = 0; i < c.n_layers; i++) {
        if (!layer_on(o, i)) continue;
        for (int k = 0; k < nt; k++) {
            int64_t rows, cols;
            const char *part =
                t[k][0] == 'q' || t[k][0] == 'k' || t[k][0] == 'v' || t[k][0] == 'o' ? "self_attn" : "mlp";
            if (t[k][0] == 'q') rows = q, cols = H;
            else if (t[k][0] == 'k' || t[k][0] == 'v') rows = kv, cols = H;
            else if (t[k][0] == 'o') rows = H, cols = q;
            else if (t[k][0] == 'd') rows = H, cols = I;
            else rows = I, cols = H;
            for (int ab = 0; ab < 2; ab++) {
                snprintf(names[n], sizeof names[n], "base_model.model.model.layers.%d.%s.%s.lora_%c.weight", i, part,
                         t[k], ab ? 'B' : 'A');
                g[n].name = names[n];
                g[n].is_a = !ab;
                g[n].rows = ab ? rows : o->r;
                g[n].cols = ab ? o->r : cols;
                w[n].name = names[n];
                w[n].dtype = o->dtype;
                w[n].ndim = 2;
                w[n].shape[0] = g[n].rows;
                w[n].shape[1] = g[n].cols;
                n++;
            }
        }
    }
    st_writer *wr = NULL;
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", o->out);
    st = st_writer_open(path, w, n, NULL, 0, &wr, err);
    for (size_t k = 0; !st && k < n; k++) st = write_tensor(o, &g[st_writer_order(wr, k)], wr, err);
    if (!st) st = st_writer_finish(wr, err);
    st_writer_abort(wr);
    if (!st) st = write_config(o, t, nt, err);
    if (!st && !o->quiet)
        fprintf(stderr, "synth_lora: wrote %s (%zu tensors, r=%d, alpha=%g, %s)\n", o->out, n, o->r, o->alpha,
                st_dtype_name(o->dtype));
    free(g), free(w), free(names);
    return st;
}

/* Prints the usage text. */
static void usage(FILE *f)
{
    fprintf(
        f, "usage: synth_lora --base DIR --out DIR [--r 16] [--alpha 32] [--targets all|all-linear|q_proj,v_proj,...]\n"
           "                  [--dtype f32|bf16|f16] [--seed N] [--std 0.01] [--rslora] [--layers 0,1,...]\n"
           "                  [--force] [--quiet]\n");
}

int main(int argc, char **argv)
{
    opts o = {.targets = "all", .r = 16, .alpha = 32, .std = 0.01, .seed = 1, .dtype = ST_F32};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--force")) o.force = 1;
        else if (!strcmp(a, "--rslora")) o.rslora = 1;
        else if (!strcmp(a, "--quiet")) o.quiet = 1;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage(stdout), 0;
        else if (!v) return usage(stderr), 2;
        else {
            i++;
            if (!strcmp(a, "--base")) o.base = v;
            else if (!strcmp(a, "--out")) o.out = v;
            else if (!strcmp(a, "--targets")) o.targets = v;
            else if (!strcmp(a, "--r")) o.r = atoi(v);
            else if (!strcmp(a, "--alpha")) o.alpha = strtod(v, NULL);
            else if (!strcmp(a, "--std")) o.std = strtod(v, NULL);
            else if (!strcmp(a, "--seed")) o.seed = strtoull(v, NULL, 10);
            else if (!strcmp(a, "--dtype")) {
                if (!strcmp(v, "f32")) o.dtype = ST_F32;
                else if (!strcmp(v, "bf16")) o.dtype = ST_BF16;
                else if (!strcmp(v, "f16")) o.dtype = ST_F16;
                else return usage(stderr), 2;
            } else if (!strcmp(a, "--layers")) {
                char tmp[8192];
                snprintf(tmp, sizeof tmp, "%s", v);
                for (char *s = strtok(tmp, ","); s && o.n_layers < 1024; s = strtok(NULL, ","))
                    o.layers[o.n_layers++] = atoi(s);
            } else return usage(stderr), 2;
        }
    }
    if (!o.base || !o.out || o.r < 1 || o.r > 65536 || !(o.std >= 0) || !isfinite(o.alpha)) return usage(stderr), 2;
    struct stat sb;
    if (stat(o.out, &sb) == 0 && !o.force) {
        fprintf(stderr, "synth_lora: %s exists (use --force)\n", o.out);
        return 2;
    }
    if (mkdir(o.out, 0755) && errno != EEXIST) {
        fprintf(stderr, "synth_lora: %s: %s\n", o.out, strerror(errno));
        return 1;
    }
    ms_error err = {0};
    ms_status st = run(&o, &err);
    if (st) {
        fprintf(stderr, "synth_lora: %s\n", err.message);
        return st == MS_ERR_IO || st == MS_ERR_NOMEM ? 1 : 2;
    }
    return 0;
}
