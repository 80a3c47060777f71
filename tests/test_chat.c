/* test_chat.c: the Qwen3 chat template renderer against transformers.
 * Every case of tests/data/chat-cases.jsonl (made by tests/ref/gen_chat_cases.py
 * with apply_chat_template) must render byte-identical, and every byte that
 * is not marked untrusted must be template text: each trusted run has to be a
 * concatenation of the string literals of the template itself (read from
 * tokenizer_config.json here) and role names. Also: the template detector,
 * JSON number handling, content parts and the refusals. */
#include <stdlib.h>

#include "base/json.h"
#include "text/chat.h"
#include "text/chat_json.h"
#include "util.h"

#define CASES "tests/data/chat-cases.jsonl"
#define TOKCFG "tests/data/qwen3-tokenizer/tokenizer_config.json"

typedef struct lits {
    char **s;
    size_t n;
} lits;

static void lits_add(lits *l, const char *p, size_t n)
{
    if (!n) return;
    l->s = realloc(l->s, (l->n + 1) * sizeof *l->s);
    l->s[l->n] = malloc(n + 1);
    memcpy(l->s[l->n], p, n);
    l->s[l->n][n] = '\0';
    l->n++;
}

static void lits_free(lits *l)
{
    for (size_t i = 0; i < l->n; i++) free(l->s[i]);
    free(l->s);
}

/* Every quoted literal of the Jinja template, unescaped, plus role names. */
static lits template_literals(const char *t)
{
    lits l = {0};
    for (const char *p = t; *p; p++) {
        if (*p != '\'' && *p != '"') continue;
        char q = *p, buf[1024];
        size_t n = 0;
        for (p++; *p && *p != q && n < sizeof buf; p++) {
            if (*p == '\\' && p[1]) {
                p++;
                buf[n++] = *p == 'n' ? '\n' : *p;
            } else buf[n++] = *p;
        }
        lits_add(&l, buf, n);
        if (!*p) break;
    }
    const char *roles[] = {"system", "user", "assistant"};
    for (int i = 0; i < 3; i++) lits_add(&l, roles[i], strlen(roles[i]));
    return l;
}

/* 1 if s[0..n) splits into literals (dynamic programming over end positions). */
static int made_of_literals(const char *s, size_t n, const lits *l)
{
    char *ok = calloc(n + 1, 1);
    ok[0] = 1;
    for (size_t i = 0; i < n; i++) {
        if (!ok[i]) continue;
        for (size_t k = 0; k < l->n; k++) {
            size_t m = strlen(l->s[k]);
            if (m <= n - i && memcmp(s + i, l->s[k], m) == 0) ok[i + m] = 1;
        }
    }
    int r = ok[n];
    free(ok);
    return r;
}

/* Checks the untrusted ranges of o: sorted, disjoint, in bounds, and trusted runs are template text. */
static void check_ranges(const chat_out *o, const lits *l, int line)
{
    size_t prev = 0;
    for (size_t i = 0; i < o->n_untrusted; i++) {
        size_t b = o->untrusted[2 * i], e = o->untrusted[2 * i + 1];
        CHECK(b >= prev && b < e && e <= o->len, "line %d: bad range %zu [%zu,%zu) len %zu", line, i, b, e, o->len);
        if (!(b >= prev && b < e && e <= o->len)) return;
        CHECK(made_of_literals(o->text + prev, b - prev, l),
              "line %d: trusted run [%zu,%zu) is not template text: %.*s", line, prev, b, (int)(b - prev),
              o->text + prev);
        prev = e;
    }
    CHECK(made_of_literals(o->text + prev, o->len - prev, l), "line %d: trusted tail is not template text", line);
}

/* Renders one fixture line; returns 1 when the text matched. */
static int run_case(const char *line, size_t len, int lineno, const lits *l)
{
    ms_error e = {0};
    cJSON *j = chat_json_parse(line, len, CASES, &e);
    CHECK(j != NULL, "line %d: %s", lineno, e.message);
    if (!j) return 0;
    const cJSON *text = json_get(j, "text"), *et = json_get(j, "enable_thinking");
    chat_conv c;
    ms_status s = chat_conv_from_json(json_get(j, "messages"), json_get(j, "tools"), &c, CASES, &e);
    CHECK(s == MS_OK, "line %d: %s", lineno, e.message);
    chat_out o = {0};
    if (!s) {
        s = chat_render(c.msgs, c.n, c.tools_json, cJSON_IsTrue(json_get(j, "add_generation_prompt")),
                        et ? cJSON_IsTrue(et) : -1, &o, &e);
        CHECK(s == MS_OK, "line %d: render: %s", lineno, e.message);
    }
    int same = 0;
    if (!s) {
        size_t n = strlen(text->valuestring);
        same = o.len == n && memcmp(o.text, text->valuestring, n) == 0;
        if (!same) {
            size_t k = 0;
            while (k < n && k < o.len && o.text[k] == text->valuestring[k]) k++;
            CHECK(same, "line %d: differs at byte %zu:\n  want ...%.60s\n  got  ...%.60s", lineno, k,
                  text->valuestring + (k > 20 ? k - 20 : 0), o.text + (k > 20 ? k - 20 : 0));
        }
        check_ranges(&o, l, lineno);
    }
    chat_out_free(&o);
    chat_conv_free(&c);
    cJSON_Delete(j);
    return same;
}

