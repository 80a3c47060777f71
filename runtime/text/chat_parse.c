/* chat_parse.c: splits generated Qwen3 output into reasoning and answer,
 * streaming and in one call, and parses <tool_call> blocks (chat_parse.h).
 * It does not decode tokens, validate UTF-8 or stream tool calls. */
#include "text/chat_parse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "base/err.h"

enum {
    ST_START,        /* PLAIN mode, nothing decided: newline-only tokens are dropped */
    ST_THINK_LEAD,   /* in reasoning, nothing emitted yet: newlines are dropped */
    ST_THINK,        /* in reasoning: newlines are held */
    ST_CONTENT_LEAD, /* in answer, nothing emitted yet: newlines are dropped */
    ST_CONTENT,      /* in answer: everything passes */
    ST_DONE
};

/* Whether s[0..n) ends with suf. */
static int ends_with(const char *s, size_t n, const char *suf)
{
    size_t k = strlen(suf);
    return n >= k && memcmp(s + n - k, suf, k) == 0;
}

chat_split_mode chat_split_mode_for_prompt(const char *prompt, size_t len)
{
    if (!prompt) return CHAT_SPLIT_PLAIN;
    if (ends_with(prompt, len, "<think>\n\n</think>\n\n")) return CHAT_SPLIT_NO_THINK;
    if (ends_with(prompt, len, "<think>\n")) return CHAT_SPLIT_IN_THINK;
    return CHAT_SPLIT_PLAIN;
}

void chat_splitter_init(chat_splitter *s, chat_split_mode mode, int32_t think_start_id, int32_t think_end_id)
{
    memset(s, 0, sizeof *s);
    s->start_id = think_start_id;
    s->end_id = think_end_id;
    s->state = mode == CHAT_SPLIT_IN_THINK ? ST_THINK_LEAD : mode == CHAT_SPLIT_NO_THINK ? ST_CONTENT_LEAD : ST_START;
    s->saw_reasoning = mode == CHAT_SPLIT_IN_THINK;
}

/* Points d at the splitter's buffers. */
static void set_delta(chat_splitter *s, chat_delta *d)
{
    d->reasoning = s->rbuf.p ? s->rbuf.p : "";
    d->reasoning_len = s->rbuf.n;
    d->content = s->cbuf.p ? s->cbuf.p : "";
    d->content_len = s->cbuf.n;
}

/* Appends n newlines to b. */
static ms_status add_newlines(strbuf *b, size_t n, ms_error *err)
{
    char nl[64];
    memset(nl, '\n', sizeof nl);
    while (n) {
        size_t k = n < sizeof nl ? n : sizeof nl;
        ms_status s = sb_add(b, nl, k, err);
        if (s) return s;
        n -= k;
    }
    return MS_OK;
}

/* Reasoning text: leading newlines dropped, trailing ones held until more text shows up. */
static ms_status feed_reasoning(chat_splitter *s, const char *t, size_t n, ms_error *err)
{
    size_t i = 0;
    if (s->state == ST_THINK_LEAD) {
        while (i < n && t[i] == '\n') i++;
        if (i == n) return MS_OK;
        s->state = ST_THINK;
    }
    while (i < n) {
        if (t[i] == '\n') {
            s->held_nl++;
            i++;
            continue;
        }
        size_t j = i;
        while (j < n && t[j] != '\n') j++;
        ms_status st = add_newlines(&s->rbuf, s->held_nl, err);
        if (st) return st;
        s->held_nl = 0;
        st = sb_add(&s->rbuf, t + i, j - i, err);
        if (st) return st;
        i = j;
    }
    return MS_OK;
}

/* Answer text: leading newlines dropped, the rest passed on. */
static ms_status feed_content(chat_splitter *s, const char *t, size_t n, ms_error *err)
{
    size_t i = 0;
    if (s->state == ST_CONTENT_LEAD) {
        while (i < n && t[i] == '\n') i++;
        if (i == n) return MS_OK;
        s->state = ST_CONTENT;
    }
    return sb_add(&s->cbuf, t + i, n - i, err);
}

