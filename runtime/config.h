/* config.h: config.json and generation_config.json of a Qwen3 dense model,
 * in both transformers 4.x and 5.x spellings (reference.md §1.1, §2.4, §7).
 * Rejects other model types and unimplemented features with a message. */
#ifndef MS_CONFIG_H
#define MS_CONFIG_H

#include "medserve.h"
#include "st.h"

#define CFG_MAX_EOS 8

typedef struct qwen3_config {
    int hidden_size, n_layers, n_heads, n_kv_heads, head_dim, intermediate_size, vocab_size;
    int max_position_embeddings;
    double rms_norm_eps, rope_theta;
    int tie_word_embeddings, attention_bias;
    st_dtype dtype;              /* torch_dtype / dtype */
    /* YaRN; rope_yarn == 0 means default rope */
    int rope_yarn;
    double yarn_factor, yarn_original_max, yarn_beta_fast, yarn_beta_slow, yarn_attention_factor;
    int yarn_truncate;
    int bos_token_id;            /* -1 if absent */
    int eos_ids[CFG_MAX_EOS];
    int n_eos;
} qwen3_config;

/* Parses dir/config.json. */
ms_status config_load(const char *path, qwen3_config *c, ms_error *err);

typedef struct gen_config {
    int do_sample;               /* HF default 0 */
    double temperature, top_p, min_p, repetition_penalty; /* 1, 1, 0 (unset), 1 */
    int top_k;                   /* HF default 50 */
    int eos_ids[CFG_MAX_EOS];
    int n_eos;
    int max_new_tokens;          /* 0 if absent */
} gen_config;

/* Parses generation_config.json; a missing file gives the HF defaults. */
ms_status gen_config_load(const char *path, gen_config *g, ms_error *err);

#endif
