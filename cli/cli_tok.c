/* cli_tok.c: `medserve tokenize DIR` and `medserve detokenize DIR`.
 *
 * Only the tokenizer files of DIR are loaded (tok_load). JSON lines on
 * stdin, one JSON line out per input line, flushed as it is written:
 *   tokenize:   {"text": "...", "special": true}  -> {"ids": [...], "n": N}
 *               special false encodes the whole text as untrusted: added-token
 *               strings in it become plain text, never control tokens.
 *   detokenize: {"ids": [...], "skip_special": false} -> {"text": "..."}
 * A bad line gets {"error": "..."} and processing goes on; the exit status
 * is then 2. Exit 0 when every line was fine, 1 for a runtime failure, 2 for
 * bad usage, bad tokenizer files or bad lines. Nothing else happens here. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/json.h"
#include "cli.h"
#include "text/tokenizer.h"

#define CLI_TOK_MAX_LINE ((size_t)64 << 20) /* bytes of one input line */

typedef enum { MODE_TOKENIZE, MODE_DETOKENIZE } tok_mode;

/* Prints the usage of one subcommand. */
static void usage(FILE *f, tok_mode m)
{
    if (m == MODE_TOKENIZE)
        fprintf(f, "usage: medserve tokenize DIR\n"
                   "Reads JSON lines {\"text\": \"...\", \"special\": true} on stdin and writes\n"
                   "{\"ids\": [...], \"n\": N} per line. \"special\": false treats the text as\n"
                   "untrusted: added-token strings in it are encoded as plain text.\n"
                   "Only DIR/tokenizer.json (and tokenizer_config.json) are read.\n"
                   "A bad line gets {\"error\": \"...\"}; the exit status is then 2.\n");
    else
        fprintf(f, "usage: medserve detokenize DIR\n"
                   "Reads JSON lines {\"ids\": [...], \"skip_special\": false} on stdin and writes\n"
                   "{\"text\": \"...\"} per line (invalid UTF-8 becomes U+FFFD).\n"
                   "A bad line gets {\"error\": \"...\"}; the exit status is then 2.\n");
}

/* Writes s[0..n) as a JSON string; bytes >= 0x80 are copied when ascii_only is 0, else '?'. */
static void put_json_string(FILE *f, const char *s, size_t n, int ascii_only)
{
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c == '\n') fputs("\\n", f);
        else if (c == '\r') fputs("\\r", f);
        else if (c == '\t') fputs("\\t", f);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else if (c >= 0x80 && ascii_only) fputc('?', f);
        else fputc(c, f);
    }
    fputc('"', f);
}

/* Writes one {"error": ...} line. */
static void put_error(const char *msg)
{
    fputs("{\"error\":", stdout);
    put_json_string(stdout, msg, strlen(msg), 1);
    fputs("}\n", stdout);
}

/* Reads one line (without '\n') into *buf; returns its length, or -1 at EOF.
 * *too_long is set when the line exceeded CLI_TOK_MAX_LINE (it is consumed). */
static long read_line(char **buf, size_t *cap, int *too_long)
{
    size_t n = 0;
    int c, any = 0;
    *too_long = 0;
    while ((c = getchar_unlocked()) != EOF) {
        any = 1;
        if (c == '\n') break;
        if (n >= CLI_TOK_MAX_LINE) {
            *too_long = 1;
            continue;
        }
        if (n + 1 >= *cap) {
            size_t nc = *cap ? *cap * 2 : 4096;
            char *p = realloc(*buf, nc);
            if (!p) return -2;
            *buf = p;
            *cap = nc;
        }
        (*buf)[n++] = (char)c;
    }
    if (!any) return -1;
    return (long)n;
}

/* {"text", "special"} -> ids. Returns 0, or writes an error line and returns 2. */
static int do_tokenize(const tokenizer *t, const cJSON *j, ms_error *e)
{
    const char *text = NULL;
    int special = 1;
    for (const cJSON *c = j->child; c; c = c->next)
        if (strcmp(c->string, "text") && strcmp(c->string, "special")) {
            snprintf(e->message, sizeof e->message, "line: unknown field \"%.60s\" (expected text, special)",
                     c->string);
            return put_error(e->message), 2;
        }
    if (json_get_string(j, "text", 1, &text, "line", e) || json_get_bool(j, "special", 0, &special, "line", e))
        return put_error(e->message), 2;
    size_t len = strlen(text), whole[2] = {0, len};
    int32_t *ids = NULL;
    size_t n = 0;
    if (tok_encode_masked(t, text, len, whole, special ? 0 : 1, &ids, &n, e)) return put_error(e->message), 2;
    fputs("{\"ids\":[", stdout);
    for (size_t i = 0; i < n; i++) printf(i ? ",%d" : "%d", (int)ids[i]);
    printf("],\"n\":%zu}\n", n);
    free(ids);
    return 0;
}

