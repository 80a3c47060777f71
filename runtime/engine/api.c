/* api.c: the model half of the public API (medserve.h): loading a model
 * directory, model info, tokenize / detokenize, chat rendering + tokenizing
 * (message text can never become control tokens), the generation_config
 * sampling defaults, and ms_engine_create, which describes a loaded model to
 * the engine (engine.h). It holds no state of its own beyond the ms_model
 * handle and does no generation (engine.c) or HTTP (server/). */
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "engine/backend.h"
#include "engine/engine.h"
#include "model/model.h"
#include "text/chat.h"
#include "text/tokenizer.h"

#define API_MAX_THREADS 1024

struct ms_model {
    model *m;
    ms_load_params p;
};

/* All CPUs, native weights, CPU backend. */
ms_load_params ms_load_params_default(void)
{
    ms_load_params p = {.n_threads = 0, .weights = MS_WEIGHTS_NATIVE, .backend = MS_BACKEND_CPU};
    return p;
}

/* Checks the load parameters (the backend kind must be built in) and loads the directory. */
ms_model *ms_model_load(const char *dir, const ms_load_params *p, ms_error *err)
{
    ms_clearerr(err);
    ms_load_params lp = p ? *p : ms_load_params_default();
    if (!dir || !*dir) {
        ms_seterr(err, MS_ERR_INVALID, "model: no directory given");
        return NULL;
    }
    if (lp.n_threads < 0 || lp.n_threads > API_MAX_THREADS) {
        ms_seterr(err, MS_ERR_INVALID, "load params: n_threads %d outside [0, %d]", lp.n_threads, API_MAX_THREADS);
        return NULL;
    }
    if (lp.weights != MS_WEIGHTS_NATIVE && lp.weights != MS_WEIGHTS_Q8) {
        ms_seterr(err, MS_ERR_INVALID, "load params: unknown weights mode %d", (int)lp.weights);
        return NULL;
    }
    if (backend_available(lp.backend, err) != MS_OK) return NULL;
    ms_model *mm = calloc(1, sizeof *mm);
    if (!mm) {
        ms_seterr(err, MS_ERR_NOMEM, "model: out of memory");
        return NULL;
    }
    if (model_load(dir, &mm->m, err) != MS_OK) {
        free(mm);
        return NULL;
    }
    mm->p = lp;
    return mm;
}

/* Frees the model; NULL-safe. */
void ms_model_free(ms_model *m)
{
    if (!m) return;
    model_free(m->m);
    free(m);
}

/* transformers' name of a weight dtype. */
static const char *dtype_name(st_dtype t)
{
    switch (t) {
    case ST_BF16: return "bfloat16";
    case ST_F16: return "float16";
    case ST_F32: return "float32";
    default: return "unknown";
    }
}

/* Copies the config numbers and the generation limits into out. */
void ms_model_get_info(const ms_model *m, ms_model_info *out)
{
    memset(out, 0, sizeof *out);
    if (!m) return;
    const qwen3_config *c = &m->m->cfg;
    out->vocab_size = c->vocab_size;
    out->hidden_size = c->hidden_size;
    out->n_layers = c->n_layers;
    out->n_heads = c->n_heads;
    out->n_kv_heads = c->n_kv_heads;
    out->head_dim = c->head_dim;
    out->intermediate_size = c->intermediate_size;
    out->max_position_embeddings = c->max_position_embeddings;
    out->dtype = dtype_name(m->m->embed.data ? m->m->embed.dtype : c->dtype);
    out->dir = m->m->dir;
    out->manifest_sha256 = m->m->manifest_sha256;
    out->max_new_tokens = m->m->gen.max_new_tokens;
    out->n_text_ids = tok_n_ids(m->m->tok);
}

/* HF encode (allow_special) or the whole text as untrusted. */
ms_status ms_tokenize(const ms_model *m, const char *text, size_t len, int allow_special, int32_t **ids, size_t *n_ids,
                      ms_error *err)
{
    if (!m || !ids || !n_ids || (!text && len)) return ms_seterr(err, MS_ERR_INVALID, "tokenize: missing argument");
    if (!text) text = "";
    if (allow_special) return tok_encode(m->m->tok, text, len, ids, n_ids, err);
    size_t whole[2] = {0, len};
    return tok_encode_masked(m->m->tok, text, len, whole, len ? 1 : 0, ids, n_ids, err);
}

/* Checks the ids against the vocab and decodes them. */
ms_status ms_detokenize(const ms_model *m, const int32_t *ids, size_t n_ids, int skip_special, char **text, size_t *len,
                        ms_error *err)
{
    if (!m || !text || !len || (!ids && n_ids)) return ms_seterr(err, MS_ERR_INVALID, "detokenize: missing argument");
    for (size_t i = 0; i < n_ids; i++)
        if (ids[i] < 0 || ids[i] >= m->m->cfg.vocab_size)
            return ms_seterr(err, MS_ERR_INVALID, "detokenize: id %zu is %d, outside [0, %d)", i, (int)ids[i],
                             m->m->cfg.vocab_size);
    return tok_decode(m->m->tok, ids, n_ids, skip_special, text, len, err);
}

