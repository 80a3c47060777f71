/* oai_req.c: OpenAI request validation (see oai_req.h). Walks every key of
 * the request object against a table of what is implemented; reads each
 * value with a typed, range-checked getter whose error names the param.
 * Strings point into the cJSON tree, which must outlive the parsed struct. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/json.h"
#include "oai_req.h"

#define BAD "invalid_request_error"

/* Fills e with an OpenAI-shaped error and its HTTP status. */
int oai_fail(oai_err *e, int http, const char *type, const char *param, const char *code, const char *fmt, ...)
{
    e->http = http;
    snprintf(e->type, sizeof e->type, "%s", type);
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    snprintf(e->code, sizeof e->code, "%s", code ? code : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return -1;
}

/* Name of a JSON value's type for messages. */
static const char *type_name(const cJSON *v)
{
    if (cJSON_IsNull(v)) return "null";
    if (cJSON_IsBool(v)) return "boolean";
    if (cJSON_IsNumber(v)) return "number";
    if (cJSON_IsString(v)) return "string";
    if (cJSON_IsArray(v)) return "array";
    return "object";
}

/* 1 if k is one of the NULL-terminated list. */
static int in_list(const char *k, const char *const *list)
{
    for (; *list; list++)
        if (!strcmp(k, *list)) return 1;
    return 0;
}

/* Parameters of OpenAI's (or vLLM's) API that this server does not implement:
 * rejected by name unless null, never ignored. */
static const char *const UNSUPPORTED[] = {"tools",
                                          "tool_choice",
                                          "functions",
                                          "function_call",
                                          "parallel_tool_calls",
                                          "audio",
                                          "modalities",
                                          "prediction",
                                          "store",
                                          "metadata",
                                          "service_tier",
                                          "reasoning_effort",
                                          "web_search_options",
                                          "verbosity",
                                          "prompt_cache_key",
                                          "safety_identifier",
                                          "suffix",
                                          "best_of",
                                          "guided_json",
                                          "guided_regex",
                                          "guided_choice",
                                          "guided_grammar",
                                          "ignore_eos",
                                          "min_tokens",
                                          "use_beam_search",
                                          "length_penalty",
                                          "include_stop_str_in_output",
                                          "skip_special_tokens",
                                          "spaces_between_special_tokens",
                                          "truncate_prompt_tokens",
                                          "prompt_logprobs",
                                          "add_generation_prompt",
                                          "continue_final_message",
                                          "documents",
                                          "chat_template",
                                          "mm_processor_kwargs",
                                          "priority",
                                          "request_id",
                                          "logits_processors",
                                          "cache_prompt",
                                          "n_probs",
                                          "grammar",
                                          "json_schema",
                                          "structured_outputs",
                                          NULL};

/* Checks every key of o: allowed, unsupported (400 naming it) or unknown. */
static int check_keys(const cJSON *o, const char *const *allowed, const char *prefix, oai_err *e)
{
    for (const cJSON *c = o->child; c; c = c->next) {
        char param[96];
        snprintf(param, sizeof param, "%s%s", prefix, c->string);
        if (in_list(c->string, allowed)) continue;
        if (!*prefix && in_list(c->string, UNSUPPORTED)) {
            if (cJSON_IsNull(c)) continue;
            return oai_fail(e, 400, BAD, param, "unsupported_parameter", "'%s' is not supported by this server", param);
        }
        return oai_fail(e, 400, BAD, param, "unknown_parameter", "unknown parameter '%s'", param);
    }
    return 0;
}

/* The rule of /tokenize and /detokenize (not OpenAI routes, so no list of
 * unsupported OpenAI parameters): every key of o is allowed, or it is unknown. */
static int check_keys_exact(const cJSON *o, const char *const *allowed, oai_err *e)
{
    for (const cJSON *c = o->child; c; c = c->next)
        if (!in_list(c->string, allowed))
            return oai_fail(e, 400, BAD, c->string, "unknown_parameter", "unknown parameter '%.60s'", c->string);
    return 0;
}

/* Optional number in [lo, hi] (lo excluded when lo_open); 1 given, 0 absent, -1 bad. */
static int get_num(const cJSON *o, const char *key, double lo, double hi, int lo_open, double *out, oai_err *e)
{
    const cJSON *v = json_get_opt(o, key);
    if (!v) return 0;
    if (!cJSON_IsNumber(v))
        return oai_fail(e, 400, BAD, key, "invalid_type", "'%s' must be a number, not %s", key, type_name(v));
    double d = v->valuedouble;
    if (!isfinite(d) || d > hi || d < lo || (lo_open && d == lo))
        return oai_fail(e, 400, BAD, key, "invalid_value", "'%s' = %g is out of range %s%g, %g]", key, d,
                        lo_open ? "(" : "[", lo, hi);
    *out = d;
    return 1;
}

/* Optional integer in [lo, hi]; 1 given, 0 absent, -1 bad. */
static int get_int(const cJSON *o, const char *key, double lo, double hi, long long *out, oai_err *e)
{
    const cJSON *v = json_get_opt(o, key);
    if (!v) return 0;
    if (!cJSON_IsNumber(v))
        return oai_fail(e, 400, BAD, key, "invalid_type", "'%s' must be an integer, not %s", key, type_name(v));
    double d = v->valuedouble;
    if (!json_is_integer(v))
        return oai_fail(e, 400, BAD, key, "invalid_type", "'%s' must be an integer, not %g", key, d);
    if (d < lo || d > hi)
        return oai_fail(e, 400, BAD, key, "invalid_value", "'%s' = %.0f is out of range [%.0f, %.0f]", key, d, lo, hi);
    *out = (long long)d;
    return 1;
}

/* Optional boolean; 1 given, 0 absent, -1 bad. */
static int get_bool(const cJSON *o, const char *key, int *out, oai_err *e)
{
    const cJSON *v = json_get_opt(o, key);
    if (!v) return 0;
    if (!cJSON_IsBool(v))
        return oai_fail(e, 400, BAD, key, "invalid_type", "'%s' must be a boolean, not %s", key, type_name(v));
    *out = cJSON_IsTrue(v);
    return 1;
}

/* Checks the request's model against the served one: absent 400, other 404. */
static int check_model(const cJSON *root, const oai_limits *lim, int required, oai_err *e)
{
    const cJSON *v = json_get_opt(root, "model");
    if (!v) {
        if (!required) return 0;
        return oai_fail(e, 400, BAD, "model", "missing_required_parameter",
                        "'model' is required (this server serves '%s')", lim->model_name);
    }
    if (!cJSON_IsString(v))
        return oai_fail(e, 400, BAD, "model", "invalid_type", "'model' must be a string, not %s", type_name(v));
    if (strcmp(v->valuestring, lim->model_name))
        return oai_fail(e, 404, BAD, "model", "model_not_found",
                        "the model '%.200s' does not exist (this server serves '%.200s')", v->valuestring,
                        lim->model_name);
    return 0;
}

/* stop: a string or a list of at most MS_MAX_STOP non-empty strings. */
static int parse_stop(const cJSON *root, oai_gen *g, oai_err *e)
{
    const cJSON *v = json_get_opt(root, "stop");
    if (!v) return 0;
    const cJSON *items[MS_MAX_STOP];
    int n = 0;
    if (cJSON_IsString(v)) {
        items[n++] = v;
    } else if (cJSON_IsArray(v)) {
        for (const cJSON *c = v->child; c; c = c->next) {
            if (n == MS_MAX_STOP)
                return oai_fail(e, 400, BAD, "stop", "invalid_value", "'stop' has more than %d strings", MS_MAX_STOP);
            items[n++] = c;
        }
    } else {
        return oai_fail(e, 400, BAD, "stop", "invalid_type", "'stop' must be a string or a list of strings, not %s",
                        type_name(v));
    }
    for (int i = 0; i < n; i++) {
        if (!cJSON_IsString(items[i]))
            return oai_fail(e, 400, BAD, "stop", "invalid_type", "'stop' entries must be strings, not %s",
                            type_name(items[i]));
        size_t len = strlen(items[i]->valuestring);
        if (len == 0 || len > OAI_MAX_STOP_LEN)
            return oai_fail(e, 400, BAD, "stop", "invalid_value", "'stop' strings must have 1..%d bytes",
                            OAI_MAX_STOP_LEN);
        g->stop[i] = items[i]->valuestring;
    }
    g->n_stop = n;
    return 0;
}

/* logit_bias: {"token id": bias in [-100, 100]}. */
static int parse_logit_bias(const cJSON *root, const oai_limits *lim, oai_gen *g, oai_err *e)
{
    const cJSON *v = json_get_opt(root, "logit_bias");
    if (!v) return 0;
    if (!cJSON_IsObject(v))
        return oai_fail(e, 400, BAD, "logit_bias", "invalid_type", "'logit_bias' must be an object, not %s",
                        type_name(v));
    int n = cJSON_GetArraySize(v);
    if (n > OAI_MAX_LOGIT_BIAS)
        return oai_fail(e, 400, BAD, "logit_bias", "invalid_value", "'logit_bias' has more than %d entries",
                        OAI_MAX_LOGIT_BIAS);
    if (n == 0) return 0;
    g->bias_ids = malloc((size_t)n * sizeof *g->bias_ids);
    g->bias_values = malloc((size_t)n * sizeof *g->bias_values);
    if (!g->bias_ids || !g->bias_values) return oai_fail(e, 500, "server_error", "logit_bias", NULL, "out of memory");
    for (const cJSON *c = v->child; c; c = c->next) {
        const char *k = c->string;
        size_t kl = strlen(k);
        long long id = 0;
        int ok = kl > 0 && kl <= 10 && !(kl > 1 && k[0] == '0');
        for (size_t i = 0; ok && i < kl; i++) {
            if (k[i] < '0' || k[i] > '9') ok = 0;
            id = id * 10 + (k[i] - '0');
        }
        if (!ok || id >= lim->vocab_size)
            return oai_fail(e, 400, BAD, "logit_bias", "invalid_value",
                            "'logit_bias' key '%.40s' is not a token id in [0, %d)", k, lim->vocab_size);
        if (!cJSON_IsNumber(c) || !isfinite(c->valuedouble) || c->valuedouble < -100 || c->valuedouble > 100)
            return oai_fail(e, 400, BAD, "logit_bias", "invalid_value",
                            "'logit_bias' value for %lld must be a number in [-100, 100]", id);
        g->bias_ids[g->n_bias] = (int32_t)id;
        g->bias_values[g->n_bias] = (float)c->valuedouble;
        g->n_bias++;
    }
    return 0;
}

/* stream + stream_options {include_usage}. */
static int parse_stream(const cJSON *root, oai_gen *g, oai_err *e)
{
    if (get_bool(root, "stream", &g->stream, e) < 0) return -1;
    const cJSON *so = json_get_opt(root, "stream_options");
    if (!so) return 0;
    if (!g->stream)
        return oai_fail(e, 400, BAD, "stream_options", "invalid_value",
                        "'stream_options' is only allowed when 'stream' is true");
    if (!cJSON_IsObject(so))
        return oai_fail(e, 400, BAD, "stream_options", "invalid_type", "'stream_options' must be an object, not %s",
                        type_name(so));
    static const char *const keys[] = {"include_usage", NULL};
    if (check_keys(so, keys, "stream_options.", e)) return -1;
    if (get_bool(so, "include_usage", &g->include_usage, e) < 0) {
        snprintf(e->param, sizeof e->param, "stream_options.include_usage");
        return -1;
    }
    return 0;
}

/* The sampling fields common to chat and completions. */
static int parse_sampling(const cJSON *root, const oai_limits *lim, oai_gen *g, oai_err *e)
{
    long long n = 1, v;
    int r;
    if (get_int(root, "n", 1, lim->max_n, &n, e) < 0) return -1;
    g->n = (int)n;
    if ((r = get_num(root, "temperature", 0, 2, 0, &g->temperature, e)) < 0) return -1;
    g->has_temperature = r;
    if ((r = get_num(root, "top_p", 0, 1, 1, &g->top_p, e)) < 0) return -1;
    g->has_top_p = r;
    if ((r = get_int(root, "top_k", -1, lim->vocab_size, &v, e)) < 0) return -1;
    g->has_top_k = r;
    g->top_k = r ? (v < 0 ? 0 : (int)v) : 0; /* -1 (vLLM) and 0 both mean off */
    if ((r = get_num(root, "min_p", 0, 1, 0, &g->min_p, e)) < 0) return -1;
    g->has_min_p = r;
    if ((r = get_num(root, "repetition_penalty", 0, 10, 1, &g->repetition_penalty, e)) < 0) return -1;
    g->has_repetition_penalty = r;
    if (get_num(root, "presence_penalty", -2, 2, 0, &g->presence_penalty, e) < 0) return -1;
    if (get_num(root, "frequency_penalty", -2, 2, 0, &g->frequency_penalty, e) < 0) return -1;
    if ((r = get_int(root, "seed", -OAI_SEED_MAX, OAI_SEED_MAX, &v, e)) < 0) return -1;
    g->has_seed = r;
    if (r) g->seed = (uint64_t)(int64_t)v;
    if (parse_stop(root, g, e) || parse_logit_bias(root, lim, g, e) || parse_stream(root, g, e)) return -1;
    const cJSON *u = json_get_opt(root, "user");
    if (u && !cJSON_IsString(u))
        return oai_fail(e, 400, BAD, "user", "invalid_type", "'user' must be a string, not %s", type_name(u));
    return 0;
}

/* Appends an owned string to c->owned (freed with c); returns it or NULL. */
static char *own(oai_chat *c, char *s)
{
    if (!s) return NULL;
    char **p = realloc(c->owned, (c->n_owned + 1) * sizeof *p);
    if (!p) {
        free(s);
        return NULL;
    }
    c->owned = p;
    c->owned[c->n_owned++] = s;
    return s;
}

/* Message content: a string, or text parts joined with "\n"; null only when
 * null_ok. *out points into the JSON or into c->owned. */
static int parse_content(const cJSON *m, size_t i, int null_ok, oai_chat *c, const char **out, oai_err *e)
{
    char param[64];
    snprintf(param, sizeof param, "messages[%zu].content", i);
    const cJSON *v = json_get(m, "content");
    if (!v || cJSON_IsNull(v)) {
        if (null_ok) {
            *out = "";
            return 0;
        }
        return oai_fail(e, 400, BAD, param, v ? "invalid_type" : "missing_required_parameter", "'%s' is required",
                        param);
    }
    if (cJSON_IsString(v)) {
        *out = v->valuestring;
        return 0;
    }
    if (!cJSON_IsArray(v))
        return oai_fail(e, 400, BAD, param, "invalid_type", "'%s' must be a string or a list of text parts, not %s",
                        param, type_name(v));
    size_t total = 1, j = 0;
    for (const cJSON *p = v->child; p; p = p->next, j++) {
        char pp[96];
        snprintf(pp, sizeof pp, "%s[%zu]", param, j);
        if (!cJSON_IsObject(p)) return oai_fail(e, 400, BAD, pp, "invalid_type", "'%s' must be an object", pp);
        const cJSON *t = json_get(p, "type");
        if (!cJSON_IsString(t)) return oai_fail(e, 400, BAD, pp, "invalid_type", "'%s.type' must be a string", pp);
        if (strcmp(t->valuestring, "text"))
            return oai_fail(e, 400, BAD, pp, "unsupported_parameter",
                            "content parts of type '%.40s' are not supported (only 'text')", t->valuestring);
        static const char *const keys[] = {"type", "text", NULL};
        char pre[100];
        snprintf(pre, sizeof pre, "%s.", pp);
        if (check_keys(p, keys, pre, e)) return -1;
        const cJSON *tx = json_get(p, "text");
        if (!cJSON_IsString(tx)) return oai_fail(e, 400, BAD, pp, "invalid_type", "'%s.text' must be a string", pp);
        total += strlen(tx->valuestring) + 1;
    }
    char *buf = own(c, malloc(total));
    if (!buf) return oai_fail(e, 500, "server_error", param, NULL, "out of memory");
    size_t n = 0;
    for (const cJSON *p = v->child; p; p = p->next) {
        const char *tx = json_get(p, "text")->valuestring;
        size_t l = strlen(tx);
        if (n) buf[n++] = '\n';
        memcpy(buf + n, tx, l);
        n += l;
    }
    buf[n] = 0;
    *out = buf;
    return 0;
}

/* assistant tool_calls (history only): [{id, type:"function", function:{name, arguments}}]. */
static int parse_tool_calls(const cJSON *m, size_t i, oai_chat *c, const char **out, oai_err *e)
{
    const cJSON *v = json_get_opt(m, "tool_calls");
    *out = NULL;
    if (!v) return 0;
    char param[64];
    snprintf(param, sizeof param, "messages[%zu].tool_calls", i);
    if (!cJSON_IsArray(v)) return oai_fail(e, 400, BAD, param, "invalid_type", "'%s' must be a list", param);
    for (const cJSON *t = v->child; t; t = t->next) {
        const cJSON *f = json_get(t, "function");
        const cJSON *ty = json_get(t, "type");
        static const char *const keys[] = {"id", "type", "function", NULL};
        static const char *const fkeys[] = {"name", "arguments", NULL};
        if (!cJSON_IsObject(t) || !cJSON_IsObject(f) || (ty && !cJSON_IsString(ty)) ||
            (ty && strcmp(ty->valuestring, "function")) || !cJSON_IsString(json_get(f, "name")) ||
            !cJSON_IsString(json_get(f, "arguments")) || (json_get(t, "id") && !cJSON_IsString(json_get(t, "id"))))
            return oai_fail(e, 400, BAD, param, "invalid_value",
                            "'%s' entries must be {id, type: \"function\", function: {name, "
                            "arguments: string}}",
                            param);
        if (check_keys(t, keys, "tool_calls.", e) || check_keys(f, fkeys, "function.", e)) {
            snprintf(e->param, sizeof e->param, "%s", param);
            return -1;
        }
    }
    char *s = own(c, cJSON_PrintUnformatted(v));
    if (!s) return oai_fail(e, 500, "server_error", param, NULL, "out of memory");
    *out = s;
    return 0;
}

/* One message of messages[]. */
static int parse_message(const cJSON *m, size_t i, oai_chat *c, oai_err *e)
{
    char param[64];
    snprintf(param, sizeof param, "messages[%zu]", i);
    if (!cJSON_IsObject(m)) return oai_fail(e, 400, BAD, param, "invalid_type", "'%s' must be an object", param);
    const cJSON *role = json_get(m, "role");
    if (!cJSON_IsString(role))
        return oai_fail(e, 400, BAD, param, "invalid_value", "'%s.role' must be a string", param);
    const char *r = role->valuestring;
    ms_message *out = &c->msgs[i];
    char pre[72];
    snprintf(pre, sizeof pre, "%s.", param);
    if (!strcmp(r, "system") || !strcmp(r, "developer") || !strcmp(r, "user")) {
        static const char *const keys[] = {"role", "content", NULL};
        if (check_keys(m, keys, pre, e) || parse_content(m, i, 0, c, &out->content, e)) return -1;
        out->role = !strcmp(r, "user") ? "user" : "system";
        return 0;
    }
    if (!strcmp(r, "assistant")) {
        static const char *const keys[] = {"role", "content", "reasoning_content", "tool_calls", "refusal", NULL};
        if (check_keys(m, keys, pre, e) || parse_content(m, i, 1, c, &out->content, e) ||
            parse_tool_calls(m, i, c, &out->tool_calls_json, e))
            return -1;
        if (json_get_opt(m, "refusal"))
            return oai_fail(e, 400, BAD, "refusal", "unsupported_parameter", "'%srefusal' is not supported", pre);
        const cJSON *rc = json_get_opt(m, "reasoning_content");
        if (rc && !cJSON_IsString(rc))
            return oai_fail(e, 400, BAD, param, "invalid_type", "'%sreasoning_content' must be a string", pre);
        out->reasoning_content = rc ? rc->valuestring : NULL;
        out->role = "assistant";
        return 0;
    }
    if (!strcmp(r, "tool")) {
        static const char *const keys[] = {"role", "content", "tool_call_id", NULL};
        if (check_keys(m, keys, pre, e) || parse_content(m, i, 0, c, &out->content, e)) return -1;
        const cJSON *id = json_get_opt(m, "tool_call_id");
        if (id && !cJSON_IsString(id))
            return oai_fail(e, 400, BAD, param, "invalid_type", "'%stool_call_id' must be a string", pre);
        out->role = "tool";
        return 0;
    }
    return oai_fail(e, 400, BAD, param, "invalid_value",
                    "'%s.role' = '%.40s' is not one of system, developer, user, assistant, tool", param, r);
}

/* messages[] into c->msgs. */
static int parse_messages(const cJSON *root, oai_chat *c, oai_err *e)
{
    const cJSON *v = json_get_opt(root, "messages");
    if (!v) return oai_fail(e, 400, BAD, "messages", "missing_required_parameter", "'messages' is required");
    if (!cJSON_IsArray(v)) return oai_fail(e, 400, BAD, "messages", "invalid_type", "'messages' must be a list");
    int n = cJSON_GetArraySize(v);
    if (n < 1 || n > OAI_MAX_MESSAGES)
        return oai_fail(e, 400, BAD, "messages", "invalid_value", "'messages' must have 1..%d entries",
                        OAI_MAX_MESSAGES);
    c->msgs = calloc((size_t)n, sizeof *c->msgs);
    if (!c->msgs) return oai_fail(e, 500, "server_error", "messages", NULL, "out of memory");
    c->n_msgs = (size_t)n;
    size_t i = 0;
    for (const cJSON *m = v->child; m; m = m->next, i++)
        if (parse_message(m, i, c, e)) return -1;
    return 0;
}

/* chat_template_kwargs: only enable_thinking (bool). */
static int parse_template_kwargs(const cJSON *root, oai_gen *g, oai_err *e)
{
    g->enable_thinking = -1;
    const cJSON *v = json_get_opt(root, "chat_template_kwargs");
    if (!v) return 0;
    if (!cJSON_IsObject(v))
        return oai_fail(e, 400, BAD, "chat_template_kwargs", "invalid_type",
                        "'chat_template_kwargs' must be an object");
    static const char *const keys[] = {"enable_thinking", NULL};
    if (check_keys(v, keys, "chat_template_kwargs.", e)) return -1;
    int b;
    int r = get_bool(v, "enable_thinking", &b, e);
    if (r < 0) {
        snprintf(e->param, sizeof e->param, "chat_template_kwargs.enable_thinking");
        return -1;
    }
    if (r) g->enable_thinking = b;
    return 0;
}

/* response_format: only {"type": "text"}. */
static int parse_response_format(const cJSON *root, oai_err *e)
{
    const cJSON *v = json_get_opt(root, "response_format");
    if (!v) return 0;
    const cJSON *t = cJSON_IsObject(v) ? json_get(v, "type") : NULL;
    if (!cJSON_IsString(t) || strcmp(t->valuestring, "text") || cJSON_GetArraySize(v) != 1)
        return oai_fail(e, 400, BAD, "response_format", "unsupported_parameter",
                        "only response_format {\"type\": \"text\"} is supported");
    return 0;
}

/* Frees what oai_parse_chat allocated; the JSON tree is the caller's. */
void oai_chat_free(oai_chat *c)
{
    if (!c) return;
    free(c->msgs);
    for (size_t i = 0; i < c->n_owned; i++) free(c->owned[i]);
    free(c->owned);
    free(c->g.bias_ids);
    free(c->g.bias_values);
    memset(c, 0, sizeof *c);
}

/* Keys, model, sampling, template kwargs, response_format, max tokens, logprobs, messages. */
int oai_parse_chat(const cJSON *root, const oai_limits *lim, oai_chat *out, oai_err *e)
{
    static const char *const keys[] = {"messages",
                                       "model",
                                       "max_tokens",
                                       "max_completion_tokens",
                                       "temperature",
                                       "top_p",
                                       "n",
                                       "stop",
                                       "stream",
                                       "stream_options",
                                       "seed",
                                       "presence_penalty",
                                       "frequency_penalty",
                                       "logit_bias",
                                       "logprobs",
                                       "top_logprobs",
                                       "user",
                                       "top_k",
                                       "min_p",
                                       "repetition_penalty",
                                       "chat_template_kwargs",
                                       "response_format",
                                       NULL};
    memset(out, 0, sizeof *out);
    oai_gen *g = &out->g;
    if (!cJSON_IsObject(root))
        return oai_fail(e, 400, BAD, "", "invalid_type", "the request body must be a JSON object");
    if (check_keys(root, keys, "", e) || check_model(root, lim, 1, e) || parse_sampling(root, lim, g, e) ||
        parse_template_kwargs(root, g, e) || parse_response_format(root, e))
        return -1;
    long long mt = 0, mct = 0;
    int h1 = get_int(root, "max_tokens", 1, 2147483647.0, &mt, e);
    if (h1 < 0) return -1;
    int h2 = get_int(root, "max_completion_tokens", 1, 2147483647.0, &mct, e);
    if (h2 < 0) return -1;
    if (h1 && h2 && mt != mct)
        return oai_fail(e, 400, BAD, "max_tokens", "invalid_value",
                        "'max_tokens' (%lld) and 'max_completion_tokens' (%lld) disagree", mt, mct);
    g->has_max_tokens = h1 || h2;
    g->max_tokens = (int)(h2 ? mct : mt);
    if (get_bool(root, "logprobs", &g->logprobs, e) < 0) return -1;
    long long tl = 0;
    int htl = get_int(root, "top_logprobs", 0, MS_MAX_TOP_LOGPROBS, &tl, e);
    if (htl < 0) return -1;
    if (htl && !g->logprobs)
        return oai_fail(e, 400, BAD, "top_logprobs", "invalid_value", "'top_logprobs' requires 'logprobs': true");
    g->top_logprobs = (int)tl;
    return parse_messages(root, out, e);
}

/* Frees the prompt tables and any id arrays still owned. */
void oai_completion_free(oai_completion *c)
{
    if (!c) return;
    if (c->ids)
        for (size_t i = 0; i < c->n_prompts; i++) free(c->ids[i]);
    free(c->ids);
    free(c->n_ids);
    free(c->texts);
    free(c->text_lens);
    free(c->g.bias_ids);
    free(c->g.bias_values);
    memset(c, 0, sizeof *c);
}

/* A JSON list of token ids into a malloc'd array; param names it in errors. */
static int parse_ids(const cJSON *v, const char *param, int vocab, int32_t **out, size_t *n, oai_err *e)
{
    int cnt = cJSON_GetArraySize(v);
    int32_t *ids = malloc((size_t)(cnt > 0 ? cnt : 1) * sizeof *ids);
    if (!ids) return oai_fail(e, 500, "server_error", param, NULL, "out of memory");
    size_t k = 0;
    for (const cJSON *c = v->child; c; c = c->next, k++) {
        if (!json_is_integer(c) || c->valuedouble < 0 || c->valuedouble >= vocab) {
            free(ids);
            return oai_fail(e, 400, BAD, param, "invalid_value", "'%s'[%zu] is not a token id in [0, %d)", param, k,
                            vocab);
        }
        ids[k] = (int32_t)c->valuedouble;
    }
    *out = ids;
    *n = k;
    return 0;
}

/* prompt: string | [string] | [int] | [[int]]. */
static int parse_prompt(const cJSON *root, const oai_limits *lim, oai_completion *c, oai_err *e)
{
    const cJSON *v = json_get_opt(root, "prompt");
    if (!v) return oai_fail(e, 400, BAD, "prompt", "missing_required_parameter", "'prompt' is required");
    const cJSON *single = NULL;
    int n;
    int ids_flat = 0;
    if (cJSON_IsString(v)) {
        single = v;
        n = 1;
    } else if (cJSON_IsArray(v)) {
        n = cJSON_GetArraySize(v);
        if (n == 0) return oai_fail(e, 400, BAD, "prompt", "invalid_value", "'prompt' must not be empty");
        ids_flat = cJSON_IsNumber(v->child);
        if (ids_flat) n = 1;
    } else {
        return oai_fail(e, 400, BAD, "prompt", "invalid_type",
                        "'prompt' must be a string, a list of strings, a list of token ids or a "
                        "list of lists of token ids, not %s",
                        type_name(v));
    }
    if (n > OAI_MAX_PROMPTS)
        return oai_fail(e, 400, BAD, "prompt", "invalid_value", "'prompt' has more than %d entries", OAI_MAX_PROMPTS);
    c->n_prompts = (size_t)n;
    c->texts = calloc((size_t)n, sizeof *c->texts);
    c->text_lens = calloc((size_t)n, sizeof *c->text_lens);
    c->ids = calloc((size_t)n, sizeof *c->ids);
    c->n_ids = calloc((size_t)n, sizeof *c->n_ids);
    if (!c->texts || !c->text_lens || !c->ids || !c->n_ids)
        return oai_fail(e, 500, "server_error", "prompt", NULL, "out of memory");
    if (single) {
        c->texts[0] = single->valuestring;
        c->text_lens[0] = strlen(single->valuestring);
        return 0;
    }
    if (ids_flat) return parse_ids(v, "prompt", lim->vocab_size, &c->ids[0], &c->n_ids[0], e);
    int i = 0;
    int kind = cJSON_IsString(v->child) ? 1 : 2; /* 1 strings, 2 id lists: never mixed */
    for (const cJSON *p = v->child; p; p = p->next, i++) {
        char param[32];
        snprintf(param, sizeof param, "prompt[%d]", i);
        if (kind == 1 && cJSON_IsString(p)) {
            c->texts[i] = p->valuestring;
            c->text_lens[i] = strlen(p->valuestring);
        } else if (kind == 2 && cJSON_IsArray(p)) {
            if (!p->child) return oai_fail(e, 400, BAD, param, "invalid_value", "'%s' is empty", param);
            if (parse_ids(p, param, lim->vocab_size, &c->ids[i], &c->n_ids[i], e)) return -1;
        } else {
            return oai_fail(e, 400, BAD, param, "invalid_type",
                            "'%s': prompt lists must hold only strings or only id lists", param);
        }
    }
    return 0;
}

/* Keys, model, sampling, max_tokens, logprobs (int), echo, then the prompt. */
int oai_parse_completion(const cJSON *root, const oai_limits *lim, oai_completion *out, oai_err *e)
{
    static const char *const keys[] = {"prompt",
                                       "model",
                                       "max_tokens",
                                       "temperature",
                                       "top_p",
                                       "n",
                                       "stop",
                                       "stream",
                                       "stream_options",
                                       "seed",
                                       "presence_penalty",
                                       "frequency_penalty",
                                       "logit_bias",
                                       "logprobs",
                                       "echo",
                                       "user",
                                       "top_k",
                                       "min_p",
                                       "repetition_penalty",
                                       NULL};
    memset(out, 0, sizeof *out);
    oai_gen *g = &out->g;
    g->enable_thinking = -1;
    if (!cJSON_IsObject(root))
        return oai_fail(e, 400, BAD, "", "invalid_type", "the request body must be a JSON object");
    if (check_keys(root, keys, "", e) || check_model(root, lim, 1, e) || parse_sampling(root, lim, g, e)) return -1;
    long long mt = 0, lp = 0;
    int h = get_int(root, "max_tokens", 1, 2147483647.0, &mt, e);
    if (h < 0) return -1;
    g->has_max_tokens = h;
    g->max_tokens = (int)mt;
    h = get_int(root, "logprobs", 0, OAI_MAX_COMPLETION_LOGPROBS, &lp, e);
    if (h < 0) return -1;
    g->logprobs = h;
    g->top_logprobs = (int)lp;
    if (get_bool(root, "echo", &g->echo, e) < 0) return -1;
    if (g->echo && g->logprobs)
        return oai_fail(e, 400, BAD, "echo", "unsupported_parameter",
                        "'echo' with 'logprobs' (prompt logprobs) is not supported");
    return parse_prompt(root, lim, out, e);
}

/* Frees the messages of a /tokenize request. */
void oai_tokenize_free(oai_tokenize *t)
{
    if (!t) return;
    oai_chat_free(&t->chat);
    memset(t, 0, sizeof *t);
}

/* Exactly one of prompt and messages; model optional. */
int oai_parse_tokenize(const cJSON *root, const oai_limits *lim, oai_tokenize *out, oai_err *e)
{
    static const char *const keys[] = {
        "prompt", "messages", "model", "add_generation_prompt", "chat_template_kwargs", "add_special_tokens", NULL};
    memset(out, 0, sizeof *out);
    out->chat.g.enable_thinking = -1;
    if (!cJSON_IsObject(root))
        return oai_fail(e, 400, BAD, "", "invalid_type", "the request body must be a JSON object");
    /* add_generation_prompt is listed as unsupported for chat; here it is ours */
    if (check_keys_exact(root, keys, e)) return -1;
    if (check_model(root, lim, 0, e)) return -1;
    int asp = 0;
    if (get_bool(root, "add_special_tokens", &asp, e) < 0) return -1;
    const cJSON *p = json_get_opt(root, "prompt"), *m = json_get_opt(root, "messages");
    if (!!p == !!m)
        return oai_fail(e, 400, BAD, "prompt", "invalid_value", "give exactly one of 'prompt' and 'messages'");
    if (p) {
        if (!cJSON_IsString(p)) return oai_fail(e, 400, BAD, "prompt", "invalid_type", "'prompt' must be a string");
        if (json_get_opt(root, "add_generation_prompt") || json_get_opt(root, "chat_template_kwargs"))
            return oai_fail(e, 400, BAD, "add_generation_prompt", "invalid_value",
                            "'add_generation_prompt' and 'chat_template_kwargs' need 'messages'");
        out->prompt = p->valuestring;
        out->prompt_len = strlen(p->valuestring);
        return 0;
    }
    out->add_generation_prompt = 1;
    if (get_bool(root, "add_generation_prompt", &out->add_generation_prompt, e) < 0) return -1;
    if (parse_template_kwargs(root, &out->chat.g, e)) return -1;
    return parse_messages(root, &out->chat, e);
}

/* Only "tokens" (ids in range) and an optional matching "model". */
int oai_parse_detokenize(const cJSON *root, const oai_limits *lim, int32_t **ids, size_t *n, oai_err *e)
{
    static const char *const keys[] = {"tokens", "model", NULL};
    *ids = NULL;
    *n = 0;
    if (!cJSON_IsObject(root))
        return oai_fail(e, 400, BAD, "", "invalid_type", "the request body must be a JSON object");
    if (check_keys_exact(root, keys, e)) return -1;
    if (check_model(root, lim, 0, e)) return -1;
    const cJSON *t = json_get(root, "tokens");
    if (!cJSON_IsArray(t))
        return oai_fail(e, 400, BAD, "tokens", t ? "invalid_type" : "missing_required_parameter",
                        "'tokens' must be a list of token ids");
    return parse_ids(t, "tokens", lim->vocab_size, ids, n, e);
}
