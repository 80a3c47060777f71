/* test_model.c: model_load on small synthetic Qwen3 directories (build/tools/synth) and on
 * copies altered one way each: tensors bound with the config's shapes, tied and untied heads,
 * attention biases, shards, stop ids, the manifest digest; and every rejection (missing,
 * unexpected, misshapen, wrong-dtype tensors, untied without lm_head, tokenizer ids past
 * vocab_size) with a message that names the tensor or field. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/json.h"
#include "base/sha256.h"
#include "io/st.h"
#include "model/model.h"
#include "util.h"

#define SYNTH "build/tools/synth"
#define BASE_ARGS "--hidden 16 --layers 2 --heads 2 --kv-heads 1 --head-dim 8 --intermediate 32 --seed 5"

static char g_tmp[64];

/* Runs synth with args into g_tmp/name; returns 0 on success. */
static int synth(const char *name, const char *args)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s %s --quiet --out %s/%s", SYNTH, args, g_tmp, name);
    return system(cmd) == 0 ? 0 : -1;
}

/* Copies directory g_tmp/src to g_tmp/dst. */
static int copy_dir(const char *src, const char *dst)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "cp -r %s/%s %s/%s", g_tmp, src, g_tmp, dst);
    return system(cmd) == 0 ? 0 : -1;
}

/* Loads g_tmp/name; returns the status, message in e. */
static ms_status load(const char *name, model **m, ms_error *e)
{
    char dir[256];
    snprintf(dir, sizeof dir, "%s/%s", g_tmp, name);
    *m = NULL;
    return model_load(dir, m, e);
}

/* Expects load(name) to fail with a message containing each of the given parts. */
static void expect_reject(const char *name, const char *part1, const char *part2)
{
    model *m = NULL;
    ms_error e = {0};
    ms_status st = load(name, &m, &e);
    CHECK(st != MS_OK && m == NULL, "%s: loaded though it should be rejected", name);
    CHECK(strstr(e.message, part1) != NULL, "%s: message lacks \"%s\": %s", name, part1, e.message);
    CHECK(!part2 || strstr(e.message, part2) != NULL, "%s: message lacks \"%s\": %s", name, part2, e.message);
    printf("  %s rejected: %s\n", name, e.message);
    model_free(m);
}

/* Sets key of dir/config.json (or another json file) to the JSON text value. */
static int edit_json(const char *name, const char *file, const char *key, const char *value)
{
    char path[512];
    ms_error e = {0};
    snprintf(path, sizeof path, "%s/%s/%s", g_tmp, name, file);
    cJSON *j = json_load_file(path, 1 << 20, &e), *v = cJSON_Parse(value);
    if (!j || !v) return -1;
    if (json_get(j, key)) cJSON_ReplaceItemInObjectCaseSensitive(j, key, v);
    else cJSON_AddItemToObject(j, key, v);
    char *txt = cJSON_Print(j);
    FILE *f = fopen(path, "w");
    int ok = f && txt && fputs(txt, f) >= 0;
    if (f) ok &= fclose(f) == 0;
    free(txt);
    cJSON_Delete(j);
    return ok ? 0 : -1;
}

/* Rewrites g_tmp/name/model.safetensors from its own tensors: drops `drop`, and adds
 * `add` (dtype, 1-D or 2-D shape, zero-filled) if given. Returns 0 on success. */
static int rewrite_st(const char *name, const char *drop, const char *add, st_dtype add_dtype, int64_t rows,
                      int64_t cols)
{
    char path[512];
    ms_error e = {0};
    snprintf(path, sizeof path, "%s/%s/model.safetensors", g_tmp, name);
    st_file *f = NULL;
    if (st_file_open(path, &f, &e) != MS_OK) return -1;
    size_t n = st_file_count(f), k = 0;
    st_wtensor *wt = calloc(n + 1, sizeof *wt);
    const void **src = calloc(n + 1, sizeof *src);
    uint64_t *bytes = calloc(n + 1, sizeof *bytes);
    for (size_t i = 0; i < n; i++) {
        const st_tensor *t = st_file_get(f, i);
        if (drop && !strcmp(t->name, drop)) continue;
        wt[k] = (st_wtensor){t->name, t->dtype, t->ndim, {0}};
        memcpy(wt[k].shape, t->shape, sizeof t->shape);
        src[k] = t->data;
        bytes[k++] = t->nbytes;
    }
    void *zeros = NULL;
    if (add) {
        wt[k] = (st_wtensor){add, add_dtype, rows ? 2 : 1, {0}};
        if (rows) wt[k].shape[0] = rows, wt[k].shape[1] = cols;
        else wt[k].shape[0] = cols;
        bytes[k] = (uint64_t)(rows ? rows : 1) * (uint64_t)cols * st_dtype_size(add_dtype);
        zeros = calloc(1, bytes[k]);
        src[k++] = zeros;
    }
    char out[600];
    snprintf(out, sizeof out, "%s.new", path);
    st_writer *w = NULL;
    int rc = -1;
    if (st_writer_open(out, wt, k, NULL, 0, &w, &e) == MS_OK) {
        rc = 0;
        for (size_t i = 0; i < k && !rc; i++) {
            size_t j = st_writer_order(w, i);
            if (bytes[j] && st_writer_write(w, src[j], bytes[j], &e) != MS_OK) rc = -1;
        }
        if (!rc && st_writer_finish(w, &e) != MS_OK) rc = -1;
    }
    st_writer_abort(w);
    st_file_close(f);
    if (!rc && rename(out, path) != 0) rc = -1;
    if (rc) printf("  rewrite %s: %s\n", name, e.message);
    free(zeros);
    free(wt);
    free(src);
    free(bytes);
    return rc;
}