static char *read_template(void)
{
    ms_error e = {0};
    cJSON *cfg = json_load_file(TOKCFG, 1 << 20, &e);
    CHECK(cfg != NULL, "%s", e.message);
    const cJSON *t = json_get(cfg, "chat_template");
    char *s = cJSON_IsString(t) ? strdup(t->valuestring) : NULL;
    cJSON_Delete(cfg);
    return s;
}

static void t_fixtures(void)
{
    char *tmpl = read_template();
    REQUIRE(tmpl != NULL, "no chat_template in %s", TOKCFG);
    lits l = template_literals(tmpl);
    char *buf;
    size_t len;
    ms_error e = {0};
    CHECK(file_read_all(CASES, 16 << 20, &buf, &len, &e) == MS_OK, "%s", e.message);
    int n = 0, same = 0, lineno = 0;
    for (char *p = buf; buf && p < buf + len;) {
        char *nl = memchr(p, '\n', (size_t)(buf + len - p));
        size_t k = nl ? (size_t)(nl - p) : (size_t)(buf + len - p);
        lineno++;
        if (k) {
            n++;
            same += run_case(p, k, lineno, &l);
        }
        p += k + 1;
    }
    printf("  chat fixtures: %d/%d byte-identical\n", same, n);
    CHECK(n >= 80, "only %d fixture cases", n);
    CHECK(same == n, "%d of %d cases differ", n - same, n);
    free(buf);
    lits_free(&l);
    free(tmpl);
}

static void t_detect(void)
{
    char *tmpl = read_template();
    if (!tmpl) return;
    CHECK(chat_template_is_qwen3(tmpl) == 1, "the Qwen3 template is not recognised");
    size_t n = strlen(tmpl);
    char *nl = malloc(n + 3);
    memcpy(nl, tmpl, n);
    memcpy(nl + n, "\n\n", 3);
    CHECK(chat_template_is_qwen3(nl) == 1, "a trailing newline (chat_template.jinja) must not matter");
    nl[n / 2] ^= 1;
    CHECK(chat_template_is_qwen3(nl) == 0, "a one-bit change must not be recognised");
    nl[n / 2] ^= 1;
    nl[0] = ' ';
    CHECK(chat_template_is_qwen3(nl) == 0, "a changed first byte must not be recognised");
    CHECK(chat_template_is_qwen3(NULL) == 0 && chat_template_is_qwen3("") == 0, "NULL/empty");
    free(nl);
    free(tmpl);
}

/* Renders a JSON request text; returns the text (malloc'd) or NULL with e set. */
static char *render_json(const char *req, ms_error *e)
{
    cJSON *j = chat_json_parse(req, strlen(req), "req", e);
    if (!j) return NULL;
    chat_conv c;
    char *r = NULL;
    if (chat_conv_from_json(json_get(j, "messages"), json_get(j, "tools"), &c, "req", e) == MS_OK) {
        chat_out o;
        if (chat_render(c.msgs, c.n, c.tools_json, 1, -1, &o, e) == MS_OK) r = strdup(o.text);
        chat_out_free(&o);
        chat_conv_free(&c);
    }
    cJSON_Delete(j);
    return r;
}

