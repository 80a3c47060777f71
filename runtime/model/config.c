/* config.c: config.json and generation_config.json of a dense Qwen3 model
 * (docs/numerics.md §1.1, §1.4, §2.4, §7), in transformers 4.x spelling
 * (rope_theta + rope_scaling, torch_dtype) and 5.x spelling
 * (rope_parameters, dtype). Follows transformers where it defines a value
 * (RoPE precedence, YaRN defaults, generation defaults) and refuses what the
 * runtime does not implement (other model types, sliding window, RoPE types
 * other than default/yarn, quantized checkpoints) with a message naming the
 * file and the field. Every integer is range-checked so that later products
 * (KV cache = ctx x layers x kv_heads x head_dim x 4) stay within 64 bits.
 *
 * Does not: compare the config with tensor shapes (model.c) or read
 * tokenizer files. */
#include "model/config.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "base/err.h"
#include "base/json.h"

#define CFG_MAX_FILE (4u << 20)

/* Resolves a directory to dir/name; a file path is used as is. */
static void resolve(const char *path, const char *name, char *out, size_t cap)
{
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        size_t n = strlen(path);
        snprintf(out, cap, "%s%s%s", path, n && path[n - 1] == '/' ? "" : "/", name);
    } else {
        snprintf(out, cap, "%s", path);
    }
}

/* Reads an int field into *out (untouched when absent or null). */
static ms_status get_i(const cJSON *o, const char *key, int required, int64_t lo, int64_t hi, int *out,
                       const char *what, ms_error *err)
{
    int64_t v;
    const cJSON *j = json_get(o, key);
    if (!j || cJSON_IsNull(j)) {
        if (required) return ms_seterr(err, MS_ERR_FORMAT, "%s: required field \"%s\" is missing", what, key);
        return MS_OK;
    }
    ms_status s = json_get_int(o, key, required, lo, hi, &v, what, err);
    if (s) return s;
    *out = (int)v;
    return MS_OK;
}

/* eos_token_id: an int, a list of ints, or null/absent (no ids). */
static ms_status get_eos(const cJSON *o, int *ids, int *n, const char *what, ms_error *err)
{
    const cJSON *e = json_get(o, "eos_token_id");
    *n = 0;
    if (!e || cJSON_IsNull(e)) return MS_OK;
    if (cJSON_IsNumber(e)) {
        int v = 0;
        ms_status s = get_i(o, "eos_token_id", 1, 0, INT32_MAX, &v, what, err);
        if (s) return s;
        ids[(*n)++] = v;
        return MS_OK;
    }
    if (!cJSON_IsArray(e))
        return ms_seterr(err, MS_ERR_FORMAT, "%s: field \"eos_token_id\" must be an integer or a list of integers",
                         what);
    for (const cJSON *c = e->child; c; c = c->next) {
        if (*n == CFG_MAX_EOS)
            return ms_seterr(err, MS_ERR_FORMAT, "%s: field \"eos_token_id\" has more than %d ids", what, CFG_MAX_EOS);
        double d = cJSON_IsNumber(c) ? c->valuedouble : -1;
        if (!cJSON_IsNumber(c) || !isfinite(d) || d != floor(d) || d < 0 || d > INT32_MAX)
            return ms_seterr(err, MS_ERR_FORMAT, "%s: field \"eos_token_id\": entry %d is not an id in [0, %d]", what,
                             *n, INT32_MAX);
        int v = (int)d, dup = 0;
        for (int i = 0; i < *n; i++) dup |= ids[i] == v;
        if (!dup) ids[(*n)++] = v;
    }
    return MS_OK;
}

/* "bfloat16" -> ST_BF16 etc.; -1 when not one the runtime runs. */
static int parse_dtype(const char *s)
{
    if (strcmp(s, "bfloat16") == 0) return ST_BF16;
    if (strcmp(s, "float16") == 0) return ST_F16;
    if (strcmp(s, "float32") == 0) return ST_F32;
    return -1;
}