ms_status chat_splitter_feed(chat_splitter *s, int32_t id, const char *text, size_t len, chat_delta *d, ms_error *err)
{
    s->rbuf.n = s->cbuf.n = 0;
    if (s->rbuf.p) s->rbuf.p[0] = '\0';
    if (s->cbuf.p) s->cbuf.p[0] = '\0';
    if (!text) len = 0;
    ms_status st = MS_OK;
    switch (s->state) {
    case ST_START:
        if (id == s->start_id) {
            s->state = ST_THINK_LEAD;
            s->saw_reasoning = 1;
            s->n_reasoning_tokens++;
            break;
        }
        {
            size_t i = 0;
            while (i < len && text[i] == '\n') i++;
            if (i == len) break; /* leading newlines of the answer, or before <think>: dropped either way */
            s->state = ST_CONTENT_LEAD;
            st = feed_content(s, text + i, len - i, err);
        }
        break;
    case ST_THINK_LEAD:
    case ST_THINK:
        s->n_reasoning_tokens++;
        if (id == s->end_id) {
            s->held_nl = 0; /* trailing newlines of the reasoning */
            s->state = ST_CONTENT_LEAD;
            break;
        }
        st = feed_reasoning(s, text, len, err);
        break;
    case ST_CONTENT_LEAD:
    case ST_CONTENT: st = feed_content(s, text, len, err); break;
    default: st = ms_seterr(err, MS_ERR_INVALID, "chat: token fed after the splitter was flushed");
    }
    set_delta(s, d);
    return st;
}

ms_status chat_splitter_flush(chat_splitter *s, chat_delta *d, ms_error *err)
{
    (void)err;
    s->rbuf.n = s->cbuf.n = 0;
    s->held_nl = 0; /* output ended inside the reasoning: its trailing newlines are stripped */
    s->state = ST_DONE;
    set_delta(s, d);
    return MS_OK;
}

void chat_splitter_free(chat_splitter *s)
{
    if (!s) return;
    sb_free(&s->rbuf);
    sb_free(&s->cbuf);
}

/* ---- one call ---------------------------------------------------------- */

/* Concatenates texts[from..to) into a malloc'd string with "\n" stripped
 * at the start, and also at the end when strip_end. */
static char *join_stripped(const char *const *texts, const size_t *lens, size_t from, size_t to, int strip_end,
                           ms_error *err)
{
    strbuf b = {0};
    ms_status s = sb_add(&b, "", 0, err);
    for (size_t i = from; !s && i < to; i++)
        if (texts[i]) s = sb_add(&b, texts[i], lens[i], err);
    if (s) {
        sb_free(&b);
        return NULL;
    }
    size_t a = 0, e = b.n;
    while (a < e && b.p[a] == '\n') a++;
    while (strip_end && e > a && b.p[e - 1] == '\n') e--;
    memmove(b.p, b.p + a, e - a);
    b.p[e - a] = '\0';
    return b.p;
}

ms_status chat_split_all(const int32_t *ids, const char *const *texts, const size_t *lens, size_t n,
                         chat_split_mode mode, int32_t think_start_id, int32_t think_end_id, chat_split_result *out,
                         ms_error *err)
{
    memset(out, 0, sizeof *out);
    size_t r_begin = n, r_end = n, c_begin = 0; /* reasoning tokens [r_begin, r_end), answer from c_begin */
    int thinking = 0;
    if (mode == CHAT_SPLIT_IN_THINK) {
        thinking = 1;
        r_begin = 0;
    } else if (mode == CHAT_SPLIT_PLAIN) {
        /* The first token that is <think> or carries more than newlines decides. */
        for (size_t i = 0; i < n; i++) {
            int only_nl = 1;
            for (size_t k = 0; texts[i] && k < lens[i]; k++) only_nl &= texts[i][k] == '\n';
            if (ids[i] == think_start_id) {
                thinking = 1;
                r_begin = i + 1;
                out->n_reasoning_tokens = 1;
                break;
            }
            if (!only_nl) break;
        }
    }
    if (thinking) {
        r_end = r_begin;
        while (r_end < n && ids[r_end] != think_end_id) r_end++;
        out->n_reasoning_tokens += (r_end - r_begin) + (r_end < n ? 1 : 0);
        c_begin = r_end < n ? r_end + 1 : n;
    }
    out->saw_reasoning = thinking;
    out->reasoning = thinking ? join_stripped(texts, lens, r_begin, r_end, 1, err) : strdup("");
    out->content = join_stripped(texts, lens, c_begin, n, 0, err);
    if (!out->reasoning || !out->content) {
        chat_split_result_free(out);
        return ms_seterr(err, MS_ERR_NOMEM, "chat: out of memory splitting output");
    }
    return MS_OK;
}

