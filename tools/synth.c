/* synth.c: writes a complete Hugging Face Qwen3 model directory with
 * deterministic random weights, for tests, demos and benchmarks:
 * config.json (transformers 4.x or 5.x spelling), generation_config.json
 * (Qwen3's values), the tokenizer files copied from --tokenizer DIR, and the
 * weights as model.safetensors or shards + index (runtime/io/st_shard.c).
 *
 * Weights are a pure function of (seed, tensor name, element index):
 * splitmix64 finalisers over a counter, four 16-bit uniforms summed (Irwin-
 * Hall, about N(0,1)) and scaled by --std; norm weights are 1 + --norm-std
 * noise so norm bugs show; biases use --std. Integer arithmetic plus one
 * IEEE multiply per element (no libm), so every machine and thread count
 * gives the same bits. Tensors are generated in 1M-element chunks and
 * streamed to the writer: peak memory is a few MB for any shape (the 8B
 * shape is 16 GB of bf16).
 *
 * Does not: write adapters (tools/synth_lora.c) or GGUF. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/err.h"
#include "base/half.h"
#include "base/json.h"
#include "base/strbuf.h"
#include "io/st.h"
#include "io/st_shard.h"
#include "model/config.h"

#define CHUNK (1u << 20)
/* standard deviation of the sum of four uniform 16-bit integers:
 * sqrt((65536^2 - 1) / 3) */
#define SUM4_SD 37837.22723720648

typedef struct synth_opts {
    const char *out, *tokenizer;
    int hidden, layers, heads, kv_heads, head_dim, inter, vocab, max_pos;
    int tied, bias, style, force, quiet, order;
    double theta, eps, std, norm_std, yarn_factor;
    int yarn_orig;
    st_dtype dtype;
    uint64_t seed, max_shard;
} synth_opts;

/* ---- deterministic values -------------------------------------------- */

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* FNV-1a of the tensor name, mixed with the seed: the tensor's stream key. */
static uint64_t tensor_key(uint64_t seed, const char *name)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) h = (h ^ *p) * 0x100000001b3ull;
    return mix64(seed ^ h);
}

/* Integer in [-131070, 131070], roughly N(0, SUM4_SD), for element i. */
static int32_t centered(uint64_t key, uint64_t i)
{
    uint64_t r = mix64(key + (i + 1) * 0x9E3779B97F4A7C15ull);
    int32_t s =
        (int32_t)(r & 0xffff) + (int32_t)((r >> 16) & 0xffff) + (int32_t)((r >> 32) & 0xffff) + (int32_t)(r >> 48);
    return s - 131070;
}

typedef struct fill_ctx {
    const synth_opts *o;
    const st_wtensor *t;
    uint8_t *buf;
    int quiet;
    uint64_t written, total;
} fill_ctx;

static int is_norm(const char *name)
{
    return strstr(name, "norm.weight") != NULL;
}

/* Streams tensor i: generated CHUNK elements at a time, converted, written. */
static ms_status fill(void *user, size_t i, st_writer *w, ms_error *err)
{
    fill_ctx *c = user;
    const st_wtensor *t = &c->t[i];
    uint64_t numel = 1;
    for (int d = 0; d < t->ndim; d++) numel *= (uint64_t)t->shape[d];
    uint64_t key = tensor_key(c->o->seed, t->name);
    int norm = is_norm(t->name);
    double scale = (norm ? c->o->norm_std : c->o->std) / SUM4_SD, offset = norm ? 1.0 : 0.0;
    size_t esz = st_dtype_size(t->dtype);
    for (uint64_t start = 0; start < numel; start += CHUNK) {
        long long m = (long long)(numel - start < CHUNK ? numel - start : CHUNK);
        uint8_t *buf = c->buf;
        st_dtype dt = t->dtype;
#pragma omp parallel for schedule(static)
        for (long long j = 0; j < m; j++) {
            double v = (double)centered(key, start + (uint64_t)j) * scale;
            float f = (float)(v + offset);
            if (dt == ST_F32) memcpy(buf + 4 * j, &f, 4);
            else {
                uint16_t h = dt == ST_BF16 ? half_f32_to_bf16(f) : half_f32_to_f16(f);
                memcpy(buf + 2 * j, &h, 2);
            }
        }
        ms_status s = st_writer_write(w, buf, (size_t)m * esz, err);
        if (s) return s;
        c->written += (uint64_t)m * esz;
        if (!c->quiet && isatty(2))
            fprintf(stderr, "\rsynth: %5.1f%%", c->total ? 100.0 * (double)c->written / (double)c->total : 100.0);
    }
    return MS_OK;
}