/* A tied bf16 model binds every tensor zero-copy, with stop ids and no manifest. */
static void t_tied_ok(void)
{
    model *m = NULL;
    ms_error e = {0};
    CHECK(load("tied", &m, &e) == MS_OK, "%s", e.message);
    if (!m) return;
    const qwen3_config *c = &m->cfg;
    CHECK(c->hidden_size == 16 && c->n_layers == 2 && c->vocab_size == 151936, "config read");
    CHECK(m->embed.rows == 151936 && m->embed.cols == 16 && m->embed.dtype == ST_BF16, "embed");
    CHECK(m->lm_head.data == m->embed.data, "tied lm_head must be the embedding");
    const layer_weights *w = &m->layers[1];
    CHECK(w->wq.rows == 16 && w->wq.cols == 16 && w->wk.rows == 8 && w->wo.rows == 16 && w->wo.cols == 16 &&
              w->w_gate.rows == 32 && w->w_down.cols == 32 && w->q_norm.cols == 8 && w->attn_norm.rows == 1,
          "layer shapes");
    CHECK(!w->bq.data && !w->bo.data, "biases bound without attention_bias");
    /* weights point into the file: compare a few elements with the tensor */
    const st_tensor *t = st_set_find(m->st, "model.layers.1.mlp.down_proj.weight");
    CHECK(t && t->data == w->w_down.data, "down_proj not zero-copy");
    if (t)
        for (int64_t i = 0; i < 32; i += 7)
            CHECK(wmat_get(&w->w_down, 3, i) == st_tensor_getf(t, (uint64_t)(3 * 32 + i)), "wmat_get(3, %lld)",
                  (long long)i);
    /* stop ids: generation_config [151645, 151643] ∪ config 151645 ∪ tokenizer <|im_end|> */
    CHECK(m->n_stop == 2 && m->stop_ids[0] == 151645 && m->stop_ids[1] == 151643, "stop ids: %d: %d %d", m->n_stop,
          m->stop_ids[0], m->stop_ids[1]);
    CHECK(m->manifest_sha256[0] == '\0', "manifest digest without a manifest");
    CHECK(m->tok != NULL && m->gen.top_k == 20, "tokenizer and generation config");
    model_free(m);
    model_free(NULL);
}

/* Untied f32, attention-bias + YaRN, and sharded models load. */
static void t_untied_bias_sharded_ok(void)
{
    model *m = NULL;
    ms_error e = {0};
    CHECK(load("untied", &m, &e) == MS_OK, "%s", e.message);
    if (m) {
        CHECK(m->lm_head.data && m->lm_head.data != m->embed.data && m->lm_head.rows == 151936, "untied lm_head");
        CHECK(m->embed.dtype == ST_F32, "f32 weights");
    }
    model_free(m);
    CHECK(load("bias", &m, &e) == MS_OK, "%s", e.message);
    if (m) {
        const layer_weights *w = &m->layers[0];
        CHECK(w->bq.data && w->bq.cols == 16 && w->bk.cols == 8 && w->bv.cols == 8 && w->bo.cols == 16, "biases");
        CHECK(m->cfg.rope_yarn == 1, "yarn config");
    }
    model_free(m);
    CHECK(load("sharded", &m, &e) == MS_OK, "%s", e.message);
    if (m) CHECK(st_set_nfiles(m->st) > 1, "expected a sharded set, got %zu files", st_set_nfiles(m->st));
    model_free(m);
}

/* medserve-manifest.json's SHA-256 is recorded. */
static void t_manifest(void)
{
    char path[512], digest[65];
    ms_error e = {0};
    CHECK(copy_dir("tied", "manifest") == 0, "copy");
    snprintf(path, sizeof path, "%s/manifest/medserve-manifest.json", g_tmp);
    FILE *f = fopen(path, "w");
    if (f) {
        fputs("{\"tool\":\"lora-merge\",\"adapters\":[]}\n", f);
        fclose(f);
    }
    CHECK(sha256_file(path, digest, &e) == MS_OK, "%s", e.message);
    model *m = NULL;
    CHECK(load("manifest", &m, &e) == MS_OK, "%s", e.message);
    if (m) CHECK(!strcmp(m->manifest_sha256, digest), "manifest digest %s vs %s", m->manifest_sha256, digest);
    model_free(m);
}