static ms_status read_dtype(const cJSON *o, qwen3_config *c, const char *what, ms_error *err)
{
    const char *a = NULL, *b = NULL;
    ms_status s = json_get_string(o, "torch_dtype", 0, &a, what, err);
    if (!s) s = json_get_string(o, "dtype", 0, &b, what, err);
    if (s) return s;
    if (a && b && strcmp(a, b) != 0)
        return ms_seterr(err, MS_ERR_FORMAT, "%s: \"torch_dtype\" (%.40s) and \"dtype\" (%.40s) disagree", what, a, b);
    const char *d = b ? b : a;
    c->dtype = ST_F32;
    c->dtype_given = 0;
    if (!d) return MS_OK;
    int t = parse_dtype(d);
    if (t < 0)
        return ms_seterr(err, MS_ERR_UNSUPPORTED,
                         "%s: field \"%s\" = \"%.40s\" is not supported (bfloat16, float16 "
                         "or float32)",
                         what, b ? "dtype" : "torch_dtype", d);
    c->dtype = (st_dtype)t;
    c->dtype_given = 1;
    return MS_OK;
}

/* RoPE, both spellings. transformers: rope_scaling (4.x) wins over
 * rope_parameters (5.x); a theta inside the dict wins over the top-level one. */
static ms_status read_rope(const cJSON *o, qwen3_config *c, const char *what, ms_error *err)
{
    const cJSON *rs = json_get(o, "rope_scaling"), *rp = json_get(o, "rope_parameters");
    const cJSON *d = NULL;
    const char *dname = NULL;
    if (rs && !cJSON_IsNull(rs)) {
        d = rs;
        dname = "rope_scaling";
    } else if (rp && !cJSON_IsNull(rp)) {
        d = rp;
        dname = "rope_parameters";
    }
    if (d && !cJSON_IsObject(d))
        return ms_seterr(err, MS_ERR_FORMAT, "%s: field \"%s\" must be an object or null", what, dname);
    char dwhat[4200];
    snprintf(dwhat, sizeof dwhat, "%s: %s", what, dname ? dname : "");
    double theta = 0;
    int have = 0;
    ms_status s;
    if (d && json_get(d, "rope_theta") && !cJSON_IsNull(json_get(d, "rope_theta"))) {
        if ((s = json_get_double(d, "rope_theta", 1, &theta, dwhat, err))) return s;
        have = 1;
    } else if (json_get(o, "rope_theta") && !cJSON_IsNull(json_get(o, "rope_theta"))) {
        if ((s = json_get_double(o, "rope_theta", 1, &theta, what, err))) return s;
        have = 1;
    }
    if (!have)
        return ms_seterr(err, MS_ERR_FORMAT,
                         "%s: no rope_theta (neither top-level nor in rope_parameters / "
                         "rope_scaling); refusing to guess the base",
                         what);
    if (!(theta > 1.0) || theta > 1e12)
        return ms_seterr(err, MS_ERR_FORMAT, "%s: rope_theta = %g is outside (1, 1e12]", what, theta);
    c->rope_theta = theta;
    c->rope_yarn = 0;
    double prf = 1.0;
    if ((s = json_get_double(o, "partial_rotary_factor", 0, &prf, what, err))) return s;
    if (d && (s = json_get_double(d, "partial_rotary_factor", 0, &prf, dwhat, err))) return s;
    if (prf != 1.0)
        return ms_seterr(err, MS_ERR_UNSUPPORTED, "%s: partial_rotary_factor %g is not supported (Qwen3 uses 1)", what,
                         prf);
    if (!d) return MS_OK;
    const char *type = NULL;
    if ((s = json_get_string(d, "rope_type", 0, &type, dwhat, err))) return s;
    if (!type && (s = json_get_string(d, "type", 0, &type, dwhat, err))) return s;
    if (!type) type = "default";
    if (strcmp(type, "default") == 0) return MS_OK;
    if (strcmp(type, "yarn") != 0)
        return ms_seterr(err, MS_ERR_UNSUPPORTED, "%s: rope_type \"%.40s\" is not supported (default or yarn)", dwhat,
                         type);
    c->rope_yarn = 1;
    double f = 0, omax = 0, top_omax = 0;
    if ((s = json_get_double(d, "factor", 1, &f, dwhat, err))) return s;
    if (!(f >= 1.0) || f > 1024)
        return ms_seterr(err, MS_ERR_FORMAT, "%s: yarn factor %g is outside [1, 1024]", dwhat, f);
    if ((s = json_get_double(d, "original_max_position_embeddings", 0, &omax, dwhat, err))) return s;
    if ((s = json_get_double(o, "original_max_position_embeddings", 0, &top_omax, what, err))) return s;
    if (top_omax && omax && top_omax != omax)
        return ms_seterr(err, MS_ERR_FORMAT,
                         "%s: original_max_position_embeddings differs between the top level "
                         "(%g) and %s (%g)",
                         what, top_omax, dname, omax);
    if (!omax) omax = top_omax ? top_omax : (double)c->max_position_embeddings; /* transformers' default */
    if (!(omax >= 1) || omax > (1 << 24) || omax != floor(omax))
        return ms_seterr(err, MS_ERR_FORMAT, "%s: original_max_position_embeddings %g is not an integer in [1, 2^24]",
                         dwhat, omax);
    double bf = 0, bs = 0, af = 0, ms = 0, msa = 0;
    int truncate = 1;
    if ((s = json_get_double(d, "beta_fast", 0, &bf, dwhat, err))) return s;
    if ((s = json_get_double(d, "beta_slow", 0, &bs, dwhat, err))) return s;
    if ((s = json_get_double(d, "attention_factor", 0, &af, dwhat, err))) return s;
    if ((s = json_get_double(d, "mscale", 0, &ms, dwhat, err))) return s;
    if ((s = json_get_double(d, "mscale_all_dim", 0, &msa, dwhat, err))) return s;
    if ((s = json_get_bool(d, "truncate", 0, &truncate, dwhat, err))) return s;
    if (bf == 0) bf = 32; /* transformers: beta_fast or 32 */
    if (bs == 0) bs = 1;
    if (!(bf > 0) || !(bs > 0) || bf < bs || bf > 1e6)
        return ms_seterr(err, MS_ERR_FORMAT,
                         "%s: beta_fast %g / beta_slow %g must be positive with beta_fast >= "
                         "beta_slow",
                         dwhat, bf, bs);
    if (json_get(d, "attention_factor") && !cJSON_IsNull(json_get(d, "attention_factor"))) {
        if (!(af > 0) || af > 100)
            return ms_seterr(err, MS_ERR_FORMAT, "%s: attention_factor %g is outside (0, 100]", dwhat, af);
    } else if (f <= 1) {
        af = 1.0;
    } else if (ms != 0 && msa != 0) { /* transformers' get_mscale ratio */
        af = (0.1 * ms * log(f) + 1.0) / (0.1 * msa * log(f) + 1.0);
    } else {
        af = 0.1 * log(f) + 1.0;
    }
    c->yarn_factor = f;
    c->yarn_original_max = omax;
    c->yarn_beta_fast = bf;
    c->yarn_beta_slow = bs;
    c->yarn_attention_factor = af;
    c->yarn_truncate = truncate;
    return MS_OK;
}

