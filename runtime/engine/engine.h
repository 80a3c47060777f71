/* engine.h: the engine's internal constructor. ms_engine_create (api.c) fills
 * an engine_model from a loaded model; tests fill one with a fake backend and
 * a fake detokenizer, so scheduling, cancellation, stop strings and
 * exactly-once completion are tested without weights. The rest of the engine
 * API is public (medserve.h ms_engine_*). */
#ifndef MS_ENGINE_H
#define MS_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "engine/backend.h"
#include "medserve.h"
#include "text/tokenizer.h"

#define ENGINE_MAX_STOP_IDS 32
#define ENGINE_MAX_SEQS 256
#define ENGINE_MAX_QUEUE 65536
#define ENGINE_MAX_CHUNK 65536
#define ENGINE_BLOCK_SIZE 16 /* tokens per KV block */

typedef struct engine_model {
    const backend_ops *ops;
    const model *m; /* given to ops->create; may be NULL for a fake backend */
    int n_threads, weights_q8;
    int vocab;   /* logits per row */
    int n_valid; /* ids >= n_valid are never sampled */
    int max_ctx; /* max positions (max_position_embeddings) */
    int32_t stop_ids[ENGINE_MAX_STOP_IDS];
    int n_stop_ids;
    /* Text of generated tokens: feed appends the newly complete UTF-8 of id to
     * out (at most max_piece bytes, cap >= max_piece); flush emits held bytes. */
    size_t (*text_feed)(void *ctx, tok_stream *s, int32_t id, char *out, size_t cap);
    size_t (*text_flush)(void *ctx, tok_stream *s, char *out, size_t cap);
    void *text_ctx;
    size_t max_piece;
} engine_model;

/* Creates the backend (ops->create), the KV pool (n_ctx x max_seqs, checked)
 * and the worker thread. em is copied. */
ms_status engine_create(const engine_model *em, const ms_engine_params *p, ms_engine **out, ms_error *err);

#endif
