/* tokenizer.c: the tokenizer API: load/free, encode (added tokens, NFC,
 * split, BPE) with optional untrusted ranges, decode, streaming decode and
 * lookups. Loading and validation live in tok_load.c, the split scanner in
 * tok_split.c, BPE in tok_bpe.c.
 *
 * Encode follows HF tokenizers with split_special_tokens=false:
 *   1. added tokens (normalized: false) are cut out of the raw text,
 *      leftmost-longest; bytes inside untrusted ranges never match;
 *   2. each remaining segment is NFC-normalized, then normalized added
 *      tokens (normalized: true) are cut out the same way;
 *   3. each remaining piece of text is split by the Qwen2 regex scanner and
 *      every split is byte-level BPE encoded.
 * Untrusted ranges only switch off added-token matching: they never cut a
 * segment, so text on both sides is split exactly as HF splits the whole. */
#include "text/tokenizer.h"

#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "text/tok_internal.h"
#include "text/tok_split.h"
#include "text/tok_unicode.h"

/* A [begin, end) byte range. */
typedef struct span {
    size_t b, e;
} span;

/* State of one encode call. */
typedef struct enc {
    const tokenizer *t;
    tok_ids ids;
    tok_bpe_scratch sc;
} enc;

/* Frees a tokenizer (NULL-safe). */
void tok_free(tokenizer *t)
{
    if (!t) return;
    free(t->flags);
    free(t->str_off);
    free(t->str_len);
    free(t->str_blob);
    free(t->raw_off);
    free(t->raw_len);
    free(t->raw_blob);
    free(t->added_ids);
    tok_map_free(&t->str_map);
    tok_map_free(&t->raw_map);
    free(t->merges);
    tok_trie_free(&t->trie_raw);
    tok_trie_free(&t->trie_norm);
    free(t->chat_template);
    free(t);
}

/* Loads tokenizer.json, then the optional config files. */
ms_status tok_load(const char *dir, tokenizer **out, ms_error *err)
{
    if (!out) return ms_seterr(err, MS_ERR_INVALID, "tok_load: out is NULL");
    *out = NULL;
    if (!dir) return ms_seterr(err, MS_ERR_INVALID, "tok_load: dir is NULL");
    if (tok_unicode_init()) return ms_seterr(err, MS_ERR_NOMEM, "tok_load: out of memory for Unicode tables");
    tokenizer *t = calloc(1, sizeof *t);
    if (!t) return ms_seterr(err, MS_ERR_NOMEM, "tok_load: out of memory");
    t->eos_id = -1;
    ms_status s = tok_load_json(t, dir, err);
    if (!s) s = tok_load_config(t, dir, err);
    if (s) {
        tok_free(t);
        return s;
    }
    *out = t;
    return MS_OK;
}

/* Max id + 1. */
int tok_n_ids(const tokenizer *t)
{
    return t ? t->n_ids : 0;
}

/* Encodes normalized text s[0..n) with no added tokens left in it. */
static int encode_plain(enc *e, const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t j = tok_split_next(s, n, i);
        if (tok_encode_piece(e->t, s + i, j - i, &e->sc, &e->ids)) return -1;
        i = j;
    }
    return 0;
}

static int encode_segment(enc *e, const uint8_t *s, size_t n, size_t base, const span *un, size_t n_un);

/* Cuts the added tokens of trie out of s[0..n) and encodes the text between
 * them (level 1: encode_segment, level 2: encode_plain). s[0] is at offset
 * base of the coordinates of un[] (sorted, disjoint untrusted spans, where
 * no token may match). Leftmost-longest, as HF's added-vocabulary split. */
