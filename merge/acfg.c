/* acfg.c: parsing and checking adapter_config.json (docs/numerics.md §4.2).
 * Every field is either understood, known not to affect merging, or refused
 * when set; an unknown field is refused when it carries a value (null, false
 * and empty values are harmless by construction). Regular expressions
 * (rank_pattern / alpha_pattern keys, a target_modules string) are compiled
 * with PCRE2 with the anchoring Python's re.match / re.fullmatch give PEFT.
 * Does not look at the weights (akeys.c) or the base (plan.c). */
#include "acfg.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "base/err.h"
#include "base/json.h"

#define MG_MAX_LIST 65536 /* entries in any list field */
#define MG_PCRE_MATCH_LIMIT 1000000u

typedef struct pattern {
    char *key;
    pcre2_code *re;
    double value;
} pattern;

typedef struct strlist {
    char **v;
    size_t n;
} strlist;

enum { SEL_NONE, SEL_REGEX, SEL_LIST, SEL_ALL_LINEAR };

struct mg_acfg {
    char path[4096];
    cJSON *json;
    int r;
    double alpha;
    int use_rslora, use_dora;
    pattern *rank_pat, *alpha_pat;
    size_t n_rank_pat, n_alpha_pat;
    int tm_kind;
    pcre2_code *tm_re;
    strlist tm;
    int ex_kind;
    pcre2_code *ex_re;
    strlist ex;
    int64_t *layers;
    size_t n_layers;
    int layers_set;
    strlist lpat;
    strlist mts;
    int64_t *tt;
    size_t n_tt;
};

/* Formats a message and sends it to the log sink. */
void mg_logf(const mg_log *lg, int level, const char *fmt, ...)
{
    if (!lg || !lg->fn) return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    lg->fn(lg->user, level, buf);
}

/* Frees a string list. */
static void strlist_free(strlist *l)
{
    for (size_t i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

/* Frees a pattern array. */
static void patterns_free(pattern *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(p[i].key);
        pcre2_code_free(p[i].re);
    }
    free(p);
}

/* Frees a config; NULL-safe. */
void mg_acfg_free(const mg_acfg *cc)
{
    mg_acfg *c = (mg_acfg *)cc;
    if (!c) return;
    cJSON_Delete(c->json);
    patterns_free(c->rank_pat, c->n_rank_pat);
    patterns_free(c->alpha_pat, c->n_alpha_pat);
    pcre2_code_free(c->tm_re);
    pcre2_code_free(c->ex_re);
    strlist_free(&c->tm);
    strlist_free(&c->ex);
    strlist_free(&c->lpat);
    strlist_free(&c->mts);
    free(c->layers);
    free(c->tt);
    free(c);
}

/* Compiles "prefix PATTERN suffix" with PCRE2 options; errors name the field. */
static ms_status compile_re(const char *path, const char *field, const char *prefix, const char *pat,
                            const char *suffix, uint32_t opts, pcre2_code **out, ms_error *err)
{
    size_t n = strlen(prefix) + strlen(pat) + strlen(suffix) + 1;
    char *s = malloc(n);
    if (!s) return ms_seterr(err, MS_ERR_NOMEM, "%s: out of memory", path);
    snprintf(s, n, "%s%s%s", prefix, pat, suffix);
    int ec;
    PCRE2_SIZE off;
    *out = pcre2_compile((PCRE2_SPTR)s, PCRE2_ZERO_TERMINATED, opts | PCRE2_UTF, &ec, &off, NULL);
    free(s);
    if (!*out) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ec, msg, sizeof msg);
        return ms_seterr(err, MS_ERR_FORMAT, "%s: field \"%s\": pattern \"%s\" is not a valid regex: %s", path, field,
                         pat, (const char *)msg);
    }
    return MS_OK;
}

/* Whether re matches s (anchoring is in the compiled pattern/options). */
static int re_matches(const pcre2_code *re, const char *s)
{
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    pcre2_match_context *mc = pcre2_match_context_create(NULL);
    int rc = -1;
    if (md && mc) {
        pcre2_set_match_limit(mc, MG_PCRE_MATCH_LIMIT);
        rc = pcre2_match(re, (PCRE2_SPTR)s, strlen(s), 0, 0, md, mc);
    }
    pcre2_match_data_free(md);
    pcre2_match_context_free(mc);
    return rc >= 0;
}

