/* test_merge_bad.c: the bad-input corpus of lora-merge (docs/threats.md H2, A10,
 * T8(d); docs/numerics.md §4). Each case copies a good fixture adapter or base
 * into a temp dir, breaks one thing (a config field, a tensor name, shape,
 * value or file), runs mg_run, and checks that it is refused with the
 * expected status class (refused input vs I/O) and a message naming the
 * problem, and that neither the out dir nor a temp dir is left behind. */
#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/json.h"
#include "fsio.h"
#include "io/st.h"
#include "mg.h"
#include "util.h"

#define DATA "tests/data/merge"

static char g_dir[256];

/* Copies every regular file of src into dst (created). */
static void copy_dir(const char *src, const char *dst)
{
    mkdir(dst, 0755);
    DIR *d = opendir(src);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char a[1024], b[1024];
        snprintf(a, sizeof a, "%s/%s", src, e->d_name);
        snprintf(b, sizeof b, "%s/%s", dst, e->d_name);
        mg_copy_file(NULL, a, b, 1u << 26, NULL);
    }
    if (d) closedir(d);
}

/* One change to a safetensors file: tensors whose name contains match. */
typedef struct edit {
    const char *match;
    const char *rename_to; /* whole new name */
    int drop;
    int swap_shape; /* 2-D: [a,b] -> [b,a] */
    int fill;       /* 1: zeros, 2: first element NaN, 3: shape[0] + 1 rows of zeros */
    int to_i32;
    const char *dup_to; /* also write a copy under this name */
} edit;

/* Rewrites path applying edits (each to every tensor whose name contains match). */
static int rewrite_st(const char *path, const edit *ed, int n_ed)
{
    st_file *f = NULL;
    ms_error e = {0};
    if (st_file_open(path, &f, &e)) return -1;
    size_t n = st_file_count(f), m = 0;
    st_wtensor *w = calloc(n + 1, sizeof *w);
    const void **src = calloc(n + 1, sizeof *src);
    void **own = calloc(n + 1, sizeof *own);
    char(*names)[256] = calloc(n + 1, sizeof *names);
    for (size_t i = 0; i < n; i++) {
        const st_tensor *t = st_file_get(f, i);
        snprintf(names[m], 256, "%s", t->name);
        w[m].name = names[m];
        w[m].dtype = t->dtype;
        w[m].ndim = t->ndim;
        memcpy(w[m].shape, t->shape, sizeof t->shape);
        src[m] = t->data;
        int drop = 0;
        for (int k = 0; k < n_ed; k++) {
            if (!strstr(t->name, ed[k].match)) continue;
            if (ed[k].drop) drop = 1;
            if (ed[k].rename_to) snprintf(names[m], 256, "%s", ed[k].rename_to);
            if (ed[k].swap_shape) {
                int64_t x = w[m].shape[0];
                w[m].shape[0] = w[m].shape[1];
                w[m].shape[1] = x;
            }
            if (ed[k].to_i32) w[m].dtype = ST_I32;
            if (ed[k].fill) {
                if (ed[k].fill == 3) w[m].shape[0] += 1;
                size_t nb = st_dtype_size(w[m].dtype);
                for (int d = 0; d < w[m].ndim; d++) nb *= (size_t)w[m].shape[d];
                own[m] = calloc(1, nb + 4);
                if (ed[k].fill == 2) {
                    float q = NAN;
                    memcpy(own[m], &q, 4);
                }
                src[m] = own[m];
            }
        }
        if (!drop) m++;
        else free(own[m]), own[m] = NULL;
        for (int k = 0; k < n_ed && !drop; k++)
            if (ed[k].dup_to && strstr(t->name, ed[k].match)) {
                w[m] = w[m - 1];
                snprintf(names[m], 256, "%s", ed[k].dup_to);
                w[m].name = names[m];
                src[m] = src[m - 1];
                m++;
            }
    }
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.new", path);
    st_writer *wr = NULL;
    int rc = -1;
    if (!st_writer_open(tmp, w, m, NULL, 0, &wr, &e)) {
        for (size_t k = 0; k < m; k++) {
            size_t i = st_writer_order(wr, k);
            size_t nb = st_dtype_size(w[i].dtype);
            for (int d = 0; d < w[i].ndim; d++) nb *= (size_t)w[i].shape[d];
            st_writer_write(wr, src[i], nb, &e);
        }
        rc = st_writer_finish(wr, &e) ? -1 : 0;
    }
    st_writer_abort(wr);
    st_file_close(f);
    for (size_t i = 0; i < n; i++) free(own[i]);
    free(w), free(src), free(own), free(names);
    if (!rc) rc = rename(tmp, path);
    return rc;
}