static int split_added(enc *e, const tok_trie *trie, int level, const uint8_t *s, size_t n, size_t base, const span *un,
                       size_t n_un)
{
    size_t pos = 0, seg = 0, r = 0;
    while (pos < n) {
        size_t at = base + pos;
        while (r < n_un && un[r].e <= at) r++;
        if (r < n_un && un[r].b <= at) {
            pos = un[r].e - base < n ? un[r].e - base : n;
            continue;
        }
        size_t limit = (r < n_un && un[r].b - base < n) ? un[r].b - base : n, len = 0;
        if (trie->root[s[pos]] < 0) { /* skip to the next byte that can start a token */
            if (trie->first_byte >= 0) {
                const uint8_t *p = memchr(s + pos, trie->first_byte, limit - pos);
                pos = p ? (size_t)(p - s) : limit;
            } else {
                while (++pos < limit && trie->root[s[pos]] < 0) {}
            }
            continue;
        }
        int32_t id = tok_trie_longest(trie, s + pos, limit - pos, &len);
        if (id < 0) {
            pos++;
            continue;
        }
        int rc = level == 1 ? encode_segment(e, s + seg, pos - seg, base + seg, un, n_un)
                            : encode_plain(e, s + seg, pos - seg);
        if (rc || tok_ids_push(&e->ids, id)) return -1;
        pos += len;
        seg = pos;
    }
    return level == 1 ? encode_segment(e, s + seg, n - seg, base + seg, un, n_un) : encode_plain(e, s + seg, n - seg);
}

/* NFC of s into *out (s itself when already NFC); *owned gets what to free. */
static int normalize(const tokenizer *t, const uint8_t *s, size_t n, const uint8_t **out, size_t *out_n,
                     uint8_t **owned)
{
    *owned = NULL;
    *out = s;
    *out_n = n;
    if (!t->nfc || tok_nfc_inert(s, n)) return 0;
    if (tok_nfc(s, n, owned, out_n)) return -1;
    *out = *owned;
    return 0;
}

/* Untrusted spans of the NFC text ns[0..nn) of raw s[0..n) at base: each
 * untrusted sub-run is normalized alone; if the pieces do not concatenate to
 * ns (a combining sequence crosses a boundary) the whole text counts as
 * untrusted. Writes at most 2*n_un+1 spans to out; returns how many, or -1. */
static long map_spans(const tokenizer *t, const uint8_t *s, size_t n, size_t base, const span *un, size_t n_un,
                      const uint8_t *ns, size_t nn, span *out)
{
    size_t pos = 0, npos = 0, k = 0;
    for (size_t r = 0; r <= n_un && pos < n; r++) {
        /* a trusted run [pos, tb) then an untrusted run [tb, te), clipped to the segment */
        size_t tb = n, te = n;
        if (r < n_un) {
            if (un[r].e <= base + pos) continue;
            tb = un[r].b > base + pos ? un[r].b - base : pos;
            te = un[r].e - base;
            if (tb > n) tb = n;
            if (te > n) te = n;
        }
        for (int part = 0; part < 2; part++) {
            size_t b = part ? tb : pos, end = part ? te : tb, m;
            if (end <= b) continue;
            const uint8_t *p;
            uint8_t *own;
            if (normalize(t, s + b, end - b, &p, &m, &own)) return -1;
            int same = npos + m <= nn && memcmp(ns + npos, p, m) == 0;
            free(own);
            if (!same) {
                out[0].b = 0, out[0].e = nn;
                return 1;
            }
            if (part) out[k].b = npos, out[k].e = npos + m, k++;
            npos += m;
        }
        pos = te;
    }
    if (npos != nn) {
        out[0].b = 0, out[0].e = nn;
        return 1;
    }
    return (long)k;
}

/* Encodes a segment of raw text between (non-normalized) added tokens. */
static int encode_segment(enc *e, const uint8_t *s, size_t n, size_t base, const span *un, size_t n_un)
{
    if (n == 0) return 0;
    const tokenizer *t = e->t;
    const uint8_t *ns;
    size_t nn;
    uint8_t *own;
    if (normalize(t, s, n, &ns, &nn, &own)) return -1;
    int rc;
    if (t->trie_norm.n_tokens == 0) {
        rc = encode_plain(e, ns, nn);
    } else {
        size_t r0 = 0, r1;
        while (r0 < n_un && un[r0].e <= base) r0++;
        for (r1 = r0; r1 < n_un && un[r1].b < base + n; r1++) {}
        span *nsp = NULL;
        long k = 0;
        if (r1 > r0) {
            nsp = malloc((2 * (r1 - r0) + 1) * sizeof *nsp);
            k = nsp ? map_spans(t, s, n, base, un + r0, r1 - r0, ns, nn, nsp) : -1;
        }
        rc = k < 0 ? -1 : split_added(e, &t->trie_norm, 2, ns, nn, 0, nsp, (size_t)k);
        free(nsp);
    }
    free(own);
    return rc;
}

/* Orders spans by their start. */
static int cmp_span(const void *a, const void *b)
{
    const span *x = a, *y = b;
    return x->b < y->b ? -1 : x->b > y->b;
}

