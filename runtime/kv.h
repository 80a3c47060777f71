/* kv.h: KV-cache block allocation. A pool of fixed-size blocks (the memory
 * itself lives in the backend); each sequence slot has a block table. Sizes
 * are computed with checked arithmetic. Not thread-safe: the engine thread owns it. */
#ifndef MS_KV_H
#define MS_KV_H

#include <stddef.h>
#include <stdint.h>

#include "medserve.h"

typedef struct kv_pool kv_pool;

ms_status kv_pool_create(int n_blocks, int block_size, int max_seqs, int max_blocks_per_seq,
                         kv_pool **out, ms_error *err);
void kv_pool_free(kv_pool *p);
/* Ensures slot has blocks for n_tokens positions; MS_ERR_NOMEM if the pool is out. */
ms_status kv_reserve(kv_pool *p, int slot, int n_tokens, ms_error *err);
/* Returns all of slot's blocks to the pool. */
void kv_release(kv_pool *p, int slot);
const int32_t *kv_blocks(const kv_pool *p, int slot);
size_t kv_used(const kv_pool *p);
size_t kv_total(const kv_pool *p);
int kv_free_blocks(const kv_pool *p);
int kv_block_size(const kv_pool *p);

#endif