/* Sets a top-level field of a JSON file (value given as JSON text; NULL removes it). */
static void json_set(const char *path, const char *key, const char *value)
{
    ms_error e;
    cJSON *j = json_load_file(path, 1 << 22, &e);
    if (!j) return;
    cJSON_DeleteItemFromObjectCaseSensitive(j, key);
    if (value) cJSON_AddItemToObject(j, key, cJSON_Parse(value));
    char *s = cJSON_Print(j);
    FILE *f = fopen(path, "w");
    if (f && s) fputs(s, f);
    if (f) fclose(f);
    cJSON_free(s);
    cJSON_Delete(j);
}

/* Writes raw bytes to a file. */
static void put_bytes(const char *path, const void *data, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
        if (write(fd, data, n) < 0) perror(path);
        close(fd);
    }
}

typedef struct bad_case {
    const char *name;
    const char *adapter;             /* fixture case whose adapter 1 is copied */
    const char *base;                /* fixture base copied */
    const char *cfg_key, *cfg_val;   /* adapter_config.json change */
    const char *bcfg_key, *bcfg_val; /* base config.json change */
    edit ed[2];                      /* adapter_model.safetensors changes */
    edit bed;                        /* base model.safetensors change */
    int file_op;                     /* 1 remove config, 2 .bin instead of safetensors, 3 pickle bytes, 4 truncate */
    int want_input;                  /* 1: a refused input (exit 2 class), 0: other failure */
    const char *msg;
} bad_case;