/* ---- tensor list (HF state-dict order) -------------------------------- */

typedef struct tlist {
    st_wtensor *t;
    size_t n, cap;
    int oom;
} tlist;

static void add(tlist *l, st_dtype dt, const char *name, int ndim, int64_t a, int64_t b)
{
    if (l->oom) return;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        st_wtensor *q = realloc(l->t, cap * sizeof *q);
        if (!q) {
            l->oom = 1;
            return;
        }
        l->t = q;
        l->cap = cap;
    }
    st_wtensor *x = &l->t[l->n];
    memset(x, 0, sizeof *x);
    x->name = strdup(name);
    if (!x->name) {
        l->oom = 1;
        return;
    }
    x->dtype = dt;
    x->ndim = ndim;
    x->shape[0] = a;
    x->shape[1] = b;
    l->n++;
}

static void build_tensors(const synth_opts *o, tlist *l)
{
    st_dtype dt = o->dtype;
    int64_t H = o->hidden, q = (int64_t)o->heads * o->head_dim, kv = (int64_t)o->kv_heads * o->head_dim;
    char nm[160];
    add(l, dt, "model.embed_tokens.weight", 2, o->vocab, H);
    for (int i = 0; i < o->layers; i++) {
        const char *proj[4] = {"q_proj", "k_proj", "v_proj", "o_proj"};
        int64_t out[4] = {q, kv, kv, H}, in[4] = {H, H, H, q};
        for (int k = 0; k < 4; k++) {
            snprintf(nm, sizeof nm, "model.layers.%d.self_attn.%s.weight", i, proj[k]);
            add(l, dt, nm, 2, out[k], in[k]);
            if (o->bias) {
                snprintf(nm, sizeof nm, "model.layers.%d.self_attn.%s.bias", i, proj[k]);
                add(l, dt, nm, 1, out[k], 0);
            }
        }
        snprintf(nm, sizeof nm, "model.layers.%d.self_attn.q_norm.weight", i);
        add(l, dt, nm, 1, o->head_dim, 0);
        snprintf(nm, sizeof nm, "model.layers.%d.self_attn.k_norm.weight", i);
        add(l, dt, nm, 1, o->head_dim, 0);
        snprintf(nm, sizeof nm, "model.layers.%d.mlp.gate_proj.weight", i);
        add(l, dt, nm, 2, o->inter, H);
        snprintf(nm, sizeof nm, "model.layers.%d.mlp.up_proj.weight", i);
        add(l, dt, nm, 2, o->inter, H);
        snprintf(nm, sizeof nm, "model.layers.%d.mlp.down_proj.weight", i);
        add(l, dt, nm, 2, H, o->inter);
        snprintf(nm, sizeof nm, "model.layers.%d.input_layernorm.weight", i);
        add(l, dt, nm, 1, H, 0);
        snprintf(nm, sizeof nm, "model.layers.%d.post_attention_layernorm.weight", i);
        add(l, dt, nm, 1, H, 0);
    }
    add(l, dt, "model.norm.weight", 1, H, 0);
    if (!o->tied) add(l, dt, "lm_head.weight", 2, o->vocab, H);
}

/* ---- JSON text (Python json.dumps style, indent 2, sorted keys) ------- */

/* Python's repr of a float: shortest round-trip digits, fixed notation for
 * exponents in [-4, 16), ".0" on integral values. */
