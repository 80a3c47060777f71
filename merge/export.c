/* export.c: one lora-merge run, mg_run (mg.h). Order of work:
 *   1. paths: base and adapters exist; out is not one of them, not inside
 *      them and does not contain them; out absent unless --force;
 *   2. inputs: base config.json (strict, Qwen3 only, no quantization) and
 *      weights (strict loader), each adapter's config, weights and keys;
 *   3. the plan (plan.c) and a free-space check (statvfs);
 *   4. SHA-256 of every input file read;
 *   5. a temp dir beside out: shards (+ index), patched config.json,
 *      generation_config.json, tokenizer files, each fsynced;
 *   6. verification: the strict loader re-opens the export, every tensor's
 *      bytes are compared (checksum) with what was computed, every file is
 *      hashed for the manifest; the manifest is written;
 *   7. rename into place (exchange with --force; the old export is removed
 *      only after the new one is in place), fsync the parent.
 * Any failure removes the temp dir; out is then absent or as before. */
#include "mg.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <omp.h>

#include "acfg.h"
#include "akeys.h"
#include "apply.h"
#include "config.h"
#include "err.h"
#include "fhash.h"
#include "fsio.h"
#include "json.h"
#include "jsonw.h"
#include "kernel.h"
#include "manifest.h"
#include "plan.h"
#include "sha256.h"
#include "st.h"
#include "st_shard.h"

#define MG_PATH 4096
#define MG_MAX_NOTES 8

/* Tokenizer and generation files copied from the base when present. */
static const char *const COPY_FILES[] = {
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
    "merges.txt", "added_tokens.json", "chat_template.jinja",
};

typedef struct run_adapter {
    char dir[MG_PATH];
    char label[MG_PATH * 2];
    char name[MG_PATH];
    const mg_acfg *cfg;
    st_file *f;
    mg_akeys keys;
    mg_filelist files;
    uint64_t changed;
    size_t tensors_changed;
} run_adapter;

typedef struct run {
    const mg_opts *o;
    mg_io io;
    char base[MG_PATH], out[MG_PATH + 512], parent[MG_PATH], tmp[MG_PATH + 512], outname[256];
    int tmp_made, out_existed;
    qwen3_config cfg;
    cJSON *cfg_json;
    st_set *base_set;
    run_adapter *ad;
    int n_ad;
    mg_plan plan;
    const mg_kernels *k;
    uint64_t *sums;        /* per output tensor: checksum of the bytes written */
    size_t *tensor_changed;
    mg_filelist base_files, out_files;
    const char *notes[MG_MAX_NOTES];
    size_t n_notes;
    mg_progress prog;
    mg_hashing hashing;
} run;

/* Output dtype name as config.json spells it. */
static const char *dtype_word(st_dtype t)
{
    return t == ST_F32 ? "float32" : t == ST_F16 ? "float16" : "bfloat16";
}

/* buf = dir + "/" + name (truncated paths are caught by the open that follows). */
static void path_join(char *buf, size_t len, const char *dir, const char *name)
{
    snprintf(buf, len, "%s/%s", dir, name);
}

/* Reports progress if a callback is set. */
static void progress(run *R, const char *phase)
{
    R->prog.phase = phase;
    if (R->o->progress) R->o->progress(R->o->progress_user, &R->prog);
}

/* The directory the tokenizer files come from: the base, or after a
 * vocabulary resize the adapter that resized it. */
static const char *tok_dir(const run *R)
{
    return R->plan.resized_by >= 0 ? R->ad[R->plan.resized_by].dir : R->base;
}

/* Size of a file, 0 if it cannot be read. */
static uint64_t file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) ? 0 : (uint64_t)sb.st_size;
}

/* Hashing progress: bytes through the hash. */
static void hash_tick(void *user, uint64_t n)
{
    run *R = user;
    R->prog.bytes_done += n;
    if (R->o->progress) R->o->progress(R->o->progress_user, &R->prog);
}

/* Whether a is b or a directory inside b (both absolute, normalised). */
static int path_within(const char *a, const char *b)
{
    size_t n = strlen(b);
    if (strncmp(a, b, n)) return 0;
    return a[n] == '\0' || a[n] == '/' || (n == 1 && b[0] == '/');
}

