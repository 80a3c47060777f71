/* test_chat_parse.c: the reasoning/answer splitter and the tool-call parser.
 * Outputs are built from parts (newlines before <think>, raw reasoning, raw
 * answer) and cut into tokens at random; the streamed deltas must equal
 * chat_split_all and the parts stripped as docs/numerics.md §2.3 says, and the
 * stream may hold back nothing but reasoning newlines. Tool calls rendered by
 * chat_render must parse back to what was rendered. */
#include <stdint.h>
#include <stdlib.h>

#include "text/chat.h"
#include "text/chat_parse.h"
#include "util.h"

#define MAXTOK 512

typedef struct toks {
    int32_t ids[MAXTOK];
    char *texts[MAXTOK];
    size_t lens[MAXTOK];
    size_t n;
} toks;

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint32_t rnd(uint32_t n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11) % n;
}

static void push(toks *t, int32_t id, const char *s, size_t n)
{
    if (t->n == MAXTOK) return;
    t->ids[t->n] = id;
    t->texts[t->n] = malloc(n + 1);
    memcpy(t->texts[t->n], s, n);
    t->texts[t->n][n] = '\0';
    t->lens[t->n] = n;
    t->n++;
}

/* Cuts s into tokens of 0..5 bytes (ids 1000+, never a think id). */
static void push_split(toks *t, const char *s)
{
    size_t n = strlen(s), i = 0;
    while (i < n) {
        size_t k = rnd(6);
        if (k > n - i) k = n - i;
        push(t, 1000 + (int32_t)rnd(1000), s + i, k);
        i += k;
    }
}

static void toks_free(toks *t)
{
    for (size_t i = 0; i < t->n; i++) free(t->texts[i]);
    t->n = 0;
}

/* Random text over an alphabet heavy in newlines; é is a whole 2-byte token piece or split bytes. */
static void rand_text(char *out, size_t max)
{
    static const char *const al[] = {"a", "b", "\n", "\n\n", " ", "\xc3\xa9", "x y"};
    size_t n = rnd((uint32_t)max / 4), len = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        const char *p = al[rnd(7)];
        if (len + strlen(p) + 1 >= max) break;
        strcat(out, p);
        len += strlen(p);
    }
}

static void strip(char *s, int end)
{
    size_t a = 0, n = strlen(s);
    while (a < n && s[a] == '\n') a++;
    while (end && n > a && s[n - 1] == '\n') n--;
    memmove(s, s + a, n - a);
    s[n - a] = '\0';
}

/* Concatenation of the texts of tokens [a, b]. */
static void concat(const toks *t, size_t a, size_t b, char *out)
{
    out[0] = '\0';
    for (size_t k = a; k <= b && k < t->n; k++) strncat(out, t->texts[k], t->lens[k]);
}

/* Streams t through a splitter. Reasoning tokens are [r_from, r_end), answer
 * tokens start at c_from; at every step the stream must have emitted all it
 * was fed except leading newlines and, in the reasoning, trailing ones. */
static void stream(const toks *t, chat_split_mode mode, size_t r_from, size_t r_end, size_t c_from, char *rs, char *cs,
                   size_t *nrt, int *saw, int iter)
{
    chat_splitter sp;
    chat_splitter_init(&sp, mode, CHAT_THINK_START_ID, CHAT_THINK_END_ID);
    ms_error e = {0};
    chat_delta d;
    rs[0] = cs[0] = '\0';
    for (size_t i = 0; i < t->n; i++) {
        ms_status s = chat_splitter_feed(&sp, t->ids[i], t->texts[i], t->lens[i], &d, &e);
        CHECK(s == MS_OK, "feed: %s", e.message);
        CHECK(strlen(d.reasoning) == d.reasoning_len && strlen(d.content) == d.content_len, "delta lengths");
        strncat(rs, d.reasoning, d.reasoning_len);
        strncat(cs, d.content, d.content_len);
        char so_far[4096];
        if (i >= c_from) {
            concat(t, c_from, i, so_far);
            strip(so_far, 0);
            CHECK(strcmp(so_far, cs) == 0, "iter %d step %zu: content held back: want \"%s\" got \"%s\"", iter, i,
                  so_far, cs);
        } else if (i >= r_from && i < r_end) {
            concat(t, r_from, i, so_far);
            strip(so_far, 1);
            CHECK(strcmp(so_far, rs) == 0, "iter %d step %zu: reasoning held back: want \"%s\" got \"%s\"", iter, i,
                  so_far, rs);
        }
    }
    CHECK(chat_splitter_flush(&sp, &d, &e) == MS_OK && d.reasoning_len == 0 && d.content_len == 0, "flush");
    CHECK(chat_splitter_feed(&sp, 5, "x", 1, &d, &e) != MS_OK, "feed after flush accepted");
    *nrt = sp.n_reasoning_tokens;
    *saw = sp.saw_reasoning;
    chat_splitter_free(&sp);
}

