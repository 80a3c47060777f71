/* run.h: the state of one lora-merge run shared by the files that carry it
 * out (private to merge/): export.c (paths, inputs, the run itself),
 * inputs.c (input hashing thread, resized-vocabulary tokenizer check),
 * output.c (shards, index, configs, tokenizer files, manifest), verify.c
 * (reading the export back). Not a public interface. */
#ifndef MG_RUN_H
#define MG_RUN_H

#include <pthread.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "acfg.h"
#include "akeys.h"
#include "fsio.h"
#include "io/st.h"
#include "kernel.h"
#include "manifest.h"
#include "mg.h"
#include "model/config.h"
#include "plan.h"

#define MG_PATH 4096
#define MG_MAX_NOTES 8
#define MG_N_COPY_FILES 7

/* Tokenizer files copied when present (export.c). */
extern const char *const mg_copy_files[MG_N_COPY_FILES];

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
    uint64_t *sums; /* per output tensor: checksum of the bytes written */
    size_t *tensor_changed;
    mg_filelist base_files, out_files;
    const char *notes[MG_MAX_NOTES];
    size_t n_notes;
    mg_progress prog;
    mg_hashing hashing;    /* output hashing (main thread) */
    mg_hashing in_hashing; /* input hashing (background thread) */
    double t_sync;         /* seconds in st_writer_finish (fsync, rename) */
    /* The inputs are hashed on a thread while the merge runs (the manifest
     * needs them only at the end). */
    pthread_t hasher;
    int hasher_started;
    volatile int hash_stop;
    ms_status hash_status;
    ms_error hash_err;
    double t_hash;
} run;

double rn_now(void);
const char *rn_dtype_word(st_dtype t);
void rn_path_join(char *buf, size_t len, const char *dir, const char *name);
void rn_progress(run *R, const char *phase);
const char *rn_tok_dir(const run *R);
uint64_t rn_file_size(const char *path);
void rn_hash_tick(void *user, uint64_t n);

/* inputs.c */
ms_status rn_check_resized_tokenizer(run *R, ms_error *err);
ms_status rn_hash_start(run *R, ms_error *err);
ms_status rn_hash_join(run *R, int stop, ms_error *err);
/* output.c */
ms_status rn_write_shard(run *R, int shard, ms_error *err);
ms_status rn_write_index(run *R, ms_error *err);
ms_status rn_write_configs(run *R, ms_error *err);
ms_status rn_copy_tokenizer(run *R, ms_error *err);
ms_status rn_write_manifest(run *R, mg_result *res, ms_error *err);
/* verify.c */
ms_status rn_verify(run *R, ms_error *err);

#endif