/* Resolves an existing directory to an absolute path. */
static ms_status real_dir(const char *what, const char *path, char *out, ms_error *err)
{
    struct stat sb;
    if (!path || !path[0]) return ms_seterr(err, MS_ERR_INVALID, "%s: no directory given", what);
    if (stat(path, &sb)) return ms_seterr(err, MS_ERR_NOTFOUND, "%s %s: %s", what, path, strerror(errno));
    if (!S_ISDIR(sb.st_mode)) return ms_seterr(err, MS_ERR_INVALID, "%s %s: not a directory", what, path);
    char tmp[PATH_MAX];
    if (!realpath(path, tmp) || strlen(tmp) >= MG_PATH)
        return ms_seterr(err, MS_ERR_IO, "%s %s: cannot resolve the path", what, path);
    strcpy(out, tmp);
    return MS_OK;
}

/* Step 1: resolves and cross-checks base, adapter and out paths. */
static ms_status check_paths(run *R, ms_error *err)
{
    const mg_opts *o = R->o;
    ms_status st;
    if ((st = real_dir("base", o->base_dir, R->base, err))) return st;
    for (int i = 0; i < R->n_ad; i++)
        if ((st = real_dir("adapter", o->adapters[i].dir, R->ad[i].dir, err))) return st;
    if (!o->out_dir || !o->out_dir[0]) return ms_seterr(err, MS_ERR_INVALID, "--out: no directory given");
    char a[MG_PATH], b[MG_PATH];
    snprintf(a, sizeof a, "%s", o->out_dir);
    snprintf(b, sizeof b, "%s", o->out_dir);
    size_t L = strlen(a);
    while (L > 1 && a[L - 1] == '/') a[--L] = '\0', b[L] = '\0';
    const char *name = basename(a);
    if (!name[0] || !strcmp(name, ".") || !strcmp(name, "..") || !strcmp(name, "/"))
        return ms_seterr(err, MS_ERR_INVALID, "--out %s: needs a directory name", o->out_dir);
    snprintf(R->outname, sizeof R->outname, "%s", name);
    if ((st = real_dir("--out parent directory", dirname(b), R->parent, err))) return st;
    if (strlen(R->parent) + strlen(R->outname) + 2 > MG_PATH) return ms_seterr(err, MS_ERR_INVALID, "--out: path too long");
    snprintf(R->out, sizeof R->out, "%s%s%s", R->parent, strcmp(R->parent, "/") ? "/" : "", R->outname);
    /* If out exists as a link or directory, resolve it too for the checks. */
    char out_real[PATH_MAX];
    const char *outp = R->out;
    struct stat sb;
    if (lstat(R->out, &sb) == 0) {
        R->out_existed = 1;
        if (!o->force)
            return ms_seterr(err, MS_ERR_INVALID, "--out %s already exists; use --force to replace it", o->out_dir);
        if (!S_ISDIR(sb.st_mode))
            return ms_seterr(err, MS_ERR_INVALID, "--out %s exists and is not a directory; refusing to replace it",
                             o->out_dir);
        if (realpath(R->out, out_real)) outp = out_real;
    }
    const char *ins[MG_MAX_ADAPTERS + 1];
    ins[0] = R->base;
    for (int i = 0; i < R->n_ad; i++) ins[i + 1] = R->ad[i].dir;
    for (int i = 0; i <= R->n_ad; i++) {
        if (path_within(outp, ins[i]) || path_within(R->out, ins[i]))
            return ms_seterr(err, MS_ERR_INVALID, "--out %s is %s %s or inside it; inputs are never modified",
                             o->out_dir, i ? "the adapter" : "the base", ins[i]);
        if (path_within(ins[i], outp) || path_within(ins[i], R->out))
            return ms_seterr(err, MS_ERR_INVALID, "--out %s contains the %s %s; refusing to replace it",
                             o->out_dir, i ? "adapter" : "base", ins[i]);
    }
    return MS_OK;
}

/* Step 2a: the base config and weights. */
static ms_status load_base(run *R, ms_error *err)
{
    char path[MG_PATH * 2];
    path_join(path, sizeof path, R->base, "config.json");
    ms_status st = config_load(path, &R->cfg, err);
    if (st) return st;
    if (!(R->cfg_json = json_load_file(path, MG_MAX_CONFIG_BYTES, err))) return err ? err->status : MS_ERR_FORMAT;
    const cJSON *q = json_get(R->cfg_json, "quantization_config");
    if (q && !cJSON_IsNull(q))
        return ms_seterr(err, MS_ERR_UNSUPPORTED,
                         "%s: field \"quantization_config\" is set; merging into a quantized base would be wrong: "
                         "use the unquantized base model",
                         path);
    const char *mt = NULL;
    if ((st = json_get_string(R->cfg_json, "model_type", 1, &mt, path, err))) return st;
    if (strcmp(mt, "qwen3"))
        return ms_seterr(err, MS_ERR_UNSUPPORTED, "%s: field \"model_type\" is \"%s\"; only \"qwen3\" is supported",
                         path, mt);
    if ((st = st_set_open(R->base, &R->base_set, err))) return st;
    const char *note = st_set_note(R->base_set);
    if (note) mg_logf(&R->o->log, MG_LOG_WARN, "base: %s", note);
    return MS_OK;
}