static void t_split_random(void)
{
    int iters = getenv("MEDSERVE_SANITIZED") ? 800 : 4000;
    for (int it = 0; it < iters; it++) {
        char pre[64], r[400], c[400];
        rand_text(pre, sizeof pre);
        rand_text(r, sizeof r);
        rand_text(c, sizeof c);
        int variant = (int)rnd(6);
        chat_split_mode mode = variant <= 2   ? CHAT_SPLIT_PLAIN
                               : variant <= 4 ? CHAT_SPLIT_IN_THINK
                                              : CHAT_SPLIT_NO_THINK;
        int think = variant == 0 || variant == 1 || variant == 3 || variant == 4;
        int closed = variant == 0 || variant == 3;
        toks t = {0};
        size_t want_rt = 0, r_from = 0, r_end = 0, c_from = SIZE_MAX;
        char want_r[400], want_c[1200];
        if (mode == CHAT_SPLIT_PLAIN && think) {
            for (size_t k = rnd(3); k-- > 0;) push(&t, 1000, "\n", 1); /* newline tokens before <think> */
            push(&t, CHAT_THINK_START_ID, "<think>", 7);
            want_rt = 1;
        }
        if (think) {
            size_t before = t.n;
            r_from = before;
            push_split(&t, r);
            r_end = t.n;
            want_rt += t.n - before;
            strcpy(want_r, r);
            strip(want_r, 1);
            if (closed) {
                push(&t, CHAT_THINK_END_ID, "</think>", 8);
                want_rt++;
            }
        } else {
            want_r[0] = '\0';
        }
        want_c[0] = '\0';
        if (!think || closed) {
            c_from = t.n;
            if (!think && mode == CHAT_SPLIT_PLAIN) strcat(want_c, pre); /* newline-led answer without <think> */
            if (!think && mode == CHAT_SPLIT_PLAIN) push_split(&t, pre);
            push_split(&t, c);
            strcat(want_c, c);
            if (rnd(4) == 0) { /* a stray think tag inside the answer is answer text */
                push(&t, CHAT_THINK_END_ID, "</think>", 8);
                strcat(want_c, "</think>");
                push_split(&t, "z\n");
                strcat(want_c, "z\n");
            }
            strip(want_c, 0);
        }
        char rs[4096], cs[4096];
        size_t nrt = 0;
        int saw = 0;
        stream(&t, mode, r_from, r_end, c_from, rs, cs, &nrt, &saw, it);
        chat_split_result one;
        ms_error e = {0};
        CHECK(chat_split_all(t.ids, (const char *const *)t.texts, t.lens, t.n, mode, CHAT_THINK_START_ID,
                             CHAT_THINK_END_ID, &one, &e) == MS_OK,
              "%s", e.message);
        CHECK(strcmp(rs, want_r) == 0, "iter %d: streamed reasoning \"%s\" want \"%s\"", it, rs, want_r);
        CHECK(strcmp(cs, want_c) == 0, "iter %d: streamed content \"%s\" want \"%s\"", it, cs, want_c);
        CHECK(one.reasoning && strcmp(one.reasoning, rs) == 0, "iter %d: one-shot reasoning differs", it);
        CHECK(one.content && strcmp(one.content, cs) == 0, "iter %d: one-shot content differs", it);
        CHECK(nrt == want_rt && one.n_reasoning_tokens == want_rt, "iter %d: reasoning tokens %zu/%zu want %zu", it,
              nrt, one.n_reasoning_tokens, want_rt);
        CHECK(saw == think && one.saw_reasoning == think, "iter %d: saw_reasoning", it);
        chat_split_result_free(&one);
        toks_free(&t);
    }
}

