/* oai_req.h: strict parsing and validation of OpenAI request bodies
 * (/v1/chat/completions, /v1/completions, /tokenize, /detokenize) into plain
 * structs. Every field the server does not implement, every unknown field,
 * every wrong type and every out-of-range number is an error naming the
 * `param`; nothing is silently ignored. JSON `null` means "absent" for
 * optional fields. No tokenizing and no generation here. */
#ifndef MS_OAI_REQ_H
#define MS_OAI_REQ_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "medserve.h"

#define OAI_MAX_MESSAGES 4096
#define OAI_MAX_STOP_LEN 512
#define OAI_MAX_LOGIT_BIAS 1024
#define OAI_MAX_PROMPTS 64
#define OAI_MAX_COMPLETION_LOGPROBS 20
#define OAI_SEED_MAX 9007199254740992.0 /* 2^53: integers a JSON double holds exactly */

/* An error in OpenAI's shape plus the HTTP status to send it with. */
typedef struct oai_err {
    int http;
    char type[40];  /* invalid_request_error, authentication_error, ... */
    char param[96]; /* "" for null */
    char code[48];  /* "" for null */
    char message[512];
} oai_err;

/* Fills e; returns -1 (for `return oai_fail(...)`). */
int oai_fail(oai_err *e, int http, const char *type, const char *param, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

typedef struct oai_limits {
    const char *model_name; /* the only model id served */
    int max_n;              /* cap on n (choices per request) */
    int vocab_size;         /* token ids (logit_bias keys, prompt ids) are below this */
} oai_limits;

/* Generation fields shared by chat and completions; has_* = 1 when given. */
typedef struct oai_gen {
    int n;
    int has_max_tokens, max_tokens;
    int has_temperature;
    double temperature;
    int has_top_p;
    double top_p;
    int has_top_k;
    int top_k;
    int has_min_p;
    double min_p;
    int has_repetition_penalty;
    double repetition_penalty;
    double presence_penalty, frequency_penalty;
    int has_seed;
    uint64_t seed;
    const char *stop[MS_MAX_STOP];
    int n_stop;
    int stream, include_usage;
    int logprobs;      /* report logprobs */
    int top_logprobs;  /* alternatives per token, 0..20 */
    int32_t *bias_ids; /* malloc'd, n_bias */
    float *bias_values;
    int n_bias;
    int echo;            /* completions only */
    int enable_thinking; /* chat only: -1 default, 0, 1 */
} oai_gen;

typedef struct oai_chat {
    oai_gen g;
    ms_message *msgs; /* n_msgs, malloc'd; strings point into the JSON or owned[] */
    size_t n_msgs;
    char **owned; /* flattened contents and tool_calls text, freed with the struct */
    size_t n_owned;
} oai_chat;

typedef struct oai_completion {
    oai_gen g;
    size_t n_prompts;
    /* each prompt is text (texts[i] != NULL, text_lens[i]) or ids (ids[i], n_ids[i]) */
    const char **texts;
    size_t *text_lens;
    int32_t **ids;
    size_t *n_ids;
} oai_completion;

/* Parses a chat request object; 0 ok, -1 with e set. */
int oai_parse_chat(const cJSON *root, const oai_limits *lim, oai_chat *out, oai_err *e);
void oai_chat_free(oai_chat *c);

/* Parses a completions request object; 0 ok, -1 with e set. */
int oai_parse_completion(const cJSON *root, const oai_limits *lim, oai_completion *out, oai_err *e);
void oai_completion_free(oai_completion *c);

/* /tokenize: {"prompt": str} or {"messages": [...], "add_generation_prompt"?,
 * "chat_template_kwargs"?}, optional "model". */
typedef struct oai_tokenize {
    const char *prompt; /* NULL when messages are given */
    size_t prompt_len;
    oai_chat chat; /* messages when prompt == NULL */
    int add_generation_prompt;
} oai_tokenize;
int oai_parse_tokenize(const cJSON *root, const oai_limits *lim, oai_tokenize *out, oai_err *e);
void oai_tokenize_free(oai_tokenize *t);

/* /detokenize: {"tokens": [ids], "model"?}; *ids malloc'd. */
int oai_parse_detokenize(const cJSON *root, const oai_limits *lim, int32_t **ids, size_t *n, oai_err *e);

#endif