/* Step 2b: one adapter's config, weights and keys. */
static ms_status load_adapter(run *R, int i, ms_error *err)
{
    run_adapter *a = &R->ad[i];
    ms_status st;
    snprintf(a->name, sizeof a->name, "%s", strrchr(a->dir, '/') ? strrchr(a->dir, '/') + 1 : a->dir);
    snprintf(a->label, sizeof a->label, "adapter %d (%s)", i + 1, a->dir);
    if ((st = mg_acfg_load(a->dir, &a->cfg, &R->o->log, err))) return st;
    char path[MG_PATH * 2];
    path_join(path, sizeof path, a->dir, "adapter_model.safetensors");
    if (!mg_exists(path)) {
        static const char *const pickles[] = {"adapter_model.bin", "adapter_model.pt", "adapter_model.pth"};
        for (size_t j = 0; j < sizeof pickles / sizeof pickles[0]; j++) {
            char pp[MG_PATH * 2];
            path_join(pp, sizeof pp, a->dir, pickles[j]);
            if (mg_exists(pp))
                return st_refuse_pickle(pp, "the adapter weights are a pickle, which can run code when loaded", err);
        }
        return ms_seterr(err, MS_ERR_NOTFOUND, "%s: missing (the adapter weights)", path);
    }
    if ((st = st_file_open(path, &a->f, err))) return st;
    return mg_akeys_classify(a->f, path, &a->keys, &R->o->log, err);
}

/* Step 3b: refuses to start when the file system lacks the room. */
static ms_status check_space(run *R, ms_error *err)
{
    struct statvfs vs;
    if (statvfs(R->parent, &vs)) return ms_seterr(err, MS_ERR_IO, "%s: statvfs: %s", R->parent, strerror(errno));
    uint64_t avail = (uint64_t)vs.f_bavail * (uint64_t)vs.f_frsize;
    /* data + headers (a generous 64 KiB per shard) + copied files + 1 MiB
     * for configs, index and manifest */
    uint64_t need = R->plan.total_bytes + (uint64_t)R->plan.n_shards * 65536 + (1u << 20);
    for (size_t i = 0; i < sizeof COPY_FILES / sizeof COPY_FILES[0]; i++) {
        char p[MG_PATH * 2];
        struct stat sb;
        path_join(p, sizeof p, tok_dir(R), COPY_FILES[i]);
        if (stat(p, &sb) == 0) need += (uint64_t)sb.st_size;
    }
    if (avail < need)
        return ms_seterr(err, MS_ERR_IO, "%s: not enough free space: %.3f GB free, the export needs about %.3f GB",
                         R->parent, avail / 1e9, need / 1e9);
    return MS_OK;
}

/* Largest token id in a tokenizer.json (model.vocab values, added_tokens ids). */
static ms_status tokenizer_max_id(const char *path, int64_t *max_id, ms_error *err)
{
    cJSON *j = json_load_file(path, MG_MAX_TEXT_FILE, err);
    if (!j) return err ? err->status : MS_ERR_FORMAT;
    int64_t mx = -1;
    const cJSON *v = json_get(json_get(j, "model"), "vocab"), *x;
    cJSON_ArrayForEach(x, v) if (cJSON_IsNumber(x) && x->valuedouble > (double)mx) mx = (int64_t)x->valuedouble;
    cJSON_ArrayForEach(x, json_get(j, "added_tokens"))
    {
        const cJSON *id = json_get(x, "id");
        if (cJSON_IsNumber(id) && id->valuedouble > (double)mx) mx = (int64_t)id->valuedouble;
    }
    cJSON_Delete(j);
    *max_id = mx;
    return MS_OK;
}

/* After a vocabulary resize the export needs the fine-tuned tokenizer: it
 * must be in the resizing adapter's directory and fit the new size. */
