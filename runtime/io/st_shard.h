/* st_shard.h: writing a model's weights as a directory the way transformers'
 * save_pretrained does (docs/numerics.md §5.4, §6): tensors in HF state-dict
 * order are assigned to shards with huggingface_hub's policy, each shard is
 * written with the st writer, and model.safetensors.index.json is written as
 * json.dumps(indent=2, sort_keys=True) + "\n". Shared by tools/synth and
 * lora-merge. */
#ifndef MS_ST_SHARD_H
#define MS_ST_SHARD_H

#include <stddef.h>
#include <stdint.h>

#include "io/st.h"

#define ST_SHARD_NAME_MAX 64
#define ST_INDEX_FILE "model.safetensors.index.json"
#define ST_SINGLE_FILE "model.safetensors"

typedef struct st_shard_plan {
    size_t n;              /* tensors */
    size_t *shard_of;      /* n: shard index of each tensor (caller order) */
    size_t n_shards;       /* >= 1 */
    uint64_t total_size;   /* bytes of tensor data (index metadata.total_size) */
    uint64_t total_params; /* elements (index metadata.total_parameters) */
} st_shard_plan;

/* Assigns tensors (in HF state-dict order) to shards like huggingface_hub's
 * split_state_dict_into_shards: walk in order; a tensor bigger than
 * max_shard_size gets a shard of its own (placed before the open shard);
 * otherwise a new shard starts when the open one would exceed the limit. */
ms_status st_shard_plan_make(const st_wtensor *t, size_t n, uint64_t max_shard_size, st_shard_plan *p, ms_error *err);
void st_shard_plan_free(st_shard_plan *p);
/* The file name of shard k (0-based) of n_shards: "model.safetensors" for
 * one shard, else "model-00001-of-00003.safetensors". The one place these
 * names are made (tools/synth and lora-merge both use it). */
void st_shard_filename(size_t k, size_t n_shards, char out[ST_SHARD_NAME_MAX]);
/* The index JSON text (malloc'd), byte-identical to transformers' file. */
ms_status st_shard_index_json(const st_wtensor *t, const st_shard_plan *p, char **out, size_t *len, ms_error *err);

/* Writes data to path atomically: temp file in the same directory, fsync,
 * rename, fsync of the directory. */
ms_status st_write_file_atomic(const char *path, const void *data, size_t len, ms_error *err);

/* Sizes like huggingface_hub: "5GB" = 5e9, "500MB", "10KB", "1TB"
 * (decimal, fraction allowed) or plain bytes "123". */
ms_status st_parse_size(const char *s, uint64_t *out, ms_error *err);

/* Two orders decide which tensors share a shard, because transformers
 * changed what it iterates over when saving:
 * - module order (st_hf_order_cmp): model.state_dict() order, which
 *   transformers 4.x save_pretrained uses (and 5.x for a model built from a
 *   config, or with save_original_format=False): embed_tokens; per layer
 *   (numeric) q,k,v,o (weight then bias), q_norm, k_norm, gate, up, down,
 *   input_layernorm, post_attention_layernorm; norm; lm_head; other names
 *   after, by name. This is docs/numerics.md §6's order.
 * - natural order (st_hf5_order_cmp): transformers 5.x save_pretrained of a
 *   model loaded with from_pretrained (LLaMA-Factory's export path) sorts by
 *   its dot_natural_key: "."-parts compared numerically when all digits
 *   (first), else alphabetically; so lm_head comes first and each layer's
 *   tensors are alphabetical.
 * Checked against transformers 5.24 by tests/ref/check_synth.py. */
int st_hf_order_cmp(const char *a, const char *b);
int st_hf5_order_cmp(const char *a, const char *b);
/* Sorts t in place with st_hf_order_cmp / st_hf5_order_cmp. */
void st_hf_sort(st_wtensor *t, size_t n);
void st_hf5_sort(st_wtensor *t, size_t n);

/* Called once per tensor, in each shard's file order, to write exactly the
 * bytes of tensor i (an index into the caller's array) with st_writer_write. */
typedef ms_status (*st_fill_fn)(void *user, size_t i, st_writer *w, ms_error *err);

/* Writes dir/model.safetensors, or the shards and the index, for tensors t
 * (HF order) with the given shard limit (0: no limit). meta_kv as for
 * st_writer_open. On failure the files this call completed are removed. */
ms_status st_write_weights(const char *dir, const st_wtensor *t, size_t n, uint64_t max_shard_size,
                           const char *const *meta_kv, size_t n_meta, st_fill_fn fill, void *user, ms_error *err);

#endif
