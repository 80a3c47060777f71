/* chat.c: renders the Qwen3 hybrid chat template without a Jinja engine
 * (docs/numerics.md §2.2), byte-identical to transformers' apply_chat_template,
 * and records which output bytes came from the caller (message text,
 * reasoning, tool-call names and arguments, tool schemas). Also builds
 * chat_msg records from a JSON messages array. It renders only this one
 * template; chat_template_is_qwen3 tells whether a model's template is it. */
#include "text/chat.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "text/chat_json.h"

/* Template literals, copied byte-exact from the template. */
#define T_IM_START "<|im_start|>"
#define T_IM_END_NL "<|im_end|>\n"
#define T_TOOLS_HEAD                                                                           \
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are " \
    "provided with function signatures within <tools></tools> XML tags:\n<tools>"
#define T_TOOLS_TAIL                                                                     \
    "\n</tools>\n\nFor each function call, return a json object with function name and " \
    "arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": "       \
    "<function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n"

/* Length and FNV-1a 64 of the known template with trailing whitespace removed
 * (tests/data/qwen3-tokenizer/tokenizer_config.json, Qwen3 hybrid release). */
#define QWEN3_TEMPLATE_LEN 4116u
#define QWEN3_TEMPLATE_FNV 0x2bfdb7aa9754484eull

/* A view of part of a NUL-terminated string. */
typedef struct str {
    const char *p;
    size_t n;
} str;

/* Output under construction: text plus untrusted ranges. */
typedef struct rnd {
    strbuf b;
    size_t *ur;
    size_t nur, cap;
    ms_error *err;
} rnd;

/* Appends template text (trusted). */
static ms_status lit(rnd *r, const char *s)
{
    return sb_adds(&r->b, s, r->err);
}

/* Appends caller text and marks it untrusted, merging with a range that ends where it starts. */
static ms_status unt(rnd *r, str s)
{
    if (!s.n) return MS_OK;
    size_t at = r->b.n;
    ms_status st = sb_add(&r->b, s.p, s.n, r->err);
    if (st) return st;
    if (r->nur && r->ur[2 * r->nur - 1] == at) {
        r->ur[2 * r->nur - 1] = r->b.n;
        return MS_OK;
    }
    if (r->nur == r->cap) {
        size_t nc = r->cap ? r->cap * 2 : 16;
        if (nc > SIZE_MAX / (2 * sizeof *r->ur)) return ms_seterr(r->err, MS_ERR_NOMEM, "chat: too many ranges");
        size_t *nu = realloc(r->ur, nc * 2 * sizeof *nu);
        if (!nu) return ms_seterr(r->err, MS_ERR_NOMEM, "chat: out of memory");
        r->ur = nu;
        r->cap = nc;
    }
    r->ur[2 * r->nur] = at;
    r->ur[2 * r->nur + 1] = r->b.n;
    r->nur++;
    return MS_OK;
}

/* View of a NUL-terminated string; NULL is "". */
static str S(const char *p)
{
    str s = {p ? p : "", p ? strlen(p) : 0};
    return s;
}

/* Python str.startswith. */
static int starts(str s, const char *pre)
{
    size_t k = strlen(pre);
    return s.n >= k && memcmp(s.p, pre, k) == 0;
}

/* Python str.endswith. */
static int ends(str s, const char *suf)
{
    size_t k = strlen(suf);
    return s.n >= k && memcmp(s.p + s.n - k, suf, k) == 0;
}

/* First occurrence of needle in s, or NULL. */
static const char *find_first(str s, const char *needle)
{
    return memmem(s.p, s.n, needle, strlen(needle));
}

/* Start of the text after the last non-overlapping occurrence (Python split()[-1]). */
static const char *after_last(str s, const char *needle)
{
    size_t k = strlen(needle);
    const char *end = s.p + s.n, *at = s.p, *hit;
    while ((hit = memmem(at, (size_t)(end - at), needle, k)) != NULL) at = hit + k;
    return at;
}

/* Python s.lstrip('\n'). */
static str lstrip_nl(str s)
{
    while (s.n && s.p[0] == '\n') s.p++, s.n--;
    return s;
}

/* Python s.rstrip('\n'). */
static str rstrip_nl(str s)
{
    while (s.n && s.p[s.n - 1] == '\n') s.n--;
    return s;
}