static void t_mode_for_prompt(void)
{
    chat_msg m = {.role = "user", .content = "hi"};
    const int et[3] = {-1, 1, 0};
    const chat_split_mode want[3] = {CHAT_SPLIT_PLAIN, CHAT_SPLIT_PLAIN, CHAT_SPLIT_NO_THINK};
    for (int i = 0; i < 3; i++) {
        chat_out o;
        ms_error e = {0};
        CHECK(chat_render(&m, 1, NULL, 1, et[i], &o, &e) == MS_OK, "%s", e.message);
        CHECK(chat_split_mode_for_prompt(o.text, o.len) == want[i], "enable_thinking %d: wrong mode", et[i]);
        chat_out_free(&o);
    }
    const char *p = "<|im_start|>assistant\n<think>\n";
    CHECK(chat_split_mode_for_prompt(p, strlen(p)) == CHAT_SPLIT_IN_THINK, "open think");
    CHECK(chat_split_mode_for_prompt(NULL, 0) == CHAT_SPLIT_PLAIN, "NULL");
}

/* Renders an assistant turn with tool calls and returns the generated part
 * (after "<|im_start|>assistant\n" and the think block, before <|im_end|>). */
static char *model_text(const char *content, const char *calls_json)
{
    chat_msg m[2] = {{.role = "user", .content = "q"},
                     {.role = "assistant", .content = content, .tool_calls_json = calls_json}};
    chat_out o;
    ms_error e = {0};
    if (chat_render(m, 2, NULL, 0, -1, &o, &e) != MS_OK) return NULL;
    const char *start = strstr(o.text, "</think>\n\n");
    const char *end = o.text + o.len - strlen("<|im_end|>\n");
    char *r = NULL;
    if (start && end && end > start) r = strndup(start + 10, (size_t)(end - start - 10));
    chat_out_free(&o);
    return r;
}