static ms_status check_resized_tokenizer(run *R, ms_error *err)
{
    if (R->plan.resized_by < 0) return MS_OK;
    const run_adapter *a = &R->ad[R->plan.resized_by];
    char p[MG_PATH * 2];
    path_join(p, sizeof p, a->dir, "tokenizer.json");
    if (!mg_exists(p))
        return ms_seterr(err, MS_ERR_UNSUPPORTED,
                         "%s resizes the vocabulary from %d to %d tokens, but its directory has no tokenizer.json; "
                         "copy the fine-tuned tokenizer files there (the base tokenizer does not match)",
                         a->label, R->cfg.vocab_size, R->plan.vocab_out);
    int64_t mx = -1;
    ms_status st = tokenizer_max_id(p, &mx, err);
    if (st) return st;
    if (mx >= R->plan.vocab_out)
        return ms_seterr(err, MS_ERR_FORMAT, "%s: token id %lld does not fit the resized vocabulary of %d rows", p,
                         (long long)mx, R->plan.vocab_out);
    mg_logf(&R->o->log, MG_LOG_INFO, "vocabulary resized from %d to %d by %s; tokenizer files are taken from it",
            R->cfg.vocab_size, R->plan.vocab_out, a->label);
    return MS_OK;
}

/* Step 4: hashes the base files and adapter files that are read. */
static ms_status hash_inputs(run *R, ms_error *err)
{
    ms_status st;
    /* Progress: the bytes of every file hashed here. */
    R->prog.bytes_done = 0;
    R->prog.bytes_total = 0;
    for (size_t i = 0; i < st_set_nfiles(R->base_set); i++) R->prog.bytes_total += file_size(st_file_path(st_set_file(R->base_set, i)));
    for (int i = 0; i < R->n_ad; i++) {
        char p[MG_PATH * 2];
        path_join(p, sizeof p, R->ad[i].dir, "adapter_model.safetensors");
        R->prog.bytes_total += file_size(p);
    }
    progress(R, "hash inputs");
    static const char *const extra[] = {"config.json", "generation_config.json", "model.safetensors.index.json"};
    for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++) {
        char p[MG_PATH * 2];
        path_join(p, sizeof p, R->base, extra[i]);
        if (!strcmp(extra[i], "model.safetensors.index.json") && st_set_nfiles(R->base_set) == 1) continue;
        if (mg_exists(p) && (st = mg_filelist_add(&R->base_files, R->base, extra[i], &R->hashing, err))) return st;
    }
    for (size_t i = 0; i < sizeof COPY_FILES / sizeof COPY_FILES[0]; i++) {
        char p[MG_PATH * 2];
        path_join(p, sizeof p, R->base, COPY_FILES[i]);
        if (mg_exists(p) && (st = mg_filelist_add(&R->base_files, R->base, COPY_FILES[i], &R->hashing, err))) return st;
        if (R->plan.resized_by < 0) continue;
        run_adapter *a = &R->ad[R->plan.resized_by];
        path_join(p, sizeof p, a->dir, COPY_FILES[i]);
        if (mg_exists(p) && (st = mg_filelist_add(&a->files, a->dir, COPY_FILES[i], &R->hashing, err))) return st;
    }
    for (size_t i = 0; i < st_set_nfiles(R->base_set); i++) {
        const char *fp = st_file_path(st_set_file(R->base_set, i));
        const char *slash = strrchr(fp, '/');
        if ((st = mg_filelist_add(&R->base_files, R->base, slash ? slash + 1 : fp, &R->hashing, err))) return st;
    }
    mg_filelist_sort(&R->base_files);
    for (int i = 0; i < R->n_ad; i++) {
        if ((st = mg_filelist_add(&R->ad[i].files, R->ad[i].dir, "adapter_config.json", &R->hashing, err))) return st;
        if ((st = mg_filelist_add(&R->ad[i].files, R->ad[i].dir, "adapter_model.safetensors", &R->hashing, err))) return st;
        mg_filelist_sort(&R->ad[i].files);
    }
    return MS_OK;
}

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
static ms_status write_shard(run *R, int shard, ms_error *err)
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
    char name[64], path[MG_PATH * 2];
    mg_shard_name(shard, p->n_shards, name, sizeof name);
    path_join(path, sizeof path, R->tmp, name);
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
        progress(R, "merge");
    }
    if ((st = mg_io_step(&R->io, "fsync", path, err))) goto out;
    st = st_writer_finish(w, err);