/* Whether m has exactly this role (case-sensitive, as Jinja's ==). */
static int is_role(const chat_msg *m, const char *role)
{
    return m->role && strcmp(m->role, role) == 0;
}

/* Emits the tools block, or the first system turn when there are no tools. */
static ms_status render_header(rnd *r, const chat_msg *msgs, const cJSON *tools)
{
    ms_status s = MS_OK;
    int first_system = is_role(&msgs[0], "system");
    if (tools) {
        s = lit(r, T_IM_START "system\n");
        if (!s && first_system) s = unt(r, S(msgs[0].content));
        if (!s && first_system) s = lit(r, "\n\n");
        if (!s) s = lit(r, T_TOOLS_HEAD);
        for (const cJSON *t = tools->child; !s && t; t = t->next) {
            strbuf j = {0};
            s = lit(r, "\n");
            if (!s) s = chat_json_dump(t, &j, r->err);
            if (!s) s = unt(r, (str){j.p, j.n});
            sb_free(&j);
        }
        if (!s) s = lit(r, T_TOOLS_TAIL);
    } else if (first_system) {
        s = lit(r, T_IM_START "system\n");
        if (!s) s = unt(r, S(msgs[0].content));
        if (!s) s = lit(r, T_IM_END_NL);
    }
    return s;
}

/* Truthiness of a JSON value as Jinja sees the Python object. */
static int truthy(const cJSON *v)
{
    if (!v || cJSON_IsNull(v) || cJSON_IsFalse(v)) return 0;
    if (cJSON_IsNumber(v)) return v->valuedouble != 0;
    if (cJSON_IsString(v)) return v->valuestring && v->valuestring[0];
    if (cJSON_IsArray(v) || cJSON_IsObject(v)) return v->child != NULL;
    return 1;
}

/* Emits the <tool_call> blocks of one assistant message. content_nonempty is
 * the template's `content` test for the first call. */
static ms_status render_tool_calls(rnd *r, const char *json, int content_nonempty, size_t mi)
{
    ms_error *err = r->err;
    cJSON *arr = chat_json_parse(json, strlen(json), "tool_calls", err);
    if (!arr) return err ? err->status : MS_ERR_FORMAT;
    ms_status s = MS_OK;
    if (!cJSON_IsArray(arr)) {
        s = ms_seterr(err, MS_ERR_INVALID, "messages[%zu].tool_calls: must be an array", mi);
        goto done;
    }
    size_t j = 0;
    for (const cJSON *el = arr->child; !s && el; el = el->next, j++) {
        if (!cJSON_IsObject(el)) {
            s = ms_seterr(err, MS_ERR_INVALID, "messages[%zu].tool_calls[%zu]: must be an object", mi, j);
            break;
        }
        const cJSON *tc = el, *fn = cJSON_GetObjectItemCaseSensitive(el, "function");
        if (truthy(fn)) {
            if (!cJSON_IsObject(fn)) {
                s = ms_seterr(err, MS_ERR_INVALID, "messages[%zu].tool_calls[%zu].function: must be an object", mi, j);
                break;
            }
            tc = fn; /* the template reads name/arguments from the wrapper */
        }
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(tc, "name");
        const cJSON *args = cJSON_GetObjectItemCaseSensitive(tc, "arguments");
        if (!cJSON_IsString(name)) {
            s = ms_seterr(err, MS_ERR_INVALID, "messages[%zu].tool_calls[%zu]: \"name\" must be a string", mi, j);
            break;
        }
        if (!args) {
            s = ms_seterr(err, MS_ERR_INVALID, "messages[%zu].tool_calls[%zu]: \"arguments\" is missing", mi, j);
            break;
        }
        if ((j == 0 && content_nonempty) || j > 0) s = lit(r, "\n");
        if (!s) s = lit(r, "<tool_call>\n{\"name\": \"");
        if (!s) s = unt(r, S(name->valuestring));
        if (!s) s = lit(r, "\", \"arguments\": ");
        if (!s && cJSON_IsString(args)) s = unt(r, S(args->valuestring));
        else if (!s) {
            strbuf a = {0};
            s = chat_json_dump(args, &a, err);
            if (!s) s = unt(r, (str){a.p, a.n});
            sb_free(&a);
        }
        if (!s) s = lit(r, "}\n</tool_call>");
    }
done:
    cJSON_Delete(arr);
    return s;
}