ms_status config_load(const char *path, qwen3_config *c, ms_error *err)
{
    char file[4096];
    resolve(path, "config.json", file, sizeof file);
    memset(c, 0, sizeof *c);
    cJSON *o = json_load_file(file, CFG_MAX_FILE, err);
    if (!o) return err ? err->status : MS_ERR_FORMAT;
    const char *w = file;
    ms_status s = MS_OK;
    if (!cJSON_IsObject(o)) {
        s = ms_seterr(err, MS_ERR_FORMAT, "%s: not a JSON object", w);
        goto out;
    }
    const char *mt = NULL;
    if ((s = json_get_string(o, "model_type", 1, &mt, w, err))) goto out;
    if (strcmp(mt, "qwen3") != 0) {
        s = ms_seterr(err, MS_ERR_UNSUPPORTED,
                      "%s: model_type \"%.60s\" is not supported: medserve runs dense "
                      "Qwen3 only (model_type \"qwen3\")",
                      w, mt);
        goto out;
    }
    const cJSON *q = json_get(o, "quantization_config");
    if (q && !cJSON_IsNull(q)) {
        s = ms_seterr(err, MS_ERR_UNSUPPORTED,
                      "%s: field \"quantization_config\": quantized checkpoints are not "
                      "supported (export bf16/f16/f32 weights)",
                      w);
        goto out;
    }
    /* limits keep every later product (V*H, ctx*L*nkv*d*4, I*H) far inside 64 bits */
    if ((s = get_i(o, "hidden_size", 1, 1, 1 << 16, &c->hidden_size, w, err))) goto out;
    if ((s = get_i(o, "num_hidden_layers", 1, 1, 1024, &c->n_layers, w, err))) goto out;
    if ((s = get_i(o, "num_attention_heads", 1, 1, 1024, &c->n_heads, w, err))) goto out;
    c->n_kv_heads = c->n_heads; /* null or absent: as many as query heads */
    if ((s = get_i(o, "num_key_value_heads", 0, 1, 1024, &c->n_kv_heads, w, err))) goto out;
    if (c->n_kv_heads > c->n_heads || c->n_heads % c->n_kv_heads) {
        s = ms_seterr(err, MS_ERR_FORMAT, "%s: num_attention_heads %d is not a multiple of num_key_value_heads %d", w,
                      c->n_heads, c->n_kv_heads);
        goto out;
    }
    const cJSON *hd = json_get(o, "head_dim");
    if (hd) {
        if (cJSON_IsNull(hd)) {
            s = ms_seterr(err, MS_ERR_FORMAT,
                          "%s: field \"head_dim\" is null (transformers would fail); give an "
                          "integer",
                          w);
            goto out;
        }
        if ((s = get_i(o, "head_dim", 1, 2, 1024, &c->head_dim, w, err))) goto out;
    } else {
        /* transformers' Qwen3Config default is 128, not hidden/heads: accept
         * only when the two agree, so we never differ from the reference */
        if (c->hidden_size % c->n_heads || c->hidden_size / c->n_heads != 128) {
            s = ms_seterr(err, MS_ERR_FORMAT,
                          "%s: field \"head_dim\" is absent: transformers then uses 128 but "
                          "hidden_size / num_attention_heads = %d / %d; write head_dim explicitly",
                          w, c->hidden_size, c->n_heads);
            goto out;
        }
        c->head_dim = c->hidden_size / c->n_heads;
    }
    if (c->head_dim % 2) {
        s = ms_seterr(err, MS_ERR_FORMAT, "%s: head_dim %d must be even for RoPE", w, c->head_dim);
        goto out;
    }
    if ((s = get_i(o, "intermediate_size", 1, 1, 1 << 20, &c->intermediate_size, w, err))) goto out;
    if ((s = get_i(o, "vocab_size", 1, 1, 1 << 24, &c->vocab_size, w, err))) goto out;
    c->max_position_embeddings = 32768; /* transformers' default */
    if ((s = get_i(o, "max_position_embeddings", 0, 1, 1 << 24, &c->max_position_embeddings, w, err))) goto out;
    c->rms_norm_eps = 1e-6;
    if ((s = json_get_double(o, "rms_norm_eps", 0, &c->rms_norm_eps, w, err))) goto out;
    if (!(c->rms_norm_eps > 0) || c->rms_norm_eps > 0.1) {
        s = ms_seterr(err, MS_ERR_FORMAT, "%s: rms_norm_eps %g is outside (0, 0.1]", w, c->rms_norm_eps);
        goto out;
    }
    const char *act = "silu";
    if ((s = json_get_string(o, "hidden_act", 0, &act, w, err))) goto out;
    if (strcmp(act, "silu") != 0) {
        s = ms_seterr(err, MS_ERR_UNSUPPORTED, "%s: hidden_act \"%.40s\" is not supported (silu)", w, act);
        goto out;
    }
    if ((s = json_get_bool(o, "tie_word_embeddings", 0, &c->tie_word_embeddings, w, err))) goto out;
    if ((s = json_get_bool(o, "attention_bias", 0, &c->attention_bias, w, err))) goto out;
    int sw = 0;
    if ((s = json_get_bool(o, "use_sliding_window", 0, &sw, w, err))) goto out;
    if (sw) {
        s = ms_seterr(err, MS_ERR_UNSUPPORTED,
                      "%s: use_sliding_window true is not supported (Qwen3 uses full "
                      "attention)",
                      w);
        goto out;
    }
    const cJSON *lt = json_get(o, "layer_types");
    if (lt && !cJSON_IsNull(lt)) {
        if (!cJSON_IsArray(lt) || cJSON_GetArraySize(lt) != c->n_layers) {
            s = ms_seterr(err, MS_ERR_FORMAT, "%s: layer_types must be a list of %d strings", w, c->n_layers);
            goto out;
        }
        for (const cJSON *x = lt->child; x; x = x->next)
            if (!cJSON_IsString(x) || strcmp(x->valuestring, "full_attention") != 0) {
                s = ms_seterr(err, MS_ERR_UNSUPPORTED, "%s: layer_types: only \"full_attention\" is supported", w);
                goto out;
            }
    }
    if ((s = read_dtype(o, c, w, err))) goto out;
    if ((s = read_rope(o, c, w, err))) goto out;
    c->bos_token_id = -1;
    if ((s = get_i(o, "bos_token_id", 0, 0, INT32_MAX, &c->bos_token_id, w, err))) goto out;
    if ((s = get_eos(o, c->eos_ids, &c->n_eos, w, err))) goto out;
out:
    cJSON_Delete(o);
    return s;
}