out:
    st_writer_abort(w);
    free(wt);
    free(map);
    free(labels);
    return st;
}

/* Writes model.safetensors.index.json (st_shard's text: as transformers). */
static ms_status write_index(run *R, ms_error *err)
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
        path_join(path, sizeof path, R->tmp, ST_INDEX_FILE);
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
    if (json_get(obj, key))
        cJSON_ReplaceItemInObjectCaseSensitive(obj, key, item);
    else
        cJSON_AddItemToObject(obj, key, item);
}

/* Writes the patched config.json and generation_config.json. */
static ms_status write_configs(run *R, ms_error *err)
{
    ms_status st;
    cJSON *c = cJSON_Duplicate(R->cfg_json, 1);
    if (!c) return ms_seterr(err, MS_ERR_NOMEM, "config: out of memory");
    const char *dw = dtype_word(R->plan.dtype);
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
    path_join(path, sizeof path, R->tmp, "config.json");
    st = mg_write_file(&R->io, path, text, strlen(text), err);
    free(text);
    if (st) return st;
    char src[MG_PATH * 2];
    path_join(src, sizeof src, R->base, "generation_config.json");
    path_join(path, sizeof path, R->tmp, "generation_config.json");
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
        mg_logf(&R->o->log, MG_LOG_INFO, "generation_config.json: sampling parameters are set, so do_sample is set to true (as LLaMA-Factory does)");
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
static ms_status copy_tokenizer(run *R, ms_error *err)
{
    int have_tok = 0;
    for (size_t i = 0; i < sizeof COPY_FILES / sizeof COPY_FILES[0]; i++) {
        char src[MG_PATH * 2], dst[MG_PATH * 2];
        path_join(src, sizeof src, tok_dir(R), COPY_FILES[i]);
        path_join(dst, sizeof dst, R->tmp, COPY_FILES[i]);
        if (!mg_exists(src)) continue;
        if (i == 0) have_tok = 1;
        ms_status st = mg_copy_file(&R->io, src, dst, MG_MAX_TEXT_FILE, err);
        if (st) return st;
    }
    if (!have_tok)
        mg_logf(&R->o->log, MG_LOG_WARN, "base has no tokenizer.json: the export holds weights and configs only, and medserve needs a tokenizer to serve it");
    return MS_OK;
}

/* Compares tensor data addresses (file order). */
static int cmp_data(const void *a, const void *b)
{
    const char *x = (*(const st_tensor *const *)a)->data, *y = (*(const st_tensor *const *)b)->data;
    return x < y ? -1 : x > y;
}

/* Reads one written weights file sequentially: SHA-256 of the whole file
 * (recorded for the manifest) and, by offset, the checksum of each tensor,
 * compared with the one computed while writing. The reads go through a
 * small buffer, so memory stays flat for any tensor size. */
static ms_status verify_file(run *R, const st_file *f, ms_error *err)
{
    enum { BLOCK = 4 << 20 };
    const char *path = st_file_path(f);
    size_t nt = st_file_count(f);
    const st_tensor **ts = calloc(nt ? nt : 1, sizeof *ts);
    unsigned char *buf = malloc(BLOCK);
    long *idx = calloc(nt ? nt : 1, sizeof *idx);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ms_status st = MS_OK;
    if (!ts || !buf || !idx || fd < 0) {
        st = fd < 0 ? ms_seterr(err, MS_ERR_IO, "%s: open: %s", path, strerror(errno))
                    : ms_seterr(err, MS_ERR_NOMEM, "verify: out of memory");
        goto out;
    }
    uint64_t data_bytes = 0, size = file_size(path);
    for (size_t i = 0; i < nt; i++) ts[i] = st_file_get(f, i), data_bytes += ts[i]->nbytes;
    qsort(ts, nt, sizeof *ts, cmp_data);
    for (size_t i = 0; i < nt; i++) {
        idx[i] = -1;
        for (size_t j = 0; j < R->plan.n; j++)
            if (!strcmp(R->plan.t[j].name, ts[i]->name)) idx[i] = (long)j;
        if (idx[i] < 0) {
            st = ms_seterr(err, MS_ERR_INTERNAL, "verify %s: unexpected tensor \"%s\"", path, ts[i]->name);
            goto out;
        }
    }
    const uint64_t data0 = size - data_bytes; /* tensors tile the end of the file */
    sha256_ctx sc;
    sha256_init(&sc);
    mg_fhash h;
    mg_fhash_init(&h);
    size_t ti = 0;
    uint64_t pos = 0;
    for (;;) {
        if (R->o->cancel && *R->o->cancel) {
            st = ms_seterr(err, MS_ERR_CANCELLED, "interrupted");
            goto out;
        }
        ssize_t r = read(fd, buf, BLOCK);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            st = ms_seterr(err, MS_ERR_IO, "%s: read: %s", path, strerror(errno));
            goto out;
        }
        if (r == 0) break;
        sha256_update(&sc, buf, (size_t)r);
        uint64_t end = pos + (uint64_t)r;
        while (ti < nt) {
            uint64_t ts0 = data0 + (uint64_t)((const char *)ts[ti]->data - (const char *)ts[0]->data);
            uint64_t ts1 = ts0 + ts[ti]->nbytes;
            if (ts0 >= end) break;
            uint64_t a = ts0 > pos ? ts0 : pos, b = ts1 < end ? ts1 : end;
            if (b > a) mg_fhash_update(&h, buf + (a - pos), (size_t)(b - a));
            if (ts1 > end) break;
            if (mg_fhash_final(&h) != R->sums[idx[ti]]) {
                st = ms_seterr(err, MS_ERR_IO, "verify %s: the bytes of tensor \"%s\" on disk differ from those written",
                               path, ts[ti]->name);
                goto out;
            }
            mg_fhash_init(&h);
            ti++;
        }
        pos = end;
        hash_tick(R, (uint64_t)r);
    }
    if (ti != nt || pos != size) {
        st = ms_seterr(err, MS_ERR_IO, "verify %s: %zu of %zu tensors read back (%llu of %llu bytes)", path, ti, nt,
                       (unsigned long long)pos, (unsigned long long)size);
        goto out;
    }
    uint8_t d[32];
    char hex[65];
    sha256_final(&sc, d);
    sha256_hex(d, hex);
    const char *slash = strrchr(path, '/');
    st = mg_filelist_add_known(&R->out_files, slash ? slash + 1 : path, hex, size, err);
out:
    if (fd >= 0) close(fd);
    free(ts);
    free(buf);
    free(idx);
    return st;
}

