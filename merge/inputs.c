/* inputs.c: the inputs side of a run: SHA-256 of every input file read,
 * computed on a background thread while the merge runs (the manifest needs
 * them only at the end; the thread stops early when the run fails), and the
 * tokenizer check after a vocabulary resize. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/err.h"
#include "base/json.h"
#include "run.h"

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
ms_status rn_check_resized_tokenizer(run *R, ms_error *err)
{
    if (R->plan.resized_by < 0) return MS_OK;
    const run_adapter *a = &R->ad[R->plan.resized_by];
    char p[MG_PATH * 2];
    rn_path_join(p, sizeof p, a->dir, "tokenizer.json");
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

static ms_status hash_inputs(run *R, ms_error *err);

/* Body of the input-hashing thread. */
static void *hash_thread(void *arg)
{
    run *R = arg;
    double t0 = rn_now();
    R->hash_status = hash_inputs(R, &R->hash_err);
    R->t_hash = rn_now() - t0;
    return NULL;
}

/* Starts hashing the inputs in the background. */
ms_status rn_hash_start(run *R, ms_error *err)
{
    R->in_hashing.cancel = &R->hash_stop;
    if (pthread_create(&R->hasher, NULL, hash_thread, R))
        return ms_seterr(err, MS_ERR_NOMEM, "cannot start the hashing thread");
    R->hasher_started = 1;
    return MS_OK;
}

/* Waits for the input hashes; stop asks the thread to give up early. */
ms_status rn_hash_join(run *R, int stop, ms_error *err)
{
    if (!R->hasher_started) return MS_OK;
    if (stop) R->hash_stop = 1;
    pthread_join(R->hasher, NULL);
    R->hasher_started = 0;
    if (R->hash_status && !stop) {
        if (err) *err = R->hash_err;
        return R->hash_status;
    }
    return MS_OK;
}

/* Step 4: hashes the base files and adapter files that are read (on the
 * background thread; see hash_thread). */
static ms_status hash_inputs(run *R, ms_error *err)
{
    ms_status st;
    static const char *const extra[] = {"config.json", "generation_config.json", "model.safetensors.index.json"};
    for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++) {
        char p[MG_PATH * 2];
        rn_path_join(p, sizeof p, R->base, extra[i]);
        if (!strcmp(extra[i], "model.safetensors.index.json") && st_set_nfiles(R->base_set) == 1) continue;
        if (mg_exists(p) && (st = mg_filelist_add(&R->base_files, R->base, extra[i], &R->in_hashing, err))) return st;
    }
    for (size_t i = 0; i < MG_N_COPY_FILES; i++) {
        char p[MG_PATH * 2];
        rn_path_join(p, sizeof p, R->base, mg_copy_files[i]);
        if (mg_exists(p) && (st = mg_filelist_add(&R->base_files, R->base, mg_copy_files[i], &R->in_hashing, err)))
            return st;
        if (R->plan.resized_by < 0) continue;
        run_adapter *a = &R->ad[R->plan.resized_by];
        rn_path_join(p, sizeof p, a->dir, mg_copy_files[i]);
        if (mg_exists(p) && (st = mg_filelist_add(&a->files, a->dir, mg_copy_files[i], &R->in_hashing, err))) return st;
    }
    for (size_t i = 0; i < st_set_nfiles(R->base_set); i++) {
        const char *fp = st_file_path(st_set_file(R->base_set, i));
        const char *slash = strrchr(fp, '/');
        if ((st = mg_filelist_add(&R->base_files, R->base, slash ? slash + 1 : fp, &R->in_hashing, err))) return st;
    }
    mg_filelist_sort(&R->base_files);
    for (int i = 0; i < R->n_ad; i++) {
        if ((st = mg_filelist_add(&R->ad[i].files, R->ad[i].dir, "adapter_config.json", &R->in_hashing, err)))
            return st;
        if ((st = mg_filelist_add(&R->ad[i].files, R->ad[i].dir, "adapter_model.safetensors", &R->in_hashing, err)))
            return st;
        mg_filelist_sort(&R->ad[i].files);
    }
    return MS_OK;
}
