/* acfg.h: one adapter's adapter_config.json (docs/numerics.md §4.2): parsed
 * strictly, refused when it describes something a plain merge onto the
 * original base cannot reproduce (PiSSA-family init, bias, DoRA on
 * embeddings is checked later, unknown features), and queried for the rank,
 * alpha and scale of a module and for whether its target selection
 * (target_modules / exclude_modules / layers_to_transform) picks a module. */
#ifndef MG_ACFG_H
#define MG_ACFG_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "mg.h"

typedef struct mg_acfg mg_acfg;

/* Loads dir/adapter_config.json. Warnings (fan_in_fan_out, ...) go to lg. */
ms_status mg_acfg_load(const char *dir, const mg_acfg **out, const mg_log *lg, ms_error *err);
void mg_acfg_free(const mg_acfg *c);

/* The parsed file, for the manifest. */
const cJSON *mg_acfg_json(const mg_acfg *c);
int mg_acfg_use_dora(const mg_acfg *c);
int mg_acfg_use_rslora(const mg_acfg *c);

/* r and alpha for a module named without "base_model.model." (e.g.
 * "model.layers.0.self_attn.q_proj"): the first rank_pattern / alpha_pattern
 * key K in file order whose pattern (.*\.)?(K)$ matches the whole name, else
 * the defaults r / lora_alpha. Returns the scale alpha/r or alpha/sqrt(r). */
double mg_acfg_module(const mg_acfg *c, const char *module, int *r, double *alpha);

/* Whether the adapter's target selection picks this module as PEFT's
 * check_target_module_exists does; is_linear says whether it is a Linear other
 * than the output head (what "all-linear" means). With no target_modules at
 * all, returns 1. */
int mg_acfg_targets(const mg_acfg *c, const char *module, int is_linear);

/* Whether module is listed in modules_to_save (exact or as a dotted suffix). */
int mg_acfg_saves(const mg_acfg *c, const char *module);

/* trainable_token_indices (the list form); n = 0 if absent. */
const int64_t *mg_acfg_token_indices(const mg_acfg *c, size_t *n);

#endif