/* Checks the arguments and the UTF-8, merges the ranges, then splits on added tokens. */
ms_status tok_encode_masked(const tokenizer *t, const char *text, size_t len, const size_t *untrusted, size_t n_ranges,
                            int32_t **ids, size_t *n, ms_error *err)
{
    if (!ids || !n) return ms_seterr(err, MS_ERR_INVALID, "tok_encode: ids or n is NULL");
    *ids = NULL;
    *n = 0;
    if (!t || (!text && len) || (!untrusted && n_ranges))
        return ms_seterr(err, MS_ERR_INVALID, "tok_encode: NULL tokenizer, text or ranges");
    const uint8_t *s = (const uint8_t *)(text ? text : "");
    size_t ok = tok_utf8_valid_prefix(s, len);
    if (ok != len) return ms_seterr(err, MS_ERR_INVALID, "tok_encode: text is not valid UTF-8 at byte %zu", ok);
    if (n_ranges > SIZE_MAX / sizeof(span)) return ms_seterr(err, MS_ERR_NOMEM, "tok_encode: too many ranges");
    span *un = NULL;
    size_t n_un = 0;
    if (n_ranges) {
        un = malloc(n_ranges * sizeof *un);
        if (!un) return ms_seterr(err, MS_ERR_NOMEM, "tok_encode: out of memory");
        for (size_t i = 0; i < n_ranges; i++) {
            size_t b = untrusted[2 * i], e = untrusted[2 * i + 1];
            if (b > e || e > len) {
                free(un);
                return ms_seterr(err, MS_ERR_INVALID, "tok_encode: untrusted range %zu [%zu, %zu) is outside [0, %zu]",
                                 i, b, e, len);
            }
            if (b < e) un[n_un].b = b, un[n_un].e = e, n_un++;
        }
        qsort(un, n_un, sizeof *un, cmp_span);
        size_t m = 0; /* merge overlapping or touching spans */
        for (size_t i = 0; i < n_un; i++) {
            if (m && un[i].b <= un[m - 1].e) {
                if (un[i].e > un[m - 1].e) un[m - 1].e = un[i].e;
            } else {
                un[m++] = un[i];
            }
        }
        n_un = m;
    }
    enc e = {.t = t};
    int rc = split_added(&e, &t->trie_raw, 1, s, len, 0, un, n_un);
    free(un);
    tok_bpe_scratch_free(&e.sc);
    if (!rc && !e.ids.v) { /* always hand back a real allocation */
        rc = tok_ids_push(&e.ids, 0);
        e.ids.n = 0;
    }
    if (rc) {
        free(e.ids.v);
        return ms_seterr(err, MS_ERR_NOMEM, "tok_encode: out of memory encoding %zu bytes", len);
    }
    *ids = e.ids.v;
    *n = e.ids.n;
    return MS_OK;
}

/* tok_encode_masked with no untrusted range. */
ms_status tok_encode(const tokenizer *t, const char *text, size_t len, int32_t **ids, size_t *n, ms_error *err)
{
    return tok_encode_masked(t, text, len, NULL, 0, ids, n, err);
}

/* Bytes of id for decoding, or NULL when it has none or is skipped. */
static const char *id_bytes(const tokenizer *t, int32_t id, int skip_special, size_t *len)
{
    *len = 0;
    if (id < 0 || id >= t->n_ids || !t->raw_len[id]) return NULL;
    if (skip_special && (t->flags[id] & TOKF_SPECIAL)) return NULL;
    *len = t->raw_len[id];
    return t->raw_blob + t->raw_off[id];
}

