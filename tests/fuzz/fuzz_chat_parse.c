/* fuzz_chat_parse.c: libFuzzer target for reading model output (chat_parse.c):
 * chat_parse_tool_calls on the input text, and the think splitter. The text
 * is cut into pseudo-tokens ("<think>" and "</think>" become the think ids;
 * other text is cut after each '\n' and every 3 bytes otherwise); the first
 * byte picks the split mode. Checks the streaming splitter's output equals
 * chat_split_all's (the documented definition) and that parsed tool calls
 * have a non-empty name and JSON-object arguments. chat_split_result holds
 * NUL-terminated strings without lengths, so texts with a NUL byte are not
 * compared (only run). FUZZ_DEBUG=1 prints both results before comparing. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "text/chat_json.h"
#include "text/chat_parse.h"

/* Appends n bytes to a growing buffer; aborts when out of memory. */
static void cat(strbuf *b, const char *s, size_t n)
{
    ms_error err;
    if (n && sb_add(b, s, n, &err) != MS_OK) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    chat_split_mode mode = (chat_split_mode)(data[0] % 3);
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    ms_error err;

    chat_tool_calls tc = {0};
    if (chat_parse_tool_calls(text, len, &tc, &err) == MS_OK) {
        if (!tc.content) abort();
        for (size_t i = 0; i < tc.n; i++) {
            if (!tc.calls[i].name || !tc.calls[i].name[0] || !tc.calls[i].arguments) abort();
            cJSON *a = chat_json_parse(tc.calls[i].arguments, strlen(tc.calls[i].arguments), "args", &err);
            if (!a || !cJSON_IsObject(a)) abort();
            cJSON_Delete(a);
        }
    }
    chat_tool_calls_free(&tc);

    size_t cap = len + 1, n = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    const char **texts = malloc(cap * sizeof *texts);
    size_t *lens = malloc(cap * sizeof *lens);
    if (!ids || !texts || !lens) abort();
    for (size_t i = 0; i < len;) {
        size_t k;
        int32_t id = 42;
        if (len - i >= 7 && !memcmp(text + i, "<think>", 7)) {
            k = 7;
            id = CHAT_THINK_START_ID;
        } else if (len - i >= 8 && !memcmp(text + i, "</think>", 8)) {
            k = 8;
            id = CHAT_THINK_END_ID;
        } else {
            k = 0;
            while (i + k < len && k < 3 && text[i + k] != '<') {
                k++;
                if (text[i + k - 1] == '\n') break;
            }
            if (!k) k = 1;
        }
        ids[n] = id;
        texts[n] = text + i;
        lens[n] = k;
        n++;
        i += k;
    }
    chat_split_result all = {0};
    if (chat_split_all(ids, texts, lens, n, mode, CHAT_THINK_START_ID, CHAT_THINK_END_ID, &all, &err) == MS_OK &&
        !memchr(text, 0, len)) {
        chat_splitter sp;
        strbuf r = {0}, c = {0};
        chat_delta d;
        chat_splitter_init(&sp, mode, CHAT_THINK_START_ID, CHAT_THINK_END_ID);
        for (size_t i = 0; i < n; i++) {
            if (chat_splitter_feed(&sp, ids[i], texts[i], lens[i], &d, &err) != MS_OK) abort();
            cat(&r, d.reasoning, d.reasoning_len);
            cat(&c, d.content, d.content_len);
        }
        if (chat_splitter_flush(&sp, &d, &err) != MS_OK) abort();
        cat(&r, d.reasoning, d.reasoning_len);
        cat(&c, d.content, d.content_len);
        if (getenv("FUZZ_DEBUG"))
            fprintf(stderr, "stream r=[%.*s] c=[%.*s] n=%zu saw=%d\nall    r=[%s] c=[%s] n=%zu saw=%d\n", (int)r.n,
                    r.p ? r.p : "", (int)c.n, c.p ? c.p : "", sp.n_reasoning_tokens, sp.saw_reasoning, all.reasoning,
                    all.content, all.n_reasoning_tokens, all.saw_reasoning);
        if (r.n != strlen(all.reasoning) || (r.n && memcmp(r.p, all.reasoning, r.n))) abort();
        if (c.n != strlen(all.content) || (c.n && memcmp(c.p, all.content, c.n))) abort();
        if (sp.n_reasoning_tokens != all.n_reasoning_tokens || sp.saw_reasoning != all.saw_reasoning) abort();
        chat_splitter_free(&sp);
        sb_free(&r);
        sb_free(&c);
    }
    chat_split_result_free(&all);
    free(ids);
    free(texts);
    free(lens);
    return 0;
}