static void py_float(double v, char *out, size_t cap)
{
    char e[40];
    int p;
    for (p = 1; p <= 17; p++) {
        snprintf(e, sizeof e, "%.*e", p - 1, v);
        if (strtod(e, NULL) == v) break;
    }
    char digits[24];
    int nd = 0, neg = e[0] == '-';
    const char *s = e + neg;
    for (; *s && *s != 'e'; s++)
        if (*s >= '0' && *s <= '9') digits[nd++] = *s;
    int exp = atoi(s + 1);
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    digits[nd] = 0;
    char *o = out;
    size_t left = cap;
#define PUT(...)                                 \
    do {                                         \
        int k_ = snprintf(o, left, __VA_ARGS__); \
        o += k_;                                 \
        left -= (size_t)k_;                      \
    } while (0)
    if (neg) PUT("-");
    if (exp >= -4 && exp < 16) {
        if (exp < 0) {
            PUT("0.");
            for (int i = 0; i < -exp - 1; i++) PUT("0");
            PUT("%s", digits);
        } else {
            for (int i = 0; i <= exp; i++) PUT("%c", i < nd ? digits[i] : '0');
            PUT(".");
            if (nd > exp + 1) PUT("%s", digits + exp + 1);
            else PUT("0");
        }
    } else {
        PUT("%c", digits[0]);
        if (nd > 1) PUT(".%s", digits + 1);
        PUT("e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    }
#undef PUT
}

static const char *dtype_torch(st_dtype t)
{
    return t == ST_BF16 ? "bfloat16" : t == ST_F16 ? "float16" : "float32";
}

static void config_text(const synth_opts *o, strbuf *t)
{
    char th[40], eps[40], yf[40];
    py_float(o->eps, eps, sizeof eps);
    py_float(o->yarn_factor, yf, sizeof yf);
    const char *b = o->bias ? "true" : "false", *tie = o->tied ? "true" : "false";
    sb_printf(t, "{\n  \"architectures\": [\n    \"Qwen3ForCausalLM\"\n  ],\n");
    sb_printf(t, "  \"attention_bias\": %s,\n  \"attention_dropout\": 0.0,\n  \"bos_token_id\": 151643,\n", b);
    if (o->style == 5) sb_printf(t, "  \"dtype\": \"%s\",\n", dtype_torch(o->dtype));
    sb_printf(t, "  \"eos_token_id\": 151645,\n  \"head_dim\": %d,\n  \"hidden_act\": \"silu\",\n", o->head_dim);
    sb_printf(t, "  \"hidden_size\": %d,\n  \"initializer_range\": 0.02,\n  \"intermediate_size\": %d,\n", o->hidden,
              o->inter);
    if (o->style == 5) {
        sb_printf(t, "  \"layer_types\": [\n");
        for (int i = 0; i < o->layers; i++) sb_printf(t, "    \"full_attention\"%s\n", i + 1 < o->layers ? "," : "");
        sb_printf(t, "  ],\n");
    }
    sb_printf(t, "  \"max_position_embeddings\": %d,\n  \"max_window_layers\": %d,\n  \"model_type\": \"qwen3\",\n",
              o->max_pos, o->layers);
    sb_printf(t, "  \"num_attention_heads\": %d,\n  \"num_hidden_layers\": %d,\n  \"num_key_value_heads\": %d,\n",
              o->heads, o->layers, o->kv_heads);
    if (o->style == 5) {
        py_float(o->theta, th, sizeof th);
        sb_printf(t, "  \"pad_token_id\": null,\n  \"rms_norm_eps\": %s,\n  \"rope_parameters\": {\n", eps);
        if (o->yarn_factor > 0)
            sb_printf(t, "    \"factor\": %s,\n    \"original_max_position_embeddings\": %d,\n", yf, o->yarn_orig);
        sb_printf(t, "    \"rope_theta\": %s,\n    \"rope_type\": \"%s\"\n  },\n", th,
                  o->yarn_factor > 0 ? "yarn" : "default");
    } else {
        /* 4.x files carry theta as the integer the Qwen configs use */
        if (o->theta == (double)(long long)o->theta) snprintf(th, sizeof th, "%lld", (long long)o->theta);
        else py_float(o->theta, th, sizeof th);
        sb_printf(t, "  \"rms_norm_eps\": %s,\n", eps);
        if (o->yarn_factor > 0)
            sb_printf(t,
                      "  \"rope_scaling\": {\n    \"factor\": %s,\n    \"original_max_position_embeddings\": %d,\n"
                      "    \"rope_type\": \"yarn\"\n  },\n",
                      yf, o->yarn_orig);
        else sb_printf(t, "  \"rope_scaling\": null,\n");
        sb_printf(t, "  \"rope_theta\": %s,\n", th);
    }
    sb_printf(t, "  \"sliding_window\": null,\n  \"tie_word_embeddings\": %s,\n", tie);
    if (o->style == 4) sb_printf(t, "  \"torch_dtype\": \"%s\",\n", dtype_torch(o->dtype));
    sb_printf(t, "  \"transformers_version\": \"%s\",\n  \"use_cache\": true,\n  \"use_sliding_window\": false,\n",
              o->style == 5 ? "5.0.0" : "4.51.0");
    sb_printf(t, "  \"vocab_size\": %d\n}\n", o->vocab);
}

static void gen_config_text(const synth_opts *o, strbuf *t)
{
    sb_printf(
        t,
        "{\n  \"bos_token_id\": 151643,\n  \"do_sample\": true,\n  \"eos_token_id\": [\n    151645,\n    151643\n  ],\n"
        "  \"pad_token_id\": 151643,\n  \"temperature\": 0.6,\n  \"top_k\": 20,\n  \"top_p\": 0.95,\n"
        "  \"transformers_version\": \"%s\"\n}\n",
        o->style == 5 ? "5.0.0" : "4.51.0");
}

/* ---- files ------------------------------------------------------------- */

static ms_status write_text(const char *dir, const char *name, const strbuf *t, ms_error *err)
{
    char path[4200];
    if (t->oom || !t->p) return ms_seterr(err, MS_ERR_NOMEM, "%s: out of memory", name);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return st_write_file_atomic(path, t->p, t->n, err);
}

/* Copies the tokenizer files present in src (tokenizer.json required). */
static ms_status copy_tokenizer(const char *src, const char *dir, ms_error *err)
{
    static const char *const files[] = {
        "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
        "merges.txt",     "added_tokens.json",     "chat_template.jinja"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char from[4200], to[4200];
        snprintf(from, sizeof from, "%s/%s", src, files[i]);
        snprintf(to, sizeof to, "%s/%s", dir, files[i]);
        struct stat st;
        if (stat(from, &st) != 0) {
            if (i == 0) return ms_seterr(err, MS_ERR_NOTFOUND, "%s: missing (use --tokenizer DIR or none)", from);
            continue;
        }
        char *buf;
        size_t len;
        ms_status s = file_read_all(from, 256u << 20, &buf, &len, err);
        if (s) return s;
        s = st_write_file_atomic(to, buf, len, err);
        free(buf);
        if (s) return s;
    }
    return MS_OK;
}

/* With --force, removes what a previous synth run may have left. */
static ms_status prepare_dir(const synth_opts *o, ms_error *err)
{
    struct stat st;
    if (stat(o->out, &st) != 0) {
        if (mkdir(o->out, 0755) != 0)
            return ms_seterr(err, MS_ERR_IO, "%s: cannot create: %s", o->out, strerror(errno));
        return MS_OK;
    }
    if (!S_ISDIR(st.st_mode)) return ms_seterr(err, MS_ERR_INVALID, "%s: exists and is not a directory", o->out);
    DIR *d = opendir(o->out);
    if (!d) return ms_seterr(err, MS_ERR_IO, "%s: cannot list: %s", o->out, strerror(errno));
    struct dirent *e;
    int nonempty = 0;
    ms_status s = MS_OK;
    while ((e = readdir(d))) {
        const char *n = e->d_name;
        if (!strcmp(n, ".") || !strcmp(n, "..")) continue;
        nonempty = 1;
        if (!o->force) break;
        int ours = !strcmp(n, "config.json") || !strcmp(n, "generation_config.json") || !strncmp(n, "tokenizer", 9) ||
                   !strcmp(n, "special_tokens_map.json") || !strcmp(n, "vocab.json") || !strcmp(n, "merges.txt") ||
                   !strcmp(n, "added_tokens.json") || !strcmp(n, "chat_template.jinja") || !strcmp(n, ST_INDEX_FILE) ||
                   !strcmp(n, ST_SINGLE_FILE) ||
                   (!strncmp(n, "model-", 6) && strstr(n, "-of-") && strstr(n, ".safetensors"));
        if (ours) {
            char p[4200];
            snprintf(p, sizeof p, "%s/%s", o->out, n);
            if (unlink(p) != 0) s = ms_seterr(err, MS_ERR_IO, "%s: cannot remove: %s", p, strerror(errno));
        }
    }
    closedir(d);
    if (nonempty && !o->force) return ms_seterr(err, MS_ERR_INVALID, "%s: not empty (use --force)", o->out);
    return s;
}

/* ---- command line ------------------------------------------------------ */

static void usage(FILE *f)
{
    fprintf(f, "usage: synth --out DIR [--shape tiny|0.6b|1.7b|4b|8b] [options]\n"
               "  --hidden N --layers N --heads N --kv-heads N --head-dim N --intermediate N\n"
               "  --vocab N --max-pos N --tied 0|1 --attention-bias 0|1 --yarn FACTOR:ORIG\n"
               "  --rope-theta X --eps X --dtype bf16|f16|f32 --seed N --std X --norm-std X\n"
               "  --max-shard-size BYTES|5GB --config-style 4|5 --hf-order 4|5 --tokenizer DIR|none\n"
               "  --force --quiet\n"
               "--hf-order: which transformers' save order decides the shards (default: the\n"
               "config style): 4 = module order, 5 = 5.x natural order (runtime/io/st_shard.h).\n"
               "Writes config.json, generation_config.json, tokenizer files and deterministic\n"
               "random weights (same arguments -> identical bytes).\n");
}

static int set_shape(synth_opts *o, const char *s)
{
    o->head_dim = 128;
    o->vocab = 151936;
    o->heads = 16;
    o->kv_heads = 8;
    o->layers = 28;
    o->tied = 1;
    if (!strcmp(s, "tiny")) {
        o->hidden = 64;
        o->layers = 2;
        o->heads = 4;
        o->kv_heads = 2;
        o->head_dim = 32;
        o->inter = 128;
    } else if (!strcmp(s, "0.6b")) {
        o->hidden = 1024;
        o->inter = 3072;
    } else if (!strcmp(s, "1.7b")) {
        o->hidden = 2048;
        o->inter = 6144;
    } else if (!strcmp(s, "4b")) {
        o->hidden = 2560;
        o->layers = 36;
        o->heads = 32;
        o->inter = 9728;
    } else if (!strcmp(s, "8b")) {
        o->hidden = 4096;
        o->layers = 36;
        o->heads = 32;
        o->inter = 12288;
        o->tied = 0;
    } else {
        return -1;
    }
    return 0;
}

/* Parses a non-negative integer argument; -1 on error. */
static long long num(const char *s)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < 0) return -1;
    return v;
}

