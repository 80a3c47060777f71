/* model.c: loads a Qwen3 export directory: config.json, generation_config.json,
 * the safetensors set (mmap, zero-copy), the tokenizer and the optional
 * medserve-manifest.json digest; binds every tensor of docs/numerics.md §1.2 to
 * the layout in model.h after checking its dtype (F32/F16/BF16) and shape
 * against the config. Missing or unexpected tensors are errors naming the
 * tensor. Tied models use the embedding as lm_head (a stray lm_head.weight is
 * ignored, as HF re-ties it); untied models need lm_head.weight. It does no
 * arithmetic on the weights (that is the backend). */
#include "model/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/err.h"
#include "base/half.h"
#include "base/sha256.h"

#define NAME_MAX_LEN 128

/* Binding state: the tensors claimed so far (sorted later for lookup). */
typedef struct binder {
    model *m;
    const st_tensor **claimed;
    size_t n_claimed, cap;
} binder;

/* dir + "/" + name into buf; error if it does not fit. */
static ms_status join_path(char *buf, size_t cap, const char *dir, const char *name, ms_error *err)
{
    int n = snprintf(buf, cap, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= cap) return ms_seterr(err, MS_ERR_INVALID, "model: path %s/%s is too long", dir, name);
    return MS_OK;
}

/* Records t as used by the model. */
static ms_status claim(binder *b, const st_tensor *t, ms_error *err)
{
    if (b->n_claimed == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 512;
        const st_tensor **p = realloc(b->claimed, cap * sizeof *p);
        if (!p) return ms_seterr(err, MS_ERR_NOMEM, "model: out of memory");
        b->claimed = p;
        b->cap = cap;
    }
    b->claimed[b->n_claimed++] = t;
    return MS_OK;
}

