/* oai_resp.h: the JSON bodies medserve answers with, and sending them:
 * OpenAI's error object; chat.completion, chat.completion.chunk and
 * text_completion objects (envelope, choices, logprobs, usage); the model
 * objects of /v1/models; the bodies of /health, /tokenize and /detokenize.
 * Everything is built with cJSON, so strings are always escaped. What goes
 * into a completion (which text, when logprobs are sent) is decided by the
 * caller (gen.c); the shape is decided here. */
#ifndef MS_OAI_RESP_H
#define MS_OAI_RESP_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "http.h"
#include "oai_req.h"

/* {"error":{"message","type","param","code"}} as text; malloc'd (NULL on OOM). */
char *oai_error_body(const oai_err *e);
/* Sends e with its status; 429 and 503 get Retry-After; the request is
 * labelled with e's code (http_set_label), which on_done reads back. */
void oai_reply_error(http_req *r, const oai_err *e);
/* Sends obj (then frees it) with status and application/json. */
void oai_reply_json(http_req *r, int status, cJSON *obj);

/* {"id","object","created","model","system_fingerprint"}. */
cJSON *oai_envelope(const char *id, const char *object, time_t created, const char *model, const char *fingerprint);
/* What every completion object and chunk of one request repeats. */
typedef struct oai_head {
    const char *id;
    time_t created;
    const char *model;
    const char *fingerprint;
    int chat;   /* chat.completion(.chunk), else text_completion */
    int stream; /* chunks with deltas, else one object with messages */
} oai_head;

/* One entry of "choices". Strings are copied; logprobs is moved in. */
typedef struct oai_choice {
    int index;
    const char *role;      /* chat deltas: "assistant" in the first chunk, else NULL */
    const char *reasoning; /* chat: reasoning_content; NULL: null in a message, absent in a delta */
    const char *content;   /* chat: content; completions: text; NULL: absent */
    cJSON *logprobs;       /* an oai_logprobs_new accumulator, or NULL for null */
    const char *finish;    /* finish_reason, or NULL for null */
} oai_choice;

/* The envelope with an empty "choices" list: a chat.completion,
 * chat.completion.chunk or text_completion object as h says. */
cJSON *oai_completion_object(const oai_head *h);
/* Appends c to o's "choices": {index, message | delta | text, logprobs, finish_reason}. */
void oai_add_choice(cJSON *o, const oai_head *h, const oai_choice *c);
/* Adds "usage" to o: usage (moved in), or null when usage is NULL. */
void oai_add_usage(cJSON *o, cJSON *usage);

/* A choice's empty logprobs: chat: [] of content entries; completions:
 * {"tokens","token_logprobs","top_logprobs","text_offset"} of empty lists. */
cJSON *oai_logprobs_new(int chat);
/* Records one sampled token: its text and logprob, n_top alternatives
 * (top_text[k] NULL: not decoded) and, for completions, its text offset. */
void oai_logprobs_add(cJSON *lp, int chat, const char *text, double logprob, char *const *top_text,
                      const float *top_logprob, int n_top, size_t text_offset);
/* Tokens recorded in lp (0 when lp is NULL). */
int oai_logprobs_count(const cJSON *lp, int chat);

/* {"prompt_tokens","completion_tokens","total_tokens",
 *  "prompt_tokens_details":{"cached_tokens":0},
 *  "completion_tokens_details":{"reasoning_tokens"}}. */
cJSON *oai_usage(uint64_t prompt, uint64_t completion, uint64_t reasoning);
/* {"id","object":"model","created","owned_by":"medserve","max_model_len","manifest_sha256"}. */
cJSON *oai_model(const char *id, time_t created, int max_model_len, const char *manifest_sha256);
/* {"object":"list","data":[model]}; model is moved in. */
cJSON *oai_model_list(cJSON *model);
/* {"status"}: the body of /health. */
cJSON *oai_health(const char *status);
/* {"tokens":[ids],"count","max_model_len"}: the body of /tokenize. */
cJSON *oai_tokenize_result(const int32_t *ids, size_t n, int max_model_len);
/* {"prompt":text}: the body of /detokenize. */
cJSON *oai_detokenize_result(const char *text);
/* OpenAI's finish_reason string, or NULL for none. */
const char *oai_finish_name(int ms_finish_value);
/* Maps a library status to an HTTP status and error type/code. */
void oai_err_from_status(oai_err *e, ms_status st, const char *message);

#endif