/* Step 6: re-opens the export strictly and checks every tensor's bytes;
 * hashes every file for the manifest. */
static ms_status verify(run *R, ms_error *err)
{
    mg_plan *p = &R->plan;
    st_set *s = NULL;
    ms_status st;
    R->prog.bytes_done = 0;
    R->prog.bytes_total = p->total_bytes + (uint64_t)p->n_shards * 65536; /* about the weights files */
    progress(R, "verify");
    if ((st = st_set_open(R->tmp, &s, err))) return st;
    if (st_set_count(s) != p->n) {
        st = ms_seterr(err, MS_ERR_INTERNAL, "verify %s: %zu tensors read back, %zu written", R->tmp, st_set_count(s), p->n);
        goto out;
    }
    for (size_t i = 0; i < p->n; i++) {
        const mg_otensor *o = &p->t[i];
        const st_tensor *t = st_set_find(s, o->name);
        if (R->o->cancel && *R->o->cancel) {
            st = ms_seterr(err, MS_ERR_CANCELLED, "interrupted");
            goto out;
        }
        char name[64];
        mg_shard_name(o->shard, p->n_shards, name, sizeof name);
        const char *base = t && t->path ? strrchr(t->path, '/') : NULL;
        if (!t || t->dtype != p->dtype || t->ndim != o->ndim || t->shape[0] != o->shape[0] ||
            (o->ndim == 2 && t->shape[1] != o->shape[1]) || !base || strcmp(base + 1, name)) {
            st = ms_seterr(err, MS_ERR_INTERNAL, "verify %s: tensor \"%s\" does not read back as written", R->tmp, o->name);
            goto out;
        }
    }
    /* One sequential read per weights file: its SHA-256 for the manifest and
     * each tensor's checksum against what was written. */
    for (size_t i = 0; i < st_set_nfiles(s); i++)
        if ((st = verify_file(R, st_set_file(s, i), err))) goto out;
    static const char *const more[] = {"config.json", "generation_config.json", "model.safetensors.index.json"};
    for (size_t i = 0; i < 3; i++) {
        char pth[MG_PATH * 2];
        path_join(pth, sizeof pth, R->tmp, more[i]);
        if (mg_exists(pth) && (st = mg_filelist_add(&R->out_files, R->tmp, more[i], &R->hashing, err))) goto out;
    }
    for (size_t i = 0; i < sizeof COPY_FILES / sizeof COPY_FILES[0]; i++) {
        char pth[MG_PATH * 2];
        path_join(pth, sizeof pth, R->tmp, COPY_FILES[i]);
        if (mg_exists(pth) && (st = mg_filelist_add(&R->out_files, R->tmp, COPY_FILES[i], &R->hashing, err))) goto out;
    }
    mg_filelist_sort(&R->out_files);
    /* The written config must load. */
    char cp[MG_PATH * 2];
    qwen3_config chk;
    path_join(cp, sizeof cp, R->tmp, "config.json");
    if ((st = config_load(cp, &chk, err))) goto out;
    if (chk.tie_word_embeddings != p->tied_out) {
        st = ms_seterr(err, MS_ERR_INTERNAL, "verify %s: tie_word_embeddings reads back wrong", cp);
        goto out;
    }
out:
    st_set_close(s);
    return st;
}