/* Whether a JSON value carries no setting: null, false, "", [] or {}. */
static int is_unset(const cJSON *v)
{
    if (!v || cJSON_IsNull(v) || cJSON_IsFalse(v)) return 1;
    if (cJSON_IsString(v)) return v->valuestring[0] == '\0';
    if (cJSON_IsArray(v) || cJSON_IsObject(v)) return v->child == NULL;
    return 0;
}

/* Reads a list of strings (or, if allow_str, one string into *single). */
static ms_status get_strlist(const cJSON *j, const char *key, const char *path, strlist *out, const char **single,
                             ms_error *err)
{
    const cJSON *v = json_get(j, key);
    if (!v || cJSON_IsNull(v)) return MS_OK;
    if (cJSON_IsString(v) && single) {
        *single = v->valuestring;
        return MS_OK;
    }
    if (!cJSON_IsArray(v))
        return ms_seterr(err, MS_ERR_FORMAT, "%s: field \"%s\" must be %s", path, key,
                         single ? "a string or a list of strings" : "a list of strings");
    size_t n = (size_t)cJSON_GetArraySize(v);
    if (n > MG_MAX_LIST)
        return ms_seterr(err, MS_ERR_FORMAT, "%s: field \"%s\" has over %d entries", path, key, MG_MAX_LIST);
    out->v = calloc(n ? n : 1, sizeof *out->v);
    if (!out->v) return ms_seterr(err, MS_ERR_NOMEM, "%s: out of memory", path);
    const cJSON *e;
    cJSON_ArrayForEach(e, v)
    {
        if (!cJSON_IsString(e))
            return ms_seterr(err, MS_ERR_FORMAT, "%s: field \"%s\": every entry must be a string", path, key);
        if (!(out->v[out->n] = strdup(e->valuestring))) return ms_seterr(err, MS_ERR_NOMEM, "%s: out of memory", path);
        out->n++;
    }
    return MS_OK;
}

/* Reads an int or list of non-negative ints (layers_to_transform, token ids). */
static ms_status get_intlist(const cJSON *j, const char *key, const char *path, int allow_scalar, int64_t **out,
                             size_t *n_out, int *set, ms_error *err)
{
    const cJSON *v = json_get(j, key);
    if (!v || cJSON_IsNull(v)) return MS_OK;
    size_t n = cJSON_IsArray(v) ? (size_t)cJSON_GetArraySize(v) : 1;
    if (!cJSON_IsArray(v) && !(allow_scalar && cJSON_IsNumber(v)))
        return ms_seterr(err, MS_ERR_FORMAT, "%s: field \"%s\" must be a list of integers%s", path, key,
                         allow_scalar ? " or an integer" : "");
    if (n > MG_MAX_LIST)
        return ms_seterr(err, MS_ERR_FORMAT, "%s: field \"%s\" has over %d entries", path, key, MG_MAX_LIST);
    *out = calloc(n ? n : 1, sizeof **out);
    if (!*out) return ms_seterr(err, MS_ERR_NOMEM, "%s: out of memory", path);
    size_t i = 0;
    const cJSON *e = cJSON_IsArray(v) ? v->child : v;
    for (; e && i < n; e = cJSON_IsArray(v) ? e->next : NULL, i++) {
        double d = cJSON_IsNumber(e) ? e->valuedouble : -1;
        if (!cJSON_IsNumber(e) || !isfinite(d) || d != floor(d) || d < 0 || d > 2147483647.0)
            return ms_seterr(err, MS_ERR_FORMAT, "%s: field \"%s\": entries must be integers in [0, 2^31)", path, key);
        (*out)[i] = (int64_t)d;
    }
    *n_out = n;
    if (set) *set = cJSON_IsArray(v) ? n > 0 : 1; /* PEFT ignores an empty list */
    return MS_OK;
}

