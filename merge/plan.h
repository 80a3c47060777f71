/* plan.h: the merge plan. From the base (config + tensors) and the adapters
 * (config + classified keys) it derives the list of output tensors in the
 * order transformers' state_dict has them, what each adapter does to each of
 * them (full replacement, LoRA / embedding-LoRA / DoRA delta, token rows),
 * the untying of tied embeddings (docs/numerics.md §4.4) and the shard layout
 * (huggingface_hub's policy, §5.4/§6). Every adapter tensor must bind to
 * exactly one base tensor and every base tensor must be expected, else the
 * plan fails. Does no arithmetic (apply.c) and no I/O beyond what it is
 * given. */
#ifndef MG_PLAN_H
#define MG_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "acfg.h"
#include "akeys.h"
#include "io/st.h"
#include "mg.h"
#include "model/config.h"

#define MG_MAX_NAME_LEN 128

typedef enum mg_delta {
    MG_DELTA_NONE,
    MG_DELTA_LORA,  /* W += (B·A)·s                       A [r,in]  B [out,r] */
    MG_DELTA_EMBED, /* W += round((B_e·A_e)ᵀ·s)           A [r,V]   B [H,r]   */
    MG_DELTA_DORA   /* W = (m/‖W+(B·A)·s‖_row)·(W+(B·A)·s)                     */
} mg_delta;

/* What one adapter does to one output tensor, applied in this order:
 * replacement, delta, token rows; then the result is rounded to the output
 * dtype (several adapters round after each, as LLaMA-Factory merges them). */
typedef struct mg_op {
    int adapter;              /* index in the run's adapter list */
    const st_tensor *replace; /* full replacement, or NULL */
    mg_delta delta;
    const st_tensor *A, *B, *mag;
    int r;
    float scale;             /* weight·alpha/r (or /sqrt r), rounded to f32 as torch does */
    const st_tensor *tokens; /* [n, cols] rows, or NULL */
    const int64_t *tok_idx;  /* n row indices (owned by the adapter config) */
    size_t n_tok;
} mg_op;

typedef struct mg_otensor {
    char name[MG_MAX_NAME_LEN];
    int ndim;
    int64_t shape[2];
    uint64_t rows, cols;  /* 1-D tensors: rows = 1 */
    const st_tensor *src; /* base tensor the values start from */
    uint64_t src_rows;    /* rows of src (fewer than rows after a vocabulary resize:
                                * the first op is then a full replacement) */
    mg_op ops[MG_MAX_ADAPTERS];
    int n_ops;
    int shard;       /* 0-based file index */
    uint64_t nbytes; /* in the output dtype */
} mg_otensor;

/* One adapter as the plan sees it. */
typedef struct mg_adapter {
    const char *dir;
    double weight;
    const mg_acfg *cfg;
    const mg_akeys *keys;
} mg_adapter;

typedef struct mg_plan {
    mg_otensor *t; /* in state_dict order */
    size_t n;
    st_dtype dtype; /* output dtype */
    int untie;      /* tied base, written untied */
    int tied_out;   /* output config tie_word_embeddings */
    int n_shards;
    int vocab_out;        /* vocab_size of the export */
    int resized_by;       /* adapter whose full embedding/head weights resize the
                                * vocabulary, or -1 */
    uint64_t total_bytes; /* tensor data bytes */
    uint64_t total_params;
    size_t ops_total;
    size_t adapter_tensors_used[MG_MAX_ADAPTERS];
} mg_plan;

/* Builds the plan; errors name the adapter file/tensor or base tensor. */
ms_status mg_plan_build(const qwen3_config *cfg, const st_set *base, const mg_adapter *ad, int n_ad, st_dtype out_dtype,
                        uint64_t max_shard_bytes, mg_plan *out, const mg_log *lg, ms_error *err);
void mg_plan_free(mg_plan *p); /* NULL-safe */
/* Fills wt[0..n) with the output tensors (names point into the plan). */
void mg_wtensors(const mg_plan *p, st_wtensor *wt);

#endif
