/* plan.c: builds the merge plan (see plan.h). Three steps: the expected
 * Qwen3 tensors from config.json, checked one for one against the base
 * files; each adapter's modules bound to those tensors with every shape,
 * rank and selection cross-check; then the shard layout. */
#include "plan.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "io/st_shard.h"

enum { K_LINEAR, K_HEAD, K_EMBED, K_NORM, K_BIAS };

#define EMBED_NAME "model.embed_tokens.weight"
#define HEAD_NAME "lm_head.weight"

/* Per output tensor, what kind of module it belongs to. */
typedef struct expect {
    int kind;
} expect;

/* Frees a plan; NULL-safe. */
void mg_plan_free(mg_plan *p)
{
    if (!p) return;
    free(p->t);
    memset(p, 0, sizeof *p);
}

/* Appends an expected tensor. */
static void add(mg_otensor *t, expect *ex, size_t *n, const char *name, int kind, int64_t d0, int64_t d1)
{
    mg_otensor *o = &t[*n];
    memset(o, 0, sizeof *o);
    snprintf(o->name, sizeof o->name, "%s", name);
    o->ndim = d1 ? 2 : 1;
    o->shape[0] = d0;
    o->shape[1] = d1;
    o->rows = d1 ? (uint64_t)d0 : 1;
    o->cols = d1 ? (uint64_t)d1 : (uint64_t)d0;
    ex[*n].kind = kind;
    (*n)++;
}

/* Index of the output tensor called name, or -1 (linear scan: a few hundred). */
static long find_out(const mg_plan *p, const char *name)
{
    for (size_t i = 0; i < p->n; i++)
        if (!strcmp(p->t[i].name, name)) return (long)i;
    return -1;
}