/* Reads rank_pattern / alpha_pattern: {regex: number} in file order. */
static ms_status get_patterns(const cJSON *j, const char *key, const char *path, int integral, pattern **out,
                              size_t *n_out, ms_error *err)
{
    const cJSON *v = json_get(j, key);
    if (!v || cJSON_IsNull(v)) return MS_OK;
    if (!cJSON_IsObject(v)) return ms_seterr(err, MS_ERR_FORMAT, "%s: field \"%s\" must be an object", path, key);
    size_t n = (size_t)cJSON_GetArraySize(v);
    if (n > MG_MAX_LIST)
        return ms_seterr(err, MS_ERR_FORMAT, "%s: field \"%s\" has over %d entries", path, key, MG_MAX_LIST);
    *out = calloc(n ? n : 1, sizeof **out);
    if (!*out) return ms_seterr(err, MS_ERR_NOMEM, "%s: out of memory", path);
    const cJSON *e;
    cJSON_ArrayForEach(e, v)
    {
        pattern *p = &(*out)[*n_out];
        double d = cJSON_IsNumber(e) ? e->valuedouble : NAN;
        if (!isfinite(d) || (integral && (d != floor(d) || d < 1 || d > MG_MAX_RANK)))
            return ms_seterr(err, MS_ERR_FORMAT, "%s: field \"%s\": value for \"%s\" must be %s", path, key, e->string,
                             integral ? "an integer rank in [1, 65536]" : "a finite number");
        if (!(p->key = strdup(e->string))) return ms_seterr(err, MS_ERR_NOMEM, "%s: out of memory", path);
        p->value = d;
        (*n_out)++;
        /* PEFT: re.match(rf"(.*\.)?({key})$", name) */
        ms_status st = compile_re(path, key, "(.*\\.)?(", e->string, ")$", PCRE2_ANCHORED, &p->re, err);
        if (st) return st;
    }
    return MS_OK;
}

/* Reads target_modules or exclude_modules: a regex string, "all-linear" or a list. */
static ms_status get_selector(const cJSON *j, const char *key, const char *path, int *kind, pcre2_code **re,
                              strlist *list, ms_error *err)
{
    const char *single = NULL;
    ms_status st = get_strlist(j, key, path, list, &single, err);
    if (st) return st;
    if (single) {
        if (!strcmp(key, "target_modules") && !strcasecmp(single, "all-linear")) {
            *kind = SEL_ALL_LINEAR;
            return MS_OK;
        }
        *kind = SEL_REGEX;
        /* PEFT: re.fullmatch(pattern, name) */
        return compile_re(path, key, "(?:", single, ")", PCRE2_ANCHORED | PCRE2_ENDANCHORED, re, err);
    }
    *kind = list->v ? SEL_LIST : SEL_NONE;
    return MS_OK;
}

/* Fields that do not change the merged weights. */
static const char *const BENIGN[] = {
    "task_type",      "peft_type",      "auto_mapping",   "peft_version",      "base_model_name_or_path", "revision",
    "inference_mode", "lora_dropout",   "megatron_core",  "qalora_group_size", "runtime_config",          "eva_config",
    "corda_config",   "lora_ga_config", "layers_pattern", "exclude_modules",
};
/* Fields this module interprets. */
static const char *const HANDLED[] = {
    "r",
    "lora_alpha",
    "use_rslora",
    "use_dora",
    "fan_in_fan_out",
    "bias",
    "lora_bias",
    "modules_to_save",
    "target_modules",
    "layers_to_transform",
    "rank_pattern",
    "alpha_pattern",
    "init_lora_weights",
    "trainable_token_indices",
    "loftq_config",
    "ensure_weight_tying",
    "use_qalora",
};
/* Features that change the model in ways a weight merge cannot express. */
static const char *const REFUSED[] = {
    "layer_replication", "alora_invocation_tokens", "target_parameters", "arrow_config",    "use_bdlora",
    "velora_config",     "monteclora_config",       "kasa_config",       "megatron_config",
};

