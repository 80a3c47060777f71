/* export.c: one lora-merge run, mg_run (mg.h). Order of work:
 *   1. paths: base and adapters exist; out is not one of them, not inside
 *      them and does not contain them; out absent unless --force;
 *   2. inputs: base config.json (strict, Qwen3 only, no quantization) and
 *      weights (strict loader), each adapter's config, weights and keys;
 *   3. the plan (plan.c) and a free-space check (statvfs);
 *   4. SHA-256 of every input file read (on a thread, during 5);
 *   5. a temp dir beside out: shards (+ index), patched config.json,
 *      generation_config.json, tokenizer files, each fsynced;
 *   6. verification: the strict loader re-opens the export, every tensor's
 *      bytes are compared (checksum) with what was computed, every file is
 *      hashed for the manifest; the manifest is written;
 *   7. rename into place (exchange with --force; the old export is removed
 *      only after the new one is in place), fsync the parent.
 * Any failure removes the temp dir; out is then absent or as before.
 * Steps 4-6 live in inputs.c, output.c and verify.c (shared state: run.h). */
#include "mg.h"
#include "run.h"

#include <dirent.h>
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
#include <time.h>
#include <unistd.h>

#include <omp.h>
#include <pthread.h>

#include "acfg.h"
#include "akeys.h"
#include "apply.h"
#include "base/err.h"
#include "base/json.h"
#include "base/sha256.h"
#include "fhash.h"
#include "fsio.h"
#include "io/st.h"
#include "io/st_shard.h"
#include "jsonw.h"
#include "kernel.h"
#include "manifest.h"
#include "model/config.h"
#include "plan.h"

#define MG_PATH 4096
#define MG_MAX_NOTES 8

/* Tokenizer and generation files copied from the base when present. */
const char *const mg_copy_files[MG_N_COPY_FILES] = {
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
    "merges.txt",     "added_tokens.json",     "chat_template.jinja",
};

/* Monotonic seconds. */
double rn_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Output dtype name as config.json spells it. */
const char *rn_dtype_word(st_dtype t)
{
    return t == ST_F32 ? "float32" : t == ST_F16 ? "float16" : "bfloat16";
}

/* buf = dir + "/" + name (truncated paths are caught by the open that follows). */
void rn_path_join(char *buf, size_t len, const char *dir, const char *name)
{
    snprintf(buf, len, "%s/%s", dir, name);
}

/* Reports progress if a callback is set. */
void rn_progress(run *R, const char *phase)
{
    R->prog.phase = phase;
    if (R->o->progress) R->o->progress(R->o->progress_user, &R->prog);
}

/* The directory the tokenizer files come from: the base, or after a
 * vocabulary resize the adapter that resized it. */
const char *rn_tok_dir(const run *R)
{
    return R->plan.resized_by >= 0 ? R->ad[R->plan.resized_by].dir : R->base;
}

/* Size of a file, 0 if it cannot be read. */
uint64_t rn_file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) ? 0 : (uint64_t)sb.st_size;
}

/* Hashing progress: bytes through the hash. */
void rn_hash_tick(void *user, uint64_t n)
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
    if (strlen(R->parent) + strlen(R->outname) + 2 > MG_PATH)
        return ms_seterr(err, MS_ERR_INVALID, "--out: path too long");
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
            return ms_seterr(err, MS_ERR_INVALID, "--out %s contains the %s %s; refusing to replace it", o->out_dir,
                             i ? "adapter" : "base", ins[i]);
    }
    return MS_OK;
}