#define Q "model.layers.0.self_attn.q_proj"
static const bad_case CASES[] = {
    {"peft_type", "lora_all7", "untied", "peft_type", "\"LOHA\"", .want_input = 1, .msg = "only \"LORA\""},
    {"pissa", "lora_all7", "untied", "init_lora_weights", "\"pissa\"", .want_input = 1, .msg = "changed the base"},
    {"seq_cls", "lora_all7", "untied", "task_type", "\"SEQ_CLS\"", .want_input = 1, .msg = "score head"},
    {"bias_all", "lora_all7", "untied", "bias", "\"lora_only\"", .want_input = 1, .msg = "\"bias\""},
    {"unknown_feature", "lora_all7", "untied", "use_magic", "true", .want_input = 1, .msg = "unknown field"},
    {"rank_mismatch", "lora_all7", "untied", "r", "4", .want_input = 1,
     .msg = "rank 8 but adapter_config.json gives r = 4"},
    {"not_targeted", "lora_all7", "untied", "target_modules", "[\"q_proj\"]", .want_input = 1,
     .msg = "do not select it"},
    {"layers_mismatch", "lora_all7", "untied", "layers_to_transform", "[1]", .want_input = 1,
     .msg = "do not select it"},
    {"dora_no_magnitude", "lora_all7", "untied", "use_dora", "true", .want_input = 1,
     .msg = "no lora_magnitude_vector"},
    {"magnitude_without_dora", "dora", "untied", "use_dora", "false", .want_input = 1, .msg = "use_dora is false"},
    {"tokens_out_of_range", "trainable_tokens", "untied", "trainable_token_indices", "[3, 17, 256]", .want_input = 1,
     .msg = "not below the vocabulary"},
    {"tokens_duplicate", "trainable_tokens", "untied", "trainable_token_indices", "[3, 3, 100]", .want_input = 1,
     .msg = "twice"},
    {"tokens_count", "trainable_tokens", "untied", "trainable_token_indices", "[3, 17]", .want_input = 1,
     .msg = "trainable_token_indices need"},
    {"missing_B", "lora_all7", "untied", .ed = {{Q ".lora_B", .drop = 1}}, .want_input = 1, .msg = "no lora_B.weight"},
    {"missing_A", "lora_all7", "untied", .ed = {{Q ".lora_A", .drop = 1}}, .want_input = 1, .msg = "no lora_A.weight"},
    {"unmatched_key", "lora_all7", "untied",
     .ed = {{Q ".lora_A", .rename_to = "base_model.model.model.layers.7.self_attn.q_proj.lora_A.weight"},
            {Q ".lora_B", .rename_to = "base_model.model.model.layers.7.self_attn.q_proj.lora_B.weight"}},
     .want_input = 1, .msg = "matches no base tensor"},
    {"wrong_model_shapes", "lora_all7", "untied",
     .ed = {{"layers.0.self_attn.k_proj", .drop = 1}, {Q ".lora", .rename_to = NULL, .swap_shape = 1}}, .want_input = 1,
     .msg = "do not fit"},
    {"no_prefix", "lora_all7", "untied",
     .ed = {{Q ".lora_A", .rename_to = "model.layers.0.self_attn.q_proj.lora_A.weight"}}, .want_input = 1,
     .msg = "does not start with"},
    {"lora_bias_key", "lora_all7", "untied",
     .ed = {{Q ".lora_B", .rename_to = "base_model.model.model.layers.0.self_attn.q_proj.lora_B.bias"}},
     .want_input = 1, .msg = "lora_bias"},
    {"int_dtype", "lora_all7", "untied", .ed = {{Q ".lora_A", .to_i32 = 1}}, .want_input = 1,
     .msg = "only F32, BF16 and F16"},
    {"all_zero", "lora_all7", "untied", .ed = {{"lora_B", .fill = 1}}, .want_input = 1, .msg = "changes no weight"},
    {"nan", "lora_all7", "untied", .ed = {{Q ".lora_B", .fill = 2}}, .want_input = 1, .msg = "non-finite"},
    {"resized_vocab_head_only", "modules_to_save", "untied", .ed = {{"lm_head", .fill = 3}}, .want_input = 1,
     .msg = "\"model.embed_tokens.weight\" gets no full weight of that size first"},
    {"no_config", "lora_all7", "untied", .file_op = 1, .want_input = 1, .msg = "adapter_config.json"},
    {"pickle_bin", "lora_all7", "untied", .file_op = 2, .want_input = 1, .msg = "adapter_model.bin"},
    {"pickle_magic", "lora_all7", "untied", .file_op = 3, .want_input = 1, .msg = "pickle"},
    {"truncated", "lora_all7", "untied", .file_op = 4, .want_input = 1, .msg = "adapter_model.safetensors"},
    {"base_quantized", "lora_all7", "untied", .bcfg_key = "quantization_config", .bcfg_val = "{\"bits\":4}",
     .want_input = 1, .msg = "quantization_config"},
    {"base_moe", "lora_all7", "untied", .bcfg_key = "model_type", .bcfg_val = "\"qwen3_moe\"", .want_input = 1,
     .msg = "qwen3"},
    {"base_config_shapes", "lora_all7", "untied", .bcfg_key = "intermediate_size", .bcfg_val = "256", .want_input = 1,
     .msg = "config.json implies"},
    {"base_extra_tensor", "lora_all7", "untied", .bed = {"model.norm.weight", .dup_to = "mtp.norm.weight"},
     .want_input = 1, .msg = "unexpected tensor \"mtp.norm.weight\""},
    {"base_renamed_tensor", "lora_all7", "untied", .bed = {"model.norm.weight", .rename_to = "mtp.norm.weight"},
     .want_input = 1, .msg = "\"model.norm.weight\" is missing"},
    {"base_missing_tensor", "lora_all7", "untied", .bed = {"model.layers.1.input_layernorm", .drop = 1},
     .want_input = 1, .msg = "is missing"},
};

