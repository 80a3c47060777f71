/* tok_internal.h: the tokenizer's private layout and helpers, shared by
 * tokenizer.c (encode/decode API), tok_load.c (tokenizer.json), tok_tables.c
 * (hash maps, merge table, added-token trie) and tok_bpe.c (merges). Not a
 * public interface: only these files include it. */
#ifndef MS_TOK_INTERNAL_H
#define MS_TOK_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "text/tokenizer.h"

#define TOK_MAX_JSON_BYTES ((size_t)256 << 20)   /* tokenizer.json */
#define TOK_MAX_CONFIG_BYTES ((size_t)16 << 20)  /* tokenizer_config.json */
#define TOK_MAX_TEMPLATE_BYTES ((size_t)1 << 20) /* chat_template.jinja */
#define TOK_MAX_IDS (1 << 22)                    /* vocab + added tokens */
#define TOK_MAX_TOKEN_BYTES 1024                 /* text of one token */

/* Per-id flags. */
enum {
    TOKF_VOCAB = 1,       /* id is in model.vocab */
    TOKF_ADDED = 2,       /* id is an added token */
    TOKF_SPECIAL = 4,     /* added token with special: true */
    TOKF_SELF = 8,        /* BPE of the token's own bytes gives exactly this id */
    TOKF_NORMALIZED = 16, /* added token matched after NFC */
    TOKF_BYTELEVEL = 32   /* every char of the token is in the GPT-2 byte map */
};

/* Open-addressing map from a key (bytes of an id, see tok_keys) to the id.
 * A slot holds (hash32 << 32) | (id + 1); 0 is empty. */
typedef struct tok_map {
    uint64_t *slots;
    size_t mask;
} tok_map;

/* Where the key bytes of each id live: blob + off[id], len[id] bytes. */
typedef struct tok_keys {
    const char *blob;
    const uint32_t *off, *len;
} tok_keys;

/* One merge: key = (left id << 32) | right id; UINT64_MAX marks an empty slot. */
typedef struct tok_merge {
    uint64_t key;
    int32_t rank, id;
} tok_merge;

/* Byte trie of added-token texts; node 0 is the root. */
typedef struct tok_trie {
    int32_t *first, *next, *id; /* first child, next sibling, token id or -1 */
    uint8_t *byte;
    int32_t root[256]; /* the root's children by byte, -1 if none */
    int first_byte;    /* the one byte every token starts with, or -1 */
    size_t n, cap, n_tokens;
} tok_trie;

/* A growable id list. */
typedef struct tok_ids {
    int32_t *v;
    size_t n, cap;
} tok_ids;

/* Scratch space reused by BPE within one encode call. */
typedef struct tok_bpe_scratch {
    int32_t *a, *b, *c; /* symbols / prev / next or ranks / new ids */
    uint64_t *heap;     /* rank << 32 | position */
    size_t cap, heap_cap;
} tok_bpe_scratch;

struct tokenizer {
    int32_t n_ids;   /* max id + 1 */
    int32_t n_vocab; /* model.vocab entries: ids 0..n_vocab-1 */
    uint8_t *flags;  /* [n_ids] TOKF_* */
    /* token as written in tokenizer.json (vocab key or added content) */
    uint32_t *str_off, *str_len;
    char *str_blob;
    /* bytes the id decodes to (ByteLevel decoder); len 0 for ids without text */
    uint32_t *raw_off, *raw_len;
    char *raw_blob;
    size_t max_raw_len;
    tok_map str_map; /* token string -> id (added tokens win) */
    tok_map raw_map; /* raw bytes -> vocab id, for byte-level vocab tokens */
    tok_merge *merges;
    size_t merge_mask, n_merges;
    int32_t byte_id[256];         /* vocab id of each single byte */
    tok_trie trie_raw, trie_norm; /* added tokens matched before / after NFC */
    int32_t *added_ids;           /* [n_added] in file order */
    size_t n_added;
    int nfc, ignore_merges;
    int monotone_merges; /* every merge uses only tokens made by earlier merges */
    char *chat_template;
    int32_t eos_id;
};

/* ---- tok_tables.c ---- */
uint32_t tok_hash(const void *p, size_t n);
int tok_map_init(tok_map *m, size_t n_keys);
void tok_map_free(tok_map *m);
/* Inserts id; returns -1 if inserted, else the id already holding an equal key. */
int32_t tok_map_put(tok_map *m, const tok_keys *k, int32_t id);
int32_t tok_map_find(const tok_map *m, const tok_keys *k, const void *key, size_t n);

int tok_merges_init(struct tokenizer *t, size_t n);
/* Adds a merge; returns 0, or 1 if the pair is already present. */
int tok_merges_put(struct tokenizer *t, int32_t a, int32_t b, int32_t rank, int32_t id);
/* Rank of the pair (a, b) and its merged id in *id; INT32_MAX if none. */
static inline int32_t tok_merge_rank(const struct tokenizer *t, int32_t a, int32_t b, int32_t *id)
{
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t i = (size_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & t->merge_mask;
    for (;;) {
        const tok_merge *m = &t->merges[i];
        if (m->key == key) {
            *id = m->id;
            return m->rank;
        }
        if (m->key == UINT64_MAX) return INT32_MAX;
        i = (i + 1) & t->merge_mask;
    }
}

int tok_trie_init(tok_trie *tr);
void tok_trie_free(tok_trie *tr);
int tok_trie_add(tok_trie *tr, const uint8_t *s, size_t n, int32_t id);
/* Longest token that starts at s and ends within n bytes: its id and *len, or -1. */
int32_t tok_trie_longest(const tok_trie *tr, const uint8_t *s, size_t n, size_t *len);

int tok_ids_push(tok_ids *v, int32_t id);
void tok_bpe_scratch_free(tok_bpe_scratch *sc);

/* ---- tok_bpe.c ---- */
/* Appends the BPE ids of one pre-tokenized piece (raw bytes); 0 on success, -1 out of memory. */
int tok_bpe(const struct tokenizer *t, const uint8_t *piece, size_t n, tok_bpe_scratch *sc, tok_ids *out);
/* Encodes one piece: the vocab fast path, then BPE. */
int tok_encode_piece(const struct tokenizer *t, const uint8_t *piece, size_t n, tok_bpe_scratch *sc, tok_ids *out);

/* ---- tok_load.c ---- */
ms_status tok_load_json(struct tokenizer *t, const char *dir, ms_error *err);
ms_status tok_load_config(struct tokenizer *t, const char *dir, ms_error *err);

#endif
