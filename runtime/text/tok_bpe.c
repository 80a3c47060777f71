/* tok_bpe.c: byte-level BPE of one pre-tokenized piece, as HF's
 * Word::merge_all without dropout: start from one symbol per byte, repeatedly
 * merge the adjacent pair with the lowest merge rank (leftmost on ties) until
 * no adjacent pair has a rank. Short pieces use a rank array and a linear
 * scan (fast for words); long pieces use a binary heap with a linked list of
 * symbols, O(n log n); huge pieces use a bucket queue indexed by rank,
 * O(n + merges), valid when every merge only uses tokens made by earlier
 * merges (the loader checks this: then a merge at rank r can only create
 * pairs of rank > r, so ranks are processed in increasing order, each bucket
 * leftmost first). A megabyte-long piece stays fast. The vocab fast
 * path (a piece that is itself a token reachable by its own merges) skips BPE
 * entirely. This file does not split text. */
#include <stdlib.h>
#include <string.h>

#include "text/tok_internal.h"

#define BPE_SMALL 16  /* pieces up to this many bytes use the quadratic scan */
#define BPE_HUGE 8192 /* pieces over this many bytes use the bucket queue */

/* Grows the scratch arrays to hold n symbols; 0 on success. */
static int scratch_reserve(tok_bpe_scratch *sc, size_t n)
{
    if (n <= sc->cap) return 0;
    size_t nc = sc->cap ? sc->cap : 256;
    while (nc < n) {
        if (nc > SIZE_MAX / 2 / sizeof(int32_t)) return -1;
        nc *= 2;
    }
    int32_t *a = realloc(sc->a, nc * sizeof *a);
    if (a) sc->a = a;
    int32_t *b = realloc(sc->b, nc * sizeof *b);
    if (b) sc->b = b;
    int32_t *c = realloc(sc->c, nc * sizeof *c);
    if (c) sc->c = c;
    if (!a || !b || !c) return -1;
    sc->cap = nc;
    return 0;
}

/* Quadratic BPE over sym[0..n): rk[i] / nid[i] describe pair (i, i+1). Returns the new n. */
static size_t bpe_small(const struct tokenizer *t, int32_t *sym, int32_t *rk, int32_t *nid, size_t n)
{
    for (size_t i = 0; i + 1 < n; i++) rk[i] = tok_merge_rank(t, sym[i], sym[i + 1], &nid[i]);
    while (n > 1) {
        size_t best = 0;
        for (size_t i = 1; i + 1 < n; i++)
            if (rk[i] < rk[best]) best = i;
        if (rk[best] == INT32_MAX) break;
        sym[best] = nid[best];
        size_t tail = n - best - 2; /* pairs after the removed symbol */
        memmove(sym + best + 1, sym + best + 2, tail * sizeof *sym);
        memmove(rk + best + 1, rk + best + 2, tail * sizeof *rk);
        memmove(nid + best + 1, nid + best + 2, tail * sizeof *nid);
        n--;
        if (best > 0) rk[best - 1] = tok_merge_rank(t, sym[best - 1], sym[best], &nid[best - 1]);
        if (best + 1 < n) rk[best] = tok_merge_rank(t, sym[best], sym[best + 1], &nid[best]);
    }
    return n;
}

/* Heap entries are (rank << 32 | pos): the smallest is the lowest rank, leftmost. */
static void heap_push(uint64_t *h, size_t *n, uint64_t v)
{
    size_t i = (*n)++;
    while (i > 0 && v < h[(i - 1) / 2]) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = v;
}

/* Removes and returns the smallest entry. */
static uint64_t heap_pop(uint64_t *h, size_t *n)
{
    uint64_t top = h[0], v = h[--*n];
    size_t i = 0, m = *n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= m) break;
        if (c + 1 < m && h[c + 1] < h[c]) c++;
        if (h[c] >= v) break;
        h[i] = h[c];
        i = c;
    }
    if (m) h[i] = v;
    return top;
}

/* Heap BPE over sym[0..n) with prev/next links; appends the result to out.
 * An entry is stale when its pair changed since: the pair at pos then has
 * another rank (each rank names one pair), so checking the rank suffices. */