ms_status gen_config_load(const char *path, gen_config *g, ms_error *err)
{
    char file[4096];
    resolve(path, "generation_config.json", file, sizeof file);
    memset(g, 0, sizeof *g);
    g->temperature = 1.0; /* transformers' GenerationConfig defaults */
    g->top_p = 1.0;
    g->top_k = 50;
    g->min_p = 0.0;
    g->repetition_penalty = 1.0;
    struct stat st;
    if (stat(file, &st) != 0) return MS_OK; /* missing file: the defaults */
    cJSON *o = json_load_file(file, CFG_MAX_FILE, err);
    if (!o) return err ? err->status : MS_ERR_FORMAT;
    const char *w = file;
    ms_status s = MS_OK;
    if (!cJSON_IsObject(o)) {
        s = ms_seterr(err, MS_ERR_FORMAT, "%s: not a JSON object", w);
        goto out;
    }
    if ((s = json_get_bool(o, "do_sample", 0, &g->do_sample, w, err))) goto out;
    if ((s = json_get_double(o, "temperature", 0, &g->temperature, w, err))) goto out;
    if (g->temperature < 0 || g->temperature > 100 || (g->do_sample && g->temperature == 0)) {
        s = ms_seterr(err, MS_ERR_FORMAT, "%s: temperature %g must be in (0, 100]%s", w, g->temperature,
                      g->do_sample ? " with do_sample" : "");
        goto out;
    }
    const cJSON *tk = json_get(o, "top_k");
    if (tk && cJSON_IsNull(tk)) g->top_k = 0; /* None: no top-k filter */
    if ((s = get_i(o, "top_k", 0, 0, 1 << 24, &g->top_k, w, err))) goto out;
    if ((s = json_get_double(o, "top_p", 0, &g->top_p, w, err))) goto out;
    if (!(g->top_p > 0) || g->top_p > 1) {
        s = ms_seterr(err, MS_ERR_FORMAT, "%s: top_p %g must be in (0, 1]", w, g->top_p);
        goto out;
    }
    if ((s = json_get_double(o, "min_p", 0, &g->min_p, w, err))) goto out;
    if (g->min_p < 0 || g->min_p > 1) {
        s = ms_seterr(err, MS_ERR_FORMAT, "%s: min_p %g must be in [0, 1]", w, g->min_p);
        goto out;
    }
    if ((s = json_get_double(o, "repetition_penalty", 0, &g->repetition_penalty, w, err))) goto out;
    if (!(g->repetition_penalty > 0) || g->repetition_penalty > 100) {
        s = ms_seterr(err, MS_ERR_FORMAT, "%s: repetition_penalty %g must be in (0, 100]", w, g->repetition_penalty);
        goto out;
    }
    if ((s = get_i(o, "max_new_tokens", 0, 1, 1 << 24, &g->max_new_tokens, w, err))) goto out;
    if ((s = get_eos(o, g->eos_ids, &g->n_eos, w, err))) goto out;
    const cJSON *bos = json_get(o, "bos_token_id"), *pad = json_get(o, "pad_token_id");
    int tmp;
    if (bos && (s = get_i(o, "bos_token_id", 0, 0, INT32_MAX, &tmp, w, err))) goto out;
    if (pad && (s = get_i(o, "pad_token_id", 0, 0, INT32_MAX, &tmp, w, err))) goto out;
out:
    cJSON_Delete(o);
    return s;
}
