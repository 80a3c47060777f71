/* svc_ms.c: the generation service on libmedserve's public API
 * (include/medserve.h): one loaded model and its engine. Only forwards;
 * every check and every rule is the library's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "svc.h"

typedef struct msvc {
    ms_model *m;
    ms_engine *e;
} msvc;

/* See svc_ops.tokenize. */
static ms_status ms_tok(void *self, const char *text, size_t len, int allow_special, int32_t **ids, size_t *n_ids,
                        ms_error *err)
{
    return ms_tokenize(((msvc *)self)->m, text, len, allow_special, ids, n_ids, err);
}

/* See svc_ops.detokenize. */
static ms_status ms_detok(void *self, const int32_t *ids, size_t n_ids, int skip_special, char **text, size_t *len,
                          ms_error *err)
{
    return ms_detokenize(((msvc *)self)->m, ids, n_ids, skip_special, text, len, err);
}

/* See svc_ops.chat_tokenize (no tools: the server refuses them). */
static ms_status ms_chat(void *self, const ms_message *msgs, size_t n_msgs, int add_generation_prompt,
                         int enable_thinking, int32_t **ids, size_t *n_ids, ms_error *err)
{
    return ms_chat_tokenize(((msvc *)self)->m, msgs, n_msgs, NULL, add_generation_prompt, enable_thinking, ids, n_ids,
                            NULL, err);
}

/* See svc_ops.sampling_default. */
static ms_sampling ms_defaults(void *self)
{
    return ms_sampling_default(((msvc *)self)->m);
}

/* See svc_ops.submit. */
static ms_status ms_submit(void *self, const ms_request *r, ms_token_fn fn, void *user, uint64_t *id, ms_error *err)
{
    return ms_engine_submit(((msvc *)self)->e, r, fn, user, id, err);
}

/* See svc_ops.cancel. */
static ms_status ms_cancel(void *self, uint64_t id)
{
    return ms_engine_cancel(((msvc *)self)->e, id);
}

/* See svc_ops.stats. */
static void ms_stats(void *self, ms_engine_stats *out)
{
    ms_engine_get_stats(((msvc *)self)->e, out);
}

/* Engine first (it cancels and joins), then the model it reads. */
static void ms_close(void *self)
{
    msvc *v = self;
    if (!v) return;
    ms_engine_free(v->e);
    ms_model_free(v->m);
    free(v);
}

static const svc_ops MS_OPS = {ms_tok, ms_detok, ms_chat, ms_defaults, ms_submit, ms_cancel, ms_stats, ms_close};

/* The id of an added token's exact text, or -1. */
static int32_t single_id(ms_model *m, const char *text)
{
    int32_t *ids = NULL;
    size_t n = 0;
    ms_error err;
    int32_t id = -1;
    if (ms_tokenize(m, text, strlen(text), 1, &ids, &n, &err) == MS_OK && n == 1) id = ids[0];
    free(ids);
    return id;
}

/* Loads the model, creates its engine and fills the service description. */
ms_status svc_ms_open(const char *dir, const svc_ms_params *p, svc **out, ms_error *err)
{
    *out = NULL;
    ms_load_params lp = ms_load_params_default();
    lp.n_threads = p->n_threads;
    if (p->q8) lp.weights = MS_WEIGHTS_Q8;
    ms_model *m = ms_model_load(dir, &lp, err);
    if (!m) return err ? err->status : MS_ERR_INTERNAL;
    ms_engine_params ep = ms_engine_params_default();
    if (p->n_ctx > 0) ep.n_ctx = p->n_ctx;
    if (p->max_seqs > 0) ep.max_seqs = p->max_seqs;
    if (p->max_queue >= 0) ep.max_queue = p->max_queue;
    ms_engine *e = ms_engine_create(m, &ep, err);
    if (!e) {
        ms_model_free(m);
        return err ? err->status : MS_ERR_INTERNAL;
    }
    svc *s = calloc(1, sizeof *s);
    msvc *v = calloc(1, sizeof *v);
    if (!s || !v) {
        free(s);
        free(v);
        ms_engine_free(e);
        ms_model_free(m);
        return ms_seterr(err, MS_ERR_NOMEM, "%s: out of memory", dir);
    }
    v->m = m;
    v->e = e;
    ms_model_info info;
    ms_model_get_info(m, &info);
    ms_engine_stats st;
    ms_engine_get_stats(e, &st);
    s->ops = &MS_OPS;
    s->self = v;
    s->vocab_size = info.vocab_size; /* prompt ids: every embedding row is valid input */
    s->n_ctx = st.n_ctx;
    s->max_new_tokens = info.max_new_tokens;
    s->think_open_id = single_id(m, "<think>");
    s->think_close_id = single_id(m, "</think>");
    snprintf(s->manifest_sha256, sizeof s->manifest_sha256, "%s", info.manifest_sha256 ? info.manifest_sha256 : "");
    *out = s;
    return MS_OK;
}