static int bpe_heap(const struct tokenizer *t, tok_bpe_scratch *sc, size_t n, tok_ids *out)
{
    int32_t *sym = sc->a, *prev = sc->b, *next = sc->c;
    if (n > (size_t)INT32_MAX / 4) return -1;
    size_t need = 3 * n; /* n-1 initial pairs + at most 2 per merge */
    if (need > sc->heap_cap) {
        uint64_t *h = realloc(sc->heap, need * sizeof *h);
        if (!h) return -1;
        sc->heap = h;
        sc->heap_cap = need;
    }
    uint64_t *h = sc->heap;
    size_t hn = 0;
    int32_t id, r;
    for (size_t i = 0; i < n; i++) {
        prev[i] = (int32_t)i - 1;
        next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    for (size_t i = 0; i + 1 < n; i++)
        if ((r = tok_merge_rank(t, sym[i], sym[i + 1], &id)) != INT32_MAX) heap_push(h, &hn, (uint64_t)r << 32 | i);
    while (hn) {
        uint64_t top = heap_pop(h, &hn);
        int32_t rank = (int32_t)(top >> 32), pos = (int32_t)(uint32_t)top, nx = next[pos];
        if (sym[pos] < 0 || nx < 0 || tok_merge_rank(t, sym[pos], sym[nx], &id) != rank) continue;
        sym[pos] = id;
        sym[nx] = -1;
        next[pos] = next[nx];
        if (next[nx] >= 0) prev[next[nx]] = pos;
        if (prev[pos] >= 0 && (r = tok_merge_rank(t, sym[prev[pos]], sym[pos], &id)) != INT32_MAX)
            heap_push(h, &hn, (uint64_t)r << 32 | (uint32_t)prev[pos]);
        if (next[pos] >= 0 && (r = tok_merge_rank(t, sym[pos], sym[next[pos]], &id)) != INT32_MAX)
            heap_push(h, &hn, (uint64_t)r << 32 | (uint32_t)pos);
    }
    for (int32_t i = 0; i >= 0; i = next[i])
        if (tok_ids_push(out, sym[i])) return -1;
    return 0;
}

/* qsort comparison of int32 values. */
static int cmp_i32(const void *x, const void *y)
{
    int32_t a = *(const int32_t *)x, b = *(const int32_t *)y;
    return (a > b) - (a < b);
}

/* Bucket-queue BPE over sym[0..n) (needs t->monotone_merges); appends the result to out. */
static int bpe_buckets(const struct tokenizer *t, tok_bpe_scratch *sc, size_t n, tok_ids *out)
{
    int32_t *sym = sc->a, *prev = sc->b, *next = sc->c;
    size_t n_ranks = t->n_merges, cap = 3 * n;
    int32_t *head = malloc(n_ranks * sizeof *head);
    int32_t *epos = malloc(cap * sizeof *epos), *enext = malloc(cap * sizeof *enext);
    int32_t *batch = malloc(n * sizeof *batch);
    int rc = -1;
    if (!head || !epos || !enext || !batch) goto out;
    memset(head, 0xFF, n_ranks * sizeof *head);
    size_t ne = 0;
    int32_t id = 0, r;
#define PUSH(rank, pos) (epos[ne] = (pos), enext[ne] = head[rank], head[rank] = (int32_t)ne++)
    for (size_t i = 0; i < n; i++) {
        prev[i] = (int32_t)i - 1;
        next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    for (size_t i = n - 1; i-- > 0;) /* pushed right to left: each list then reads left to right */
        if ((r = tok_merge_rank(t, sym[i], sym[i + 1], &id)) != INT32_MAX) PUSH(r, (int32_t)i);
    for (size_t rank = 0; rank < n_ranks; rank++) {
        if (head[rank] < 0) continue;
        size_t nb = 0;
        int sorted = 1;
        for (int32_t e = head[rank]; e >= 0; e = enext[e]) {
            if (nb && epos[e] < batch[nb - 1]) sorted = 0;
            batch[nb++] = epos[e];
        }
        head[rank] = -1;
        if (!sorted) qsort(batch, nb, sizeof *batch, cmp_i32);
        for (size_t k = 0; k < nb; k++) {
            int32_t pos = batch[k], nx = next[pos];
            if (sym[pos] < 0 || nx < 0 || tok_merge_rank(t, sym[pos], sym[nx], &id) != (int32_t)rank) continue;
            sym[pos] = id;
            sym[nx] = -1;
            next[pos] = next[nx];
            if (next[nx] >= 0) prev[next[nx]] = pos;
            /* new pairs rank above `rank` (monotone merges), so they land in later buckets */
            if (prev[pos] >= 0 && (r = tok_merge_rank(t, sym[prev[pos]], sym[pos], &id)) != INT32_MAX &&
                (size_t)r > rank && ne < cap)
                PUSH(r, prev[pos]);
            if (next[pos] >= 0 && (r = tok_merge_rank(t, sym[pos], sym[next[pos]], &id)) != INT32_MAX &&
                (size_t)r > rank && ne < cap)
                PUSH(r, pos);
        }
    }
#undef PUSH
    for (int32_t i = 0; i >= 0; i = next[i])
        if (tok_ids_push(out, sym[i])) goto out;
    rc = 0;
out:
    free(head);
    free(epos);
    free(enext);
    free(batch);
    return rc;
}

/* Byte-level BPE of one piece, choosing the algorithm by its length. */
int tok_bpe(const struct tokenizer *t, const uint8_t *piece, size_t n, tok_bpe_scratch *sc, tok_ids *out)
{
    if (n == 0) return 0;
    if (scratch_reserve(sc, n)) return -1;
    for (size_t i = 0; i < n; i++) sc->a[i] = t->byte_id[piece[i]];
    if (n > BPE_HUGE && t->monotone_merges && n <= (size_t)INT32_MAX / 4) return bpe_buckets(t, sc, n, out);
    if (n > BPE_SMALL) return bpe_heap(t, sc, n, out);
    size_t m = bpe_small(t, sc->a, sc->b, sc->c, n);
    for (size_t i = 0; i < m; i++)
        if (tok_ids_push(out, sc->a[i])) return -1;
    return 0;
}

/* One piece: a single vocab id when BPE would reach it anyway, else BPE. */
int tok_encode_piece(const struct tokenizer *t, const uint8_t *piece, size_t n, tok_bpe_scratch *sc, tok_ids *out)
{
    if (n <= TOK_MAX_TOKEN_BYTES) {
        tok_keys k = {t->raw_blob, t->raw_off, t->raw_len};
        int32_t id = tok_map_find(&t->raw_map, &k, piece, n);
        if (id >= 0 && (t->ignore_merges || (t->flags[id] & TOKF_SELF))) return tok_ids_push(out, id);
    }
    return tok_bpe(t, piece, n, sc, out);
}