void chat_split_result_free(chat_split_result *r)
{
    if (!r) return;
    free(r->reasoning);
    free(r->content);
    r->reasoning = r->content = NULL;
}

/* ---- tool calls -------------------------------------------------------- */

#define TC_OPEN "<tool_call>\n"
#define TC_CLOSE "\n</tool_call>"

/* JSON whitespace, allowed between and after tool-call blocks. */
static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Parses one block's JSON into call. */
static ms_status parse_call(const char *j, size_t n, size_t idx, chat_tool_call *call, ms_error *err)
{
    char what[48];
    snprintf(what, sizeof what, "tool_call[%zu]", idx);
    cJSON *o = chat_json_parse(j, n, what, err);
    if (!o) return err ? err->status : MS_ERR_FORMAT;
    ms_status s = MS_OK;
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "name");
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(o, "arguments");
    if (!cJSON_IsObject(o) || cJSON_GetArraySize(o) != 2 || !cJSON_IsString(name) || !name->valuestring[0] ||
        !cJSON_IsObject(args)) {
        s = ms_seterr(err, MS_ERR_FORMAT,
                      "%s: must be an object with only \"name\" (non-empty string) and \"arguments\" (object)", what);
        goto done;
    }
    strbuf b = {0};
    s = chat_json_dump_literal(args, &b, err);
    if (s) {
        sb_free(&b);
        goto done;
    }
    char *nm = strdup(name->valuestring);
    if (!nm) {
        sb_free(&b);
        s = ms_seterr(err, MS_ERR_NOMEM, "%s: out of memory", what);
        goto done;
    }
    call->name = nm;
    call->arguments = b.p;
done:
    cJSON_Delete(o);
    return s;
}

ms_status chat_parse_tool_calls(const char *text, size_t len, chat_tool_calls *out, ms_error *err)
{
    memset(out, 0, sizeof *out);
    const char *first = memmem(text, len, "<tool_call>", strlen("<tool_call>"));
    size_t clen = first ? (size_t)(first - text) : len;
    if (first)
        while (clen && text[clen - 1] == '\n') clen--;
    out->content = strndup(text, clen);
    if (!out->content) return ms_seterr(err, MS_ERR_NOMEM, "tool_call: out of memory");
    if (!first) return MS_OK;
    out->calls = calloc(CHAT_MAX_TOOL_CALLS, sizeof *out->calls);
    if (!out->calls) {
        chat_tool_calls_free(out);
        return ms_seterr(err, MS_ERR_NOMEM, "tool_call: out of memory");
    }
    const char *p = first, *end = text + len;
    ms_status s = MS_OK;
    while (!s && p < end) {
        if ((size_t)(end - p) < strlen(TC_OPEN) || memcmp(p, TC_OPEN, strlen(TC_OPEN)) != 0) {
            s = ms_seterr(err, MS_ERR_FORMAT, "tool_call[%zu]: expected \"<tool_call>\\n\" at offset %zu", out->n,
                          (size_t)(p - text));
            break;
        }
        if (out->n == CHAT_MAX_TOOL_CALLS) {
            s = ms_seterr(err, MS_ERR_FORMAT, "tool_call: more than %d calls", CHAT_MAX_TOOL_CALLS);
            break;
        }
        const char *j = p + strlen(TC_OPEN);
        const char *close = memmem(j, (size_t)(end - j), TC_CLOSE, strlen(TC_CLOSE));
        if (!close) {
            s = ms_seterr(err, MS_ERR_FORMAT, "tool_call[%zu]: no \"\\n</tool_call>\"", out->n);
            break;
        }
        s = parse_call(j, (size_t)(close - j), out->n, &out->calls[out->n], err);
        if (s) break;
        out->n++;
        p = close + strlen(TC_CLOSE);
        while (p < end && is_space(*p)) p++;
    }
    if (s) chat_tool_calls_free(out);
    return s;
}

void chat_tool_calls_free(chat_tool_calls *t)
{
    if (!t) return;
    if (t->calls)
        for (size_t i = 0; i < t->n; i++) {
            free(t->calls[i].name);
            free(t->calls[i].arguments);
        }
    free(t->calls);
    free(t->content);
    memset(t, 0, sizeof *t);
}
