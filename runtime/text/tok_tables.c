/* tok_tables.c: the lookup structures behind the tokenizer: byte-string ->
 * id hash maps (keys live in the tokenizer's blobs, the map stores only
 * hashes and ids), the merge table (id pair -> rank and merged id), the byte
 * trie of added-token texts, and growable id lists. Sizes are bounded by the
 * loader's limits; every growth is overflow-checked. No tokenizing here. */
#include <stdlib.h>
#include <string.h>

#include "text/tok_internal.h"

/* 32-bit hash of n bytes, a word at a time. */
uint32_t tok_hash(const void *p, size_t n)
{
    const uint8_t *s = p;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xff51afd7ed558ccdull);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xbf58476d1ce4e5b9ull;
        h ^= h >> 31;
        s += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, s, n);
    h = (h ^ w) * 0x94d049bb133111ebull;
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 32;
    return (uint32_t)h;
}

/* Smallest power of two >= 2*n (at least 16). */
static size_t table_size(size_t n)
{
    size_t s = 16;
    while (s < 2 * n) s *= 2;
    return s;
}

/* Allocates an empty map for about n_keys keys. */
int tok_map_init(tok_map *m, size_t n_keys)
{
    size_t s = table_size(n_keys);
    m->slots = calloc(s, sizeof *m->slots);
    m->mask = s - 1;
    return m->slots ? 0 : -1;
}

/* Frees the slots (NULL-safe). */
void tok_map_free(tok_map *m)
{
    if (!m) return;
    free(m->slots);
    m->slots = NULL;
}

/* Inserts id under its key; reports an equal key already present. */
int32_t tok_map_put(tok_map *m, const tok_keys *k, int32_t id)
{
    const char *key = k->blob + k->off[id];
    size_t n = k->len[id];
    uint32_t h = tok_hash(key, n);
    size_t i = h & m->mask;
    for (;;) {
        uint64_t s = m->slots[i];
        if (!s) {
            m->slots[i] = ((uint64_t)h << 32) | (uint32_t)(id + 1);
            return -1;
        }
        int32_t other = (int32_t)(uint32_t)s - 1;
        if ((uint32_t)(s >> 32) == h && k->len[other] == n && memcmp(k->blob + k->off[other], key, n) == 0)
            return other;
        i = (i + 1) & m->mask;
    }
}

/* Id whose key equals key[0..n), or -1. */
int32_t tok_map_find(const tok_map *m, const tok_keys *k, const void *key, size_t n)
{
    uint32_t h = tok_hash(key, n);
    size_t i = h & m->mask;
    for (;;) {
        uint64_t s = m->slots[i];
        if (!s) return -1;
        int32_t id = (int32_t)(uint32_t)s - 1;
        if ((uint32_t)(s >> 32) == h && k->len[id] == n && memcmp(k->blob + k->off[id], key, n) == 0) return id;
        i = (i + 1) & m->mask;
    }
}

/* Allocates an empty merge table for n merges. */
int tok_merges_init(struct tokenizer *t, size_t n)
{
    size_t s = table_size(n);
    t->merges = malloc(s * sizeof *t->merges);
    if (!t->merges) return -1;
    for (size_t i = 0; i < s; i++) t->merges[i].key = UINT64_MAX;
    t->merge_mask = s - 1;
    t->n_merges = 0;
    return 0;
}

