/* kv.h: KV-cache block allocation. A pool of fixed-size blocks (the memory
 * itself lives in the backend); each sequence slot has a block table. Sizes
 * are computed with checked arithmetic. Not thread-safe: the engine thread owns it. */
#ifndef MS_KV_H
#define MS_KV_H

#include <stddef.h>
#include <stdint.h>

#include "medserve.h"

typedef struct kv_pool kv_pool;

/* A pool of n_blocks blocks of block_size positions for max_seqs slots of at
 * most max_blocks_per_seq blocks each; all products must fit in int positions. */
ms_status kv_pool_create(int n_blocks, int block_size, int max_seqs, int max_blocks_per_seq, kv_pool **out,
                         ms_error *err);
void kv_pool_free(kv_pool *p); /* NULL-safe */
/* Ensures slot has blocks for n_tokens positions (all or nothing); MS_ERR_NOMEM
 * if the pool is out, MS_ERR_CONTEXT past max_blocks_per_seq. Never shrinks. */
ms_status kv_reserve(kv_pool *p, int slot, int n_tokens, ms_error *err);
/* Returns all of slot's blocks to the pool. */
void kv_release(kv_pool *p, int slot);
/* The slot's block table (valid for kv_slot_blocks entries), or NULL for a bad slot. */
const int32_t *kv_blocks(const kv_pool *p, int slot);
/* Blocks held by slot (its table has this many valid ids). */
int kv_slot_blocks(const kv_pool *p, int slot);
/* Blocks in use / in the pool. */
size_t kv_used(const kv_pool *p);
size_t kv_total(const kv_pool *p);
int kv_free_blocks(const kv_pool *p);
int kv_block_size(const kv_pool *p);

#endif
