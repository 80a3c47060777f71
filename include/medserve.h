/* medserve.h: the public API of libmedserve, the Qwen3 runtime behind the
 * `medserve` server and `medserve generate`.
 *
 * Opaque handles, `ms_` prefix, status codes. Library code never exits or
 * aborts on bad input: every function that can fail returns an ms_status and,
 * when given an ms_error, fills it with a message naming the file, the field
 * and the check that failed. Destructors accept NULL.
 *
 * Threading: an ms_model is immutable after load and may be shared. An
 * ms_engine owns one worker thread; ms_engine_submit / ms_engine_cancel /
 * ms_engine_stats may be called from any thread. Token callbacks run on the
 * engine's worker thread and must not block for long.
 */
#ifndef MEDSERVE_H
#define MEDSERVE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* What the library exports. libmedserve is built with -fvisibility=hidden:
 * only functions marked MS_API are visible to a program that links it, and
 * tests/e2e/test_library.py fails on any other exported symbol. */
#if defined(__GNUC__) || defined(__clang__)
#define MS_API __attribute__((visibility("default")))
#else
#define MS_API
#endif

#define MS_VERSION_MAJOR 0
#define MS_VERSION_MINOR 1
#define MS_VERSION_PATCH 0
#define MS_VERSION_STRING "0.1.0"

typedef enum ms_status {
    MS_OK = 0,
    MS_ERR_INVALID,     /* bad argument or request field */
    MS_ERR_FORMAT,      /* malformed file (safetensors, json, tokenizer) */
    MS_ERR_UNSUPPORTED, /* valid but not implemented (model type, rope type) */
    MS_ERR_IO,          /* open/read/write/mmap failure */
    MS_ERR_NOMEM,       /* allocation failed or a size limit was hit */
    MS_ERR_CONTEXT,     /* prompt + max_tokens exceed the context */
    MS_ERR_BUSY,        /* queue full */
    MS_ERR_CANCELLED,   /* request cancelled */
    MS_ERR_NOTFOUND,    /* unknown request id, missing file */
    MS_ERR_INTERNAL     /* a bug: please report */
} ms_status;

typedef struct ms_error {
    ms_status status;
    char message[512];
} ms_error;

MS_API const char *ms_status_name(ms_status s);
MS_API const char *ms_version(void);

/* ---- model ---------------------------------------------------------- */

typedef struct ms_model ms_model;

typedef enum ms_weights { MS_WEIGHTS_NATIVE = 0, MS_WEIGHTS_Q8 = 1 } ms_weights;
typedef enum ms_backend_kind { MS_BACKEND_CPU = 0, MS_BACKEND_CUDA = 1 } ms_backend_kind;

typedef struct ms_load_params {
    int n_threads;      /* 0: all online CPUs */
    ms_weights weights; /* MS_WEIGHTS_Q8 quantises bf16/f16/f32 at load */
    ms_backend_kind backend;
} ms_load_params;

MS_API ms_load_params ms_load_params_default(void);

/* Loads an export directory (config.json, safetensors, tokenizer files) by
 * mmap. Validates every file and every tensor shape before returning. */
MS_API ms_model *ms_model_load(const char *dir, const ms_load_params *p, ms_error *err);
MS_API void ms_model_free(ms_model *m);

typedef struct ms_model_info {
    int vocab_size, hidden_size, n_layers, n_heads, n_kv_heads, head_dim;
    int intermediate_size, max_position_embeddings;
    const char *dtype;           /* "bfloat16", "float16", "float32" */
    const char *dir;             /* as given to ms_model_load */
    const char *manifest_sha256; /* hex SHA-256 of medserve-manifest.json, or "" */
    int max_new_tokens;          /* generation_config.json max_new_tokens, 0 if absent */
    int n_text_ids;              /* ids with text (tokenizer); ids >= this are never generated */
} ms_model_info;

MS_API void ms_model_get_info(const ms_model *m, ms_model_info *out);

/* Tokenize text. allow_special = 1 matches added tokens like HF tokenizers
 * (for trusted text); 0 encodes every byte as plain text so the result never
 * contains a control-token id (for untrusted user text). *ids is malloc'd. */
MS_API ms_status ms_tokenize(const ms_model *m, const char *text, size_t len, int allow_special, int32_t **ids,
                             size_t *n_ids, ms_error *err);
/* Decode ids to UTF-8 (invalid sequences become U+FFFD). *text is malloc'd. */
MS_API ms_status ms_detokenize(const ms_model *m, const int32_t *ids, size_t n_ids, int skip_special, char **text,
                               size_t *len, ms_error *err);

typedef struct ms_message {
    const char *role;              /* system, developer, user, assistant, tool */
    const char *content;           /* may be NULL for assistant with tool calls */
    const char *reasoning_content; /* assistant only; NULL if absent */
    const char *tool_calls_json;   /* assistant only: JSON array as OpenAI sends it, or NULL */
} ms_message;

/* Renders messages with the Qwen3 chat template and tokenizes the result so
 * that text from messages can never produce control tokens. enable_thinking:
 * -1 template default, 0 off, 1 on. tools_json: JSON array or NULL.
 * *ids (and *text if text != NULL) are malloc'd. */
