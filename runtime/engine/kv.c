/* kv.c: the KV-cache block allocator of kv.h. A pool of n_blocks block ids
 * (a LIFO free list, so allocation order is deterministic) and, per sequence
 * slot, a table of the block ids that cover its positions in order. Only ids
 * are managed here: the KV memory itself is owned by the backend, which
 * reserves n_blocks x block_size positions up front. Every size is checked
 * before it is used. Not thread-safe (the engine thread owns the pool). */
#include "engine/kv.h"

#include <limits.h>
#include <stdlib.h>

#include "base/err.h"

struct kv_pool {
    int n_blocks, block_size, max_seqs, max_blocks_per_seq;
    int32_t *free_ids; /* [n_blocks] stack; free_ids[0 .. n_free-1] are free */
    int n_free;
    int32_t *tables; /* [max_seqs, max_blocks_per_seq] block ids per slot */
    int *n_held;     /* [max_seqs] blocks held by each slot */
};

/* Allocates the free list and per-slot tables after checking every size. */
ms_status kv_pool_create(int n_blocks, int block_size, int max_seqs, int max_blocks_per_seq, kv_pool **out,
                         ms_error *err)
{
    *out = NULL;
    if (n_blocks <= 0 || block_size <= 0 || max_seqs <= 0 || max_blocks_per_seq <= 0)
        return ms_seterr(err, MS_ERR_INVALID,
                         "kv: n_blocks %d, block_size %d, max_seqs %d, max_blocks_per_seq %d: "
                         "each must be positive",
                         n_blocks, block_size, max_seqs, max_blocks_per_seq);
    /* Positions are ints everywhere: a whole pool and one sequence must fit. */
    int positions;
    if (__builtin_mul_overflow(n_blocks, block_size, &positions) ||
        __builtin_mul_overflow(max_blocks_per_seq, block_size, &positions))
        return ms_seterr(err, MS_ERR_NOMEM,
                         "kv: %d blocks x %d tokens (or %d blocks per sequence) overflow int positions", n_blocks,
                         block_size, max_blocks_per_seq);
    size_t table_n;
    if (__builtin_mul_overflow((size_t)max_seqs, (size_t)max_blocks_per_seq, &table_n) ||
        table_n > SIZE_MAX / sizeof(int32_t))
        return ms_seterr(err, MS_ERR_NOMEM, "kv: %d slots x %d blocks per slot overflow", max_seqs, max_blocks_per_seq);
    kv_pool *p = calloc(1, sizeof *p);
    if (!p) return ms_seterr(err, MS_ERR_NOMEM, "kv: out of memory");
    p->n_blocks = n_blocks;
    p->block_size = block_size;
    p->max_seqs = max_seqs;
    p->max_blocks_per_seq = max_blocks_per_seq;
    p->free_ids = malloc((size_t)n_blocks * sizeof(int32_t));
    p->tables = malloc(table_n * sizeof(int32_t));
    p->n_held = calloc((size_t)max_seqs, sizeof(int));
    if (!p->free_ids || !p->tables || !p->n_held) {
        kv_pool_free(p);
        return ms_seterr(err, MS_ERR_NOMEM, "kv: out of memory for %d blocks, %zu table entries", n_blocks, table_n);
    }
    /* Stack top is block 0, so a fresh pool hands out 0, 1, 2, ... */
    for (int i = 0; i < n_blocks; i++) p->free_ids[i] = n_blocks - 1 - i;
    p->n_free = n_blocks;
    for (size_t i = 0; i < table_n; i++) p->tables[i] = -1;
    *out = p;
    return MS_OK;
}

/* Frees the pool; NULL-safe. */
void kv_pool_free(kv_pool *p)
{
    if (!p) return;
    free(p->free_ids);
    free(p->tables);
    free(p->n_held);
    free(p);
}

/* Grows slot's table to cover n_tokens positions, all or nothing. */
ms_status kv_reserve(kv_pool *p, int slot, int n_tokens, ms_error *err)
{
    if (!p || slot < 0 || slot >= p->max_seqs)
        return ms_seterr(err, MS_ERR_INVALID, "kv: slot %d out of range [0, %d)", slot, p ? p->max_seqs : 0);
    if (n_tokens < 0) return ms_seterr(err, MS_ERR_INVALID, "kv: negative token count %d", n_tokens);
    /* ceil(n_tokens / block_size) without overflow */
    int need = n_tokens / p->block_size + (n_tokens % p->block_size != 0);
    if (need > p->max_blocks_per_seq)
        return ms_seterr(err, MS_ERR_CONTEXT, "kv: %d tokens need %d blocks of %d; a slot holds at most %d", n_tokens,
                         need, p->block_size, p->max_blocks_per_seq);
    int have = p->n_held[slot];
    if (need <= have) return MS_OK;
    if (need - have > p->n_free)
        return ms_seterr(err, MS_ERR_NOMEM, "kv: %d more blocks needed, %d free of %d", need - have, p->n_free,
                         p->n_blocks);
    int32_t *table = p->tables + (size_t)slot * (size_t)p->max_blocks_per_seq;
    for (int i = have; i < need; i++) table[i] = p->free_ids[--p->n_free];
    p->n_held[slot] = need;
    return MS_OK;
}

/* Returns every block of slot to the free list. */
void kv_release(kv_pool *p, int slot)
{
    if (!p || slot < 0 || slot >= p->max_seqs) return;
    int32_t *table = p->tables + (size_t)slot * (size_t)p->max_blocks_per_seq;
    /* Push back in reverse so a re-reserve gets the same ids in the same order. */
    for (int i = p->n_held[slot] - 1; i >= 0; i--) {
        p->free_ids[p->n_free++] = table[i];
        table[i] = -1;
    }
    p->n_held[slot] = 0;
}

/* The slot's block table, or NULL for a bad slot. */
const int32_t *kv_blocks(const kv_pool *p, int slot)
{
    if (!p || slot < 0 || slot >= p->max_seqs) return NULL;
    return p->tables + (size_t)slot * (size_t)p->max_blocks_per_seq;
}

/* Blocks held by one slot (0 for a bad slot). */
int kv_slot_blocks(const kv_pool *p, int slot)
{
    if (!p || slot < 0 || slot >= p->max_seqs) return 0;
    return p->n_held[slot];
}

size_t kv_used(const kv_pool *p)
{
    return p ? (size_t)(p->n_blocks - p->n_free) : 0;
}

size_t kv_total(const kv_pool *p)
{
    return p ? (size_t)p->n_blocks : 0;
}

int kv_free_blocks(const kv_pool *p)
{
    return p ? p->n_free : 0;
}

int kv_block_size(const kv_pool *p)
{
    return p ? p->block_size : 0;
}
