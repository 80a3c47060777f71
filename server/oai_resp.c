/* oai_resp.c: the JSON bodies of medserve's replies (see oai_resp.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "oai_resp.h"

/* Builds the error object with cJSON (null param/code when empty). */
char *oai_error_body(const oai_err *e)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *o = cJSON_AddObjectToObject(root, "error");
    if (!o) {
        cJSON_Delete(root);
        return NULL;
    }
    cJSON_AddStringToObject(o, "message", e->message);
    cJSON_AddStringToObject(o, "type", e->type[0] ? e->type : "invalid_request_error");
    if (e->param[0]) cJSON_AddStringToObject(o, "param", e->param);
    else cJSON_AddNullToObject(o, "param");
    if (e->code[0]) cJSON_AddStringToObject(o, "code", e->code);
    else cJSON_AddNullToObject(o, "code");
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
}

/* Sends the error body, with Retry-After / WWW-Authenticate where they apply. */
void oai_reply_error(http_req *r, const oai_err *e)
{
    char *body = oai_error_body(e);
    if (e->code[0]) http_set_label(r, e->code); /* on_done reads it back (refusal reasons) */
    if (e->http == 429 || e->http == 503) http_add_header(r, "Retry-After", "1");
    if (e->http == 401) http_add_header(r, "WWW-Authenticate", "Bearer");
    if (body) {
        http_reply(r, e->http, "application/json", body, strlen(body));
        free(body);
    } else {
        static const char oom[] = "{\"error\":{\"message\":\"out of memory\",\"type\":"
                                  "\"server_error\",\"param\":null,\"code\":null}}";
        http_reply(r, e->http, "application/json", oom, sizeof oom - 1);
    }
}

/* Prints obj, frees it and sends it; 500 if printing runs out of memory. */
void oai_reply_json(http_req *r, int status, cJSON *obj)
{
    char *s = obj ? cJSON_PrintUnformatted(obj) : NULL;
    cJSON_Delete(obj);
    if (!s) {
        oai_err e;
        oai_fail(&e, 500, "server_error", NULL, NULL, "out of memory building the response");
        oai_reply_error(r, &e);
        return;
    }
    http_reply(r, status, "application/json", s, strlen(s));
    free(s);
}

/* The fields every completion object and chunk starts with. */
cJSON *oai_envelope(const char *id, const char *object, time_t created, const char *model, const char *fingerprint)
{
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "object", object);
    cJSON_AddNumberToObject(o, "created", (double)created);
    cJSON_AddStringToObject(o, "model", model);
    cJSON_AddStringToObject(o, "system_fingerprint", fingerprint);
    return o;
}

/* The envelope of h's object kind, then "choices": []. */
cJSON *oai_completion_object(const oai_head *h)
{
    const char *object = !h->chat ? "text_completion" : h->stream ? "chat.completion.chunk" : "chat.completion";
    cJSON *o = oai_envelope(h->id, object, h->created, h->model, h->fingerprint);
    if (!o) return NULL;
    cJSON_AddArrayToObject(o, "choices");
    return o;
}

/* chat: "message" (role, content, reasoning_content, refusal) or "delta"
 * (only what is given), logprobs as {content, refusal}; completions: "text"
 * and the logprobs object as it is. */