static void t_tool_calls(void)
{
    static const struct {
        const char *content, *calls;
    } cases[] = {
        {"Let me check.",
         "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Bern\"}}}]"},
        {"",
         "[{\"name\":\"a\",\"arguments\":{}},{\"name\":\"b\",\"arguments\":{\"x\":[1,2.50,{\"y\":null}],\"s\":\"\\\"q\\\"\\n\"}}]"},
        {"多行\n内容", "[{\"name\":\"检索\",\"arguments\":{\"id\":\"AB123456\",\"n\":1e2}}]"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *text = model_text(cases[i].content, cases[i].calls);
        CHECK(text != NULL, "case %zu: render failed", i);
        if (!text) continue;
        chat_tool_calls tc;
        ms_error e = {0};
        CHECK(chat_parse_tool_calls(text, strlen(text), &tc, &e) == MS_OK, "case %zu: %s\n%s", i, e.message, text);
        CHECK(tc.content && strcmp(tc.content, cases[i].content) == 0, "case %zu: content \"%s\"", i, tc.content);
        /* Feeding the parsed calls back (arguments as strings) must render the same text. */
        cJSON *arr = cJSON_CreateArray();
        for (size_t k = 0; k < tc.n; k++) {
            cJSON *c = cJSON_CreateObject();
            cJSON_AddStringToObject(c, "name", tc.calls[k].name);
            cJSON_AddStringToObject(c, "arguments", tc.calls[k].arguments);
            cJSON_AddItemToArray(arr, c);
        }
        char *back_json = cJSON_PrintUnformatted(arr);
        char *back = model_text(tc.content, back_json);
        CHECK(back && strcmp(back, text) == 0, "case %zu: round trip differs:\n%s\n--\n%s", i, text, back);
        free(back);
        free(back_json);
        cJSON_Delete(arr);
        chat_tool_calls_free(&tc);
        free(text);
    }
    chat_tool_calls tc;
    ms_error e = {0};
    CHECK(chat_parse_tool_calls("plain answer", 12, &tc, &e) == MS_OK && tc.n == 0 &&
              !strcmp(tc.content, "plain answer"),
          "no tool call");
    chat_tool_calls_free(&tc);
    static const char *const bad[] = {
        "x\n<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call>\ntrailing text",
        "<tool_call>\n{\"name\": \"f\", \"arguments\": {}}",
        "<tool_call>{\"name\": \"f\", \"arguments\": {}}\n</tool_call>",
        "<tool_call>\n{\"name\": \"f\", \"arguments\": \"{}\"}\n</tool_call>",
        "<tool_call>\n{\"name\": \"\", \"arguments\": {}}\n</tool_call>",
        "<tool_call>\n{\"name\": \"f\", \"arguments\": {}, \"id\": 1}\n</tool_call>",
        "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 01}}\n</tool_call>",
        "<tool_call>\n{\"name\": \"f\", \"name\": \"g\"}\n</tool_call>",
        "<tool_call>\n[1]\n</tool_call>",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ms_error be = {0};
        CHECK(chat_parse_tool_calls(bad[i], strlen(bad[i]), &tc, &be) == MS_ERR_FORMAT && tc.calls == NULL &&
                  be.message[0],
              "bad case %zu accepted", i);
        chat_tool_calls_free(&tc);
    }
    static const char block[] = "<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call>\n";
    char many[(CHAT_MAX_TOOL_CALLS + 1) * sizeof block] = "";
    for (int i = 0; i <= CHAT_MAX_TOOL_CALLS; i++) strcat(many, block);
    CHECK(chat_parse_tool_calls(many, strlen(many), &tc, &e) == MS_ERR_FORMAT && strstr(e.message, "more than"),
          "%d calls accepted", CHAT_MAX_TOOL_CALLS + 1);
    many[strlen(many) - strlen(block)] = '\0'; /* drop the last block: exactly the limit */
    CHECK(chat_parse_tool_calls(many, strlen(many), &tc, &e) == MS_OK && tc.n == CHAT_MAX_TOOL_CALLS,
          "%d calls refused: %s", CHAT_MAX_TOOL_CALLS, e.message);
    chat_tool_calls_free(&tc);
    chat_tool_calls_free(NULL);
    chat_split_result_free(NULL);
    chat_splitter_free(NULL);
}

/* Regression (found by the chat_parse fuzz target): a run of 64 or more held
 * reasoning newlines must come out as newlines, not with a NUL in place of
 * every 64th. */
static void t_long_newline_run(void)
{
    chat_splitter sp;
    chat_splitter_init(&sp, CHAT_SPLIT_IN_THINK, CHAT_THINK_START_ID, CHAT_THINK_END_ID);
    char want[200], got[256];
    size_t n = 0, wn = 0;
    want[wn++] = 'x';
    for (int i = 0; i < 130; i++) want[wn++] = '\n';
    want[wn++] = 'y';
    ms_error e = {0};
    chat_delta d;
    const char *pieces[] = {"x", NULL, "y"};
    for (int p = 0; p < 3; p++) {
        int reps = pieces[p] ? 1 : 130;
        for (int r = 0; r < reps; r++) {
            const char *t = pieces[p] ? pieces[p] : "\n";
            CHECK(chat_splitter_feed(&sp, 100 + p, t, 1, &d, &e) == MS_OK, "%s", e.message);
            CHECK(d.content_len == 0, "content before </think>");
            if (d.reasoning_len && n + d.reasoning_len <= sizeof got) {
                memcpy(got + n, d.reasoning, d.reasoning_len);
                n += d.reasoning_len;
            }
        }
    }
    CHECK(chat_splitter_feed(&sp, CHAT_THINK_END_ID, "</think>", 8, &d, &e) == MS_OK, "%s", e.message);
    CHECK(chat_splitter_flush(&sp, &d, &e) == MS_OK, "%s", e.message);
    CHECK(n == wn && memcmp(got, want, wn) == 0, "reasoning differs: got %zu bytes, want %zu", n, wn);
    chat_splitter_free(&sp);
}

int main(int argc, char **argv)
{
    static const test_case cases[] = {
        {"chat_split_random", t_split_random},
        {"chat_split_mode_for_prompt", t_mode_for_prompt},
        {"chat_tool_calls", t_tool_calls},
        {"chat_long_newline_run", t_long_newline_run},
    };
    return test_main(argc, argv, cases, sizeof cases / sizeof *cases);
}
