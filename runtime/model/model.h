/* model.h: a loaded Qwen3 export directory: config, generation config,
 * tokenizer, and every weight bound by name to the Qwen3 layout
 * (docs/numerics.md §1.2) with its shape checked against the config before use.
 * Weights point into the safetensors mmap (zero-copy). */
#ifndef MS_MODEL_H
#define MS_MODEL_H

#include <stdint.h>

#include "io/st.h"
#include "medserve.h"
#include "model/config.h"
#include "text/tokenizer.h"

/* A weight view: row-major [rows, cols]; a vector has rows == 1. data may be
 * only element-aligned. data == NULL means absent (e.g. biases). */
typedef struct wmat {
    const void *data;
    st_dtype dtype; /* ST_F32, ST_F16 or ST_BF16 */
    int64_t rows, cols;
} wmat;

typedef struct layer_weights {
    wmat attn_norm;            /* [1, H] */
    wmat wq, wk, wv, wo;       /* [nh*d, H] [nkv*d, H] [nkv*d, H] [H, nh*d] */
    wmat bq, bk, bv, bo;       /* attention_bias only: [1, out] */
    wmat q_norm, k_norm;       /* [1, d] */
    wmat ffn_norm;             /* [1, H] */
    wmat w_gate, w_up, w_down; /* [I, H] [I, H] [H, I] */
} layer_weights;

typedef struct model {
    char *dir;
    qwen3_config cfg;
    gen_config gen;
    st_set *st;
    tokenizer *tok;
    wmat embed;                            /* [V, H] */
    wmat final_norm;                       /* [1, H] */
    wmat lm_head;                          /* [V, H]; equals embed when tied */
    layer_weights *layers;                 /* cfg.n_layers */
    int32_t stop_ids[2 * CFG_MAX_EOS + 1]; /* gen eos ∪ config eos ∪ tokenizer eos */
    int n_stop;
    char manifest_sha256[65]; /* of medserve-manifest.json, or "" */
} model;

/* Loads and validates dir (config.json, generation_config.json, safetensors,
 * tokenizer). Every required tensor must exist with the config's shape;
 * unexpected tensors are an error. */
ms_status model_load(const char *dir, model **out, ms_error *err);
void model_free(model *m);

/* Element i of a weight as float (any supported dtype); for reference code. */
float wmat_get(const wmat *w, int64_t row, int64_t col);

#endif
