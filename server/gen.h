/* gen.h: runs one validated, tokenized generation request (chat or
 * completions) to its single terminal outcome: a JSON reply, a complete SSE
 * stream ending in `data: [DONE]`, an HTTP error before anything was sent, or
 * a final `data: {"error":...}` event once a stream has started. Submits
 * every choice, waits on the job (engine events, client disconnect,
 * deadline, drain abort) and decides what the OpenAI output carries (its JSON
 * shape is oai_resp.c's). */
#ifndef MS_GEN_H
#define MS_GEN_H

#include <stddef.h>
#include <stdint.h>

#include "http.h"
#include "oai_req.h"
#include "server.h"

typedef struct gen_prompt {
    int32_t *ids; /* owned by the caller */
    size_t n;
    const char *echo; /* completions with echo: the prompt text, else NULL */
    size_t echo_len;
} gen_prompt;

typedef struct gen_spec {
    int chat; /* 1: chat.completion(.chunk), 0: text_completion */
    const oai_gen *g;
    const gen_prompt *prompts;
    size_t n_prompts;
    const char *param; /* name of the prompt param for context errors */
} gen_spec;

/* Replies to r (or cuts the connection if the client left) and fills info. */
void gen_run(server *S, http_req *r, reqinfo *info, const gen_spec *spec);

#endif