/* Describes a tensor shape as "[a, b]". */
static const char *shape_str(const st_tensor *t, char *buf, size_t len)
{
    size_t o = 0;
    o += (size_t)snprintf(buf + o, len - o, "[");
    for (int i = 0; i < t->ndim && o < len; i++)
        o += (size_t)snprintf(buf + o, len - o, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
    if (o < len) snprintf(buf + o, len - o, "]");
    return buf;
}

/* Whether t has exactly shape [d0] (d1 == 0) or [d0, d1]. */
static int shape_is(const st_tensor *t, int64_t d0, int64_t d1)
{
    if (d1 == 0) return t->ndim == 1 && t->shape[0] == d0;
    return t->ndim == 2 && t->shape[0] == d0 && t->shape[1] == d1;
}

/* Lists the expected tensors of the config (lm_head only when with_head;
 * embedding and head with V rows). */
static size_t expected(const qwen3_config *c, int with_head, int64_t V, mg_otensor *t, expect *ex)
{
    size_t n = 0;
    char name[MG_MAX_NAME_LEN];
    int64_t H = c->hidden_size, d = c->head_dim, q = (int64_t)c->n_heads * d, kv = (int64_t)c->n_kv_heads * d;
    int64_t I = c->intermediate_size;
    add(t, ex, &n, EMBED_NAME, K_EMBED, V, H);
    for (int i = 0; i < c->n_layers; i++) {
        static const char *const attn[4] = {"q_proj", "k_proj", "v_proj", "o_proj"};
        const int64_t rows[4] = {q, kv, kv, H}, cols[4] = {H, H, H, q};
        for (int j = 0; j < 4; j++) {
            snprintf(name, sizeof name, "model.layers.%d.self_attn.%s.weight", i, attn[j]);
            add(t, ex, &n, name, K_LINEAR, rows[j], cols[j]);
            if (c->attention_bias) {
                snprintf(name, sizeof name, "model.layers.%d.self_attn.%s.bias", i, attn[j]);
                add(t, ex, &n, name, K_BIAS, rows[j], 0);
            }
        }
        snprintf(name, sizeof name, "model.layers.%d.self_attn.q_norm.weight", i);
        add(t, ex, &n, name, K_NORM, d, 0);
        snprintf(name, sizeof name, "model.layers.%d.self_attn.k_norm.weight", i);
        add(t, ex, &n, name, K_NORM, d, 0);
        static const char *const mlp[3] = {"gate_proj", "up_proj", "down_proj"};
        const int64_t mr[3] = {I, I, H}, mc[3] = {H, H, I};
        for (int j = 0; j < 3; j++) {
            snprintf(name, sizeof name, "model.layers.%d.mlp.%s.weight", i, mlp[j]);
            add(t, ex, &n, name, K_LINEAR, mr[j], mc[j]);
        }
        snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", i);
        add(t, ex, &n, name, K_NORM, H, 0);
        snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", i);
        add(t, ex, &n, name, K_NORM, H, 0);
    }
    add(t, ex, &n, "model.norm.weight", K_NORM, H, 0);
    if (with_head) add(t, ex, &n, HEAD_NAME, K_HEAD, V, H);
    return n;
}

/* Whether an adapter module changes the embedding or the head other than by
 * token rows (which a tied pair can take without untying). */
static int touches_tied_pair(const mg_akeys *k)
{
    const mg_amod *e = mg_akeys_find(k, "model.embed_tokens");
    if (e)
        for (int s = 0; s < MG_SLOT_COUNT; s++)
            if (s != MG_SLOT_TOKENS && e->t[s]) return 1;
    return mg_akeys_find(k, "lm_head") != NULL;
}

/* Checks the base tensors against the expected list; fills src pointers. */
static ms_status bind_base(const st_set *base, mg_plan *p, int tied, int64_t base_vocab, int *base_head_ignored,
                           const mg_log *lg, ms_error *err)
{
    char sb[96];
    for (size_t i = 0; i < p->n; i++) {
        mg_otensor *o = &p->t[i];
        const char *src_name = (p->untie && !strcmp(o->name, HEAD_NAME)) ? EMBED_NAME : o->name;
        const st_tensor *t = st_set_find(base, src_name);
        int vocab_rows = !strcmp(o->name, EMBED_NAME) || !strcmp(o->name, HEAD_NAME);
        int64_t rows0 = vocab_rows ? base_vocab : o->shape[0];
        if (!t)
            return ms_seterr(err, MS_ERR_FORMAT, "base: tensor \"%s\" is missing (config.json describes it)", src_name);
        if (!shape_is(t, rows0, o->ndim == 2 ? o->shape[1] : 0))
            return ms_seterr(err, MS_ERR_FORMAT,
                             "base %s: tensor \"%s\" has shape %s; config.json implies [%lld%s%lld]",
                             t->path ? t->path : "", src_name, shape_str(t, sb, sizeof sb), (long long)rows0,
                             o->ndim == 2 ? ", " : "", o->ndim == 2 ? (long long)o->shape[1] : 0LL);
        o->src_rows = o->ndim == 2 ? (uint64_t)rows0 : 1;
        if (t->dtype != ST_BF16 && t->dtype != ST_F16 && t->dtype != ST_F32)
            return ms_seterr(err, MS_ERR_UNSUPPORTED,
                             "base %s: tensor \"%s\" has dtype %s; only BF16, F16 and F32 bases can be merged",
                             t->path ? t->path : "", src_name, st_dtype_name(t->dtype));
        o->src = t;
    }
    *base_head_ignored = 0;
    for (size_t i = 0; i < st_set_count(base); i++) {
        const st_tensor *t = st_set_get(base, i);
        if (tied && !strcmp(t->name, HEAD_NAME)) {
            *base_head_ignored = 1;
            mg_logf(lg, MG_LOG_WARN,
                    "base: config.json ties the embeddings but the files also hold \"lm_head.weight\"; it is "
                    "ignored, as transformers does");
            continue;
        }
        if (find_out(p, t->name) >= 0) continue;
        return ms_seterr(err, MS_ERR_FORMAT,
                         "base %s: unexpected tensor \"%s\": not part of a Qwen3 model with this config.json, and "
                         "it would be dropped silently",
                         t->path ? t->path : "", t->name);
    }
    return MS_OK;
}

/* The op of adapter a on output tensor o (created on first use). */
static mg_op *op_for(mg_otensor *o, int a)
{
    if (o->n_ops && o->ops[o->n_ops - 1].adapter == a) return &o->ops[o->n_ops - 1];
    mg_op *op = &o->ops[o->n_ops++];
    memset(op, 0, sizeof *op);
    op->adapter = a;
    return op;
}

/* Checks the LoRA rank of a module against adapter_config (r / rank_pattern). */
static ms_status check_rank(const mg_adapter *ad, const char *path, const char *module, int r_w, int *r, float *scale,
                            ms_error *err)
{
    int r_cfg;
    double alpha;
    double s = mg_acfg_module(ad->cfg, module, &r_cfg, &alpha);
    if (r_cfg != r_w)
        return ms_seterr(err, MS_ERR_FORMAT,
                         "%s: module \"%s\": the weights have rank %d but adapter_config.json gives r = %d (r / "
                         "rank_pattern)",
                         path, module, r_w, r_cfg);
    double sw = ad->weight * s;
    if (!isfinite(sw) || fabs(sw) > 3.0e38)
        return ms_seterr(err, MS_ERR_INVALID, "%s: module \"%s\": scale %g is not a finite float", path, module, sw);
    *r = r_w;
    *scale = (float)sw;
    return MS_OK;
}

/* One adapter module being bound to its output tensor: what bind_module's
 * phases share. */
typedef struct binding {
    const mg_adapter *ad;
    const mg_amod *m;
    const char *path;    /* the adapter's weights file, for errors */
    const mg_otensor *o; /* the output tensor the module changes */
    int kind;            /* K_* of o */
    mg_op *op;           /* the adapter's op on o, filled by the phases */
    size_t *used;        /* adapter tensors bound so far */
} binding;

/* Phase 1, the full replacement. A modules_to_save copy wins; PEFT saves the
 * wrapper's plain weight beside it (the same bytes: checked) and the
 * untrained original_module (not used by merge_and_unload). Sets op->replace
 * when the module has a full weight of the output's shape. */
static ms_status bind_replacement(const binding *b, ms_error *err)
{
    const mg_amod *m = b->m;
    const st_tensor *const *T = m->t;
    const mg_otensor *o = b->o;
    const char *path = b->path;
    char sb[96];
    const st_tensor *mts = T[MG_SLOT_MTS], *full = T[MG_SLOT_FULL], *orig = T[MG_SLOT_ORIG];
    if (mts && full) {
        if (full->dtype != mts->dtype || full->nbytes != mts->nbytes || full->ndim != mts->ndim ||
            memcmp(full->shape, mts->shape, sizeof full->shape) || memcmp(full->data, mts->data, (size_t)full->nbytes))
            return ms_seterr(err, MS_ERR_FORMAT, "%s: module \"%s\": \"%s\" and \"%s\" differ; which one was trained?",
                             path, m->module, m->key[MG_SLOT_FULL], m->key[MG_SLOT_MTS]);
        full = NULL;
        (*b->used)++;
    }
    if (orig && !mts)
        return ms_seterr(err, MS_ERR_FORMAT, "%s: tensor \"%s\" without a modules_to_save copy", path,
                         m->key[MG_SLOT_ORIG]);
    if (orig) {
        if (orig->ndim != mts->ndim || memcmp(orig->shape, mts->shape, sizeof orig->shape))
            return ms_seterr(err, MS_ERR_FORMAT, "%s: tensor \"%s\" has shape %s, unlike its modules_to_save copy",
                             path, orig->name, shape_str(orig, sb, sizeof sb));
        (*b->used)++;
    }
    if ((mts || full) && T[MG_SLOT_BASE])
        return ms_seterr(err, MS_ERR_FORMAT, "%s: module \"%s\" has both \"%s\" and \"%s\" as full weights", path,
                         m->module, mts ? m->key[MG_SLOT_MTS] : m->key[MG_SLOT_FULL], m->key[MG_SLOT_BASE]);
    const st_tensor *rep = mts ? mts : full ? full : T[MG_SLOT_BASE];
    if (rep) {
        if (!shape_is(rep, o->shape[0], o->ndim == 2 ? o->shape[1] : 0))
            return ms_seterr(
                err, MS_ERR_FORMAT, "%s: tensor \"%s\" has shape %s but the export's \"%s\" is [%lld, %lld]%s", path,
                rep->name, shape_str(rep, sb, sizeof sb), o->name, (long long)o->shape[0], (long long)o->shape[1],
                (b->kind == K_EMBED || b->kind == K_HEAD) ? " (adapters disagree about the vocabulary size)" : "");
        b->op->replace = rep;
        (*b->used)++;
    }
    return MS_OK;
}

/* Phase 2, before any delta: a module's LoRA weights are Linear or Embedding
 * ones, never both, never beside a modules_to_save weight, and a DoRA
 * magnitude comes with Linear LoRA weights. */
static ms_status check_delta_kinds(const binding *b, int has_lin, int has_emb, ms_error *err)
{
    const mg_amod *m = b->m;
    const st_tensor *const *T = m->t;
    const char *path = b->path;
    if (has_lin && has_emb)
        return ms_seterr(err, MS_ERR_FORMAT, "%s: module \"%s\" has both Linear and Embedding LoRA weights", path,
                         m->module);
    if ((has_lin || has_emb) && (T[MG_SLOT_FULL] || T[MG_SLOT_MTS]))
        return ms_seterr(
            err, MS_ERR_FORMAT,
            "%s: module \"%s\" has LoRA weights and a modules_to_save weight \"%s\"; PEFT never saves both", path,
            m->module, T[MG_SLOT_MTS] ? m->key[MG_SLOT_MTS] : m->key[MG_SLOT_FULL]);
    if (T[MG_SLOT_MAG] && !has_lin)
        return ms_seterr(err, MS_ERR_FORMAT, "%s: tensor \"%s\": a DoRA magnitude without lora_A/lora_B weights", path,
                         m->key[MG_SLOT_MAG]);
    return MS_OK;
}

/* Phase 2, Linear LoRA: A and B fit the output tensor, target_modules select
 * the module, the rank matches the config; with use_dora, the magnitude
 * vector fits too. Sets the op's LoRA or DoRA delta. */
static ms_status bind_linear_lora(const binding *b, ms_error *err)
{
    const mg_amod *m = b->m;
    const st_tensor *const *T = m->t;
    const mg_otensor *o = b->o;
    const char *path = b->path;
    char sb[96], sb2[96];
    const st_tensor *A = T[MG_SLOT_A], *B = T[MG_SLOT_B];
    if (!A || !B)
        return ms_seterr(err, MS_ERR_FORMAT, "%s: module \"%s\" has \"%s\" but no %s", path, m->module,
                         A ? m->key[MG_SLOT_A] : m->key[MG_SLOT_B], A ? "lora_B.weight" : "lora_A.weight");
    if (b->kind != K_LINEAR && b->kind != K_HEAD)
        return ms_seterr(err, MS_ERR_FORMAT,
                         "%s: module \"%s\" has Linear LoRA weights but \"%s\" is not a Linear weight", path, m->module,
                         o->name);
    if (A->ndim != 2 || B->ndim != 2 || A->shape[0] != B->shape[1] || A->shape[1] != o->shape[1] ||
        B->shape[0] != o->shape[0] || A->shape[0] < 1)
        return ms_seterr(err, MS_ERR_FORMAT,
                         "%s: module \"%s\": lora_A %s and lora_B %s do not fit base \"%s\" [%lld, %lld] (need A "
                         "[r, %lld], B [%lld, r])",
                         path, m->module, shape_str(A, sb, sizeof sb), shape_str(B, sb2, sizeof sb2), o->name,
                         (long long)o->shape[0], (long long)o->shape[1], (long long)o->shape[1],
                         (long long)o->shape[0]);
    if (!mg_acfg_targets(b->ad->cfg, m->module, b->kind == K_LINEAR))
        return ms_seterr(err, MS_ERR_FORMAT,
                         "%s: module \"%s\" has LoRA weights but adapter_config.json's target_modules / "
                         "exclude_modules / layers_to_transform do not select it (PEFT would ignore these weights)",
                         path, m->module);
    ms_status st = check_rank(b->ad, path, m->module, (int)A->shape[0], &b->op->r, &b->op->scale, err);
    if (st) return st;
    b->op->A = A;
    b->op->B = B;
    b->op->delta = MG_DELTA_LORA;
    *b->used += 2;
    if (mg_acfg_use_dora(b->ad->cfg)) {
        const st_tensor *mag = T[MG_SLOT_MAG];
        if (!mag)
            return ms_seterr(err, MS_ERR_FORMAT, "%s: use_dora is true but module \"%s\" has no lora_magnitude_vector",
                             path, m->module);
        if (!shape_is(mag, o->shape[0], 0))
            return ms_seterr(err, MS_ERR_FORMAT, "%s: tensor \"%s\" has shape %s; DoRA needs [%lld]", path, mag->name,
                             shape_str(mag, sb, sizeof sb), (long long)o->shape[0]);
        b->op->mag = mag;
        b->op->delta = MG_DELTA_DORA;
        (*b->used)++;
    } else if (T[MG_SLOT_MAG]) {
        return ms_seterr(err, MS_ERR_FORMAT, "%s: tensor \"%s\" is a DoRA magnitude but use_dora is false", path,
                         m->key[MG_SLOT_MAG]);
    }
    return MS_OK;
}

/* Phase 2, Embedding LoRA: only on the embedding, without DoRA, with A and B
 * fitting it, selected by target_modules and of the configured rank. Sets the
 * op's embedding delta. */
static ms_status bind_embed_lora(const binding *b, ms_error *err)
{
    const mg_amod *m = b->m;
    const st_tensor *const *T = m->t;
    const mg_otensor *o = b->o;
    const char *path = b->path;
    char sb[96], sb2[96];
    const st_tensor *A = T[MG_SLOT_EA], *B = T[MG_SLOT_EB];
    if (!A || !B)
        return ms_seterr(err, MS_ERR_FORMAT, "%s: module \"%s\" has \"%s\" but no %s", path, m->module,
                         A ? m->key[MG_SLOT_EA] : m->key[MG_SLOT_EB], A ? "lora_embedding_B" : "lora_embedding_A");
    if (b->kind != K_EMBED)
        return ms_seterr(err, MS_ERR_FORMAT, "%s: module \"%s\" has Embedding LoRA weights but is not the embedding",
                         path, m->module);
    if (mg_acfg_use_dora(b->ad->cfg))
        return ms_seterr(err, MS_ERR_UNSUPPORTED, "%s: DoRA on the embedding (\"%s\") is not supported", path,
                         m->module);
    if (A->ndim != 2 || B->ndim != 2 || A->shape[0] != B->shape[1] || A->shape[1] != o->shape[0] ||
        B->shape[0] != o->shape[1] || A->shape[0] < 1)
        return ms_seterr(err, MS_ERR_FORMAT,
                         "%s: module \"%s\": lora_embedding_A %s and lora_embedding_B %s do not fit base \"%s\" "
                         "[%lld, %lld] (need A [r, %lld], B [%lld, r])",
                         path, m->module, shape_str(A, sb, sizeof sb), shape_str(B, sb2, sizeof sb2), o->name,
                         (long long)o->shape[0], (long long)o->shape[1], (long long)o->shape[0],
                         (long long)o->shape[1]);
    if (!mg_acfg_targets(b->ad->cfg, m->module, 0))
        return ms_seterr(err, MS_ERR_FORMAT,
                         "%s: module \"%s\" has LoRA weights but adapter_config.json's target_modules do not "
                         "select it (PEFT would ignore these weights)",
                         path, m->module);
    ms_status st = check_rank(b->ad, path, m->module, (int)A->shape[0], &b->op->r, &b->op->scale, err);
    if (st) return st;
    b->op->A = A;
    b->op->B = B;
    b->op->delta = MG_DELTA_EMBED;
    *b->used += 2;
    return MS_OK;
}

/* Phase 3, trainable token rows: only on the embedding, one row per distinct
 * trainable_token_indices entry below the vocabulary size. Sets the op's
 * rows, and the head's too while the pair is still tied. */
static ms_status bind_tokens(mg_plan *p, const binding *b, int a, int tied_at_start, ms_error *err)
{
    const mg_amod *m = b->m;
    const st_tensor *const *T = m->t;
    const mg_otensor *o = b->o;
    const char *path = b->path;
    char sb[96];
    const st_tensor *tk = T[MG_SLOT_TOKENS];
    size_t n_idx;
    const int64_t *idx = mg_acfg_token_indices(b->ad->cfg, &n_idx);
    if (b->kind != K_EMBED)
        return ms_seterr(err, MS_ERR_UNSUPPORTED,
                         "%s: trainable tokens on \"%s\" are not supported (embed_tokens only)", path, m->module);
    if (!n_idx)
        return ms_seterr(err, MS_ERR_FORMAT,
                         "%s: tensor \"%s\" holds token rows but adapter_config.json has no "
                         "trainable_token_indices",
                         path, tk->name);
    if (!shape_is(tk, (int64_t)n_idx, o->shape[1]))
        return ms_seterr(err, MS_ERR_FORMAT,
                         "%s: tensor \"%s\" has shape %s; %zu trainable_token_indices need [%zu, %lld]", path, tk->name,
                         shape_str(tk, sb, sizeof sb), n_idx, n_idx, (long long)o->shape[1]);
    for (size_t i = 0; i < n_idx; i++) {
        if (idx[i] >= o->shape[0])
            return ms_seterr(err, MS_ERR_FORMAT,
                             "%s: trainable_token_indices[%zu] = %lld is not below the vocabulary size %lld", path, i,
                             (long long)idx[i], (long long)o->shape[0]);
        for (size_t j = 0; j < i; j++)
            if (idx[j] == idx[i])
                return ms_seterr(err, MS_ERR_FORMAT, "%s: trainable_token_indices lists %lld twice", path,
                                 (long long)idx[i]);
    }
    b->op->tokens = tk;
    b->op->tok_idx = idx;
    b->op->n_tok = n_idx;
    (*b->used)++;
    /* A tied pair shares its rows: the head gets them too (PEFT ties a
     * TrainableTokens layer to lm_head when the embeddings are tied). */
    long hi = find_out(p, HEAD_NAME);
    if (tied_at_start && hi >= 0) {
        mg_op *hop = op_for(&p->t[hi], a);
        hop->tokens = tk;
        hop->tok_idx = idx;
        hop->n_tok = n_idx;
    }
    return MS_OK;
}

/* Binds one adapter module to its output tensor(s): finds the tensor, then
 * checks and records, in the order the op applies them, the full
 * replacement, the LoRA delta and the token rows. */
static ms_status bind_module(mg_plan *p, const expect *ex, const mg_adapter *ad, int a, const mg_amod *m,
                             int tied_at_start, const char *path, size_t *used, ms_error *err)
{
    char param[MG_MAX_NAME_LEN + 16];
    snprintf(param, sizeof param, "%s.weight", m->module);
    long oi = find_out(p, param);
    const char *any = NULL;
    for (int s = 0; s < MG_SLOT_COUNT && !any; s++) any = m->key[s];
    if (oi < 0)
        return ms_seterr(err, MS_ERR_FORMAT,
                         "%s: tensor \"%s\" (module \"%s\") matches no base tensor: the base has no \"%s\"; was the "
                         "adapter trained on a different model?",
                         path, any, m->module, param);
    mg_otensor *o = &p->t[oi];
    const st_tensor *const *T = m->t;
    binding b = {ad, m, path, o, ex[oi].kind, op_for(o, a), used};
    int has_lin = T[MG_SLOT_A] || T[MG_SLOT_B], has_emb = T[MG_SLOT_EA] || T[MG_SLOT_EB];
    ms_status st;
    if ((st = bind_replacement(&b, err))) return st;
    if ((st = check_delta_kinds(&b, has_lin, has_emb, err))) return st;
    if (has_lin && (st = bind_linear_lora(&b, err))) return st;
    if (has_emb && (st = bind_embed_lora(&b, err))) return st;
    if (T[MG_SLOT_TOKENS] && (st = bind_tokens(p, &b, a, tied_at_start, err))) return st;
    return MS_OK;
}

/* Warns about modules the config targets that have no weights. */
static void warn_untrained(const mg_plan *p, const expect *ex, const mg_adapter *ad, int a, const char *path,
                           const mg_log *lg)
{
    size_t n = 0;
    const char *first = NULL;
    char mod[MG_MAX_NAME_LEN];
    for (size_t i = 0; i < p->n; i++) {
        const mg_otensor *o = &p->t[i];
        int k = ex[i].kind;
        if (k != K_LINEAR && k != K_HEAD && k != K_EMBED) continue;
        snprintf(mod, sizeof mod, "%.*s", (int)(strlen(o->name) - 7), o->name); /* drop ".weight" */
        if (mg_akeys_find(ad->keys, mod)) continue;
        if (!mg_acfg_targets(ad->cfg, mod, k == K_LINEAR)) continue;
        if (!first) first = o->name;
        n++;
    }
    (void)a;
    if (n)
        mg_logf(lg, MG_LOG_WARN,
                "%s: %zu module(s) selected by target_modules have no LoRA weights (PEFT leaves them unchanged), "
                "e.g. %s",
                path, n, first);
}

/* Assigns shards as transformers 5 save_pretrained does for a model loaded
 * with from_pretrained (LLaMA-Factory's export): the state dict walked in
 * dot_natural_key order, split with huggingface_hub's policy (st_shard.c).
 * Fills the shard of every tensor; returns the shard count or a negative
 * status. */
static int assign_shards(mg_plan *p, uint64_t max, ms_error *err)
{
    st_wtensor *wt = calloc(p->n, sizeof *wt);
    if (!wt) return -(int)ms_seterr(err, MS_ERR_NOMEM, "plan: out of memory");
    mg_wtensors(p, wt);
    st_hf5_sort(wt, p->n);
    st_shard_plan sp;
    ms_status st = st_shard_plan_make(wt, p->n, max, &sp, err);
    if (st) {
        free(wt);
        return -(int)st;
    }
    for (size_t k = 0; k < p->n; k++) p->t[find_out(p, wt[k].name)].shard = (int)sp.shard_of[k];
    int n = (int)sp.n_shards;
    st_shard_plan_free(&sp);
    free(wt);
    return n;
}

/* Fills wt[i] from output tensor i (names point into the plan). */
void mg_wtensors(const mg_plan *p, st_wtensor *wt)
{
    for (size_t i = 0; i < p->n; i++) {
        memset(&wt[i], 0, sizeof wt[i]);
        wt[i].name = p->t[i].name;
        wt[i].dtype = p->dtype;
        wt[i].ndim = p->t[i].ndim;
        wt[i].shape[0] = p->t[i].shape[0];
        wt[i].shape[1] = p->t[i].shape[1];
    }
}

/* The rows of a full embedding/head weight of module m, or 0. */
static int64_t full_rows(const mg_akeys *k, const char *module, int64_t H)
{
    const mg_amod *m = mg_akeys_find(k, module);
    if (!m) return 0;
    const st_tensor *t = m->t[MG_SLOT_MTS]    ? m->t[MG_SLOT_MTS]
                         : m->t[MG_SLOT_FULL] ? m->t[MG_SLOT_FULL]
                                              : m->t[MG_SLOT_BASE];
    return t && t->ndim == 2 && t->shape[1] == H ? t->shape[0] : 0;
}

/* Finds a vocabulary resize: full embedding/head weights whose row count
 * differs from config.json's vocab_size (LLaMA-Factory's resize_vocab). */
static ms_status find_resize(const qwen3_config *cfg, const mg_adapter *ad, int n_ad, mg_plan *p, ms_error *err)
{
    p->vocab_out = cfg->vocab_size;
    p->resized_by = -1;
    static const char *const mods[2] = {"model.embed_tokens", "lm_head"};
    for (int a = 0; a < n_ad; a++)
        for (int k = 0; k < 2; k++) {
            int64_t v = full_rows(ad[a].keys, mods[k], cfg->hidden_size);
            if (!v || v == cfg->vocab_size) continue;
            if (v > 0x7fffffff)
                return ms_seterr(err, MS_ERR_FORMAT, "%s: vocabulary of %lld rows", ad[a].dir, (long long)v);
            if (p->resized_by >= 0 && v != p->vocab_out)
                return ms_seterr(
                    err, MS_ERR_FORMAT,
                    "%s: full %s weights have %lld rows but an earlier adapter resized the vocabulary to %d", ad[a].dir,
                    mods[k], (long long)v, p->vocab_out);
            if (p->resized_by < 0) {
                p->vocab_out = (int)v;
                p->resized_by = a;
            }
        }
    return MS_OK;
}

/* After a resize, the first change to the embedding and to the head must be
 * a full weight of the new size: their new rows have no base values. */
static ms_status check_resize_ops(const mg_plan *p, const mg_adapter *ad, ms_error *err)
{
    for (size_t i = 0; i < p->n; i++) {
        const mg_otensor *o = &p->t[i];
        if (o->src_rows == o->rows) continue;
        if (!o->n_ops || !o->ops[0].replace)
            return ms_seterr(err, MS_ERR_UNSUPPORTED,
                             "%s resizes the vocabulary to %d rows, but \"%s\" gets no full weight of that size first "
                             "(add it to modules_to_save); its new rows would have no values",
                             ad[p->resized_by].dir, p->vocab_out, o->name);
    }
    return MS_OK;
}

/* Builds the whole plan: checks the config, binds every adapter module to its
 * base tensor (bind_module), then assigns output tensors to shards. */
ms_status mg_plan_build(const qwen3_config *cfg, const st_set *base, const mg_adapter *ad, int n_ad, st_dtype out_dtype,
                        uint64_t max_shard_bytes, mg_plan *p, const mg_log *lg, ms_error *err)
{
    memset(p, 0, sizeof *p);
    ms_status st = MS_OK;
    expect *ex = NULL;
    if (cfg->n_layers < 1 || cfg->n_layers > 100000)
        return ms_seterr(err, MS_ERR_FORMAT, "base config.json: num_hidden_layers = %d is out of range", cfg->n_layers);
    if (n_ad < 1 || n_ad > MG_MAX_ADAPTERS)
        return ms_seterr(err, MS_ERR_INVALID, "between 1 and %d adapters are needed", MG_MAX_ADAPTERS);
    p->dtype = out_dtype;
    int tied = cfg->tie_word_embeddings;
    for (int a = 0; a < n_ad && tied; a++)
        if (touches_tied_pair(ad[a].keys)) p->untie = 1;
    p->tied_out = tied && !p->untie;
    if ((st = find_resize(cfg, ad, n_ad, p, err))) return st;
    size_t cap = 4 + (size_t)cfg->n_layers * 15;
    p->t = calloc(cap, sizeof *p->t);
    ex = calloc(cap, sizeof *ex);
    if (!p->t || !ex) {
        st = ms_seterr(err, MS_ERR_NOMEM, "plan: out of memory");
        goto fail;
    }
    p->n = expected(cfg, !p->tied_out, p->vocab_out, p->t, ex);
    int head_ignored = 0;
    if ((st = bind_base(base, p, tied, cfg->vocab_size, &head_ignored, lg, err))) goto fail;
    if (p->untie)
        mg_logf(lg, MG_LOG_INFO,
                "base ties lm_head to embed_tokens and an adapter changes one of them: writing them untied "
                "(lm_head = embedding + head changes; embedding changes only to embed_tokens; "
                "tie_word_embeddings: false), which matches the unmerged PEFT model");
    int tied_now = tied;
    for (int a = 0; a < n_ad; a++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/adapter_model.safetensors", ad[a].dir);
        size_t used = 0;
        for (size_t i = 0; i < ad[a].keys->n; i++)
            if ((st = bind_module(p, ex, &ad[a], a, &ad[a].keys->mods[i], tied_now, path, &used, err))) goto fail;
        if (used != ad[a].keys->n_tensors) {
            st = ms_seterr(err, MS_ERR_INTERNAL, "%s: %zu of %zu adapter tensors were bound", path, used,
                           ad[a].keys->n_tensors);
            goto fail;
        }
        size_t n_idx;
        mg_acfg_token_indices(ad[a].cfg, &n_idx);
        const mg_amod *em = mg_akeys_find(ad[a].keys, "model.embed_tokens");
        if (n_idx && !(em && em->t[MG_SLOT_TOKENS]))
            mg_logf(lg, MG_LOG_WARN,
                    "%s: trainable_token_indices is set but the file has no trainable_tokens_delta; PEFT would leave "
                    "those rows unchanged",
                    path);
        warn_untrained(p, ex, &ad[a], a, path, lg);
        p->adapter_tensors_used[a] = used;
        if (touches_tied_pair(ad[a].keys)) tied_now = 0;
    }
    if (p->resized_by >= 0 && (st = check_resize_ops(p, ad, err))) goto fail;
    p->total_bytes = 0;
    for (size_t i = 0; i < p->n; i++) {
        mg_otensor *o = &p->t[i];
        uint64_t numel = o->rows * o->cols;
        o->nbytes = numel * st_dtype_size(out_dtype);
        p->total_bytes += o->nbytes;
        p->total_params += numel;
        p->ops_total += (size_t)o->n_ops;
    }
    int ns = assign_shards(p, max_shard_bytes ? max_shard_bytes : MG_DEFAULT_SHARD, err);
    if (ns <= 0) {
        st = err ? err->status : MS_ERR_NOMEM;
        goto fail;
    }
    p->n_shards = ns;
    free(ex);
    return MS_OK;
fail:
    free(ex);
    mg_plan_free(p);
    return st;
}
