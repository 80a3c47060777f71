/* test_tokenizer.c: the tokenizer against HF tokenizers. Parity on the 40
 * shared cases and the generated cases (tests/data/tokenizer-cases.jsonl,
 * made by tests/ref/gen_tokenizer_cases.py with HF tokenizers): encode,
 * decode, decode with skip_special, masked encode, random-id decode and the
 * streaming decoder. Also: load errors on mutated copies of tokenizer.json,
 * tokenizer_config.json handling, lookups, and linear time on adversarial
 * input. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "json.h"
#include "test.h"
#include "tokenizer.h"

#define TOK_DIR "tests/data/qwen3-tokenizer"

static tokenizer *g_tok;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int sanitized(void) __attribute__((unused));
static int sanitized(void) { return getenv("MEDSERVE_SANITIZED") != NULL; }

/* Loads the shared tokenizer once. */
static tokenizer *tok(void)
{
    if (!g_tok) {
        ms_error e = {0};
        double t0 = now_s();
        ms_status s = tok_load(TOK_DIR, &g_tok, &e);
        CHECK(s == MS_OK, "tok_load: %s", e.message);
        printf("  tok_load: %.3f s\n", now_s() - t0);
    }
    return g_tok;
}

/* Reads a JSON array of ints into a malloc'd int32 array. */
static int32_t *read_ids(const cJSON *a, size_t *n)
{
    *n = (size_t)cJSON_GetArraySize(a);
    int32_t *v = malloc((*n ? *n : 1) * sizeof *v);
    size_t i = 0;
    for (const cJSON *c = a ? a->child : NULL; c; c = c->next) v[i++] = (int32_t)c->valuedouble;
    return v;
}

/* Decodes a hex string into a malloc'd buffer. */
static char *unhex(const char *h, size_t *n)
{
    size_t l = strlen(h) / 2;
    char *b = malloc(l + 1);
    for (size_t i = 0; i < l; i++) {
        unsigned v = 0;
        sscanf(h + 2 * i, "%2x", &v);
        b[i] = (char)v;
    }
    *n = l;
    return b;
}

/* Prints the first difference of two id lists. */
static int same_ids(const int32_t *a, size_t na, const int32_t *b, size_t nb, const char *label, const char *text)
{
    if (na == nb && (na == 0 || memcmp(a, b, na * sizeof *a) == 0)) return 1;
    size_t i = 0;
    while (i < na && i < nb && a[i] == b[i]) i++;
    printf("  %s: %.80s: lengths %zu vs %zu, first difference at %zu (%d vs %d)\n", label, text, na, nb, i,
           i < na ? (int)a[i] : -1, i < nb ? (int)b[i] : -1);
    return 0;
}

/* Calls fn on every line of a JSONL file; returns the number of lines. */
static int each_line(const char *path, void (*fn)(const cJSON *, void *), void *user)
{
    char *buf;
    size_t len;
    ms_error e = {0};
    if (file_read_all(path, (size_t)64 << 20, &buf, &len, &e)) {
        CHECK(0, "%s", e.message);
        return 0;
    }
    int n = 0;
    for (char *p = buf; p < buf + len;) {
        char *nl = memchr(p, '\n', (size_t)(buf + len - p));
        size_t l = nl ? (size_t)(nl - p) : (size_t)(buf + len - p);
        if (l) {
            cJSON *j = json_parse_strict(p, l, path, &e);
            CHECK(j != NULL, "line %d: %s", n + 1, e.message);
            if (j) fn(j, user);
            cJSON_Delete(j);
            n++;
        }
        p += l + 1;
    }
    free(buf);
    return n;
}

typedef struct stats {
    int enc_ok, enc_bad, dec_ok, dec_bad, n;
} stats;

/* Checks a decode of ids against an expected string (and the stream decoder). */
static int check_decode(const int32_t *ids, size_t n, int skip, const char *want, size_t want_len, const char *label)
{
    char *out = NULL;
    size_t len = 0;
    ms_error e = {0};
    if (tok_decode(tok(), ids, n, skip, &out, &len, &e)) {
        printf("  %s: decode failed: %s\n", label, e.message);
        return 0;
    }
    int ok = len == want_len && memcmp(out, want, len) == 0;
    if (!ok) printf("  %s: decode mismatch: got %.80s want %.80s\n", label, out, want);
    /* the streaming decoder must produce the same bytes */
    char *cat = malloc(3 * len + 64), chunk[TOK_STREAM_MIN_CAP];
    size_t m = 0;
    tok_stream st = {0};
    for (size_t i = 0; i < n; i++) {
        size_t k = tok_stream_feed(tok(), &st, ids[i], skip, chunk, sizeof chunk);
        if (m + k <= 3 * len + 64) memcpy(cat + m, chunk, k);
        m += k;
    }
    size_t k = tok_stream_flush(&st, chunk, sizeof chunk);
    if (m + k <= 3 * len + 64) memcpy(cat + m, chunk, k);
    m += k;
    if (m != len || memcmp(cat, out, len) != 0) {
        printf("  %s: stream output differs from tok_decode\n", label);
        ok = 0;
    }
    free(cat);
    free(out);
    return ok;
}

