/* test_kv.c: the KV block allocator (kv.h): reserve/release accounting,
 * all-or-nothing reservation, per-slot limits, bad arguments, and that no
 * block is ever handed to two slots at once (random workload). */
#include <stdlib.h>

#include "engine/kv.h"
#include "util.h"

/* Bad arguments and overflowing sizes are refused. */
static void t_create_checks(void)
{
    kv_pool *p = NULL;
    ms_error e = {0};
    CHECK(kv_pool_create(0, 16, 4, 4, &p, &e) == MS_ERR_INVALID && !p, "zero blocks accepted");
    CHECK(kv_pool_create(8, -1, 4, 4, &p, &e) == MS_ERR_INVALID, "negative block size accepted");
    CHECK(kv_pool_create(8, 16, 0, 4, &p, &e) == MS_ERR_INVALID, "zero slots accepted");
    CHECK(kv_pool_create(1 << 20, 1 << 12, 4, 4, &p, &e) == MS_ERR_NOMEM && strstr(e.message, "overflow"),
          "positions overflow not caught: %s", e.message);
    CHECK(kv_pool_create(8, 1 << 12, 4, 1 << 20, &p, &e) == MS_ERR_NOMEM, "per-seq overflow not caught");
    CHECK(kv_used(NULL) == 0 && kv_total(NULL) == 0 && kv_blocks(NULL, 0) == NULL, "NULL pool");
    kv_pool_free(NULL);
}

/* Reserve/release accounting, limits and all-or-nothing reservation. */
static void t_reserve_release(void)
{
    kv_pool *p = NULL;
    ms_error e = {0};
    REQUIRE(kv_pool_create(9, 16, 3, 4, &p, &e) == MS_OK, "%s", e.message);
    CHECK(kv_total(p) == 9 && kv_used(p) == 0 && kv_free_blocks(p) == 9 && kv_block_size(p) == 16, "fresh pool counts");
    CHECK(kv_reserve(p, 0, 0, &e) == MS_OK && kv_slot_blocks(p, 0) == 0, "0 tokens need no block");
    CHECK(kv_reserve(p, 0, 1, &e) == MS_OK && kv_slot_blocks(p, 0) == 1, "1 token = 1 block");
    CHECK(kv_reserve(p, 0, 16, &e) == MS_OK && kv_slot_blocks(p, 0) == 1, "16 tokens = 1 block");
    CHECK(kv_reserve(p, 0, 17, &e) == MS_OK && kv_slot_blocks(p, 0) == 2, "17 tokens = 2 blocks");
    CHECK(kv_reserve(p, 0, 5, &e) == MS_OK && kv_slot_blocks(p, 0) == 2, "reserve never shrinks");
    const int32_t *t0 = kv_blocks(p, 0);
    CHECK(t0[0] == 0 && t0[1] == 1, "fresh pool hands out 0, 1: got %d %d", t0[0], t0[1]);
    CHECK(kv_reserve(p, 1, 64, &e) == MS_OK && kv_used(p) == 6, "used %zu", kv_used(p));
    CHECK(kv_reserve(p, 2, 65, &e) == MS_ERR_CONTEXT && strstr(e.message, "at most 4"), "per-slot cap: %s", e.message);
    CHECK(kv_reserve(p, 2, 64, &e) == MS_ERR_NOMEM && kv_slot_blocks(p, 2) == 0 && kv_used(p) == 6,
          "all-or-nothing on exhaustion: held %d used %zu", kv_slot_blocks(p, 2), kv_used(p));
    CHECK(kv_reserve(p, 2, 64 - 16, &e) == MS_OK && kv_free_blocks(p) == 0, "exact fit");
    CHECK(kv_reserve(p, 3, 1, &e) == MS_ERR_INVALID && kv_reserve(p, -1, 1, &e) == MS_ERR_INVALID, "bad slot accepted");
    CHECK(kv_reserve(p, 0, -5, &e) == MS_ERR_INVALID, "negative tokens accepted");
    kv_release(p, 1);
    CHECK(kv_used(p) == 5 && kv_slot_blocks(p, 1) == 0 && kv_free_blocks(p) == 4, "release returns blocks");
    kv_release(p, 1); /* twice is harmless */
    kv_release(p, 99);
    CHECK(kv_used(p) == 5, "double release changed counts");
    kv_release(p, 0);
    kv_release(p, 2);
    CHECK(kv_used(p) == 0 && kv_free_blocks(p) == 9, "all back");
    kv_pool_free(p);
}

/* A random workload never gives one block to two slots and keeps the counts right. */
static void t_random_no_sharing(void)
{
    enum { NB = 37, BS = 4, SLOTS = 6, MAXB = 9 };
    kv_pool *p = NULL;
    ms_error e = {0};
    REQUIRE(kv_pool_create(NB, BS, SLOTS, MAXB, &p, &e) == MS_OK, "%s", e.message);
    unsigned s = 12345;
    int bad = 0;
    for (int it = 0; it < 5000 && !bad; it++) {
        s = s * 1103515245u + 12345u;
        int slot = (int)((s >> 8) % SLOTS);
        if ((s >> 20) % 4 == 0) {
            kv_release(p, slot);
        } else {
            int n = (int)((s >> 12) % (MAXB * BS + 1));
            ms_status st = kv_reserve(p, slot, n, &e);
            if (st != MS_OK && st != MS_ERR_NOMEM) bad = 1;
            if (st == MS_OK && kv_slot_blocks(p, slot) * BS < n) bad = 2;
        }
        int owner[NB];
        for (int b = 0; b < NB; b++) owner[b] = -1;
        size_t held = 0;
        for (int sl = 0; sl < SLOTS; sl++) {
            const int32_t *t = kv_blocks(p, sl);
            for (int i = 0; i < kv_slot_blocks(p, sl); i++) {
                if (t[i] < 0 || t[i] >= NB || owner[t[i]] != -1) bad = 3;
                else owner[t[i]] = sl;
                held++;
            }
        }
        if (held != kv_used(p) || kv_used(p) + (size_t)kv_free_blocks(p) != NB) bad = 4;
    }
    CHECK(!bad, "allocator invariant %d broken", bad);
    kv_pool_free(p);
}

int main(int argc, char **argv)
{
    static const test_case cases[] = {
        {"kv_create_checks", t_create_checks},
        {"kv_reserve_release", t_reserve_release},
        {"kv_random_no_sharing", t_random_no_sharing},
    };
    return test_main(argc, argv, cases, (int)(sizeof cases / sizeof cases[0]));
}