/* Emits one assistant turn (docs/numerics.md §2.2 step 3). */
static ms_status render_assistant(rnd *r, const chat_msg *m, size_t i, size_t n, size_t last_query)
{
    str content = S(m->content), reasoning = {"", 0};
    if (m->reasoning_content) {
        reasoning = S(m->reasoning_content);
    } else if (find_first(content, "</think>")) {
        str whole = content;
        const char *tail = after_last(whole, "</think>");
        content = lstrip_nl((str){tail, (size_t)(whole.p + whole.n - tail)});
        str head = {whole.p, (size_t)(find_first(whole, "</think>") - whole.p)};
        head = rstrip_nl(head);
        const char *th = after_last(head, "<think>");
        reasoning = lstrip_nl((str){th, (size_t)(head.p + head.n - th)});
    }
    ms_status s;
    if (i > last_query && (i == n - 1 || reasoning.n)) {
        s = lit(r, T_IM_START "assistant\n<think>\n");
        if (!s) s = unt(r, rstrip_nl(lstrip_nl(reasoning)));
        if (!s) s = lit(r, "\n</think>\n\n");
        if (!s) s = unt(r, lstrip_nl(content));
    } else {
        s = lit(r, T_IM_START "assistant\n");
        if (!s) s = unt(r, content);
    }
    if (!s && m->tool_calls_json) s = render_tool_calls(r, m->tool_calls_json, content.n > 0, i);
    if (!s) s = lit(r, T_IM_END_NL);
    return s;
}

/* Index of the last user message that is not a tool-response wrapper, or n-1. */
static size_t last_query_index(const chat_msg *msgs, size_t n)
{
    for (size_t k = n; k-- > 0;) {
        if (!is_role(&msgs[k], "user")) continue;
        str c = S(msgs[k].content);
        if (!(starts(c, "<tool_response>") && ends(c, "</tool_response>"))) return k;
    }
    return n - 1;
}

/* Parses tools_json; *out is the array when it is non-empty, else NULL. */
static ms_status parse_tools(const char *tools_json, cJSON **out, ms_error *err)
{
    *out = NULL;
    if (!tools_json) return MS_OK;
    cJSON *t = chat_json_parse(tools_json, strlen(tools_json), "tools", err);
    if (!t) return err ? err->status : MS_ERR_FORMAT;
    if (cJSON_IsNull(t)) {
        cJSON_Delete(t);
        return MS_OK;
    }
    if (!cJSON_IsArray(t)) {
        cJSON_Delete(t);
        return ms_seterr(err, MS_ERR_INVALID, "tools: must be an array");
    }
    size_t i = 0;
    for (const cJSON *c = t->child; c; c = c->next, i++) {
        if (!cJSON_IsObject(c)) {
            cJSON_Delete(t);
            return ms_seterr(err, MS_ERR_INVALID, "tools[%zu]: must be an object", i);
        }
    }
    if (!t->child) cJSON_Delete(t);
    else *out = t;
    return MS_OK;
}