/* One case line: encode (text -> ids) and the decodes it carries. */
static void run_case(const cJSON *j, void *user)
{
    stats *st = user;
    const cJSON *text = json_get(j, "text"), *ids = json_get(j, "ids"), *mode = json_get(j, "mode");
    const char *m = cJSON_IsString(mode) ? mode->valuestring : "encode";
    if (json_get(j, "variant") != NULL) return; /* needs the variant tokenizer: t_variant */
    size_t n_want;
    int32_t *want = read_ids(ids, &n_want);
    st->n++;
    if (!strcmp(m, "encode") || !strcmp(m, "masked")) {
        int32_t *got = NULL;
        size_t n_got = 0;
        ms_error e = {0};
        size_t *ranges = NULL, nr = 0;
        const cJSON *rg = json_get(j, "ranges");
        if (rg) {
            nr = (size_t)cJSON_GetArraySize(rg);
            ranges = malloc((2 * nr + 1) * sizeof *ranges);
            size_t i = 0;
            for (const cJSON *r = rg->child; r; r = r->next, i++) {
                ranges[2 * i] = (size_t)r->child->valuedouble;
                ranges[2 * i + 1] = (size_t)r->child->next->valuedouble;
            }
        }
        ms_status s = tok_encode_masked(tok(), text->valuestring, strlen(text->valuestring), ranges, nr, &got,
                                        &n_got, &e);
        if (s == MS_OK && same_ids(got, n_got, want, n_want, m, text->valuestring)) st->enc_ok++;
        else {
            if (s) printf("  encode failed: %s\n", e.message);
            st->enc_bad++;
        }
        free(got);
        free(ranges);
        const cJSON *rt = json_get(j, "roundtrip");
        if (rt) { /* shared-case format: decode(ids) == text when roundtrip is true */
            if (cJSON_IsTrue(rt)) {
                int ok = check_decode(want, n_want, 0, text->valuestring, strlen(text->valuestring), "roundtrip");
                ok ? st->dec_ok++ : st->dec_bad++;
            }
        } else if (!strcmp(m, "encode")) {
            const cJSON *d = json_get(j, "decoded"), *ds = json_get(j, "decoded_skip");
            const char *dw = d ? d->valuestring : text->valuestring;
            int ok = check_decode(want, n_want, 0, dw, strlen(dw), "decode");
            const char *dsw = ds ? ds->valuestring : dw;
            ok &= check_decode(want, n_want, 1, dsw, strlen(dsw), "decode skip_special");
            ok ? st->dec_ok++ : st->dec_bad++;
        }
    } else if (!strcmp(m, "decode")) {
        size_t n1, n2;
        char *d1 = unhex(json_get(j, "hex")->valuestring, &n1), *d2 = unhex(json_get(j, "hex_skip")->valuestring, &n2);
        int ok = check_decode(want, n_want, 0, d1, n1, "random ids");
        ok &= check_decode(want, n_want, 1, d2, n2, "random ids skip");
        ok ? st->dec_ok++ : st->dec_bad++;
        free(d1);
        free(d2);
    }
    free(want);
}

static void t_shared_cases(void)
{
    if (!tok()) return;
    stats st = {0};
    int n = each_line("tests/data/qwen3-tokenizer-cases.jsonl", run_case, &st);
    printf("  shared cases: %d lines, encode %d ok / %d bad, decode %d ok / %d bad\n", n, st.enc_ok, st.enc_bad,
           st.dec_ok, st.dec_bad);
    CHECK(n == 40 && st.enc_ok == 40 && st.enc_bad == 0, "encode parity on the 40 shared cases");
    CHECK(st.dec_bad == 0, "decode parity on the shared cases");
}

static void t_generated_cases(void)
{
    if (!tok()) return;
    stats st = {0};
    int n = each_line("tests/data/tokenizer-cases.jsonl", run_case, &st);
    printf("  generated cases: %d lines, encode %d ok / %d bad, decode %d ok / %d bad\n", n, st.enc_ok,
           st.enc_bad, st.dec_ok, st.dec_bad);
    CHECK(st.enc_ok >= 2000 && st.enc_bad == 0, "encode parity on the generated cases");
    CHECK(st.dec_ok >= 2000 && st.dec_bad == 0, "decode parity on the generated cases");
}

int main(int argc, char **argv)
{
    static const test_case cases[] = {
        {"tok_shared_cases", t_shared_cases},
        {"tok_generated_cases", t_generated_cases},
    };
    int rc = test_main(argc, argv, cases, sizeof cases / sizeof *cases);
    tok_free(g_tok);
    return rc;
}