/* Writes the manifest into the temp dir. */
static ms_status write_manifest(run *R, mg_result *res, ms_error *err)
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
        .dtype = dtype_word(R->plan.dtype),
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

/* Refuses an adapter that changed nothing at all. */
static ms_status check_effect(run *R, ms_error *err)
{
    for (int i = 0; i < R->n_ad; i++)
        if (R->ad[i].changed == 0)
            return ms_seterr(err, MS_ERR_INVALID,
                             "%s changes no weight at all (zero or vanishing deltas, e.g. a freshly initialised "
                             "adapter); refusing to write a model identical to its input",
                             R->ad[i].label);
    return MS_OK;
}

/* Frees everything a run holds. */
static void run_free(run *R)
{
    cJSON_Delete(R->cfg_json);
    st_set_close(R->base_set);
    for (int i = 0; R->ad && i < R->n_ad; i++) {
        mg_acfg_free(R->ad[i].cfg);
        mg_akeys_free(&R->ad[i].keys);
        st_file_close(R->ad[i].f);
        mg_filelist_free(&R->ad[i].files);
    }
    free(R->ad);
    mg_plan_free(&R->plan);
    free(R->sums);
    free(R->tensor_changed);
    mg_filelist_free(&R->base_files);
    mg_filelist_free(&R->out_files);
}

