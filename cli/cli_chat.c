/* cli_chat.c: `medserve chat DIR`. Reads JSON lines
 *   {"messages":[...], "tools":[...], "add_generation_prompt":bool, "enable_thinking":bool}
 * on stdin, renders each with the Qwen3 chat template (runtime/text/chat.c) and
 * tokenizes it with DIR's tokenizer, message text masked so that it can never
 * become a control token; writes {"text":"...","ids":[...]} per line. A bad
 * line gets {"error":"..."} and the exit code becomes 2 once input ends.
 * It does not run a model. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/json.h"
#include "cli.h"
#include "text/chat.h"
#include "text/chat_json.h"
#include "text/tokenizer.h"

#define CHAT_MAX_LINE (64u << 20) /* bytes in one request line */

/* Prints the subcommand's usage. */
static void usage(FILE *f)
{
    fprintf(f,
            "usage: medserve chat DIR\n"
            "  stdin: one JSON object per line:\n"
            "    {\"messages\":[...], \"tools\":[...], \"add_generation_prompt\":true, \"enable_thinking\":false}\n"
            "    (tools, add_generation_prompt (default false) and enable_thinking (default: template's) optional)\n"
            "  stdout: {\"text\":\"...\",\"ids\":[...]} per line, or {\"error\":\"...\"}; exit 2 if any line failed\n");
}

/* Prints one JSON object line built by the caller and frees it. */
static void emit(cJSON *o)
{
    char *s = o ? cJSON_PrintUnformatted(o) : NULL;
    if (s) printf("%s\n", s);
    else printf("{\"error\":\"out of memory\"}\n");
    fflush(stdout);
    free(s);
    cJSON_Delete(o);
}

/* Prints {"error": msg}. */
static void emit_error(const char *msg)
{
    cJSON *o = cJSON_CreateObject();
    if (o) cJSON_AddStringToObject(o, "error", msg);
    emit(o);
}

/* Handles one request line; returns MS_OK or fills err. */
static ms_status handle(const tokenizer *tok, const char *line, size_t len, size_t lineno, ms_error *err)
{
    char what[64];
    snprintf(what, sizeof what, "stdin line %zu", lineno);
    cJSON *req = chat_json_parse(line, len, what, err);
    if (!req) return err->status;
    ms_status s = MS_OK;
    chat_conv conv = {0};
    chat_out out = {0};
    int32_t *ids = NULL;
    size_t n_ids = 0;
    if (!cJSON_IsObject(req)) {
        s = ms_seterr(err, MS_ERR_INVALID, "%s: must be a JSON object", what);
        goto done;
    }
    for (const cJSON *c = req->child; c; c = c->next) {
        if (strcmp(c->string, "messages") && strcmp(c->string, "tools") && strcmp(c->string, "add_generation_prompt") &&
            strcmp(c->string, "enable_thinking")) {
            s = ms_seterr(err, MS_ERR_INVALID, "%s: unknown field \"%.60s\"", what, c->string);
            goto done;
        }
    }
    int agp = 0, et = -1;
    if ((s = json_get_bool(req, "add_generation_prompt", 0, &agp, what, err))) goto done;
    if ((s = json_get_bool(req, "enable_thinking", 0, &et, what, err))) goto done;
    const cJSON *msgs = json_get(req, "messages");
    if (!msgs) {
        s = ms_seterr(err, MS_ERR_INVALID, "%s: required field \"messages\" is missing", what);
        goto done;
    }
    if ((s = chat_conv_from_json(msgs, json_get(req, "tools"), &conv, what, err))) goto done;
    if ((s = chat_render(conv.msgs, conv.n, conv.tools_json, agp, et, &out, err))) goto done;
    if ((s = tok_encode_masked(tok, out.text, out.len, out.untrusted, out.n_untrusted, &ids, &n_ids, err))) goto done;

    cJSON *o = cJSON_CreateObject(), *arr = cJSON_CreateArray();
    if (!o || !arr || !cJSON_AddStringToObject(o, "text", out.text)) {
        cJSON_Delete(o);
        cJSON_Delete(arr);
        s = ms_seterr(err, MS_ERR_NOMEM, "%s: out of memory", what);
        goto done;
    }
    cJSON_AddItemToObject(o, "ids", arr);
    for (size_t i = 0; i < n_ids; i++) {
        cJSON *v = cJSON_CreateNumber(ids[i]);
        if (!v) {
            cJSON_Delete(o);
            s = ms_seterr(err, MS_ERR_NOMEM, "%s: out of memory", what);
            goto done;
        }
        cJSON_AddItemToArray(arr, v);
    }
    emit(o);
done:
    free(ids);
    chat_out_free(&out);
    chat_conv_free(&conv);
    cJSON_Delete(req);
    return s;
}

/* The subcommand: loads DIR's tokenizer, then one reply line per request line. */
int cli_chat(int argc, char **argv)
{
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        usage(stdout);
        return 0;
    }
    if (argc != 2 || argv[1][0] == '-') {
        usage(stderr);
        return 2;
    }
    ms_error err = {0};
    tokenizer *tok = NULL;
    if (tok_load(argv[1], &tok, &err)) {
        fprintf(stderr, "medserve chat: %s\n", err.message);
        return err.status == MS_ERR_IO || err.status == MS_ERR_NOMEM ? 1 : 2;
    }
    if (!chat_template_is_qwen3(tok_chat_template(tok)))
        fprintf(stderr,
                "medserve chat: warning: %s: the chat template is not the Qwen3 template; rendering "
                "the Qwen3 template anyway\n",
                argv[1]);
    int rc = 0;
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, stdin)) >= 0) {
        lineno++;
        size_t len = (size_t)n;
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) len--;
        if (!len) continue;
        ms_error e = {0};
        if (len > CHAT_MAX_LINE)
            ms_seterr(&e, MS_ERR_INVALID, "stdin line %zu: %zu bytes, over the %u-byte limit", lineno, len,
                      CHAT_MAX_LINE);
        else handle(tok, line, len, lineno, &e);
        if (e.status != MS_OK) {
            char msg[600];
            if (!strncmp(e.message, "stdin line", 10)) snprintf(msg, sizeof msg, "%s", e.message);
            else snprintf(msg, sizeof msg, "stdin line %zu: %s", lineno, e.message);
            emit_error(msg);
            rc = 2;
        }
    }
    free(line);
    tok_free(tok);
    return rc;
}