void oai_add_choice(cJSON *o, const oai_head *h, const oai_choice *c)
{
    cJSON *ch = cJSON_CreateObject();
    cJSON_AddNumberToObject(ch, "index", c->index);
    if (h->chat && !h->stream) {
        cJSON *m = cJSON_AddObjectToObject(ch, "message");
        cJSON_AddStringToObject(m, "role", "assistant");
        cJSON_AddStringToObject(m, "content", c->content);
        if (c->reasoning) cJSON_AddStringToObject(m, "reasoning_content", c->reasoning);
        else cJSON_AddNullToObject(m, "reasoning_content");
        cJSON_AddNullToObject(m, "refusal");
    } else if (h->chat) {
        cJSON *d = cJSON_AddObjectToObject(ch, "delta");
        if (c->role) cJSON_AddStringToObject(d, "role", c->role);
        if (c->reasoning) cJSON_AddStringToObject(d, "reasoning_content", c->reasoning);
        if (c->content) cJSON_AddStringToObject(d, "content", c->content);
    } else if (c->content) {
        cJSON_AddStringToObject(ch, "text", c->content);
    }
    if (!c->logprobs) {
        cJSON_AddNullToObject(ch, "logprobs");
    } else if (h->chat) {
        cJSON *l = cJSON_AddObjectToObject(ch, "logprobs");
        cJSON_AddItemToObject(l, "content", c->logprobs);
        cJSON_AddNullToObject(l, "refusal");
    } else {
        cJSON_AddItemToObject(ch, "logprobs", c->logprobs);
    }
    if (c->finish) cJSON_AddStringToObject(ch, "finish_reason", c->finish);
    else cJSON_AddNullToObject(ch, "finish_reason");
    cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(o, "choices"), ch);
}

/* "usage" last, after the choices. */
void oai_add_usage(cJSON *o, cJSON *usage)
{
    if (usage) cJSON_AddItemToObject(o, "usage", usage);
    else cJSON_AddNullToObject(o, "usage");
}

/* The UTF-8 bytes of s as a JSON array of numbers. */
static cJSON *bytes_array(const char *s)
{
    cJSON *a = cJSON_CreateArray();
    for (const unsigned char *p = (const unsigned char *)s; a && *p; p++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber(*p));
    return a;
}

/* chat: an empty list; completions: the four parallel lists. */
cJSON *oai_logprobs_new(int chat)
{
    if (chat) return cJSON_CreateArray();
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddItemToObject(o, "tokens", cJSON_CreateArray());
    cJSON_AddItemToObject(o, "token_logprobs", cJSON_CreateArray());
    cJSON_AddItemToObject(o, "top_logprobs", cJSON_CreateArray());
    cJSON_AddItemToObject(o, "text_offset", cJSON_CreateArray());
    return o;
}

/* chat: one entry {token, logprob, bytes, top_logprobs: [{token, logprob,
 * bytes}]}; completions: the token, its logprob and offset appended to their
 * lists, and {text: logprob} of the token and its alternatives (one entry per
 * distinct text) to top_logprobs. */
void oai_logprobs_add(cJSON *lp, int chat, const char *text, double logprob, char *const *top_text,
                      const float *top_logprob, int n_top, size_t text_offset)
{
    if (chat) {
        cJSON *ent = cJSON_CreateObject();
        cJSON_AddStringToObject(ent, "token", text);
        cJSON_AddNumberToObject(ent, "logprob", logprob);
        cJSON_AddItemToObject(ent, "bytes", bytes_array(text));
        cJSON *tops = cJSON_AddArrayToObject(ent, "top_logprobs");
        for (int k = 0; k < n_top; k++) {
            const char *tt = top_text[k];
            cJSON *t = cJSON_CreateObject();
            cJSON_AddStringToObject(t, "token", tt ? tt : "");
            cJSON_AddNumberToObject(t, "logprob", top_logprob[k]);
            cJSON_AddItemToObject(t, "bytes", bytes_array(tt ? tt : ""));
            cJSON_AddItemToArray(tops, t);
        }
        cJSON_AddItemToArray(lp, ent);
    } else {
        cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(lp, "tokens"), cJSON_CreateString(text));
        cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(lp, "token_logprobs"), cJSON_CreateNumber(logprob));
        cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(lp, "text_offset"),
                             cJSON_CreateNumber((double)text_offset));
        cJSON *top = cJSON_CreateObject();
        cJSON_AddNumberToObject(top, text, logprob);
        for (int k = 0; k < n_top; k++) {
            const char *tt = top_text[k];
            if (tt && !cJSON_GetObjectItemCaseSensitive(top, tt)) /* one entry per string */
                cJSON_AddNumberToObject(top, tt, top_logprob[k]);
        }
        cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(lp, "top_logprobs"), top);
    }
}