ms_status chat_render(const chat_msg *msgs, size_t n, const char *tools_json, int add_generation_prompt,
                      int enable_thinking, chat_out *out, ms_error *err)
{
    if (!out) return ms_seterr(err, MS_ERR_INVALID, "chat: no output");
    memset(out, 0, sizeof *out);
    if (!msgs || n == 0) return ms_seterr(err, MS_ERR_INVALID, "messages: at least one message is required");
    if (n > CHAT_MAX_MESSAGES)
        return ms_seterr(err, MS_ERR_INVALID, "messages: %zu messages, over the limit of %d", n, CHAT_MAX_MESSAGES);
    if (enable_thinking < -1 || enable_thinking > 1)
        return ms_seterr(err, MS_ERR_INVALID, "enable_thinking: must be -1, 0 or 1");
    for (size_t i = 0; i < n; i++)
        if (!msgs[i].role) return ms_seterr(err, MS_ERR_INVALID, "messages[%zu]: role is missing", i);

    rnd r = {.err = err};
    cJSON *tools = NULL;
    ms_status s = parse_tools(tools_json, &tools, err);
    if (!s) s = render_header(&r, msgs, tools);
    size_t lq = last_query_index(msgs, n);
    for (size_t i = 0; !s && i < n; i++) {
        const chat_msg *m = &msgs[i];
        if (is_role(m, "user") || (is_role(m, "system") && i > 0)) {
            s = lit(&r, T_IM_START);
            if (!s) s = lit(&r, m->role);
            if (!s) s = lit(&r, "\n");
            if (!s) s = unt(&r, S(m->content));
            if (!s) s = lit(&r, T_IM_END_NL);
        } else if (is_role(m, "assistant")) {
            s = render_assistant(&r, m, i, n, lq);
        } else if (is_role(m, "tool")) {
            if (i == 0 || !is_role(&msgs[i - 1], "tool")) s = lit(&r, T_IM_START "user");
            if (!s) s = lit(&r, "\n<tool_response>\n");
            if (!s) s = unt(&r, S(m->content));
            if (!s) s = lit(&r, "\n</tool_response>");
            if (!s && (i == n - 1 || !is_role(&msgs[i + 1], "tool"))) s = lit(&r, T_IM_END_NL);
        }
        /* any other role: the template emits nothing */
    }
    if (!s && add_generation_prompt) {
        s = lit(&r, T_IM_START "assistant\n");
        if (!s && enable_thinking == 0) s = lit(&r, "<think>\n\n</think>\n\n");
    }
    if (!s && !r.b.p) s = sb_add(&r.b, "", 0, err); /* always a NUL-terminated text */
    cJSON_Delete(tools);
    if (s) {
        sb_free(&r.b);
        free(r.ur);
        return s;
    }
    out->text = r.b.p;
    out->len = r.b.n;
    out->untrusted = r.ur;
    out->n_untrusted = r.nur;
    return MS_OK;
}

void chat_out_free(chat_out *o)
{
    if (!o) return;
    free(o->text);
    free(o->untrusted);
    memset(o, 0, sizeof *o);
}

int chat_template_is_qwen3(const char *t)
{
    if (!t) return 0;
    size_t n = strlen(t);
    while (n && (t[n - 1] == ' ' || t[n - 1] == '\t' || t[n - 1] == '\n' || t[n - 1] == '\r')) n--;
    if (n != QWEN3_TEMPLATE_LEN) return 0;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)t[i];
        h *= 0x100000001b3ull;
    }
    return h == QWEN3_TEMPLATE_FNV;
}

/* ---- messages from JSON ------------------------------------------------ */

/* Keeps s (malloc'd) in c's owned list; frees it and fails if the list cannot grow. */
static ms_status own(chat_conv *c, char *s, ms_error *err)
{
    if (!s) return ms_seterr(err, MS_ERR_NOMEM, "chat: out of memory");
    if (c->n_owned == c->cap_owned) {
        size_t nc = c->cap_owned ? c->cap_owned * 2 : 16;
        if (nc > SIZE_MAX / sizeof *c->owned) {
            free(s);
            return ms_seterr(err, MS_ERR_NOMEM, "chat: too many strings");
        }
        char **no = realloc(c->owned, nc * sizeof *no);
        if (!no) {
            free(s);
            return ms_seterr(err, MS_ERR_NOMEM, "chat: out of memory");
        }
        c->owned = no;
        c->cap_owned = nc;
    }
    c->owned[c->n_owned++] = s;
    return MS_OK;
}

/* Keeps a copy of s in c. */
static ms_status dup_owned(chat_conv *c, const char *s, const char **out, ms_error *err)
{
    ms_status st = own(c, strdup(s), err);
    if (!st) *out = c->owned[c->n_owned - 1];
    return st;
}

/* Content as one string: a string, null/absent (NULL), or text parts joined by "\n". */
static ms_status read_content(chat_conv *c, const cJSON *v, const char **out, const char *what, size_t i, ms_error *err)
{
    *out = NULL;
    if (!v || cJSON_IsNull(v)) return MS_OK;
    if (cJSON_IsString(v)) return dup_owned(c, v->valuestring, out, err);
    if (!cJSON_IsArray(v))
        return ms_seterr(err, MS_ERR_INVALID, "%s: messages[%zu].content must be a string, an array or null", what, i);
    strbuf b = {0};
    ms_status s = sb_add(&b, "", 0, err);
    size_t k = 0;
    for (const cJSON *p = v->child; !s && p; p = p->next, k++) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(p, "type");
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(p, "text");
        if (!cJSON_IsObject(p) || !cJSON_IsString(type) || strcmp(type->valuestring, "text") != 0 ||
            !cJSON_IsString(text)) {
            s = ms_seterr(err, MS_ERR_INVALID,
                          "%s: messages[%zu].content[%zu]: only {\"type\":\"text\",\"text\":string} parts "
                          "are supported",
                          what, i, k);
            break;
        }
        if (k) s = sb_add(&b, "\n", 1, err);
        if (!s) s = sb_adds(&b, text->valuestring, err);
    }
    if (s) {
        sb_free(&b);
        return s;
    }
    s = own(c, b.p, err);
    if (!s) *out = c->owned[c->n_owned - 1];
    return s;
}

