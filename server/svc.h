/* svc.h: the generation service as the HTTP server sees it: tokenize,
 * render chats, submit/cancel generations, read stats. A small table of
 * functions so the server runs on the real engine (svc_ms.c, libmedserve's
 * public API) or on a deterministic fake (svc_fake.c) for tests and HTTP
 * load tests without model compute. It does no HTTP and no JSON. */
#ifndef MS_SVC_H
#define MS_SVC_H

#include <stddef.h>
#include <stdint.h>

#include "medserve.h"

typedef struct svc_ops {
    /* allow_special as ms_tokenize; *ids malloc'd. */
    ms_status (*tokenize)(void *self, const char *text, size_t len, int allow_special, int32_t **ids, size_t *n_ids,
                          ms_error *err);
    /* As ms_detokenize; *text malloc'd and NUL-terminated. */
    ms_status (*detokenize)(void *self, const int32_t *ids, size_t n_ids, int skip_special, char **text, size_t *len,
                            ms_error *err);
    /* As ms_chat_tokenize with add_generation_prompt = 1 and no tools. */
    ms_status (*chat_tokenize)(void *self, const ms_message *msgs, size_t n_msgs, int add_generation_prompt,
                               int enable_thinking, int32_t **ids, size_t *n_ids, ms_error *err);
    ms_sampling (*sampling_default)(void *self);
    /* As ms_engine_submit: every accepted request gets exactly one final event. */
    ms_status (*submit)(void *self, const ms_request *r, ms_token_fn fn, void *user, uint64_t *id, ms_error *err);
    ms_status (*cancel)(void *self, uint64_t id);
    void (*stats)(void *self, ms_engine_stats *out);
    /* Cancels what runs (final events still delivered), joins, frees. */
    void (*free)(void *self);
} svc_ops;

typedef struct svc {
    const svc_ops *ops;
    void *self;
    int vocab_size;           /* valid token ids are [0, vocab_size) */
    int n_ctx;                /* tokens per sequence, prompt + output */
    int max_new_tokens;       /* generation_config max_new_tokens, 0 if absent */
    int32_t think_open_id;    /* <think>, or -1 */
    int32_t think_close_id;   /* </think>, or -1 */
    char manifest_sha256[65]; /* hex, or "" */
} svc;

/* Frees s and what it owns; NULL-safe. */
void svc_free(svc *s);

typedef struct svc_fake_params {
    int n_ctx, max_seqs, max_queue;
    int step_us;      /* wall time of one decode step */
    long fault_after; /* > 0: after this many tokens every sequence ends with an
                        * internal error, as a broken engine would (tests) */
} svc_fake_params;

/* A deterministic fake engine: byte-level "tokenizer" (ids 0..255 are bytes,
 * Qwen3's special ids are kept), a chat renderer in Qwen3's shape, and a
 * generator whose tokens depend only on (prompt, seed or greedy, position),
 * with a <think> block when thinking is on. Stop strings are refused
 * (MS_ERR_UNSUPPORTED): they are the real engine's job. */
ms_status svc_fake_open(const svc_fake_params *p, svc **out, ms_error *err);

typedef struct svc_ms_params {
    int n_threads; /* 0: all online CPUs */
    int n_ctx;     /* 0: the engine's default */
    int max_seqs, max_queue;
    int q8; /* quantise weights to int8 at load */
} svc_ms_params;

/* Loads dir with libmedserve and starts its engine. */
ms_status svc_ms_open(const char *dir, const svc_ms_params *p, svc **out, ms_error *err);

#endif