/* The length of the chat list, or of the completions "tokens" list. */
int oai_logprobs_count(const cJSON *lp, int chat)
{
    if (!lp) return 0;
    return cJSON_GetArraySize(chat ? lp : cJSON_GetObjectItemCaseSensitive(lp, "tokens"));
}

/* The usage object with its details sub-objects. */
cJSON *oai_usage(uint64_t prompt, uint64_t completion, uint64_t reasoning)
{
    cJSON *u = cJSON_CreateObject();
    if (!u) return NULL;
    cJSON_AddNumberToObject(u, "prompt_tokens", (double)prompt);
    cJSON_AddNumberToObject(u, "completion_tokens", (double)completion);
    cJSON_AddNumberToObject(u, "total_tokens", (double)(prompt + completion));
    cJSON *pd = cJSON_AddObjectToObject(u, "prompt_tokens_details");
    if (pd) cJSON_AddNumberToObject(pd, "cached_tokens", 0);
    cJSON *cd = cJSON_AddObjectToObject(u, "completion_tokens_details");
    if (cd) cJSON_AddNumberToObject(cd, "reasoning_tokens", (double)reasoning);
    return u;
}

/* The one model served, as /v1/models lists it. */
cJSON *oai_model(const char *id, time_t created, int max_model_len, const char *manifest_sha256)
{
    cJSON *m = cJSON_CreateObject();
    if (!m) return NULL;
    cJSON_AddStringToObject(m, "id", id);
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddNumberToObject(m, "created", (double)created);
    cJSON_AddStringToObject(m, "owned_by", "medserve");
    cJSON_AddNumberToObject(m, "max_model_len", max_model_len);
    cJSON_AddStringToObject(m, "manifest_sha256", manifest_sha256);
    return m;
}

/* The list object around the one model. */
cJSON *oai_model_list(cJSON *model)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "list");
    cJSON *d = cJSON_AddArrayToObject(o, "data");
    cJSON_AddItemToArray(d, model);
    return o;
}

/* The lifecycle word of /health in an object. */
cJSON *oai_health(const char *status)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", status);
    return o;
}

/* The ids as a JSON array of numbers, their count, and the context length. */
cJSON *oai_tokenize_result(const int32_t *ids, size_t n, int max_model_len)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a && i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(ids[i]));
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "tokens", a);
    cJSON_AddNumberToObject(o, "count", (double)n);
    cJSON_AddNumberToObject(o, "max_model_len", max_model_len);
    return o;
}

/* The decoded text under "prompt". */
cJSON *oai_detokenize_result(const char *text)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "prompt", text);
    return o;
}

/* "stop" or "length"; NULL for the other finish kinds. */
const char *oai_finish_name(int f)
{
    switch (f) {
    case MS_FINISH_STOP: return "stop";
    case MS_FINISH_LENGTH: return "length";
    default: return NULL;
    }
}

/* One HTTP status and error type per library status. */
void oai_err_from_status(oai_err *e, ms_status st, const char *message)
{
    switch (st) {
    case MS_ERR_INVALID: oai_fail(e, 400, "invalid_request_error", NULL, "invalid_value", "%s", message); break;
    case MS_ERR_CONTEXT:
        oai_fail(e, 400, "invalid_request_error", "messages", "context_length_exceeded", "%s", message);
        break;
    case MS_ERR_BUSY: oai_fail(e, 429, "rate_limit_error", NULL, "queue_full", "%s", message); break;
    case MS_ERR_NOMEM: oai_fail(e, 503, "server_error", NULL, "out_of_memory", "%s", message); break;
    case MS_ERR_UNSUPPORTED:
        oai_fail(e, 400, "invalid_request_error", NULL, "unsupported_parameter", "%s", message);
        break;
    case MS_ERR_CANCELLED: oai_fail(e, 503, "server_error", NULL, "cancelled", "%s", message); break;
    default: oai_fail(e, 500, "server_error", NULL, NULL, "%s", message); break;
    }
}