MS_API ms_status ms_chat_tokenize(const ms_model *m, const ms_message *msgs, size_t n_msgs, const char *tools_json,
                                  int add_generation_prompt, int enable_thinking, int32_t **ids, size_t *n_ids,
                                  char **text, ms_error *err);

/* ---- generation ----------------------------------------------------- */

typedef struct ms_sampling {
    int greedy;               /* 1: argmax (temperature etc. ignored) */
    float temperature;        /* 0 means greedy too */
    int top_k;                /* 0: off */
    float top_p;              /* 1: off */
    float min_p;              /* 0: off */
    float repetition_penalty; /* 1: off (HF semantics, prompt included) */
    float presence_penalty;   /* OpenAI semantics, generated tokens only */
    float frequency_penalty;
    uint64_t seed;
    const int32_t *logit_bias_ids; /* n_logit_bias pairs, copied at submit */
    const float *logit_bias_values;
    int n_logit_bias;
    int top_logprobs; /* 0..20 alternatives reported per token */
} ms_sampling;

/* The model's generation_config.json defaults (HF defaults where absent). */
MS_API ms_sampling ms_sampling_default(const ms_model *m);

typedef enum ms_finish {
    MS_FINISH_NONE = 0, /* not finished */
    MS_FINISH_STOP,     /* eos token or stop string */
    MS_FINISH_LENGTH,   /* max_tokens or context length */
    MS_FINISH_CANCELLED,
    MS_FINISH_ERROR
} ms_finish;

#define MS_MAX_STOP 4
#define MS_MAX_TOP_LOGPROBS 20

typedef struct ms_request {
    const int32_t *prompt; /* copied at submit */
    size_t n_prompt;
    ms_sampling sampling;
    int max_tokens;                /* > 0 */
    const char *stop[MS_MAX_STOP]; /* NULL-terminated or full; copied at submit */
    int ignore_eos;
    int logprobs; /* report the chosen token's logprob */
} ms_request;

/* One event per generated token; the event of the token that ends the
 * request (eos, stop string, length) is the final one (finish != NONE). A
 * request ended otherwise (cancel, error, shutdown) gets a final event without
 * a token (token == -1). An eos token's final event carries its id and no
 * text. text/text_len: the newly decodable UTF-8 bytes (never a split
 * character), with stop strings cut and text that could start one held back
 * until it cannot. logprob / top_*: log-softmax of the raw logits (only when
 * ms_request.logprobs / ms_sampling.top_logprobs ask). Pointers are valid
 * only during the callback. */
typedef struct ms_token_event {
    uint64_t id;
    int32_t token;
    float logprob;
    int n_top;
    const int32_t *top_ids;
    const float *top_logprobs;
    const char *text;
    size_t text_len;
    ms_finish finish;
    ms_status status;  /* MS_OK unless finish == MS_FINISH_ERROR */
    const char *error; /* message when finish == MS_FINISH_ERROR */
    size_t n_prompt, n_generated;
} ms_token_event;

/* Return nonzero to cancel the request; the final event still follows (the
 * return value of a final event is ignored). Callbacks may call
 * ms_engine_submit / ms_engine_cancel, never ms_engine_free. */
typedef int (*ms_token_fn)(const ms_token_event *ev, void *user);

typedef struct ms_engine ms_engine;

typedef struct ms_engine_params {
    int n_ctx;         /* max tokens per sequence (prompt + output); 0: model max, capped 4096 */
    int max_seqs;      /* sequences decoded together */
    int max_queue;     /* waiting requests before MS_ERR_BUSY */
    int prefill_chunk; /* prompt tokens per step per sequence */
} ms_engine_params;

MS_API ms_engine_params ms_engine_params_default(void);

MS_API ms_engine *ms_engine_create(ms_model *m, const ms_engine_params *p, ms_error *err);
/* Queue a request. Every accepted request gets exactly one final event.
 * Returns MS_ERR_BUSY when the queue is full, MS_ERR_CONTEXT when
 * n_prompt + max_tokens > n_ctx, MS_ERR_INVALID for bad fields. */
MS_API ms_status ms_engine_submit(ms_engine *e, const ms_request *r, ms_token_fn on_token, void *user, uint64_t *id,
                                  ms_error *err);
MS_API ms_status ms_engine_cancel(ms_engine *e, uint64_t id);

typedef struct ms_engine_stats {
    int queued, running, max_seqs, n_ctx;
    size_t kv_blocks_used, kv_blocks_total;
    uint64_t prompt_tokens, generated_tokens;
} ms_engine_stats;

MS_API void ms_engine_get_stats(ms_engine *e, ms_engine_stats *out);
/* Stops accepting, cancels queued and running requests (each still gets its
 * final event, on the worker thread), joins the worker and frees. NULL-safe.
 * To drain first, wait until ms_engine_get_stats shows nothing running. */
MS_API void ms_engine_free(ms_engine *e);

#ifdef __cplusplus
}
#endif
#endif