/* Whether name is in a NULL-free table of n strings. */
static int in_table(const char *const *t, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(t[i], name)) return 1;
    return 0;
}

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* Checks peft_type, task_type, the refused and unknown fields. */
static ms_status check_fields(const cJSON *j, const char *path, ms_error *err)
{
    const char *s = NULL;
    ms_status st = json_get_string(j, "peft_type", 1, &s, path, err);
    if (st) return st;
    if (strcmp(s, "LORA"))
        return ms_seterr(err, MS_ERR_UNSUPPORTED,
                         "%s: field \"peft_type\" is \"%s\"; only \"LORA\" adapters can be merged", path, s);
    s = NULL;
    if ((st = json_get_string(j, "task_type", 0, &s, path, err))) return st;
    if (s && strcmp(s, "CAUSAL_LM"))
        return ms_seterr(err, MS_ERR_UNSUPPORTED,
                         "%s: field \"task_type\" is \"%s\"; only CAUSAL_LM adapters (or none) fit a Qwen3ForCausalLM "
                         "export (%s)",
                         path, s, !strcmp(s, "SEQ_CLS") ? "SEQ_CLS brings a score head" : "other task heads differ");
    const cJSON *e;
    cJSON_ArrayForEach(e, j)
    {
        if (in_table(BENIGN, NELEM(BENIGN), e->string) || in_table(HANDLED, NELEM(HANDLED), e->string)) continue;
        if (in_table(REFUSED, NELEM(REFUSED), e->string)) {
            if (!is_unset(e))
                return ms_seterr(err, MS_ERR_UNSUPPORTED,
                                 "%s: field \"%s\" is set; this LoRA feature cannot be merged into plain weights", path,
                                 e->string);
            continue;
        }
        if (!is_unset(e))
            return ms_seterr(err, MS_ERR_UNSUPPORTED,
                             "%s: unknown field \"%s\" is set; refusing because its effect on merging is unknown", path,
                             e->string);
    }
    return MS_OK;
}

/* Checks init_lora_weights: PiSSA-family inits changed the base at init time. */
static ms_status check_init(const cJSON *j, const char *path, ms_error *err)
{
    const cJSON *v = json_get(j, "init_lora_weights");
    if (!v || cJSON_IsNull(v) || cJSON_IsBool(v)) return MS_OK;
    if (!cJSON_IsString(v))
        return ms_seterr(err, MS_ERR_FORMAT, "%s: field \"init_lora_weights\" must be a boolean or a string", path);
    const char *s = v->valuestring;
    static const char *const ok[] = {"gaussian", "eva", "orthogonal", "mica", "true"};
    static const char *const bad[] = {"pissa", "olora", "corda", "loftq", "lora_ga"};
    for (size_t i = 0; i < NELEM(ok); i++)
        if (!strcasecmp(s, ok[i])) return MS_OK;
    for (size_t i = 0; i < NELEM(bad); i++)
        if (!strncasecmp(s, bad[i], strlen(bad[i])))
            return ms_seterr(err, MS_ERR_UNSUPPORTED,
                             "%s: field \"init_lora_weights\" is \"%s\": this initialisation changed the base weights "
                             "when the adapter was created, so merging it onto the original base would be wrong; "
                             "convert it to a plain LoRA first (PEFT save_pretrained with "
                             "path_initial_model_for_weight_conversion)",
                             path, s);
    return ms_seterr(err, MS_ERR_UNSUPPORTED, "%s: field \"init_lora_weights\" has unknown value \"%s\"", path, s);
}

/* Checks bias / lora_bias / use_qalora / loftq / ensure_weight_tying. */
static ms_status check_flags(const cJSON *j, const char *path, const mg_log *lg, ms_error *err)
{
    const char *bias = NULL;
    ms_status st = json_get_string(j, "bias", 0, &bias, path, err);
    if (st) return st;
    if (bias && strcmp(bias, "none"))
        return ms_seterr(err, MS_ERR_UNSUPPORTED,
                         "%s: field \"bias\" is \"%s\"; only \"none\" can be merged (Qwen3 Linears have no bias)", path,
                         bias);
    int b = 0;
    if ((st = json_get_bool(j, "lora_bias", 0, &b, path, err))) return st;
    if (b)
        return ms_seterr(err, MS_ERR_UNSUPPORTED,
                         "%s: field \"lora_bias\" is true; Qwen3 Linears have no bias to merge it into", path);
    b = 0;
    if ((st = json_get_bool(j, "use_qalora", 0, &b, path, err))) return st;
    if (b)
        return ms_seterr(err, MS_ERR_UNSUPPORTED, "%s: field \"use_qalora\" is true; QA-LoRA cannot be merged here",
                         path);
    b = 0;
    if ((st = json_get_bool(j, "ensure_weight_tying", 0, &b, path, err))) return st;
    if (b)
        return ms_seterr(
            err, MS_ERR_UNSUPPORTED,
            "%s: field \"ensure_weight_tying\" is true; tied LoRA on embed_tokens/lm_head is not supported", path);
    if (!is_unset(json_get(j, "loftq_config")))
        return ms_seterr(err, MS_ERR_UNSUPPORTED,
                         "%s: field \"loftq_config\" is set; LoftQ adapters cannot be merged onto the original base",
                         path);
    b = 0;
    if ((st = json_get_bool(j, "fan_in_fan_out", 0, &b, path, err))) return st;
    if (b)
        mg_logf(lg, MG_LOG_WARN,
                "%s: fan_in_fan_out is true, but Qwen3 projections are nn.Linear, for which PEFT forces it to "
                "false; ignoring it",
                path);
    return MS_OK;
}