/* Binds tensor `name` of shape [rows, cols] (rows == 0: a vector [cols]) into w. */
static ms_status bind(binder *b, wmat *w, const char *name, int64_t rows, int64_t cols, ms_error *err)
{
    const st_tensor *t = st_set_find(b->m->st, name);
    if (!t) return ms_seterr(err, MS_ERR_FORMAT, "model: %s: missing tensor %s", b->m->dir, name);
    if (t->dtype != ST_F32 && t->dtype != ST_F16 && t->dtype != ST_BF16)
        return ms_seterr(err, MS_ERR_UNSUPPORTED, "model: %s: tensor %s has dtype %s; expected F32, F16 or BF16",
                         t->path, name, st_dtype_name(t->dtype));
    int ok =
        rows ? (t->ndim == 2 && t->shape[0] == rows && t->shape[1] == cols) : (t->ndim == 1 && t->shape[0] == cols);
    if (!ok) {
        char got[96] = "";
        size_t len = 0;
        for (int i = 0; i < t->ndim && len < sizeof got - 24; i++)
            len += (size_t)snprintf(got + len, sizeof got - len, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
        if (rows)
            return ms_seterr(err, MS_ERR_FORMAT,
                             "model: %s: tensor %s has shape [%s]; config.json implies [%lld, %lld]", t->path, name,
                             got, (long long)rows, (long long)cols);
        return ms_seterr(err, MS_ERR_FORMAT, "model: %s: tensor %s has shape [%s]; config.json implies [%lld]", t->path,
                         name, got, (long long)cols);
    }
    w->data = t->data;
    w->dtype = t->dtype;
    w->rows = rows ? rows : 1;
    w->cols = cols;
    return claim(b, t, err);
}

/* bind() for "model.layers.{l}.{suffix}". */
static ms_status bind_layer(binder *b, wmat *w, int l, const char *suffix, int64_t rows, int64_t cols, ms_error *err)
{
    char name[NAME_MAX_LEN];
    snprintf(name, sizeof name, "model.layers.%d.%s", l, suffix);
    return bind(b, w, name, rows, cols, err);
}

/* qsort/bsearch order of tensor pointers. */
static int cmp_ptr(const void *a, const void *b)
{
    const void *x = *(const void *const *)a, *y = *(const void *const *)b;
    return x < y ? -1 : x > y;
}

/* Binds every tensor of docs/numerics.md §1.2 and rejects any tensor left over. */
static ms_status bind_all(model *m, ms_error *err)
{
    const qwen3_config *c = &m->cfg;
    const int64_t H = c->hidden_size, V = c->vocab_size, I = c->intermediate_size, d = c->head_dim;
    const int64_t qd = (int64_t)c->n_heads * d, kvd = (int64_t)c->n_kv_heads * d;
    binder b = {.m = m};
    ms_status st;
#define TRY(x)                             \
    do {                                   \
        if ((st = (x)) != MS_OK) goto out; \
    } while (0)
    m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
    if (!m->layers) {
        st = ms_seterr(err, MS_ERR_NOMEM, "model: out of memory for %d layers", c->n_layers);
        goto out;
    }
    TRY(bind(&b, &m->embed, "model.embed_tokens.weight", V, H, err));
    TRY(bind(&b, &m->final_norm, "model.norm.weight", 0, H, err));
    const st_tensor *head = st_set_find(m->st, "lm_head.weight");
    if (c->tie_word_embeddings) {
        m->lm_head = m->embed;
        if (head) TRY(claim(&b, head, err)); /* HF re-ties and ignores it */
    } else {
        if (!head)
            TRY(ms_seterr(err, MS_ERR_FORMAT,
                          "model: %s: missing tensor lm_head.weight (config.json has "
                          "tie_word_embeddings false)",
                          m->dir));
        TRY(bind(&b, &m->lm_head, "lm_head.weight", V, H, err));
    }
    for (int l = 0; l < c->n_layers; l++) {
        layer_weights *w = &m->layers[l];
        TRY(bind_layer(&b, &w->attn_norm, l, "input_layernorm.weight", 0, H, err));
        TRY(bind_layer(&b, &w->wq, l, "self_attn.q_proj.weight", qd, H, err));
        TRY(bind_layer(&b, &w->wk, l, "self_attn.k_proj.weight", kvd, H, err));
        TRY(bind_layer(&b, &w->wv, l, "self_attn.v_proj.weight", kvd, H, err));
        TRY(bind_layer(&b, &w->wo, l, "self_attn.o_proj.weight", H, qd, err));
        if (c->attention_bias) {
            TRY(bind_layer(&b, &w->bq, l, "self_attn.q_proj.bias", 0, qd, err));
            TRY(bind_layer(&b, &w->bk, l, "self_attn.k_proj.bias", 0, kvd, err));
            TRY(bind_layer(&b, &w->bv, l, "self_attn.v_proj.bias", 0, kvd, err));
            TRY(bind_layer(&b, &w->bo, l, "self_attn.o_proj.bias", 0, H, err));
        }
        TRY(bind_layer(&b, &w->q_norm, l, "self_attn.q_norm.weight", 0, d, err));
        TRY(bind_layer(&b, &w->k_norm, l, "self_attn.k_norm.weight", 0, d, err));
        TRY(bind_layer(&b, &w->ffn_norm, l, "post_attention_layernorm.weight", 0, H, err));
        TRY(bind_layer(&b, &w->w_gate, l, "mlp.gate_proj.weight", I, H, err));
        TRY(bind_layer(&b, &w->w_up, l, "mlp.up_proj.weight", I, H, err));
        TRY(bind_layer(&b, &w->w_down, l, "mlp.down_proj.weight", H, I, err));
    }
    /* Every tensor in the files must have been claimed exactly once. */
    qsort(b.claimed, b.n_claimed, sizeof *b.claimed, cmp_ptr);
    for (size_t i = 0; i < st_set_count(m->st); i++) {
        const st_tensor *t = st_set_get(m->st, i);
        if (!bsearch(&t, b.claimed, b.n_claimed, sizeof *b.claimed, cmp_ptr))
            TRY(ms_seterr(err, MS_ERR_FORMAT,
                          "model: %s: unexpected tensor %s (not part of a Qwen3 model with this "
                          "config.json)",
                          t->path, t->name));
    }
    st = MS_OK;
#undef TRY
out:
    free(b.claimed);
    return st;
}

/* Checks the config relations the forward pass relies on beyond config.c's ranges. */
static ms_status check_config(const model *m, ms_error *err)
{
    const qwen3_config *c = &m->cfg;
    if (c->hidden_size <= 0 || c->n_layers <= 0 || c->n_heads <= 0 || c->n_kv_heads <= 0 || c->head_dim <= 0 ||
        c->intermediate_size <= 0 || c->vocab_size <= 0)
        return ms_seterr(err, MS_ERR_FORMAT, "model: %s/config.json: sizes must be positive", m->dir);
    if (c->n_heads % c->n_kv_heads)
        return ms_seterr(err, MS_ERR_FORMAT,
                         "model: %s/config.json: num_attention_heads %d is not a multiple of "
                         "num_key_value_heads %d",
                         m->dir, c->n_heads, c->n_kv_heads);
    if (c->head_dim % 2)
        return ms_seterr(err, MS_ERR_FORMAT, "model: %s/config.json: head_dim %d must be even for RoPE", m->dir,
                         c->head_dim);
    return MS_OK;
}

/* Adds id to the stop set unless present; rejects ids outside the vocabulary. */
static ms_status add_stop(model *m, int id, const char *from, ms_error *err)
{
    if (id < 0 || id >= m->cfg.vocab_size)
        return ms_seterr(err, MS_ERR_FORMAT, "model: %s: %s eos id %d is not in [0, %d)", m->dir, from, id,
                         m->cfg.vocab_size);
    for (int i = 0; i < m->n_stop; i++)
        if (m->stop_ids[i] == id) return MS_OK;
    if (m->n_stop >= (int)(sizeof m->stop_ids / sizeof m->stop_ids[0]))
        return ms_seterr(err, MS_ERR_FORMAT, "model: %s: too many eos ids", m->dir);
    m->stop_ids[m->n_stop++] = id;
    return MS_OK;
}

/* Stop set = generation_config eos ∪ config eos ∪ tokenizer eos_token (docs/numerics.md §2.4). */
static ms_status build_stop_ids(model *m, ms_error *err)
{
    ms_status st;
    for (int i = 0; i < m->gen.n_eos; i++)
        if ((st = add_stop(m, m->gen.eos_ids[i], "generation_config.json", err)) != MS_OK) return st;
    for (int i = 0; i < m->cfg.n_eos; i++)
        if ((st = add_stop(m, m->cfg.eos_ids[i], "config.json", err)) != MS_OK) return st;
    int32_t t = tok_eos_id(m->tok);
    if (t >= 0 && (st = add_stop(m, t, "tokenizer_config.json", err)) != MS_OK) return st;
    return MS_OK;
}

/* Loads and validates dir; on error nothing is kept and *out stays NULL. */
ms_status model_load(const char *dir, model **out, ms_error *err)
{
    *out = NULL;
    if (!dir || !*dir) return ms_seterr(err, MS_ERR_INVALID, "model: empty directory name");
    model *m = calloc(1, sizeof *m);
    if (!m) return ms_seterr(err, MS_ERR_NOMEM, "model: out of memory");
    ms_status st = MS_ERR_NOMEM;
    char path[4096];
    m->dir = strdup(dir);
    if (!m->dir) {
        ms_seterr(err, st, "model: out of memory");
        goto fail;
    }
    if ((st = join_path(path, sizeof path, dir, "config.json", err)) != MS_OK) goto fail;
    if ((st = config_load(path, &m->cfg, err)) != MS_OK) goto fail;
    if ((st = check_config(m, err)) != MS_OK) goto fail;
    if ((st = join_path(path, sizeof path, dir, "generation_config.json", err)) != MS_OK) goto fail;
    if ((st = gen_config_load(path, &m->gen, err)) != MS_OK) goto fail;
    if ((st = st_set_open(dir, &m->st, err)) != MS_OK) goto fail;
    if ((st = bind_all(m, err)) != MS_OK) goto fail;
    if ((st = tok_load(dir, &m->tok, err)) != MS_OK) goto fail;
    if (tok_n_ids(m->tok) > m->cfg.vocab_size) {
        st = ms_seterr(err, MS_ERR_FORMAT, "model: %s: the tokenizer has %d ids but config.json vocab_size is %d", dir,
                       tok_n_ids(m->tok), m->cfg.vocab_size);
        goto fail;
    }
    if ((st = build_stop_ids(m, err)) != MS_OK) goto fail;
    if ((st = join_path(path, sizeof path, dir, "medserve-manifest.json", err)) != MS_OK) goto fail;
    struct stat sb;
    if (stat(path, &sb) == 0 && (st = sha256_file(path, m->manifest_sha256, err)) != MS_OK) goto fail;
    *out = m;
    return MS_OK;
fail:
    model_free(m);
    return st;
}

/* Frees everything model_load made; NULL-safe. */
void model_free(model *m)
{
    if (!m) return;
    tok_free(m->tok);
    st_set_close(m->st);
    free(m->layers);
    free(m->dir);
    free(m);
}

/* Element (row, col) of a weight as float, read through memcpy. */
float wmat_get(const wmat *w, int64_t row, int64_t col)
{
    const unsigned char *p = (const unsigned char *)w->data;
    const int64_t i = row * w->cols + col;
    if (w->dtype == ST_F32) {
        float f;
        memcpy(&f, p + 4 * i, 4);
        return f;
    }
    uint16_t h;
    memcpy(&h, p + 2 * i, 2);
    return w->dtype == ST_BF16 ? half_bf16_to_f32(h) : half_f16_to_f32(h);
}