/* Inserts one merge (a, b) -> (rank, id). */
int tok_merges_put(struct tokenizer *t, int32_t a, int32_t b, int32_t rank, int32_t id)
{
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t i = (size_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & t->merge_mask;
    while (t->merges[i].key != UINT64_MAX) {
        if (t->merges[i].key == key) return 1;
        i = (i + 1) & t->merge_mask;
    }
    t->merges[i].key = key;
    t->merges[i].rank = rank;
    t->merges[i].id = id;
    t->n_merges++;
    return 0;
}

/* An empty trie with only its root. */
int tok_trie_init(tok_trie *tr)
{
    memset(tr, 0, sizeof *tr);
    for (int i = 0; i < 256; i++) tr->root[i] = -1;
    tr->first_byte = -1;
    tr->cap = 64;
    tr->first = malloc(tr->cap * sizeof *tr->first);
    tr->next = malloc(tr->cap * sizeof *tr->next);
    tr->id = malloc(tr->cap * sizeof *tr->id);
    tr->byte = malloc(tr->cap);
    if (!tr->first || !tr->next || !tr->id || !tr->byte) return -1;
    tr->first[0] = tr->next[0] = tr->id[0] = -1;
    tr->byte[0] = 0;
    tr->n = 1;
    return 0;
}

/* Frees the trie (NULL-safe). */
void tok_trie_free(tok_trie *tr)
{
    if (!tr) return;
    free(tr->first);
    free(tr->next);
    free(tr->id);
    free(tr->byte);
    memset(tr, 0, sizeof *tr);
}

/* Child of node with label b, or -1. */
static int32_t trie_child(const tok_trie *tr, int32_t node, uint8_t b)
{
    if (node == 0) return tr->root[b];
    for (int32_t c = tr->first[node]; c >= 0; c = tr->next[c])
        if (tr->byte[c] == b) return c;
    return -1;
}

/* Appends a node labelled b under parent; its index, or -1 out of memory. */
static int32_t trie_new_child(tok_trie *tr, int32_t parent, uint8_t b)
{
    if (tr->n == tr->cap) {
        if (tr->cap > (size_t)INT32_MAX / 2) return -1;
        size_t nc = tr->cap * 2;
        int32_t *f = realloc(tr->first, nc * sizeof *f);
        if (f) tr->first = f;
        int32_t *x = realloc(tr->next, nc * sizeof *x);
        if (x) tr->next = x;
        int32_t *d = realloc(tr->id, nc * sizeof *d);
        if (d) tr->id = d;
        uint8_t *y = realloc(tr->byte, nc);
        if (y) tr->byte = y;
        if (!f || !x || !d || !y) return -1;
        tr->cap = nc;
    }
    int32_t c = (int32_t)tr->n++;
    tr->first[c] = -1;
    tr->id[c] = -1;
    tr->byte[c] = b;
    if (parent == 0) {
        tr->next[c] = -1;
        tr->root[b] = c;
    } else {
        tr->next[c] = tr->first[parent];
        tr->first[parent] = c;
    }
    return c;
}

/* Adds the token s[0..n) with its id. */
int tok_trie_add(tok_trie *tr, const uint8_t *s, size_t n, int32_t id)
{
    int32_t node = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t c = trie_child(tr, node, s[i]);
        if (c < 0 && (c = trie_new_child(tr, node, s[i])) < 0) return -1;
        node = c;
    }
    tr->id[node] = id;
    tr->n_tokens++;
    int k = 0, b = -1; /* recompute the single first byte, if there is one */
    for (int i = 0; i < 256; i++)
        if (tr->root[i] >= 0) k++, b = i;
    tr->first_byte = k == 1 ? b : -1;
    return 0;
}

/* Walks s from the root, remembering the last node that ends a token. */
int32_t tok_trie_longest(const tok_trie *tr, const uint8_t *s, size_t n, size_t *len)
{
    int32_t node = 0, best = -1;
    for (size_t i = 0; i < n; i++) {
        node = trie_child(tr, node, s[i]);
        if (node < 0) break;
        if (tr->id[node] >= 0) {
            best = tr->id[node];
            *len = i + 1;
        }
    }
    return best;
}

/* Appends one id, doubling the capacity when full. */
int tok_ids_push(tok_ids *v, int32_t id)
{
    if (v->n == v->cap) {
        size_t nc = v->cap ? v->cap * 2 : 64;
        if (nc > SIZE_MAX / sizeof *v->v) return -1;
        int32_t *p = realloc(v->v, nc * sizeof *p);
        if (!p) return -1;
        v->v = p;
        v->cap = nc;
    }
    v->v[v->n++] = id;
    return 0;
}

/* Frees the scratch arrays (NULL-safe). */
void tok_bpe_scratch_free(tok_bpe_scratch *sc)
{
    if (!sc) return;
    free(sc->a);
    free(sc->b);
    free(sc->c);
    free(sc->heap);
    memset(sc, 0, sizeof *sc);
}