/* Loads and checks dir/adapter_config.json. */
ms_status mg_acfg_load(const char *dir, const mg_acfg **out, const mg_log *lg, ms_error *err)
{
    *out = NULL;
    mg_acfg *c = calloc(1, sizeof *c);
    if (!c) return ms_seterr(err, MS_ERR_NOMEM, "%s: out of memory", dir);
    snprintf(c->path, sizeof c->path, "%s/adapter_config.json", dir);
    const char *path = c->path;
    ms_status st = MS_OK;
    c->json = json_load_file(path, MG_MAX_CONFIG_BYTES, err);
    if (!c->json) {
        st = err ? err->status : MS_ERR_FORMAT;
        goto fail;
    }
    if (!cJSON_IsObject(c->json)) {
        st = ms_seterr(err, MS_ERR_FORMAT, "%s: top level must be a JSON object", path);
        goto fail;
    }
    const cJSON *j = c->json;
    if ((st = check_fields(j, path, err)) || (st = check_init(j, path, err)) || (st = check_flags(j, path, lg, err)))
        goto fail;
    int64_t r = 8;
    double alpha = 8;
    if ((st = json_get_int(j, "r", 0, 1, MG_MAX_RANK, &r, path, err))) goto fail;
    if ((st = json_get_double(j, "lora_alpha", 0, &alpha, path, err))) goto fail;
    c->r = (int)r;
    c->alpha = alpha;
    if ((st = json_get_bool(j, "use_rslora", 0, &c->use_rslora, path, err))) goto fail;
    if ((st = json_get_bool(j, "use_dora", 0, &c->use_dora, path, err))) goto fail;
    if ((st = get_patterns(j, "rank_pattern", path, 1, &c->rank_pat, &c->n_rank_pat, err))) goto fail;
    if ((st = get_patterns(j, "alpha_pattern", path, 0, &c->alpha_pat, &c->n_alpha_pat, err))) goto fail;
    if ((st = get_selector(j, "target_modules", path, &c->tm_kind, &c->tm_re, &c->tm, err))) goto fail;
    if ((st = get_selector(j, "exclude_modules", path, &c->ex_kind, &c->ex_re, &c->ex, err))) goto fail;
    if (c->ex_kind == SEL_ALL_LINEAR) c->ex_kind = SEL_NONE; /* unreachable: only target_modules has it */
    if ((st = get_intlist(j, "layers_to_transform", path, 1, &c->layers, &c->n_layers, &c->layers_set, err))) goto fail;
    const char *lp = NULL;
    if ((st = get_strlist(j, "layers_pattern", path, &c->lpat, &lp, err))) goto fail;
    if (lp && lp[0]) {
        c->lpat.v = calloc(1, sizeof *c->lpat.v);
        if (!c->lpat.v || !(c->lpat.v[0] = strdup(lp))) {
            st = ms_seterr(err, MS_ERR_NOMEM, "%s: out of memory", path);
            goto fail;
        }
        c->lpat.n = 1;
    }
    if ((st = get_strlist(j, "modules_to_save", path, &c->mts, NULL, err))) goto fail;
    const cJSON *tt = json_get(j, "trainable_token_indices");
    if (tt && !cJSON_IsNull(tt) && !cJSON_IsArray(tt)) {
        st = ms_seterr(err, MS_ERR_UNSUPPORTED,
                       "%s: field \"trainable_token_indices\" must be a list of token ids (the embed_tokens form); "
                       "other forms are not supported",
                       path);
        goto fail;
    }
    if ((st = get_intlist(j, "trainable_token_indices", path, 0, &c->tt, &c->n_tt, NULL, err))) goto fail;
    *out = c;
    return MS_OK;
fail:
    mg_acfg_free(c);
    return st ? st : MS_ERR_FORMAT;
}

