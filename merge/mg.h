/* mg.h: what the lora-merge modules share: limits, the log sink (library code
 * never prints; main.c supplies a sink that writes to stderr), the options of
 * one merge run and its entry point mg_run (export.c). */
#ifndef MG_H
#define MG_H

#include <stddef.h>
#include <stdint.h>

#include "io/st.h"
#include "medserve.h"

#define MG_TOOL_NAME "lora-merge"
#define MG_MAX_ADAPTERS 16
#define MG_MAX_RANK 65536              /* r above this is refused */
#define MG_MAX_CONFIG_BYTES (1u << 20) /* adapter_config.json, config.json */
#define MG_MAX_TEXT_FILE (64ull << 20) /* tokenizer.json etc. copied to out/ */
#define MG_DEFAULT_SHARD 5000000000ull /* "5GB", decimal as huggingface_hub */

enum { MG_LOG_WARN = 1, MG_LOG_INFO = 2 };

typedef struct mg_log {
    void (*fn)(void *user, int level, const char *msg); /* NULL: discard */
    void *user;
} mg_log;

/* Formats a message and hands it to the sink (no-op without one). */
void mg_logf(const mg_log *lg, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

typedef struct mg_progress {
    size_t tensors_done, tensors_total;
    uint64_t bytes_done, bytes_total; /* output tensor bytes */
    const char *phase;                /* "hash inputs", "merge", "verify" */
} mg_progress;

typedef struct mg_adapter_arg {
    const char *dir;
    double weight; /* multiplies the adapter's scale; 1.0 = as trained */
} mg_adapter_arg;

typedef struct mg_opts {
    const char *base_dir;
    mg_adapter_arg adapters[MG_MAX_ADAPTERS];
    int n_adapters;
    const char *out_dir;
    int out_dtype;            /* st_dtype (BF16/F16/F32) or -1: the base config dtype */
    uint64_t max_shard_bytes; /* 0: MG_DEFAULT_SHARD */
    int force;                /* replace an existing out_dir */
    int threads;              /* 0: OpenMP default */
    mg_log log;
    void (*progress)(void *user, const mg_progress *p); /* may be NULL */
    void *progress_user;
    const volatile int *cancel; /* set nonzero (e.g. from SIGINT) to stop early */
    /* Fault injection for tests: fail the n-th checked I/O step (1-based);
     * 0 = never. */
    int fail_at_step;
    /* Test hook: called with the temp dir once the weights are written and
     * before they are verified (a test corrupts a byte here). */
    void (*after_write)(void *user, const char *tmp_dir);
    void *after_write_user;
} mg_opts;

typedef struct mg_result {
    int n_files;            /* files written to out_dir, manifest included */
    uint64_t bytes_written; /* all output files */
    size_t tensors_written, tensors_changed;
    int untied; /* lm_head written separately from the embedding */
    char manifest_sha256[65];
    /* seconds spent: hashing inputs, computing + writing tensors, fsync of
     * the weights files, re-reading and verifying, total */
    double t_hash, t_merge, t_sync, t_verify, t_total;
} mg_result;

/* The whole merge: validates inputs, plans, writes into a temp dir beside
 * out_dir, verifies, renames into place. On failure nothing is left behind
 * and a previous out_dir is intact. */
ms_status mg_run(const mg_opts *o, mg_result *res, ms_error *err);

#endif