/* A tied model's extra lm_head.weight is ignored, as HF does. */
static void t_stray_lm_head_tied(void)
{
    CHECK(copy_dir("tied", "stray") == 0 && rewrite_st("stray", NULL, "lm_head.weight", ST_BF16, 151936, 16) == 0,
          "setup");
    model *m = NULL;
    ms_error e = {0};
    CHECK(load("stray", &m, &e) == MS_OK, "a tied model with a stray lm_head.weight: %s", e.message);
    if (m) CHECK(m->lm_head.data == m->embed.data, "the stray lm_head must be ignored (HF re-ties)");
    model_free(m);
}

/* Each malformed copy is refused with a message naming the tensor or field. */
static void t_rejections(void)
{
    /* a missing tensor */
    CHECK(copy_dir("tied", "missing") == 0 &&
              rewrite_st("missing", "model.layers.1.mlp.up_proj.weight", NULL, ST_F32, 0, 0) == 0,
          "setup");
    expect_reject("missing", "missing tensor model.layers.1.mlp.up_proj.weight", NULL);
    /* an unexpected tensor (a bias in a model without attention_bias) */
    CHECK(copy_dir("tied", "extra") == 0 &&
              rewrite_st("extra", NULL, "model.layers.0.self_attn.q_proj.bias", ST_BF16, 0, 16) == 0,
          "setup");
    expect_reject("extra", "unexpected tensor model.layers.0.self_attn.q_proj.bias", NULL);
    /* a shape that disagrees with config.json */
    CHECK(copy_dir("tied", "shape") == 0 && edit_json("shape", "config.json", "intermediate_size", "48") == 0, "setup");
    expect_reject("shape", "model.layers.0.mlp.gate_proj.weight has shape [32, 16]", "[48, 16]");
    /* a vector with the wrong rank */
    CHECK(copy_dir("tied", "rank") == 0 &&
              rewrite_st("rank", "model.norm.weight", "model.norm.weight", ST_BF16, 1, 16) == 0,
          "setup");
    expect_reject("rank", "model.norm.weight has shape [1, 16]", "implies [16]");
    /* an unsupported dtype */
    CHECK(copy_dir("tied", "dtype") == 0 &&
              rewrite_st("dtype", "model.norm.weight", "model.norm.weight", ST_I32, 0, 16) == 0,
          "setup");
    expect_reject("dtype", "model.norm.weight has dtype I32", "F32, F16 or BF16");
    /* untied without lm_head */
    CHECK(copy_dir("tied", "nohead") == 0 && edit_json("nohead", "config.json", "tie_word_embeddings", "false") == 0,
          "setup");
    expect_reject("nohead", "missing tensor lm_head.weight", "tie_word_embeddings");
    /* tokenizer ids beyond vocab_size */
    expect_reject("smallvocab", "tokenizer has", "vocab_size is 151000");
    /* an eos id outside the vocabulary */
    CHECK(copy_dir("tied", "eos") == 0 &&
              edit_json("eos", "generation_config.json", "eos_token_id", "[151645, 160000]") == 0,
          "setup");
    expect_reject("eos", "160000", NULL);
    /* not a directory with a model */
    expect_reject("does-not-exist", "does-not-exist", NULL);
}

int main(int argc, char **argv)
{
    static const test_case cases[] = {
        {"model_tied_ok", t_tied_ok},          {"model_untied_bias_sharded_ok", t_untied_bias_sharded_ok},
        {"model_manifest_digest", t_manifest}, {"model_stray_lm_head_tied", t_stray_lm_head_tied},
        {"model_rejections", t_rejections},
    };
    snprintf(g_tmp, sizeof g_tmp, "/tmp/ms_test_model_XXXXXX");
    if (!mkdtemp(g_tmp)) {
        printf("not ok model_setup: mkdtemp\n");
        return 1;
    }
    int ok = synth("tied", BASE_ARGS " --tied 1 --dtype bf16") == 0 &&
             synth("untied", BASE_ARGS " --tied 0 --dtype f32") == 0 &&
             synth("bias", BASE_ARGS " --attention-bias 1 --yarn 4:32768 --dtype bf16") == 0 &&
             synth("sharded", BASE_ARGS " --dtype bf16 --max-shard-size 3000000") == 0 &&
             synth("smallvocab", BASE_ARGS " --vocab 151000 --dtype bf16") == 0;
    int rc = 1;
    if (!ok) printf("not ok model_setup: %s failed\n", SYNTH);
    else rc = test_main(argc, argv, cases, (int)(sizeof cases / sizeof cases[0]));
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_tmp);
    if (system(cmd) != 0) printf("could not remove %s\n", g_tmp);
    return rc;
}
