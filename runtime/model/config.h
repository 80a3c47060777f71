/* config.h: config.json and generation_config.json of a Qwen3 dense model,
 * in both transformers 4.x and 5.x spellings (docs/numerics.md §1.1, §2.4, §7).
 * Rejects other model types and unimplemented features with a message. */
#ifndef MS_CONFIG_H
#define MS_CONFIG_H

#include "io/st.h"
#include "medserve.h"

#define CFG_MAX_EOS 8

typedef struct qwen3_config {
    int hidden_size, n_layers, n_heads, n_kv_heads, head_dim, intermediate_size, vocab_size;
    int max_position_embeddings;
    double rms_norm_eps, rope_theta;
    int tie_word_embeddings, attention_bias;
    st_dtype dtype;  /* torch_dtype / dtype; ST_F32 when absent */
    int dtype_given; /* 1 if the file names a dtype */
    /* YaRN; rope_yarn == 0 means default rope. When rope_yarn, every field is
     * filled with transformers' defaults: beta_fast 32, beta_slow 1,
     * original_max = max_position_embeddings, truncate 1, and
     * yarn_attention_factor = the given value or 0.1 ln(factor) + 1 (mscale
     * ratio when mscale and mscale_all_dim are given). */
    int rope_yarn;
    double yarn_factor, yarn_original_max, yarn_beta_fast, yarn_beta_slow, yarn_attention_factor;
    int yarn_truncate;
    int bos_token_id; /* -1 if absent or null */
    int eos_ids[CFG_MAX_EOS];
    int n_eos;
} qwen3_config;

/* Parses config.json; path is the file or the model directory. Rejects
 * model_type != "qwen3", quantization_config, use_sliding_window true,
 * non-full layer_types, rope types other than default/yarn, a missing
 * rope_theta, head_dim absent unless hidden/heads = 128 (transformers then
 * uses 128), nh % nkv != 0, and out-of-range integers. */
ms_status config_load(const char *path, qwen3_config *c, ms_error *err);

typedef struct gen_config {
    int do_sample;                                        /* HF default 0 */
    double temperature, top_p, min_p, repetition_penalty; /* 1, 1, 0 (unset), 1 */
    int top_k;                                            /* HF default 50 */
    int eos_ids[CFG_MAX_EOS];
    int n_eos;
    int max_new_tokens; /* 0 if absent */
} gen_config;

/* Parses generation_config.json (the file or the model directory); a missing
 * file gives the HF defaults (do_sample 0, T 1, top_k 50, top_p 1, min_p 0,
 * repetition_penalty 1). top_k null means 0 (off). */
ms_status gen_config_load(const char *path, gen_config *g, ms_error *err);

#endif