/* Builds and runs one case. */
static void run_bad(const bad_case *c)
{
    char cdir[512], ad[600], base[600], out[600], p[800], src[512];
    snprintf(cdir, sizeof cdir, "%s/%s", g_dir, c->name);
    mkdir(cdir, 0755);
    snprintf(ad, sizeof ad, "%s/adapter", cdir);
    snprintf(base, sizeof base, "%s/base", cdir);
    snprintf(out, sizeof out, "%s/out", cdir);
    snprintf(src, sizeof src, DATA "/cases/%s/adapters/1", c->adapter);
    copy_dir(src, ad);
    snprintf(src, sizeof src, DATA "/bases/%s", c->base);
    copy_dir(src, base);
    snprintf(p, sizeof p, "%s/adapter_config.json", ad);
    if (c->cfg_key) json_set(p, c->cfg_key, c->cfg_val);
    if (c->file_op == 1) unlink(p);
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", ad);
    if (c->ed[0].match) CHECK(rewrite_st(p, c->ed, c->ed[1].match ? 2 : 1) == 0, "%s: rewrite", c->name);
    if (c->file_op == 2) {
        char q[900];
        snprintf(q, sizeof q, "%s/adapter_model.bin", ad);
        rename(p, q);
    }
    if (c->file_op == 3) put_bytes(p, "PK\003\004 pickle inside a zip", 24);
    if (c->file_op == 4) CHECK(truncate(p, 1000) == 0, "truncate");
    snprintf(p, sizeof p, "%s/config.json", base);
    if (c->bcfg_key) json_set(p, c->bcfg_key, c->bcfg_val);
    snprintf(p, sizeof p, "%s/model.safetensors", base);
    if (c->bed.match) CHECK(rewrite_st(p, &c->bed, 1) == 0, "%s: rewrite base", c->name);
    mg_opts o;
    memset(&o, 0, sizeof o);
    o.base_dir = base;
    o.out_dir = out;
    o.out_dtype = -1;
    o.n_adapters = 1;
    o.adapters[0].dir = ad;
    o.adapters[0].weight = 1;
    ms_error e = {0};
    mg_result res;
    ms_status st = mg_run(&o, &res, &e);
    int input = st == MS_ERR_INVALID || st == MS_ERR_FORMAT || st == MS_ERR_UNSUPPORTED || st == MS_ERR_NOTFOUND;
    CHECK(st != MS_OK, "%s: accepted", c->name);
    CHECK(input == c->want_input, "%s: status %s (%s)", c->name, ms_status_name(st), e.message);
    CHECK(strstr(e.message, c->msg) != NULL, "%s: message lacks \"%s\": %s", c->name, c->msg, e.message);
    CHECK(!mg_exists(out), "%s: out dir exists after a refusal", c->name);
    DIR *d = opendir(cdir);
    struct dirent *de;
    while (d && (de = readdir(d))) CHECK(strncmp(de->d_name, ".out.tmp", 8), "%s: temp dir left", c->name);
    if (d) closedir(d);
}

static void t_bad_corpus(void)
{
    size_t n = sizeof CASES / sizeof CASES[0];
    for (size_t i = 0; i < n; i++) run_bad(&CASES[i]);
    printf("  %zu bad inputs refused\n", n);
}

/* A fresh (B = 0) adapter changes nothing: refused, not written. Sanity check
 * that the unmodified copies used above do merge. */
static void t_good_copy(void)
{
    bad_case ok = {"good", "lora_all7", "untied", .msg = ""};
    char cdir[512], ad[600], base[600], out[600], src[512];
    snprintf(cdir, sizeof cdir, "%s/%s", g_dir, ok.name);
    mkdir(cdir, 0755);
    snprintf(ad, sizeof ad, "%s/adapter", cdir);
    snprintf(base, sizeof base, "%s/base", cdir);
    snprintf(out, sizeof out, "%s/out", cdir);
    snprintf(src, sizeof src, DATA "/cases/%s/adapters/1", ok.adapter);
    copy_dir(src, ad);
    snprintf(src, sizeof src, DATA "/bases/%s", ok.base);
    copy_dir(src, base);
    char p[800];
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", ad);
    edit none = {"no-such-tensor", .drop = 1};
    CHECK(rewrite_st(p, &none, 1) == 0, "rewrite without changes");
    mg_opts o;
    memset(&o, 0, sizeof o);
    o.base_dir = base, o.out_dir = out, o.out_dtype = -1, o.n_adapters = 1;
    o.adapters[0].dir = ad, o.adapters[0].weight = 1;
    ms_error e = {0};
    mg_result res;
    CHECK(mg_run(&o, &res, &e) == MS_OK, "the unbroken copy must merge: %s", e.message);
}

int main(int argc, char **argv)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/ms_merge_bad_XXXXXX");
    if (!mkdtemp(g_dir)) return 1;
    static const test_case cases[] = {
        {"merge_good_copy", t_good_copy},
        {"merge_bad_corpus", t_bad_corpus},
    };
    int rc = test_main(argc, argv, cases, 2);
    mg_rmtree(g_dir);
    return rc;
}