/* JSON text of v with number literals kept, owned by c. */
static ms_status dump_owned(chat_conv *c, const cJSON *v, const char **out, ms_error *err)
{
    strbuf b = {0};
    ms_status s = chat_json_dump_literal(v, &b, err);
    if (s) {
        sb_free(&b);
        return s;
    }
    s = own(c, b.p, err);
    if (!s) *out = c->owned[c->n_owned - 1];
    return s;
}

ms_status chat_conv_from_json(const cJSON *messages, const cJSON *tools, chat_conv *out, const char *what,
                              ms_error *err)
{
    static const char *const reasoning_keys[] = {"reasoning_content", "thinking", "reasoning"};
    memset(out, 0, sizeof *out);
    if (!what) what = "request";
    if (!cJSON_IsArray(messages)) return ms_seterr(err, MS_ERR_INVALID, "%s: \"messages\" must be an array", what);
    size_t n = (size_t)cJSON_GetArraySize(messages);
    if (n > CHAT_MAX_MESSAGES)
        return ms_seterr(err, MS_ERR_INVALID, "%s: %zu messages, over the limit of %d", what, n, CHAT_MAX_MESSAGES);
    ms_status s = MS_OK;
    if (n) {
        out->msgs = calloc(n, sizeof *out->msgs);
        if (!out->msgs) return ms_seterr(err, MS_ERR_NOMEM, "%s: out of memory", what);
    }
    size_t i = 0;
    for (const cJSON *m = messages->child; !s && m; m = m->next, i++) {
        chat_msg *cm = &out->msgs[i];
        if (!cJSON_IsObject(m)) {
            s = ms_seterr(err, MS_ERR_INVALID, "%s: messages[%zu] must be an object", what, i);
            break;
        }
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        if (!cJSON_IsString(role)) {
            s = ms_seterr(err, MS_ERR_INVALID, "%s: messages[%zu].role must be a string", what, i);
            break;
        }
        s = dup_owned(out, role->valuestring, &cm->role, err);
        if (!s) s = read_content(out, cJSON_GetObjectItemCaseSensitive(m, "content"), &cm->content, what, i, err);
        for (size_t k = 0; !s && k < 3; k++) {
            const cJSON *rv = cJSON_GetObjectItemCaseSensitive(m, reasoning_keys[k]);
            if (!rv || cJSON_IsNull(rv)) continue;
            if (!cJSON_IsString(rv))
                s = ms_seterr(err, MS_ERR_INVALID, "%s: messages[%zu].%s must be a string", what, i, reasoning_keys[k]);
            else s = dup_owned(out, rv->valuestring, &cm->reasoning_content, err);
            break;
        }
        const cJSON *tc = cJSON_GetObjectItemCaseSensitive(m, "tool_calls");
        if (!s && tc && !cJSON_IsNull(tc)) {
            if (!cJSON_IsArray(tc))
                s = ms_seterr(err, MS_ERR_INVALID, "%s: messages[%zu].tool_calls must be an array", what, i);
            else s = dump_owned(out, tc, &cm->tool_calls_json, err);
        }
    }
    out->n = i;
    if (!s && tools && !cJSON_IsNull(tools)) {
        if (!cJSON_IsArray(tools)) s = ms_seterr(err, MS_ERR_INVALID, "%s: \"tools\" must be an array", what);
        else if (tools->child) {
            const char *tj = NULL;
            s = dump_owned(out, tools, &tj, err);
            if (!s) out->tools_json = out->owned[out->n_owned - 1];
        }
    }
    if (s) chat_conv_free(out);
    return s;
}

void chat_conv_free(chat_conv *c)
{
    if (!c) return;
    for (size_t i = 0; i < c->n_owned; i++) free(c->owned[i]);
    free(c->owned);
    free(c->msgs);
    memset(c, 0, sizeof *c);
}
