/* akeys.h: classifying the tensor names of a PEFT adapter_model.safetensors
 * (docs/numerics.md §4.1) into per-module slots: LoRA A/B, embedding LoRA A/B,
 * DoRA magnitude, full replacements (base_layer / modules_to_save) and
 * trainable-token rows. Names must start with "base_model.model."; a name
 * that still carries an adapter name (".lora_A.default.weight") is accepted
 * when one name is used consistently, with a warning. Any other name is an
 * error. Does not check shapes against the base (plan.c does). */
#ifndef MG_AKEYS_H
#define MG_AKEYS_H

#include <stddef.h>

#include "io/st.h"
#include "mg.h"

#define MG_PEFT_PREFIX "base_model.model."

typedef enum mg_slot {
    MG_SLOT_A,      /* <m>.lora_A.weight            [r, in]  */
    MG_SLOT_B,      /* <m>.lora_B.weight            [out, r] */
    MG_SLOT_EA,     /* <m>.lora_embedding_A         [r, V]   */
    MG_SLOT_EB,     /* <m>.lora_embedding_B         [H, r]   */
    MG_SLOT_MAG,    /* <m>.lora_magnitude_vector    [out]    */
    MG_SLOT_BASE,   /* <m>.base_layer.weight: replaces <m>.weight */
    MG_SLOT_FULL,   /* <m>.weight (modules_to_save): replaces it */
    MG_SLOT_TOKENS, /* <m>.token_adapter.trainable_tokens_delta [n, H] */
    MG_SLOT_MTS,    /* <m>.modules_to_save.weight: the trained copy; replaces <m>.weight */
    MG_SLOT_ORIG,   /* <m>.original_module.weight: PEFT's copy of the untrained module,
                       * saved with a resized vocabulary; not used by merge_and_unload */
    MG_SLOT_COUNT
} mg_slot;

typedef struct mg_amod {
    char *module;                      /* e.g. "model.layers.0.self_attn.q_proj" */
    const st_tensor *t[MG_SLOT_COUNT]; /* NULL where absent */
    const char *key[MG_SLOT_COUNT];    /* the file's tensor names */
} mg_amod;

typedef struct mg_akeys {
    mg_amod *mods; /* sorted by module name */
    size_t n;
    size_t n_tensors;
} mg_akeys;

/* Classifies every tensor of f (path names it in errors). */
ms_status mg_akeys_classify(const st_file *f, const char *path, mg_akeys *out, const mg_log *lg, ms_error *err);
void mg_akeys_free(mg_akeys *k); /* NULL-safe; leaves *k empty */
/* The module called name, or NULL. */
const mg_amod *mg_akeys_find(const mg_akeys *k, const char *name);
/* Short human name of a slot ("lora_A", ...). */
const char *mg_slot_name(mg_slot s);

#endif