static void t_parts_and_errors(void)
{
    ms_error e = {0};
    char *a = render_json("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},"
                          "{\"type\":\"text\",\"text\":\"b\"}]}]}",
                          &e);
    char *b = render_json("{\"messages\":[{\"role\":\"user\",\"content\":\"a\\nb\"}]}", &e);
    CHECK(a && b && strcmp(a, b) == 0, "text parts must join with a newline: %s", a ? a : e.message);
    free(a);
    free(b);
    static const struct {
        const char *req, *msg;
    } bad[] = {
        {"{\"messages\":[]}", "at least one"},
        {"{\"messages\":[{\"content\":\"x\"}]}", "role"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":5}]}", "content"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{}}]}]}", "parts"},
        {"{\"messages\":[{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"function\":{\"arguments\":{}}}]}]}",
         "name"},
        {"{\"messages\":[{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"name\":\"f\"}]}]}", "arguments"},
        {"{\"messages\":[{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":{}}]}", "tool_calls"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":{}}", "tools"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[\"f\"]}", "tools[0]"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"reasoning_content\":1}]}", "reasoning_content"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"a\":01}]}", "number"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"a\":-.5}]}", "number"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"a\":1.}]}", "number"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"role\":\"system\"}]}", "duplicate"},
        {"{\"messages\":[\"user\"]}", "messages[0] must be an object"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ms_error be = {0};
        char *r = render_json(bad[i].req, &be);
        CHECK(r == NULL && strstr(be.message, bad[i].msg), "case %zu accepted or wrong message: %s", i,
              r ? r : be.message);
        free(r);
    }
    chat_out o;
    chat_msg m = {.role = "user", .content = "x"};
    CHECK(chat_render(&m, 1, NULL, 1, 2, &o, &e) != MS_OK, "enable_thinking 2 accepted");
    CHECK(chat_render(&m, 1, "[1", 1, -1, &o, &e) != MS_OK, "broken tools JSON accepted");
    CHECK(chat_render(&m, 1, "{}", 1, -1, &o, &e) != MS_OK && strstr(e.message, "tools"), "tools object accepted");
    CHECK(chat_render(&m, 1, "null", 1, -1, &o, &e) == MS_OK && !strstr(o.text, "# Tools"), "tools null: %s",
          e.message);
    chat_out_free(&o);
    static const char *const bad_calls[] = {"{}", "[1]", "[{\"function\":\"f\",\"name\":\"f\",\"arguments\":{}}]"};
    for (size_t i = 0; i < 3; i++) {
        chat_msg am[2] = {{.role = "user", .content = "q"}, {.role = "assistant", .tool_calls_json = bad_calls[i]}};
        CHECK(chat_render(am, 2, NULL, 0, -1, &o, &e) == MS_ERR_INVALID && strstr(e.message, "tool_calls"),
              "bad tool_calls %zu accepted: %s", i, e.message);
    }
    chat_out_free(NULL);
    chat_conv_free(NULL);
}

static void t_json_numbers(void)
{
    /* out = python3 -c 'import json; print(json.dumps(json.loads(IN), ensure_ascii=False))' */
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"[1, 1.0, -0, -0.0, 1E2, 1e-5, 1e16, 1e15, 0.1, 12345678901234567890123]",
         "[1, 1.0, 0, -0.0, 100.0, 1e-05, 1e+16, 1000000000000000.0, 0.1, 12345678901234567890123]"},
        {"{\"b\":[],\"a\":{},\"c\":\"\\u00e9\\n\\u0001\\u007f\\\"\\/\"}",
         "{\"b\": [], \"a\": {}, \"c\": \"\xc3\xa9\\n\\u0001\x7f\\\"/\"}"},
        {"[5e-324, 1e400, -1e400, 2.5e-07, 123.456, true, false, null]",
         "[5e-324, Infinity, -Infinity, 2.5e-07, 123.456, true, false, null]"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        ms_error e = {0};
        cJSON *j = chat_json_parse(cases[i].in, strlen(cases[i].in), "n", &e);
        CHECK(j != NULL, "%s", e.message);
        strbuf b = {0};
        CHECK(j && chat_json_dump(j, &b, &e) == MS_OK && strcmp(b.p, cases[i].out) == 0, "case %zu: got %s", i,
              b.p ? b.p : e.message);
        sb_free(&b);
        cJSON_Delete(j);
    }
    /* Numbers built in code (no literal) fall back to the double. */
    cJSON *arr = cJSON_CreateArray();
    cJSON_AddItemToArray(arr, cJSON_CreateNumber(3));
    cJSON_AddItemToArray(arr, cJSON_CreateNumber(0.5));
    strbuf b = {0};
    ms_error e = {0};
    CHECK(chat_json_dump(arr, &b, &e) == MS_OK && strcmp(b.p, "[3, 0.5]") == 0, "built numbers: %s", b.p);
    sb_free(&b);
    cJSON_Delete(arr);
}

int main(int argc, char **argv)
{
    static const test_case cases[] = {
        {"chat_fixtures", t_fixtures},
        {"chat_detect_template", t_detect},
        {"chat_parts_and_errors", t_parts_and_errors},
        {"chat_json_numbers", t_json_numbers},
    };
    return test_main(argc, argv, cases, sizeof cases / sizeof *cases);
}