/* The adapter_config.json tree the config was read from; owned by c. */
const cJSON *mg_acfg_json(const mg_acfg *c)
{
    return c->json;
}
/* Whether use_dora is set. */
int mg_acfg_use_dora(const mg_acfg *c)
{
    return c->use_dora;
}
/* Whether use_rslora is set. */
int mg_acfg_use_rslora(const mg_acfg *c)
{
    return c->use_rslora;
}

/* r, alpha and scale for a module (patterns first, then defaults). */
double mg_acfg_module(const mg_acfg *c, const char *module, int *r, double *alpha)
{
    int rr = c->r;
    double aa = c->alpha;
    for (size_t i = 0; i < c->n_rank_pat; i++)
        if (re_matches(c->rank_pat[i].re, module)) {
            rr = (int)c->rank_pat[i].value;
            break;
        }
    for (size_t i = 0; i < c->n_alpha_pat; i++)
        if (re_matches(c->alpha_pat[i].re, module)) {
            aa = c->alpha_pat[i].value;
            break;
        }
    if (r) *r = rr;
    if (alpha) *alpha = aa;
    return c->use_rslora ? aa / sqrt((double)rr) : aa / (double)rr;
}

/* Whether name equals s or ends with "." + s. */
static int name_is_or_ends(const char *name, const char *s)
{
    size_t n = strlen(name), m = strlen(s);
    if (n == m) return !strcmp(name, s);
    return n > m && name[n - m - 1] == '.' && !strcmp(name + n - m, s);
}

/* The layer index PEFT finds in a module name, or -1. */
static long layer_index(const mg_acfg *c, const char *module)
{
    /* Without layers_pattern: the first number that follows a segment after a
     * dot (".*?\.[^.]*\.(\d+)\."); with it: the number after a segment equal
     * to one of the patterns (taken literally, not as regexes). Qwen3 names
     * have one number, "model.layers.N.", so both give N. */
    const char *p = module;
    for (;;) {
        const char *dot = strchr(p, '.');
        if (!dot) return -1;
        const char *q = dot + 1;
        if (*q >= '0' && *q <= '9') {
            char *end;
            long v = strtol(q, &end, 10);
            if (*end == '.') {
                if (c->lpat.n == 0) {
                    if (memchr(module, '.', (size_t)(dot - module))) return v;
                    p = q;
                    continue;
                }
                for (size_t i = 0; i < c->lpat.n; i++) {
                    size_t m = strlen(c->lpat.v[i]);
                    if ((size_t)(dot - module) >= m && !strncmp(dot - m, c->lpat.v[i], m) &&
                        (dot - m == module || dot[-(long)m - 1] == '.'))
                        return v;
                }
            }
        }
        p = q;
    }
}

/* PEFT's check_target_module_exists for a Qwen3 module name. */
int mg_acfg_targets(const mg_acfg *c, const char *module, int is_linear)
{
    if (c->ex_kind == SEL_REGEX && re_matches(c->ex_re, module)) return 0;
    if (c->ex_kind == SEL_LIST)
        for (size_t i = 0; i < c->ex.n; i++)
            if (name_is_or_ends(module, c->ex.v[i])) return 0;
    if (mg_acfg_saves(c, module)) return 0;
    switch (c->tm_kind) {
    case SEL_NONE: return 1;
    case SEL_ALL_LINEAR: return is_linear;
    case SEL_REGEX: return re_matches(c->tm_re, module);
    default: break;
    }
    int found = 0;
    for (size_t i = 0; i < c->tm.n && !found; i++) found = name_is_or_ends(module, c->tm.v[i]);
    if (!found || !c->layers_set) return found;
    /* layers_to_transform only applies to the list form (as in PEFT). */
    long li = layer_index(c, module);
    if (li < 0) return 0;
    for (size_t i = 0; i < c->n_layers; i++)
        if (c->layers[i] == li) return 1;
    return 0;
}

/* Whether module is in modules_to_save. */
int mg_acfg_saves(const mg_acfg *c, const char *module)
{
    for (size_t i = 0; i < c->mts.n; i++)
        if (name_is_or_ends(module, c->mts.v[i])) return 1;
    return 0;
}

/* The trainable_token_indices list (*n ids; owned by c, empty when absent). */
const int64_t *mg_acfg_token_indices(const mg_acfg *c, size_t *n)
{
    *n = c->n_tt;
    return c->tt;
}
