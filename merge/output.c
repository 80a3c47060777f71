/* output.c: writing the export into the temp dir: each shard (tensors in
 * the writer's order, computed by apply.c and checksummed on the way), the
 * shard index (st_shard's text), config.json and generation_config.json
 * (patched), the tokenizer files, and medserve-manifest.json. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "apply.h"
#include "base/err.h"
#include "base/json.h"
#include "base/sha256.h"
#include "fhash.h"
#include "io/st_shard.h"
#include "jsonw.h"
#include "run.h"

typedef struct sink_ctx {
    run *R;
    st_writer *w;
    mg_fhash fh;
} sink_ctx;

/* The apply sink: checksum, write, progress. */
static ms_status sink_write(void *user, const void *data, size_t n, ms_error *err)
{
    sink_ctx *s = user;
    mg_fhash_update(&s->fh, data, n);
    ms_status st = st_writer_write(s->w, data, n, err);
    s->R->prog.bytes_done += n;
    return st;
}

/* Writes one shard file: its tensors in the writer's order. */
ms_status rn_write_shard(run *R, int shard, ms_error *err)
{
    mg_plan *p = &R->plan;
    size_t n = 0;
    for (size_t i = 0; i < p->n; i++) n += p->t[i].shard == shard;
    st_wtensor *wt = calloc(n, sizeof *wt);
    size_t *map = calloc(n, sizeof *map);
    const char **labels = calloc((size_t)R->n_ad, sizeof *labels);
    st_writer *w = NULL;
    ms_status st = MS_OK;
    if (!wt || !map || !labels) {
        st = ms_seterr(err, MS_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (int a = 0; a < R->n_ad; a++) labels[a] = R->ad[a].label;
    size_t j = 0;
    for (size_t i = 0; i < p->n; i++) {
        if (p->t[i].shard != shard) continue;
        wt[j].name = p->t[i].name;
        wt[j].dtype = p->dtype;
        wt[j].ndim = p->t[i].ndim;
        wt[j].shape[0] = p->t[i].shape[0];
        wt[j].shape[1] = p->t[i].shape[1];
        map[j++] = i;
    }
    char name[ST_SHARD_NAME_MAX], path[MG_PATH * 2];
    st_shard_filename((size_t)shard, (size_t)p->n_shards, name);
    rn_path_join(path, sizeof path, R->tmp, name);
    if ((st = mg_io_step(&R->io, "create", path, err))) goto out;
    static const char *const meta[] = {"merged_by", MG_TOOL_NAME " " MS_VERSION_STRING};
    if ((st = st_writer_open(path, wt, n, meta, 1, &w, err))) goto out;
    for (size_t k = 0; k < n; k++) {
        size_t oi = map[st_writer_order(w, k)];
        const mg_otensor *o = &p->t[oi];
        if (R->o->cancel && *R->o->cancel) {
            st = ms_seterr(err, MS_ERR_CANCELLED, "interrupted");
            goto out;
        }
        if ((st = mg_io_step(&R->io, "write", path, err))) goto out;
        sink_ctx sc = {R, w, {{0}, {0}, 0, 0}};
        mg_fhash_init(&sc.fh);
        mg_sink sink = {sink_write, &sc};
        mg_apply_stats stats;
        if ((st = mg_apply_tensor(o, p->dtype, R->k, labels, &sink, &stats, err))) goto out;
        R->sums[oi] = mg_fhash_final(&sc.fh);
        int changed = 0;
        for (int a = 0; a < R->n_ad; a++) {
            R->ad[a].changed += stats.changed[a];
            if (stats.changed[a]) {
                R->ad[a].tensors_changed++;
                changed = 1;
            }
        }
        R->tensor_changed[oi] = (size_t)changed;
        for (int q = 0; q < o->n_ops; q++)
            if (!stats.changed[o->ops[q].adapter] && (o->ops[q].delta != MG_DELTA_NONE || o->ops[q].tokens))
                mg_logf(&R->o->log, MG_LOG_WARN, "%s: its change to \"%s\" rounds away entirely (no element differs)",
                        R->ad[o->ops[q].adapter].label, o->name);
        R->prog.tensors_done++;
        rn_progress(R, "merge");
    }
    if ((st = mg_io_step(&R->io, "fsync", path, err))) goto out;
    double t0 = rn_now();
    st = st_writer_finish(w, err);
    R->t_sync += rn_now() - t0;
out:
    st_writer_abort(w);
    free(wt);
    free(map);
    free(labels);
    return st;
}

/* Writes model.safetensors.index.json (st_shard's text: as transformers). */
ms_status rn_write_index(run *R, ms_error *err)
{
    mg_plan *p = &R->plan;
    st_wtensor *wt = calloc(p->n, sizeof *wt);
    st_shard_plan sp = {0};
    ms_status st;
    if (!wt || !(sp.shard_of = calloc(p->n, sizeof *sp.shard_of))) {
        free(wt);
        st_shard_plan_free(&sp);
        return ms_seterr(err, MS_ERR_NOMEM, "index: out of memory");
    }
    mg_wtensors(p, wt);
    sp.n = p->n;
    sp.n_shards = (size_t)p->n_shards;
    sp.total_size = p->total_bytes;
    sp.total_params = p->total_params;
    for (size_t i = 0; i < p->n; i++) sp.shard_of[i] = (size_t)p->t[i].shard;
    char *text = NULL;
    size_t len = 0;
    st = st_shard_index_json(wt, &sp, &text, &len, err);
    if (!st) {
        char path[MG_PATH * 2];
        rn_path_join(path, sizeof path, R->tmp, ST_INDEX_FILE);
        st = mg_write_file(&R->io, path, text, len, err);
    }
    free(text);
    free(wt);
    st_shard_plan_free(&sp);
    return st;
}

/* Sets obj[key] to item, in place if present, else appended. */
static void set_item(cJSON *obj, const char *key, cJSON *item)
{
    if (json_get(obj, key)) cJSON_ReplaceItemInObjectCaseSensitive(obj, key, item);
    else cJSON_AddItemToObject(obj, key, item);
}

/* Writes the patched config.json and generation_config.json. */
ms_status rn_write_configs(run *R, ms_error *err)
{
    ms_status st;
    cJSON *c = cJSON_Duplicate(R->cfg_json, 1);
    if (!c) return ms_seterr(err, MS_ERR_NOMEM, "config: out of memory");
    const char *dw = rn_dtype_word(R->plan.dtype);
    int had = 0;
    if (json_get(c, "torch_dtype")) set_item(c, "torch_dtype", cJSON_CreateString(dw)), had = 1;
    if (json_get(c, "dtype")) set_item(c, "dtype", cJSON_CreateString(dw)), had = 1;
    if (!had) set_item(c, "dtype", cJSON_CreateString(dw));
    if (R->plan.untie) set_item(c, "tie_word_embeddings", cJSON_CreateFalse());
    if (R->plan.vocab_out != R->cfg.vocab_size) set_item(c, "vocab_size", cJSON_CreateNumber(R->plan.vocab_out));
    char *text = mg_json_pretty(c);
    cJSON_Delete(c);
    if (!text) return ms_seterr(err, MS_ERR_NOMEM, "config: out of memory");
    char path[MG_PATH * 2];
    rn_path_join(path, sizeof path, R->tmp, "config.json");
    st = mg_write_file(&R->io, path, text, strlen(text), err);
    free(text);
    if (st) return st;
    char src[MG_PATH * 2];
    rn_path_join(src, sizeof src, R->base, "generation_config.json");
    rn_path_join(path, sizeof path, R->tmp, "generation_config.json");
    if (!mg_exists(src)) return MS_OK;
    cJSON *g = json_load_file(src, MG_MAX_CONFIG_BYTES, err);
    if (!g) return err ? err->status : MS_ERR_FORMAT;
    /* As LLaMA-Factory: sampling parameters set without do_sample -> do_sample true. */
    int ds = 0, patch = 0;
    const cJSON *v = json_get(g, "do_sample");
    ds = v && cJSON_IsTrue(v);
    static const char *const keys[] = {"temperature", "top_p", "typical_p"};
    for (size_t i = 0; i < 3 && !ds; i++) {
        const cJSON *x = json_get(g, keys[i]);
        if (x && cJSON_IsNumber(x) && x->valuedouble != 1.0) patch = 1;
    }
    if (patch) {
        set_item(g, "do_sample", cJSON_CreateTrue());
        mg_logf(
            &R->o->log, MG_LOG_INFO,
            "generation_config.json: sampling parameters are set, so do_sample is set to true (as LLaMA-Factory does)");
        char *gt = mg_json_pretty(g);
        cJSON_Delete(g);
        if (!gt) return ms_seterr(err, MS_ERR_NOMEM, "config: out of memory");
        st = mg_write_file(&R->io, path, gt, strlen(gt), err);
        free(gt);
        return st;
    }
    cJSON_Delete(g);
    return mg_copy_file(&R->io, src, path, MG_MAX_CONFIG_BYTES, err);
}

/* Copies the tokenizer files present in the base. */
ms_status rn_copy_tokenizer(run *R, ms_error *err)
{
    int have_tok = 0;
    for (size_t i = 0; i < MG_N_COPY_FILES; i++) {
        char src[MG_PATH * 2], dst[MG_PATH * 2];
        rn_path_join(src, sizeof src, rn_tok_dir(R), mg_copy_files[i]);
        rn_path_join(dst, sizeof dst, R->tmp, mg_copy_files[i]);
        if (!mg_exists(src)) continue;
        if (i == 0) have_tok = 1;
        ms_status st = mg_copy_file(&R->io, src, dst, MG_MAX_TEXT_FILE, err);
        if (st) return st;
    }
    if (!have_tok)
        mg_logf(
            &R->o->log, MG_LOG_WARN,
            "base has no tokenizer.json: the export holds weights and configs only, and medserve needs a tokenizer to serve it");
    return MS_OK;
}

/* Writes the manifest into the temp dir. */
ms_status rn_write_manifest(run *R, mg_result *res, ms_error *err)
{
    mg_manifest_adapter ma[MG_MAX_ADAPTERS];
    size_t changed = 0;
    for (size_t i = 0; i < R->plan.n; i++) changed += R->tensor_changed[i];
    for (int i = 0; i < R->n_ad; i++) {
        ma[i].name = R->ad[i].name;
        ma[i].weight = R->o->adapters[i].weight;
        ma[i].config = mg_acfg_json(R->ad[i].cfg);
        ma[i].files = &R->ad[i].files;
        ma[i].tensors_used = R->plan.adapter_tensors_used[i];
        ma[i].tensors_changed = R->ad[i].tensors_changed;
        ma[i].elements_changed = R->ad[i].changed;
    }
    const char *bn = strrchr(R->base, '/');
    mg_manifest m = {
        .base_name = bn ? bn + 1 : R->base,
        .base_files = &R->base_files,
        .adapters = ma,
        .n_adapters = R->n_ad,
        .dtype = rn_dtype_word(R->plan.dtype),
        .tie_word_embeddings = R->plan.tied_out,
        .untied = R->plan.untie,
        .n_shards = R->plan.n_shards,
        .total_size = R->plan.total_bytes,
        .total_parameters = R->plan.total_params,
        .tensors_written = R->plan.n,
        .tensors_changed = changed,
        .out_files = &R->out_files,
        .notes = R->notes,
        .n_notes = R->n_notes,
    };
    char *text = mg_manifest_text(&m);
    if (!text) return ms_seterr(err, MS_ERR_NOMEM, "manifest: out of memory");
    char path[MG_PATH * 2];
    snprintf(path, sizeof path, "%s/medserve-manifest.json", R->tmp);
    ms_status st = mg_write_file(&R->io, path, text, strlen(text), err);
    if (!st) {
        uint8_t d[32];
        sha256(text, strlen(text), d);
        sha256_hex(d, res->manifest_sha256);
        res->tensors_changed = changed;
    }
    free(text);
    return st;
}