/* Joins the bytes of all ids, then repairs the UTF-8 once. */
ms_status tok_decode(const tokenizer *t, const int32_t *ids, size_t n, int skip_special, char **out, size_t *len,
                     ms_error *err)
{
    if (!out) return ms_seterr(err, MS_ERR_INVALID, "tok_decode: out is NULL");
    *out = NULL;
    if (len) *len = 0;
    if (!t || (!ids && n)) return ms_seterr(err, MS_ERR_INVALID, "tok_decode: NULL tokenizer or ids");
    size_t total = 0, k;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0)
            return ms_seterr(err, MS_ERR_INVALID, "tok_decode: id %d at index %zu is negative", (int)ids[i], i);
        id_bytes(t, ids[i], skip_special, &k);
        total += k; /* k <= TOK_MAX_TOKEN_BYTES and n fits in memory: no overflow before 2^54 ids */
    }
    if (total > (SIZE_MAX - 1) / 4) return ms_seterr(err, MS_ERR_NOMEM, "tok_decode: output too large");
    uint8_t *raw = malloc(total ? total : 1);
    char *txt = malloc(3 * total + 1);
    if (!raw || !txt) {
        free(raw);
        free(txt);
        return ms_seterr(err, MS_ERR_NOMEM, "tok_decode: out of memory for %zu bytes", total);
    }
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        const char *b = id_bytes(t, ids[i], skip_special, &k);
        if (k) memcpy(raw + o, b, k);
        o += k;
    }
    size_t m = tok_utf8_repair(raw, total, (uint8_t *)txt);
    free(raw);
    txt[m] = 0;
    *out = txt;
    if (len) *len = m;
    return MS_OK;
}

/* Decoded bytes of one id (added tokens included). */
const char *tok_token_bytes(const tokenizer *t, int32_t id, size_t *len)
{
    size_t k = 0;
    const char *p = t ? id_bytes(t, id, 0, &k) : NULL;
    if (len) *len = k;
    return p;
}

/* Whether id is an added token with special: true. */
int tok_is_special(const tokenizer *t, int32_t id)
{
    return t && id >= 0 && id < t->n_ids && (t->flags[id] & TOKF_SPECIAL) != 0;
}

/* Added tokens first (as HF), then the vocab. */
int32_t tok_lookup(const tokenizer *t, const char *s)
{
    if (!t || !s) return -1;
    size_t n = strlen(s);
    for (size_t i = 0; i < t->n_added; i++) {
        int32_t id = t->added_ids[i];
        if (t->str_len[id] == n && memcmp(t->str_blob + t->str_off[id], s, n) == 0) return id;
    }
    tok_keys k = {t->str_blob, t->str_off, t->str_len};
    return tok_map_find(&t->str_map, &k, s, n);
}

/* The chat template text, or NULL. */
const char *tok_chat_template(const tokenizer *t)
{
    return t ? t->chat_template : NULL;
}

/* Id of tokenizer_config.json eos_token, or -1. */
int32_t tok_eos_id(const tokenizer *t)
{
    return t ? t->eos_id : -1;
}

/* Walks buf[0..n): writes complete sequences and U+FFFD for invalid ones to
 * out (when out is non-NULL); returns the output size and the number of
 * trailing bytes held back as an incomplete sequence in *held. */
static size_t stream_walk(const uint8_t *buf, size_t n, uint8_t *out, size_t *held)
{
    size_t tail = tok_utf8_incomplete_tail(buf, n), body = n - tail;
    *held = tail;
    if (out) return tok_utf8_repair(buf, body, out);
    uint8_t tmp[3 * (TOK_MAX_TOKEN_BYTES + 8)];
    return tok_utf8_repair(buf, body, tmp);
}

/* Appends id's bytes to the held tail and emits what is complete. */
size_t tok_stream_feed(const tokenizer *t, tok_stream *s, int32_t id, int skip_special, char *out, size_t cap)
{
    if (!t || !s || !out || s->n_pending > 3) return 0;
    size_t k;
    const char *b = id_bytes(t, id, skip_special, &k);
    if (!k) return 0;
    uint8_t buf[TOK_MAX_TOKEN_BYTES + 8];
    memcpy(buf, s->pending, s->n_pending);
    memcpy(buf + s->n_pending, b, k);
    size_t n = s->n_pending + k, held;
    if (cap < 3 * n && stream_walk(buf, n, NULL, &held) > cap) return 0; /* caller broke the cap contract */
    size_t m = stream_walk(buf, n, (uint8_t *)out, &held);
    memcpy(s->pending, buf + n - held, held);
    s->n_pending = held;
    return m;
}

/* Emits one U+FFFD for a held incomplete tail and resets the stream. */
size_t tok_stream_flush(tok_stream *s, char *out, size_t cap)
{
    if (!s || !out || cap < 3 || !s->n_pending) {
        if (s) s->n_pending = 0;
        return 0;
    }
    s->n_pending = 0;
    out[0] = (char)0xEF, out[1] = (char)0xBF, out[2] = (char)0xBD;
    return 3;
}