/* Renders with the Qwen3 template and encodes with message text untrusted. */
ms_status ms_chat_tokenize(const ms_model *m, const ms_message *msgs, size_t n_msgs, const char *tools_json,
                           int add_generation_prompt, int enable_thinking, int32_t **ids, size_t *n_ids, char **text,
                           ms_error *err)
{
    if (!m || !ids || !n_ids || (!msgs && n_msgs)) return ms_seterr(err, MS_ERR_INVALID, "chat: missing argument");
    if (text) *text = NULL;
    if (!chat_template_is_qwen3(tok_chat_template(m->m->tok)))
        return ms_seterr(err, MS_ERR_UNSUPPORTED,
                         "chat: %s: the chat template (chat_template.jinja or tokenizer_config.json "
                         "chat_template) is missing or is not the Qwen3 template medserve renders; "
                         "send raw prompts instead",
                         m->m->dir);
    if (n_msgs > CHAT_MAX_MESSAGES)
        return ms_seterr(err, MS_ERR_INVALID, "chat: %zu messages (limit %d)", n_msgs, CHAT_MAX_MESSAGES);
    chat_msg *cm = calloc(n_msgs ? n_msgs : 1, sizeof *cm);
    if (!cm) return ms_seterr(err, MS_ERR_NOMEM, "chat: out of memory for %zu messages", n_msgs);
    for (size_t i = 0; i < n_msgs; i++)
        cm[i] = (chat_msg){msgs[i].role, msgs[i].content, msgs[i].reasoning_content, msgs[i].tool_calls_json};
    chat_out out = {0};
    ms_status st = chat_render(cm, n_msgs, tools_json, add_generation_prompt, enable_thinking, &out, err);
    free(cm);
    if (st != MS_OK) return st;
    st = tok_encode_masked(m->m->tok, out.text, out.len, out.untrusted, out.n_untrusted, ids, n_ids, err);
    if (st == MS_OK && text) {
        *text = out.text;
        out.text = NULL;
    }
    chat_out_free(&out);
    return st;
}

/* generation_config.json values (HF defaults where absent). */
ms_sampling ms_sampling_default(const ms_model *m)
{
    ms_sampling s = {.greedy = 1, .temperature = 1.0f, .top_k = 50, .top_p = 1.0f, .repetition_penalty = 1.0f};
    if (!m) return s;
    const gen_config *g = &m->m->gen;
    s.greedy = !g->do_sample;
    s.temperature = (float)g->temperature;
    s.top_k = g->top_k;
    s.top_p = (float)g->top_p;
    s.min_p = (float)g->min_p;
    s.repetition_penalty = (float)g->repetition_penalty;
    return s;
}

/* engine_model text callbacks over the model's tokenizer (special tokens skipped). */
static size_t feed_text(void *ctx, tok_stream *s, int32_t id, char *out, size_t cap)
{
    return tok_stream_feed((const tokenizer *)ctx, s, id, 1, out, cap);
}

/* Emits the held bytes of a stream (an incomplete tail becomes U+FFFD). */
static size_t flush_text(void *ctx, tok_stream *s, char *out, size_t cap)
{
    (void)ctx;
    return tok_stream_flush(s, out, cap);
}

/* Describes the loaded model to the engine, with the backend backend_select
 * picks for it, and creates the engine. */
ms_engine *ms_engine_create(ms_model *m, const ms_engine_params *p, ms_error *err)
{
    ms_clearerr(err);
    if (!m) {
        ms_seterr(err, MS_ERR_INVALID, "engine: no model");
        return NULL;
    }
    const model *md = m->m;
    engine_model em = {.m = md,
                       .n_threads = m->p.n_threads,
                       .weights_q8 = m->p.weights == MS_WEIGHTS_Q8,
                       .vocab = md->cfg.vocab_size,
                       .max_ctx = md->cfg.max_position_embeddings,
                       .text_feed = feed_text,
                       .text_flush = flush_text,
                       .text_ctx = md->tok,
                       .max_piece = TOK_STREAM_MIN_CAP};
    int n_ids = tok_n_ids(md->tok);
    em.n_valid = n_ids > 0 && n_ids < em.vocab ? n_ids : em.vocab;
    if (md->n_stop > ENGINE_MAX_STOP_IDS) {
        ms_seterr(err, MS_ERR_UNSUPPORTED, "engine: %d stop ids (limit %d)", md->n_stop, ENGINE_MAX_STOP_IDS);
        return NULL;
    }
    memcpy(em.stop_ids, md->stop_ids, (size_t)md->n_stop * sizeof *em.stop_ids);
    em.n_stop_ids = md->n_stop;
    /* the backend for this model and weights mode (backend.c's table and rule) */
    em.ops = backend_select(m->p.backend, md, em.weights_q8, err);
    if (!em.ops) return NULL;
    ms_engine *e = NULL;
    if (engine_create(&em, p, &e, err) != MS_OK) return NULL;
    return e;
}