/* Step 2a: the base config and weights. */
static ms_status load_base(run *R, ms_error *err)
{
    char path[MG_PATH * 2];
    rn_path_join(path, sizeof path, R->base, "config.json");
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
    rn_path_join(path, sizeof path, a->dir, "adapter_model.safetensors");
    if (!mg_exists(path)) {
        static const char *const pickles[] = {"adapter_model.bin", "adapter_model.pt", "adapter_model.pth"};
        for (size_t j = 0; j < sizeof pickles / sizeof pickles[0]; j++) {
            char pp[MG_PATH * 2];
            rn_path_join(pp, sizeof pp, a->dir, pickles[j]);
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
    for (size_t i = 0; i < MG_N_COPY_FILES; i++) {
        char p[MG_PATH * 2];
        struct stat sb;
        rn_path_join(p, sizeof p, rn_tok_dir(R), mg_copy_files[i]);
        if (stat(p, &sb) == 0) need += (uint64_t)sb.st_size;
    }
    if (avail < need)
        return ms_seterr(err, MS_ERR_IO, "%s: not enough free space: %.3f GB free, the export needs about %.3f GB",
                         R->parent, avail / 1e9, need / 1e9);
    return MS_OK;
}

/* The weights files read must still be the ones opened (size, inode,
 * mtime): a file replaced or truncated during the run would make the export
 * (and its manifest hashes) describe inputs that no longer exist. */
static ms_status check_inputs_unchanged(run *R, ms_error *err)
{
    ms_status st;
    for (size_t i = 0; i < st_set_nfiles(R->base_set); i++)
        if ((st = st_file_recheck(st_set_file(R->base_set, i), err))) return st;
    for (int i = 0; i < R->n_ad; i++)
        if ((st = st_file_recheck(R->ad[i].f, err))) return st;
    return MS_OK;
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
    R.hashing.tick = rn_hash_tick;
    R.hashing.user = &R;
    R.hash_stop = 0;
    ms_status st = MS_OK;
    if (o->n_adapters < 1 || o->n_adapters > MG_MAX_ADAPTERS)
        return ms_seterr(err, MS_ERR_INVALID, "give between 1 and %d --adapter", MG_MAX_ADAPTERS);
    for (int i = 0; i < o->n_adapters; i++)
        if (!isfinite(o->adapters[i].weight))
            return ms_seterr(err, MS_ERR_INVALID, "--adapter %s: the weight must be a finite number",
                             o->adapters[i].dir);
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
        mg_logf(&o->log, MG_LOG_INFO,
                "base config dtype is float32; writing bfloat16 as LLaMA-Factory does (use --dtype f32 to keep it)");
    }
    if (dt != ST_BF16 && dt != ST_F16 && dt != ST_F32) {
        st = ms_seterr(err, MS_ERR_UNSUPPORTED, "base config.json: dtype %s cannot be an output dtype",
                       st_dtype_name(dt));
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
    if ((st = rn_check_resized_tokenizer(&R, err))) goto out;
    if (R.plan.resized_by >= 0)
        R.notes[R.n_notes++] = "The vocabulary was resized by full embedding/head weights in an adapter; vocab_size "
                               "is updated and the tokenizer files come from that adapter's directory.";
    R.notes[R.n_notes++] = "Linear deltas are added in float32 and rounded once per adapter; embedding deltas are "
                           "rounded to the output dtype before the add, as PEFT does.";
    if (!(R.sums = calloc(R.plan.n, sizeof *R.sums)) ||
        !(R.tensor_changed = calloc(R.plan.n, sizeof *R.tensor_changed))) {
        st = ms_seterr(err, MS_ERR_NOMEM, "out of memory");
        goto out;
    }
    double t0 = rn_now(), t1;
    if ((st = check_space(&R, err)) || (st = rn_hash_start(&R, err))) goto out;
    t1 = rn_now();
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
        if ((st = rn_write_shard(&R, s, err))) goto out;
    res->t_merge = rn_now() - t1 - R.t_sync;
    res->t_sync = R.t_sync;
    if ((st = check_effect(&R, err))) goto out;
    if (R.plan.n_shards > 1 && (st = rn_write_index(&R, err))) goto out;
    if (o->after_write) o->after_write(o->after_write_user, R.tmp);
    if ((st = rn_write_configs(&R, err)) || (st = rn_copy_tokenizer(&R, err))) goto out;
    t1 = rn_now();
    if ((st = rn_verify(&R, err)) || (st = rn_hash_join(&R, 0, err)) || (st = check_inputs_unchanged(&R, err)) ||
        (st = rn_write_manifest(&R, res, err)))
        goto out;
    res->t_hash = R.t_hash;
    res->t_verify = rn_now() - t1;
    if ((st = mg_fsync_dir(&R.io, R.tmp, err))) goto out;
    /* Step 7: into place. */
    if ((st = mg_rename_into_place(&R.io, R.tmp, R.out, o->force, err))) goto out;
    R.tmp_made = R.out_existed; /* after an exchange the old export sits at tmp */
    if ((st = mg_fsync_dir(&R.io, R.parent, err))) {
        /* The rename may not be durable: undo it, so a failure never leaves
         * the new export in place (the previous one, if any, returns). */
        if (R.out_existed) renameat2(AT_FDCWD, R.tmp, AT_FDCWD, R.out, RENAME_EXCHANGE);
        else rename(R.out, R.tmp);
        R.tmp_made = 1;
        goto out;
    }
    res->n_files = (int)R.out_files.n + 1;
    res->bytes_written = 0;
    for (size_t i = 0; i < R.out_files.n; i++) res->bytes_written += R.out_files.v[i].bytes;
    res->tensors_written = R.plan.n;
    res->untied = R.plan.untie;
    res->t_total = rn_now() - t0;
out:
    rn_hash_join(&R, 1, NULL);
    if (R.tmp_made) mg_rmtree(R.tmp);
    run_free(&R);
    return st;
}
