/* tokenizer.h: Qwen3 byte-level BPE from tokenizer.json + tokenizer_config.json,
 * exactly as HF tokenizers (docs/numerics.md §3): added tokens split first, NFC,
 * the Qwen2 split regex, GPT-2 byte map, merge ranks. Decoding and a
 * streaming decoder that never emits a broken UTF-8 sequence. */
#ifndef MS_TOKENIZER_H
#define MS_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "medserve.h"

typedef struct tokenizer tokenizer;

/* Loads dir/tokenizer.json and, when present, dir/tokenizer_config.json and
 * dir/chat_template.jinja (validated; errors name file, field and check).
 * The tokenizer is immutable after load: any number of threads may encode
 * and decode with it at once. */
ms_status tok_load(const char *dir, tokenizer **out, ms_error *err);
void tok_free(tokenizer *t);

/* Number of ids with a meaning (vocab + added tokens): max id + 1. */
int tok_n_ids(const tokenizer *t);

/* HF-compatible encode: added tokens are matched anywhere. text must be
 * valid UTF-8 (else MS_ERR_INVALID). *ids is malloc'd (never NULL on success). */
ms_status tok_encode(const tokenizer *t, const char *text, size_t len, int32_t **ids, size_t *n, ms_error *err);
/* Encode where added tokens are matched only inside trusted byte ranges;
 * untrusted[2*i], untrusted[2*i+1] are [begin, end) ranges of text that are
 * encoded as plain text (they can never yield an added-token id). With no
 * untrusted ranges this equals tok_encode. */
ms_status tok_encode_masked(const tokenizer *t, const char *text, size_t len, const size_t *untrusted, size_t n_ranges,
                            int32_t **ids, size_t *n, ms_error *err);

/* Decodes ids (errors="replace"). *out malloc'd and NUL-terminated (the text
 * itself may contain NUL: use *len). Negative ids are MS_ERR_INVALID; ids
 * >= tok_n_ids (embedding padding) decode to nothing. */
ms_status tok_decode(const tokenizer *t, const int32_t *ids, size_t n, int skip_special, char **out, size_t *len,
                     ms_error *err);

/* Raw bytes one id stands for (no UTF-8 repair); NULL/0 for ids without text. */
const char *tok_token_bytes(const tokenizer *t, int32_t id, size_t *len);
int tok_is_special(const tokenizer *t, int32_t id); /* added token with special=true */
/* Id of an exact token string (added or vocab), or -1. */
int32_t tok_lookup(const tokenizer *t, const char *s);
/* tokenizer_config.json chat_template (or chat_template.jinja), or NULL. */
const char *tok_chat_template(const tokenizer *t);
/* tokenizer_config.json eos_token id, or -1. */
int32_t tok_eos_id(const tokenizer *t);

/* Streaming decode state: feed ids one by one, get only complete UTF-8. */
typedef struct tok_stream {
    char pending[8];
    size_t n_pending;
} tok_stream;

/* Any out buffer of this size is large enough for tok_stream_feed (3 bytes
 * per byte of a held tail plus the longest possible token). */
#define TOK_STREAM_MIN_CAP 4096

/* Writes the newly complete UTF-8 for id to out (capacity cap, at least
 * TOK_STREAM_MIN_CAP) and returns the bytes written. Concatenated outputs of
 * feed... + flush equal tok_decode of the same ids. Zero-initialise a
 * tok_stream before the first feed. If cap is too small for this id's
 * output, nothing is written or consumed and 0 is returned. */
size_t tok_stream_feed(const tokenizer *t, tok_stream *s, int32_t id, int skip_special, char *out, size_t cap);
/* Flushes held bytes (an incomplete tail becomes U+FFFD). */
size_t tok_stream_flush(tok_stream *s, char *out, size_t cap);

#endif