/* The whole merge. */
ms_status mg_run(const mg_opts *o, mg_result *res, ms_error *err)
{
    run R;
    memset(&R, 0, sizeof R);
    mg_result dummy;
    if (!res) res = &dummy;
    memset(res, 0, sizeof *res);
    R.o = o;
    R.io.fail_at = o->fail_at_step;
    R.hashing.cancel = o->cancel;
    R.hashing.tick = hash_tick;
    R.hashing.user = &R;
    ms_status st = MS_OK;
    if (o->n_adapters < 1 || o->n_adapters > MG_MAX_ADAPTERS)
        return ms_seterr(err, MS_ERR_INVALID, "give between 1 and %d --adapter", MG_MAX_ADAPTERS);
    for (int i = 0; i < o->n_adapters; i++)
        if (!isfinite(o->adapters[i].weight))
            return ms_seterr(err, MS_ERR_INVALID, "--adapter %s: the weight must be a finite number", o->adapters[i].dir);
    if (o->out_dtype != -1 && o->out_dtype != ST_BF16 && o->out_dtype != ST_F16 && o->out_dtype != ST_F32)
        return ms_seterr(err, MS_ERR_INVALID, "--dtype must be bf16, f16 or f32");
    R.n_ad = o->n_adapters;
    if (!(R.ad = calloc((size_t)R.n_ad, sizeof *R.ad))) return ms_seterr(err, MS_ERR_NOMEM, "out of memory");
    if (o->threads > 0) omp_set_num_threads(o->threads);
    R.k = mg_kernels_get();
    if ((st = check_paths(&R, err)) || (st = load_base(&R, err))) goto out;
    for (int i = 0; i < R.n_ad; i++)
        if ((st = load_adapter(&R, i, err))) goto out;
    st_dtype dt = o->out_dtype >= 0 ? (st_dtype)o->out_dtype : R.cfg.dtype;
    if (dt == ST_F32 && o->out_dtype < 0) {
        dt = ST_BF16;
        mg_logf(&o->log, MG_LOG_INFO, "base config dtype is float32; writing bfloat16 as LLaMA-Factory does (use --dtype f32 to keep it)");
    }
    if (dt != ST_BF16 && dt != ST_F16 && dt != ST_F32) {
        st = ms_seterr(err, MS_ERR_UNSUPPORTED, "base config.json: dtype %s cannot be an output dtype", st_dtype_name(dt));
        goto out;
    }
    mg_adapter pa[MG_MAX_ADAPTERS];
    for (int i = 0; i < R.n_ad; i++) {
        pa[i].dir = R.ad[i].dir;
        pa[i].weight = o->adapters[i].weight;
        pa[i].cfg = R.ad[i].cfg;
        pa[i].keys = &R.ad[i].keys;
    }
    if ((st = mg_plan_build(&R.cfg, R.base_set, pa, R.n_ad, dt, o->max_shard_bytes, &R.plan, &o->log, err))) goto out;
    if (R.plan.untie)
        R.notes[R.n_notes++] = "The base ties lm_head to embed_tokens and an adapter changes one of them; the export "
                               "is untied (lm_head.weight = embedding + head changes, embedding changes only in "
                               "model.embed_tokens.weight, tie_word_embeddings false), which matches the unmerged "
                               "PEFT model.";
    if ((st = check_resized_tokenizer(&R, err))) goto out;
    if (R.plan.resized_by >= 0)
        R.notes[R.n_notes++] = "The vocabulary was resized by full embedding/head weights in an adapter; vocab_size "
                               "is updated and the tokenizer files come from that adapter's directory.";
    R.notes[R.n_notes++] = "Linear deltas are added in float32 and rounded once per adapter; embedding deltas are "
                           "rounded to the output dtype before the add, as PEFT does.";
    if (!(R.sums = calloc(R.plan.n, sizeof *R.sums)) || !(R.tensor_changed = calloc(R.plan.n, sizeof *R.tensor_changed))) {
        st = ms_seterr(err, MS_ERR_NOMEM, "out of memory");
        goto out;
    }
    if ((st = check_space(&R, err)) || (st = hash_inputs(&R, err))) goto out;
    /* Step 5: the temp dir beside out. */
    snprintf(R.tmp, sizeof R.tmp, "%s/.%s.tmp-XXXXXX", R.parent, R.outname);
    if ((st = mg_io_step(&R.io, "mkdtemp", R.tmp, err))) goto out;
    if (!mkdtemp(R.tmp)) {
        st = ms_seterr(err, MS_ERR_IO, "%s: mkdtemp: %s", R.tmp, strerror(errno));
        goto out;
    }
    R.tmp_made = 1;
    {
        /* mkdtemp makes it 0700; give the export the usual directory mode. */
        mode_t um = umask(0);
        umask(um);
        chmod(R.tmp, 0777 & ~um);
    }
    R.prog.tensors_total = R.plan.n;
    R.prog.bytes_total = R.plan.total_bytes;
    R.prog.bytes_done = 0;
    for (int s = 0; s < R.plan.n_shards; s++)
        if ((st = write_shard(&R, s, err))) goto out;
    if ((st = check_effect(&R, err))) goto out;
    if (R.plan.n_shards > 1 && (st = write_index(&R, err))) goto out;
    if (o->after_write) o->after_write(o->after_write_user, R.tmp);
    if ((st = write_configs(&R, err)) || (st = copy_tokenizer(&R, err))) goto out;
    if ((st = verify(&R, err)) || (st = write_manifest(&R, res, err))) goto out;
    if ((st = mg_fsync_dir(&R.io, R.tmp, err))) goto out;
    /* Step 7: into place. */
    if ((st = mg_rename_into_place(&R.io, R.tmp, R.out, o->force, err))) goto out;
    R.tmp_made = R.out_existed; /* after an exchange the old export sits at tmp */
    if ((st = mg_fsync_dir(&R.io, R.parent, err))) {
        /* The rename may not be durable: undo it, so a failure never leaves
         * the new export in place (the previous one, if any, returns). */
        if (R.out_existed)
            renameat2(AT_FDCWD, R.tmp, AT_FDCWD, R.out, RENAME_EXCHANGE);
        else
            rename(R.out, R.tmp);
        R.tmp_made = 1;
        goto out;
    }
    res->n_files = (int)R.out_files.n + 1;
    res->bytes_written = 0;
    for (size_t i = 0; i < R.out_files.n; i++) res->bytes_written += R.out_files.v[i].bytes;
    res->tensors_written = R.plan.n;
    res->untied = R.plan.untie;
out:
    if (R.tmp_made) mg_rmtree(R.tmp);
    run_free(&R);
    return st;
}
