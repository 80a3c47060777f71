/* fuzz_oai_req.c: libFuzzer target for the server's OpenAI request parser
 * (server/oai_req.c) as routes.c drives it: the input is a request body, parsed
 * with json_parse_strict and then given to each of oai_parse_chat,
 * oai_parse_completion, oai_parse_tokenize and oai_parse_detokenize (model
 * "m", n <= 4, vocab 151936). Accepted requests are checked against the
 * limits (ids below vocab, n in range, stop count), and accepted chat
 * messages are rendered with chat_render as the server will. A refusal must
 * carry an HTTP status and a message. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/json.h"
#include "fuzz_util.h"
#include "oai_req.h"
#include "text/chat.h"

static const oai_limits LIM = {"m", 4, 151936};

/* Aborts unless e describes a refusal. */
static void check_err(const oai_err *e)
{
    if (e->http < 400 || e->http > 599 || !e->message[0]) abort();
}

/* Checks generation fields against LIM. */
static void check_gen(const oai_gen *g)
{
    if (g->n < 1 || g->n > LIM.max_n || g->n_stop < 0 || g->n_stop > MS_MAX_STOP) abort();
    for (int i = 0; i < g->n_stop; i++)
        if (!g->stop[i]) abort();
    for (int i = 0; i < g->n_bias; i++)
        if (g->bias_ids[i] < 0 || g->bias_ids[i] >= LIM.vocab_size) abort();
    if (g->top_logprobs < 0 || g->top_logprobs > 20) abort();
}

/* Renders parsed messages like the server's chat path. */
static void render(const oai_chat *c, int agp, int think)
{
    if (!c->n_msgs) return;
    chat_msg *m = calloc(c->n_msgs, sizeof *m);
    if (!m) abort();
    for (size_t i = 0; i < c->n_msgs; i++) {
        m[i].role = c->msgs[i].role;
        m[i].content = c->msgs[i].content;
        m[i].reasoning_content = c->msgs[i].reasoning_content;
        m[i].tool_calls_json = c->msgs[i].tool_calls_json;
    }
    chat_out out = {0};
    ms_error err;
    if (chat_render(m, c->n_msgs, NULL, agp, think, &out, &err) == MS_OK && strlen(out.text) != out.len) abort();
    chat_out_free(&out);
    free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ms_error err;
    cJSON *root = json_parse_strict((const char *)data, size, "request body", &err);
    if (!root) return 0;
    oai_err e;

    oai_chat c;
    memset(&c, 0, sizeof c);
    memset(&e, 0, sizeof e);
    if (oai_parse_chat(root, &LIM, &c, &e) == 0) {
        check_gen(&c.g);
        render(&c, 1, c.g.enable_thinking);
    } else {
        check_err(&e);
    }
    oai_chat_free(&c);

    oai_completion p;
    memset(&p, 0, sizeof p);
    memset(&e, 0, sizeof e);
    if (oai_parse_completion(root, &LIM, &p, &e) == 0) {
        check_gen(&p.g);
        if (p.n_prompts < 1) abort();
        for (size_t i = 0; i < p.n_prompts; i++) {
            if (p.texts[i]) {
                if (memchr(p.texts[i], 0, p.text_lens[i])) abort();
            } else {
                for (size_t j = 0; j < p.n_ids[i]; j++)
                    if (p.ids[i][j] < 0 || p.ids[i][j] >= LIM.vocab_size) abort();
            }
        }
    } else {
        check_err(&e);
    }
    oai_completion_free(&p);

    oai_tokenize t;
    memset(&t, 0, sizeof t);
    memset(&e, 0, sizeof e);
    if (oai_parse_tokenize(root, &LIM, &t, &e) == 0) {
        if (!t.prompt) render(&t.chat, t.add_generation_prompt, t.chat.g.enable_thinking);
    } else {
        check_err(&e);
    }
    oai_tokenize_free(&t);

    int32_t *ids = NULL;
    size_t n = 0;
    memset(&e, 0, sizeof e);
    if (oai_parse_detokenize(root, &LIM, &ids, &n, &e) == 0) {
        for (size_t i = 0; i < n; i++)
            if (ids[i] < 0 || ids[i] >= LIM.vocab_size) abort();
    } else {
        check_err(&e);
    }
    free(ids);
    cJSON_Delete(root);
    return 0;
}