/* {"ids", "skip_special"} -> text. Returns 0, 1 (out of memory) or 2 (bad line). */
static int do_detokenize(const tokenizer *t, const cJSON *j, ms_error *e)
{
    int skip = 0;
    for (const cJSON *c = j->child; c; c = c->next)
        if (strcmp(c->string, "ids") && strcmp(c->string, "skip_special")) {
            snprintf(e->message, sizeof e->message, "line: unknown field \"%.60s\" (expected ids, skip_special)",
                     c->string);
            return put_error(e->message), 2;
        }
    const cJSON *arr = json_get(j, "ids");
    if (!cJSON_IsArray(arr)) return put_error("line: field \"ids\" must be an array of token ids"), 2;
    if (json_get_bool(j, "skip_special", 0, &skip, "line", e)) return put_error(e->message), 2;
    int n = cJSON_GetArraySize(arr);
    int32_t *ids = malloc(((size_t)n + 1) * sizeof *ids);
    if (!ids) return put_error("out of memory"), 1;
    int i = 0;
    for (const cJSON *c = arr->child; c; c = c->next, i++) {
        double d = cJSON_IsNumber(c) ? c->valuedouble : -1.0;
        if (!cJSON_IsNumber(c) || d < 0 || d > 2147483647.0 || d != (double)(int64_t)d) {
            snprintf(e->message, sizeof e->message, "line: ids[%d] is not a token id (an integer in [0, 2^31))", i);
            free(ids);
            return put_error(e->message), 2;
        }
        ids[i] = (int32_t)d;
    }
    char *out = NULL;
    size_t len = 0;
    ms_status s = tok_decode(t, ids, (size_t)n, skip, &out, &len, e);
    free(ids);
    if (s) return put_error(e->message), s == MS_ERR_NOMEM ? 1 : 2;
    fputs("{\"text\":", stdout);
    put_json_string(stdout, out, len, 0);
    fputs("}\n", stdout);
    free(out);
    return 0;
}

/* Shared driver of both subcommands. */
static int run(int argc, char **argv, tok_mode mode)
{
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        usage(stdout, mode);
        return 0;
    }
    if (argc != 2 || argv[1][0] == '-') {
        usage(stderr, mode);
        return 2;
    }
    tokenizer *t = NULL;
    ms_error e = {0};
    ms_status s = tok_load(argv[1], &t, &e);
    if (s) {
        fprintf(stderr, "medserve: %s\n", e.message);
        return (s == MS_ERR_NOMEM || s == MS_ERR_IO) ? 1 : 2;
    }
    char *line = NULL;
    size_t cap = 0;
    int rc = 0, too_long;
    long n;
    while ((n = read_line(&line, &cap, &too_long)) != -1) {
        int r;
        if (n == -2) {
            put_error("out of memory reading a line");
            r = 1;
        } else if (too_long) {
            put_error("line: longer than the 64 MiB limit");
            r = 2;
        } else {
            cJSON *j = json_parse_strict(line ? line : "", (size_t)n, "line", &e);
            if (!j) {
                put_error(e.message);
                r = 2;
            } else if (!cJSON_IsObject(j)) {
                put_error("line: must be a JSON object");
                r = 2;
            } else {
                r = mode == MODE_TOKENIZE ? do_tokenize(t, j, &e) : do_detokenize(t, j, &e);
            }
            cJSON_Delete(j);
        }
        fflush(stdout);
        if (r == 1) {
            rc = 1;
            break;
        }
        if (r) rc = 2;
    }
    free(line);
    tok_free(t);
    return rc;
}

/* `medserve tokenize DIR`. */
int cli_tokenize(int argc, char **argv)
{
    return run(argc, argv, MODE_TOKENIZE);
}

/* `medserve detokenize DIR`. */
int cli_detokenize(int argc, char **argv)
{
    return run(argc, argv, MODE_DETOKENIZE);
}