static int parse_args(int argc, char **argv, synth_opts *o)
{
    set_shape(o, "tiny");
    o->max_pos = 40960;
    o->theta = 1e6;
    o->eps = 1e-6;
    o->std = 0.02;
    o->norm_std = 0.1;
    o->dtype = ST_BF16;
    o->style = 4;
    o->tokenizer = "tests/data/qwen3-tokenizer";
    /* the shape first, so explicit fields override it in any order */
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--shape") || !strcmp(argv[i], "--preset")) {
            if (set_shape(o, argv[i + 1])) {
                fprintf(stderr, "synth: unknown shape %s\n", argv[i + 1]);
                return -1;
            }
        }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long long n = v ? num(v) : -1;
        int used = 1;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            exit(0);
        } else if (!strcmp(a, "--force")) {
            o->force = 1;
            used = 0;
        } else if (!strcmp(a, "--quiet")) {
            o->quiet = 1;
            used = 0;
        } else if (a[0] != '-') {
            o->out = a;
            used = 0;
        } else if (!v) {
            fprintf(stderr, "synth: %s needs a value\n", a);
            return -1;
        } else if (!strcmp(a, "--out")) {
            o->out = v;
            n = 0;
        } else if (!strcmp(a, "--shape") || !strcmp(a, "--preset")) n = 0;
        else if (!strcmp(a, "--tokenizer")) {
            o->tokenizer = v;
            n = 0;
        } else if (!strcmp(a, "--hidden")) o->hidden = (int)n;
        else if (!strcmp(a, "--layers")) o->layers = (int)n;
        else if (!strcmp(a, "--heads")) o->heads = (int)n;
        else if (!strcmp(a, "--kv-heads")) o->kv_heads = (int)n;
        else if (!strcmp(a, "--head-dim")) o->head_dim = (int)n;
        else if (!strcmp(a, "--intermediate")) o->inter = (int)n;
        else if (!strcmp(a, "--vocab")) o->vocab = (int)n;
        else if (!strcmp(a, "--max-pos")) o->max_pos = (int)n;
        else if (!strcmp(a, "--tied")) o->tied = (int)n;
        else if (!strcmp(a, "--attention-bias")) o->bias = (int)n;
        else if (!strcmp(a, "--config-style")) o->style = (int)n;
        else if (!strcmp(a, "--hf-order")) o->order = (int)n;
        else if (!strcmp(a, "--seed")) {
            o->seed = strtoull(v, NULL, 10);
            n = 0;
        } else if (!strcmp(a, "--rope-theta")) {
            o->theta = strtod(v, NULL);
            n = 0;
        } else if (!strcmp(a, "--eps")) {
            o->eps = strtod(v, NULL);
            n = 0;
        } else if (!strcmp(a, "--std")) {
            o->std = strtod(v, NULL);
            n = o->std >= 0 ? 0 : -1;
        } else if (!strcmp(a, "--norm-std")) {
            o->norm_std = strtod(v, NULL);
            n = o->norm_std >= 0 ? 0 : -1;
        } else if (!strcmp(a, "--yarn")) {
            char *end;
            o->yarn_factor = strtod(v, &end);
            n = *end == ':' ? num(end + 1) : -1;
            o->yarn_orig = (int)n;
        } else if (!strcmp(a, "--dtype")) {
            o->dtype = !strcmp(v, "bf16")  ? ST_BF16
                       : !strcmp(v, "f16") ? ST_F16
                       : !strcmp(v, "f32") ? ST_F32
                                           : ST_DTYPE_COUNT;
            n = o->dtype == ST_DTYPE_COUNT ? -1 : 0;
        } else if (!strcmp(a, "--max-shard-size")) {
            ms_error e;
            n = st_parse_size(v, &o->max_shard, &e) ? -1 : 0;
        } else {
            fprintf(stderr, "synth: unknown option %s\n", a);
            return -1;
        }
        if (used) {
            if (n < 0 || n > 0x7fffffff) {
                fprintf(stderr, "synth: bad value for %s: %s\n", a, v);
                return -1;
            }
            i++;
        }
    }
    if (!o->out) {
        usage(stderr);
        return -1;
    }
    if (!o->order) o->order = o->style;
    if ((o->tied | o->bias) & ~1 || (o->style != 4 && o->style != 5) || (o->order != 4 && o->order != 5)) {
        fprintf(stderr, "synth: --tied/--attention-bias take 0 or 1, --config-style and --hf-order 4 or 5\n");
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    synth_opts o;
    memset(&o, 0, sizeof o);
    if (parse_args(argc, argv, &o)) return 2;
    ms_error e = {0};
    ms_status s = prepare_dir(&o, &e);
    strbuf cfg = {0}, gen = {0};
    tlist l = {0};
    if (s) goto out;
    config_text(&o, &cfg);
    if ((s = write_text(o.out, "config.json", &cfg, &e))) goto out;
    qwen3_config qc; /* our own loader must accept what we write */
    if ((s = config_load(o.out, &qc, &e))) {
        char p[4200];
        snprintf(p, sizeof p, "%s/config.json", o.out);
        unlink(p);
        goto out;
    }
    gen_config_text(&o, &gen);
    if ((s = write_text(o.out, "generation_config.json", &gen, &e))) goto out;
    if (strcmp(o.tokenizer, "none") && (s = copy_tokenizer(o.tokenizer, o.out, &e))) goto out;
    build_tensors(&o, &l);
    if (!l.oom && o.order == 5) st_hf5_sort(l.t, l.n);
    if (l.oom) {
        s = ms_seterr(&e, MS_ERR_NOMEM, "out of memory");
        goto out;
    }
    fill_ctx fc = {&o, l.t, malloc((size_t)CHUNK * 4), o.quiet, 0, 0};
    if (!fc.buf) {
        s = ms_seterr(&e, MS_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < l.n; i++) {
        uint64_t k = st_dtype_size(l.t[i].dtype);
        for (int d = 0; d < l.t[i].ndim; d++) k *= (uint64_t)l.t[i].shape[d];
        fc.total += k;
    }
    s = st_write_weights(o.out, l.t, l.n, o.max_shard, NULL, 0, fill, &fc, &e);
    free(fc.buf);
    if (!o.quiet && isatty(2)) fprintf(stderr, "\r");
    if (!s && !o.quiet)
        fprintf(stderr, "synth: wrote %s (%zu tensors, %llu bytes of weights)\n", o.out, l.n,
                (unsigned long long)fc.total);
    if (!s && !o.quiet && strcmp(o.tokenizer, "none") && o.vocab < 151669)
        fprintf(stderr,
                "synth: note: vocab %d is smaller than the tokenizer's 151669 ids; medserve will refuse to "
                "serve this model (fine for merge tests)\n",
                o.vocab);
out:
    for (size_t i = 0; i < l.n; i++) free((char *)l.t[i].name);
    free(l.t);
    sb_free(&cfg);
    sb_free(&gen);
    if (s) {
        fprintf(stderr, "synth: %s\n", e.message);
        return s == MS_ERR_INVALID || s == MS_ERR_FORMAT || s == MS_ERR_UNSUPPORTED ? 2 : 1;
    }
    return 0;
}
