/* tok_load.c: reads and validates tokenizer.json and tokenizer_config.json
 * (plus chat_template.jinja) into a struct tokenizer.
 *
 * Only the shape Qwen2/Qwen3 use is accepted: model BPE (no dropout, no
 * byte fallback, no subword prefix/suffix), normalizer NFC or none,
 * pre-tokenizer Sequence[Split(the Qwen2 regex, Isolated), ByteLevel(no
 * prefix space, no regex)], decoder ByteLevel, no truncation/padding, added
 * tokens without lstrip/rstrip/single_word. Anything else is refused with a
 * message "FILE: FIELD: CHECK". Ids must be non-negative, unique and dense;
 * merges must name vocab tokens whose concatenation is a vocab token. It
 * does not tokenize (tokenizer.c does). */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/json.h"
#include "text/tok_internal.h"
#include "text/tok_split.h"
#include "text/tok_unicode.h"

/* GPT-2 byte_to_unicode: the code point byte b is written as. */
static uint32_t byte_to_cp(int b)
{
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) return (uint32_t)b;
    int k = 0; /* rank of b among the 68 unprintable bytes */
    for (int x = 0; x < b; x++)
        if (!((x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF))) k++;
    return 0x100u + (uint32_t)k;
}

/* Writes the UTF-8 of code point c (< 0x800 here) to out; returns its length. */
static size_t put_cp(uint32_t c, char *out)
{
    if (c < 0x80) {
        out[0] = (char)c;
        return 1;
    }
    out[0] = (char)(0xC0 | (c >> 6));
    out[1] = (char)(0x80 | (c & 0x3F));
    return 2;
}

/* Checks one JSON value is a boolean equal to want (absent counts as dflt). */
static ms_status want_bool(const cJSON *o, const char *key, int dflt, int want, const char *path, const char *where,
                           ms_error *err)
{
    const cJSON *v = json_get(o, key);
    int val = dflt;
    if (v && !cJSON_IsNull(v)) {
        if (!cJSON_IsBool(v))
            return ms_seterr(err, MS_ERR_FORMAT, "%s: %s.%s: must be true or false", path, where, key);
        val = cJSON_IsTrue(v);
    }
    if (val != want)
        return ms_seterr(err, MS_ERR_UNSUPPORTED, "%s: %s.%s: must be %s (only the Qwen2/Qwen3 layout is supported)",
                         path, where, key, want ? "true" : "false");
    return MS_OK;
}

/* The "type" string of an object, or NULL. */
static const char *type_of(const cJSON *o)
{
    const cJSON *v = json_get(o, "type");
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* normalizer, pre_tokenizer, decoder, post_processor, truncation, padding. */
static ms_status check_pipeline(struct tokenizer *t, const cJSON *root, const char *path, ms_error *err)
{
    const cJSON *norm = json_get(root, "normalizer");
    if (!norm || cJSON_IsNull(norm)) t->nfc = 0;
    else if (cJSON_IsObject(norm) && type_of(norm) && !strcmp(type_of(norm), "NFC")) t->nfc = 1;
    else
        return ms_seterr(err, MS_ERR_UNSUPPORTED, "%s: normalizer: unsupported normalizer \"%.60s\" (only NFC or null)",
                         path, type_of(norm) ? type_of(norm) : "?");

    const cJSON *pt = json_get(root, "pre_tokenizer");
    const cJSON *list = json_get(pt, "pretokenizers");
    if (!type_of(pt) || strcmp(type_of(pt), "Sequence") || !cJSON_IsArray(list) || cJSON_GetArraySize(list) != 2)
        return ms_seterr(err, MS_ERR_UNSUPPORTED, "%s: pre_tokenizer: must be Sequence[Split(Qwen2 regex), ByteLevel]",
                         path);
    const cJSON *split = cJSON_GetArrayItem(list, 0), *bl = cJSON_GetArrayItem(list, 1);
    const cJSON *pat = json_get(json_get(split, "pattern"), "Regex");
    const cJSON *beh = json_get(split, "behavior");
    if (!type_of(split) || strcmp(type_of(split), "Split"))
        return ms_seterr(err, MS_ERR_UNSUPPORTED, "%s: pre_tokenizer.pretokenizers[0]: must be Split", path);
    if (!cJSON_IsString(pat) || strcmp(pat->valuestring, TOK_QWEN2_PATTERN))
        return ms_seterr(err, MS_ERR_UNSUPPORTED,
                         "%s: pre_tokenizer.pretokenizers[0].pattern: only the Qwen2/Qwen3 split regex is supported",
                         path);
    if (!cJSON_IsString(beh) || strcmp(beh->valuestring, "Isolated"))
        return ms_seterr(err, MS_ERR_UNSUPPORTED, "%s: pre_tokenizer.pretokenizers[0].behavior: must be \"Isolated\"",
                         path);
    ms_status s;
    if ((s = want_bool(split, "invert", 0, 0, path, "pre_tokenizer.pretokenizers[0]", err))) return s;
    if (!type_of(bl) || strcmp(type_of(bl), "ByteLevel"))
        return ms_seterr(err, MS_ERR_UNSUPPORTED, "%s: pre_tokenizer.pretokenizers[1]: must be ByteLevel", path);
    if ((s = want_bool(bl, "add_prefix_space", 1, 0, path, "pre_tokenizer.pretokenizers[1]", err))) return s;
    if ((s = want_bool(bl, "use_regex", 1, 0, path, "pre_tokenizer.pretokenizers[1]", err))) return s;

    const cJSON *dec = json_get(root, "decoder");
    if (!type_of(dec) || strcmp(type_of(dec), "ByteLevel"))
        return ms_seterr(err, MS_ERR_UNSUPPORTED, "%s: decoder: must be ByteLevel", path);
    const cJSON *pp = json_get(root, "post_processor");
    if (pp && !cJSON_IsNull(pp) && (!type_of(pp) || strcmp(type_of(pp), "ByteLevel")))
        return ms_seterr(
            err, MS_ERR_UNSUPPORTED,
            "%s: post_processor: \"%.60s\" is not supported (only ByteLevel or null: it must add no tokens)", path,
            type_of(pp) ? type_of(pp) : "?");
    static const char *const must_be_null[] = {"truncation", "padding"};
    for (int i = 0; i < 2; i++) {
        const cJSON *v = json_get(root, must_be_null[i]);
        if (v && !cJSON_IsNull(v))
            return ms_seterr(err, MS_ERR_UNSUPPORTED, "%s: %s: must be null", path, must_be_null[i]);
    }
    return MS_OK;
}

/* model.*: type, dropout, unk_token, prefixes, byte_fallback, ignore_merges. */
static ms_status check_model(struct tokenizer *t, const cJSON *model, const char *path, ms_error *err)
{
    if (!cJSON_IsObject(model)) return ms_seterr(err, MS_ERR_FORMAT, "%s: model: missing or not an object", path);
    const char *ty = type_of(model);
    if (json_get(model, "type") && (!ty || strcmp(ty, "BPE")))
        return ms_seterr(err, MS_ERR_UNSUPPORTED, "%s: model.type: \"%.60s\" is not supported (only BPE)", path,
                         ty ? ty : "?");
    const cJSON *v = json_get(model, "dropout");
    if (v && !cJSON_IsNull(v)) return ms_seterr(err, MS_ERR_UNSUPPORTED, "%s: model.dropout: must be null", path);
    static const char *const empty_keys[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        v = json_get(model, empty_keys[i]);
        if (v && !cJSON_IsNull(v) && !(cJSON_IsString(v) && v->valuestring[0] == 0))
            return ms_seterr(err, MS_ERR_UNSUPPORTED, "%s: model.%s: must be empty or null", path, empty_keys[i]);
    }
    ms_status s;
    if ((s = want_bool(model, "byte_fallback", 0, 0, path, "model", err))) return s;
    int im = 0;
    if ((s = json_get_bool(model, "ignore_merges", 0, &im, path, err))) return s;
    t->ignore_merges = im;
    v = json_get(model, "unk_token");
    if (v && !cJSON_IsNull(v) && !cJSON_IsString(v))
        return ms_seterr(err, MS_ERR_FORMAT, "%s: model.unk_token: must be a string or null", path);
    if (!cJSON_IsObject(json_get(model, "vocab")))
        return ms_seterr(err, MS_ERR_FORMAT, "%s: model.vocab: missing or not an object", path);
    if (!cJSON_IsArray(json_get(model, "merges")))
        return ms_seterr(err, MS_ERR_FORMAT, "%s: model.merges: missing or not an array", path);
    return MS_OK;
}

/* Reads an integer id in [0, limit) from v; what names it in errors. */
static ms_status read_id(const cJSON *v, int64_t limit, const char *path, const char *what, ms_error *err, int32_t *out)
{
    if (!cJSON_IsNumber(v)) return ms_seterr(err, MS_ERR_FORMAT, "%s: %s: id is missing or not a number", path, what);
    double d = v->valuedouble;
    if (d < 0) return ms_seterr(err, MS_ERR_FORMAT, "%s: %s: id %.0f is negative", path, what, d);
    if (d >= (double)limit)
        return ms_seterr(err, MS_ERR_FORMAT, "%s: %s: id %.0f is out of range (must be below %lld)", path, what, d,
                         (long long)limit);
    if (d != floor(d)) return ms_seterr(err, MS_ERR_FORMAT, "%s: %s: id %g is not an integer", path, what, d);
    *out = (int32_t)d;
    return MS_OK;
}

/* Per-id arrays sized for `cap` ids; the string blob sized `blob` bytes. */
static ms_status alloc_ids(struct tokenizer *t, size_t cap, size_t blob, const char *path, ms_error *err)
{
    t->flags = calloc(cap, 1);
    t->str_off = calloc(cap, sizeof *t->str_off);
    t->str_len = calloc(cap, sizeof *t->str_len);
    t->raw_off = calloc(cap, sizeof *t->raw_off);
    t->raw_len = calloc(cap, sizeof *t->raw_len);
    t->str_blob = malloc(blob ? blob : 1);
    t->raw_blob = malloc(blob ? blob : 1);
    t->added_ids = malloc(cap * sizeof *t->added_ids);
    if (!t->added_ids || !t->flags || !t->str_off || !t->str_len || !t->raw_off || !t->raw_len || !t->str_blob ||
        !t->raw_blob)
        return ms_seterr(err, MS_ERR_NOMEM, "%s: out of memory for %zu tokens", path, cap);
    return MS_OK;
}

/* Stores id's string s (its bytes at str_blob + *used) and its decoded bytes. */
static void store_token(struct tokenizer *t, int32_t id, const char *s, size_t n, size_t *used, const int16_t *inv)
{
    memcpy(t->str_blob + *used, s, n);
    t->str_off[id] = t->raw_off[id] = (uint32_t)*used;
    t->str_len[id] = (uint32_t)n;
    /* ByteLevel decoder: every char through the inverse byte map, or the
     * token's own UTF-8 when any char is outside the map. */
    size_t o = 0, i = 0;
    char *raw = t->raw_blob + *used;
    while (i < n) {
        size_t k;
        uint32_t c = tok_utf8_decode((const uint8_t *)s + i, &k);
        if (c >= 0x144 || inv[c] < 0) break;
        raw[o++] = (char)inv[c];
        i += k;
    }
    if (i < n) {
        memcpy(raw, s, n);
        o = n;
    } else {
        t->flags[id] |= TOKF_BYTELEVEL;
    }
    t->raw_len[id] = (uint32_t)o;
    if (o > t->max_raw_len) t->max_raw_len = o;
    *used += n;
}

/* model.vocab: ids unique and dense in [0, n_vocab). */
static ms_status load_vocab(struct tokenizer *t, const cJSON *vocab, const int16_t *inv, size_t *used, const char *path,
                            ms_error *err)
{
    for (const cJSON *c = vocab->child; c; c = c->next) {
        const char *s = c->string;
        size_t n = strlen(s);
        char what[96];
        snprintf(what, sizeof what, "model.vocab[\"%.40s\"]", s);
        int32_t id;
        ms_status st = read_id(c, t->n_vocab, path, what, err, &id);
        if (st) return st;
        if (n == 0 || n > TOK_MAX_TOKEN_BYTES)
            return ms_seterr(err, MS_ERR_FORMAT, "%s: %s: token is empty or longer than %d bytes", path, what,
                             TOK_MAX_TOKEN_BYTES);
        if (t->flags[id] & TOKF_VOCAB) /* the blob is not NUL-terminated: print the stored length */
            return ms_seterr(err, MS_ERR_FORMAT, "%s: %s: duplicate id %d (also \"%.*s\")", path, what, (int)id,
                             (int)(t->str_len[id] < 40 ? t->str_len[id] : 40), t->str_blob + t->str_off[id]);
        t->flags[id] |= TOKF_VOCAB;
        store_token(t, id, s, n, used, inv);
    }
    return MS_OK;
}

/* added_tokens: ids unique, below n_vocab + n_added; a vocab id must keep its text. */
static ms_status load_added(struct tokenizer *t, const cJSON *added, int64_t limit, const int16_t *inv, size_t *used,
                            const char *path, ms_error *err)
{
    int i = 0;
    for (const cJSON *a = added ? added->child : NULL; a; a = a->next, i++) {
        char what[64];
        snprintf(what, sizeof what, "added_tokens[%d]", i);
        if (!cJSON_IsObject(a)) return ms_seterr(err, MS_ERR_FORMAT, "%s: %s: not an object", path, what);
        int32_t id;
        ms_status st = read_id(json_get(a, "id"), limit, path, what, err, &id);
        if (st) return st;
        const char *content = NULL;
        if ((st = json_get_string(a, "content", 1, &content, path, err))) return st;
        size_t n = strlen(content);
        if (n == 0 || n > TOK_MAX_TOKEN_BYTES)
            return ms_seterr(err, MS_ERR_FORMAT, "%s: %s.content: empty or longer than %d bytes", path, what,
                             TOK_MAX_TOKEN_BYTES);
        static const char *const off_keys[] = {"single_word", "lstrip", "rstrip"};
        for (int k = 0; k < 3; k++)
            if ((st = want_bool(a, off_keys[k], 0, 0, path, what, err))) return st;
        int special = 0, normalized = 0;
        if ((st = json_get_bool(a, "special", 0, &special, path, err))) return st;
        if ((st = json_get_bool(a, "normalized", 0, &normalized, path, err))) return st;
        if (t->flags[id] & TOKF_ADDED)
            return ms_seterr(err, MS_ERR_FORMAT, "%s: %s: duplicate id %d", path, what, (int)id);
        if (t->flags[id] & TOKF_VOCAB) {
            if (t->str_len[id] != n || memcmp(t->str_blob + t->str_off[id], content, n))
                return ms_seterr(err, MS_ERR_FORMAT, "%s: %s: id %d is vocab token \"%.*s\", not \"%.40s\"", path, what,
                                 (int)id, (int)(t->str_len[id] < 40 ? t->str_len[id] : 40),
                                 t->str_blob + t->str_off[id], content);
        } else {
            store_token(t, id, content, n, used, inv);
        }
        t->flags[id] |= TOKF_ADDED | (special ? TOKF_SPECIAL : 0) | (normalized ? TOKF_NORMALIZED : 0);
        t->added_ids[t->n_added++] = id;
        if (id >= t->n_ids) t->n_ids = id + 1;
    }
    return MS_OK;
}

/* One merge: "a b" or ["a", "b"] -> the two strings (pointers into the JSON or buf). */
static ms_status merge_parts(const cJSON *m, char *buf, size_t cap, const char **a, const char **b, const char *path,
                             int rank, ms_error *err)
{
    if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 && cJSON_IsString(m->child) && cJSON_IsString(m->child->next)) {
        *a = m->child->valuestring;
        *b = m->child->next->valuestring;
        return MS_OK;
    }
    if (cJSON_IsString(m)) {
        const char *sp = strchr(m->valuestring, ' ');
        size_t n = strlen(m->valuestring);
        if (sp && !strchr(sp + 1, ' ') && n < cap) {
            memcpy(buf, m->valuestring, n + 1);
            buf[sp - m->valuestring] = 0;
            *a = buf;
            *b = buf + (sp - m->valuestring) + 1;
            return MS_OK;
        }
    }
    return ms_seterr(err, MS_ERR_FORMAT, "%s: model.merges[%d]: not [\"a\",\"b\"] or \"a b\"", path, rank);
}

/* model.merges: every part and every concatenation is a vocab token; no pair twice. */
static ms_status load_merges(struct tokenizer *t, const cJSON *merges, const char *path, ms_error *err)
{
    int n = cJSON_GetArraySize(merges);
    if (n < 0 || n > TOK_MAX_IDS)
        return ms_seterr(err, MS_ERR_FORMAT, "%s: model.merges: more than %d merges", path, TOK_MAX_IDS);
    if (tok_merges_init(t, (size_t)n)) return ms_seterr(err, MS_ERR_NOMEM, "%s: out of memory for merges", path);
    tok_keys keys = {t->str_blob, t->str_off, t->str_len};
    char buf[2 * TOK_MAX_TOKEN_BYTES + 2], cat[2 * TOK_MAX_TOKEN_BYTES + 1];
    int rank = 0;
    for (const cJSON *m = merges->child; m; m = m->next, rank++) {
        const char *a = NULL, *b = NULL;
        ms_status st = merge_parts(m, buf, sizeof buf, &a, &b, path, rank, err);
        if (st) return st;
        size_t na = strlen(a), nb = strlen(b);
        int32_t ia = tok_map_find(&t->str_map, &keys, a, na), ib = tok_map_find(&t->str_map, &keys, b, nb);
        if (ia < 0 || ib < 0)
            return ms_seterr(err, MS_ERR_FORMAT, "%s: model.merges[%d]: unknown token \"%.40s\"", path, rank,
                             ia < 0 ? a : b);
        if (na + nb > TOK_MAX_TOKEN_BYTES)
            return ms_seterr(err, MS_ERR_FORMAT, "%s: model.merges[%d]: merged token is too long", path, rank);
        memcpy(cat, a, na);
        memcpy(cat + na, b, nb);
        int32_t id = tok_map_find(&t->str_map, &keys, cat, na + nb);
        if (id < 0)
            return ms_seterr(err, MS_ERR_FORMAT, "%s: model.merges[%d]: \"%.40s\" + \"%.40s\" is not in the vocab",
                             path, rank, a, b);
        if (tok_merges_put(t, ia, ib, rank, id))
            return ms_seterr(err, MS_ERR_FORMAT, "%s: model.merges[%d]: duplicate merge \"%.40s\" \"%.40s\"", path,
                             rank, a, b);
    }
    return MS_OK;
}

/* Sets t->monotone_merges: no merge uses a token that a merge of equal or
 * higher rank produces (then BPE may process ranks in increasing order). */
static ms_status check_monotone(struct tokenizer *t, const char *path, ms_error *err)
{
    int32_t *made = malloc((size_t)t->n_ids * sizeof *made); /* highest rank producing each id */
    if (!made) return ms_seterr(err, MS_ERR_NOMEM, "%s: out of memory", path);
    memset(made, 0xFF, (size_t)t->n_ids * sizeof *made);
    for (size_t i = 0; i <= t->merge_mask; i++) {
        const tok_merge *m = &t->merges[i];
        if (m->key != UINT64_MAX && m->rank > made[m->id]) made[m->id] = m->rank;
    }
    t->monotone_merges = 1;
    for (size_t i = 0; i <= t->merge_mask && t->monotone_merges; i++) {
        const tok_merge *m = &t->merges[i];
        if (m->key == UINT64_MAX) continue;
        int32_t a = (int32_t)(m->key >> 32), b = (int32_t)(uint32_t)m->key;
        if (made[a] >= m->rank || made[b] >= m->rank) t->monotone_merges = 0;
    }
    free(made);
    return MS_OK;
}

/* Maps, the byte -> id table and the added-token tries. */
static ms_status build_tables(struct tokenizer *t, const char *path, ms_error *err)
{
    tok_keys str = {t->str_blob, t->str_off, t->str_len}, raw = {t->raw_blob, t->raw_off, t->raw_len};
    if (tok_map_init(&t->str_map, (size_t)t->n_vocab) || tok_map_init(&t->raw_map, (size_t)t->n_vocab) ||
        tok_trie_init(&t->trie_raw) || tok_trie_init(&t->trie_norm))
        return ms_seterr(err, MS_ERR_NOMEM, "%s: out of memory for lookup tables", path);
    for (int32_t id = 0; id < t->n_vocab; id++) {
        tok_map_put(&t->str_map, &str, id); /* vocab keys are unique JSON keys */
        if ((t->flags[id] & TOKF_BYTELEVEL) && tok_map_put(&t->raw_map, &raw, id) >= 0)
            return ms_seterr(err, MS_ERR_FORMAT, "%s: model.vocab: \"%.*s\" decodes to the same bytes as another token",
                             path, (int)(t->str_len[id] < 40 ? t->str_len[id] : 40), t->str_blob + t->str_off[id]);
    }
    for (int b = 0; b < 256; b++) {
        char s[2];
        size_t n = put_cp(byte_to_cp(b), s);
        t->byte_id[b] = tok_map_find(&t->str_map, &str, s, n);
        if (t->byte_id[b] < 0)
            return ms_seterr(err, MS_ERR_FORMAT, "%s: model.vocab: no token for byte 0x%02X (\"%.*s\")", path, b,
                             (int)n, s);
    }
    for (int32_t id = 0; id < t->n_ids; id++) {
        if (!(t->flags[id] & TOKF_ADDED)) continue;
        const uint8_t *s = (const uint8_t *)t->str_blob + t->str_off[id];
        size_t n = t->str_len[id];
        int32_t vid = tok_map_find(&t->str_map, &str, s, n);
        if (vid >= 0 && vid != id) /* HF would silently use the vocab id: refuse the ambiguity */
            return ms_seterr(err, MS_ERR_FORMAT, "%s: added_tokens: \"%.40s\" has id %d but is vocab token %d", path,
                             (const char *)s, (int)id, (int)vid);
        int rc;
        if (t->flags[id] & TOKF_NORMALIZED && t->nfc) {
            uint8_t *norm;
            size_t nn;
            if (tok_nfc(s, n, &norm, &nn))
                return ms_seterr(err, MS_ERR_NOMEM, "%s: NFC of an added token failed", path);
            size_t dup;
            rc = (nn && tok_trie_longest(&t->trie_norm, norm, nn, &dup) >= 0 && dup == nn)
                     ? 1
                     : tok_trie_add(&t->trie_norm, norm, nn, id);
            free(norm);
        } else {
            size_t dup;
            rc = (tok_trie_longest(&t->trie_raw, s, n, &dup) >= 0 && dup == n) ? 1
                                                                               : tok_trie_add(&t->trie_raw, s, n, id);
        }
        if (rc)
            return ms_seterr(err, MS_ERR_FORMAT, "%s: added token %d: duplicate content \"%.40s\" (or out of memory)",
                             path, (int)id, (const char *)s);
    }
    return MS_OK;
}

/* TOKF_SELF: the vocab tokens BPE reaches from their own bytes (needs the merges). */
static ms_status mark_self(struct tokenizer *t, const char *path, ms_error *err)
{
    tok_keys raw = {t->raw_blob, t->raw_off, t->raw_len};
    tok_bpe_scratch sc = {0};
    tok_ids out = {0};
    for (int32_t id = 0; id < t->n_vocab; id++) {
        out.n = 0;
        if (tok_map_find(&t->raw_map, &raw, t->raw_blob + t->raw_off[id], t->raw_len[id]) != id) continue;
        if (tok_bpe(t, (const uint8_t *)t->raw_blob + t->raw_off[id], t->raw_len[id], &sc, &out)) {
            tok_bpe_scratch_free(&sc);
            free(out.v);
            return ms_seterr(err, MS_ERR_NOMEM, "%s: out of memory", path);
        }
        if (out.n == 1 && out.v[0] == id) t->flags[id] |= TOKF_SELF;
    }
    tok_bpe_scratch_free(&sc);
    free(out.v);
    return MS_OK;
}

/* Reads, validates and indexes dir/tokenizer.json into t. */
ms_status tok_load_json(struct tokenizer *t, const char *dir, ms_error *err)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s/tokenizer.json", dir) >= (int)sizeof path)
        return ms_seterr(err, MS_ERR_INVALID, "%s: directory name too long", dir);
    ms_error e2 = {0};
    cJSON *root = json_load_file(path, TOK_MAX_JSON_BYTES, &e2);
    if (!root) return ms_seterr(err, e2.status ? e2.status : MS_ERR_FORMAT, "%s", e2.message);
    ms_status st;
    const cJSON *model = json_get(root, "model"), *added = json_get(root, "added_tokens");
    if ((st = check_pipeline(t, root, path, err)) || (st = check_model(t, model, path, err))) goto out;
    if (added && !cJSON_IsNull(added) && !cJSON_IsArray(added)) {
        st = ms_seterr(err, MS_ERR_FORMAT, "%s: added_tokens: not an array", path);
        goto out;
    }
    const cJSON *vocab = json_get(model, "vocab");
    int n_vocab = cJSON_GetArraySize(vocab), n_added = cJSON_IsArray(added) ? cJSON_GetArraySize(added) : 0;
    if (n_vocab <= 0 || n_vocab > TOK_MAX_IDS || n_added > TOK_MAX_IDS - n_vocab) {
        st = ms_seterr(err, MS_ERR_FORMAT, "%s: model.vocab: %d entries (need 1..%d with the added tokens)", path,
                       n_vocab, TOK_MAX_IDS);
        goto out;
    }
    t->n_vocab = t->n_ids = n_vocab;
    /* Blob: every vocab key and added content; each at most TOK_MAX_TOKEN_BYTES. */
    size_t blob = 0;
    for (const cJSON *c = vocab->child; c; c = c->next) blob += strlen(c->string);
    for (const cJSON *a = cJSON_IsArray(added) ? added->child : NULL; a; a = a->next) {
        const cJSON *v = json_get(a, "content");
        if (cJSON_IsString(v)) blob += strlen(v->valuestring);
    }
    if (blob > UINT32_MAX) {
        st = ms_seterr(err, MS_ERR_FORMAT, "%s: model.vocab: token text over 4 GiB", path);
        goto out;
    }
    int16_t inv[0x144];
    memset(inv, 0xFF, sizeof inv);
    for (int b = 0; b < 256; b++) inv[byte_to_cp(b)] = (int16_t)b;
    size_t used = 0;
    if ((st = alloc_ids(t, (size_t)n_vocab + (size_t)n_added, blob, path, err)) ||
        (st = load_vocab(t, vocab, inv, &used, path, err)) ||
        (st = load_added(t, added, (int64_t)n_vocab + n_added, inv, &used, path, err)))
        goto out;
    if ((st = build_tables(t, path, err)) || (st = load_merges(t, json_get(model, "merges"), path, err)) ||
        (st = check_monotone(t, path, err)) || (st = mark_self(t, path, err)))
        goto out;
out:
    cJSON_Delete(root);
    return st;
}

/* eos_token as a string or {"content": ...}; NULL when absent or null. */
static ms_status token_field(const cJSON *cfg, const char *key, const char **out, const char *path, ms_error *err)
{
    const cJSON *v = json_get(cfg, key);
    *out = NULL;
    if (!v || cJSON_IsNull(v)) return MS_OK;
    if (cJSON_IsObject(v)) v = json_get(v, "content");
    if (!cJSON_IsString(v))
        return ms_seterr(err, MS_ERR_FORMAT, "%s: %s: must be a string or {\"content\": ...}", path, key);
    *out = v->valuestring;
    return MS_OK;
}

/* Reads dir/tokenizer_config.json (optional) and dir/chat_template.jinja (optional, wins). */
ms_status tok_load_config(struct tokenizer *t, const char *dir, ms_error *err)
{
    char path[4096];
    t->eos_id = -1;
    if (snprintf(path, sizeof path, "%s/tokenizer_config.json", dir) >= (int)sizeof path)
        return ms_seterr(err, MS_ERR_INVALID, "%s: directory name too long", dir);
    ms_error e2 = {0};
    cJSON *cfg = json_load_file(path, TOK_MAX_CONFIG_BYTES, &e2);
    if (!cfg && e2.status != MS_ERR_NOTFOUND) return ms_seterr(err, e2.status, "%s", e2.message);
    ms_status st = MS_OK;
    if (cfg) {
        const char *eos;
        if ((st = token_field(cfg, "eos_token", &eos, path, err))) goto out;
        if (eos && (t->eos_id = tok_lookup(t, eos)) < 0) {
            st = ms_seterr(err, MS_ERR_FORMAT, "%s: eos_token: \"%.60s\" is not a token of tokenizer.json", path, eos);
            goto out;
        }
        const cJSON *ct = json_get(cfg, "chat_template");
        const char *tmpl = NULL;
        if (cJSON_IsString(ct)) tmpl = ct->valuestring;
        else if (cJSON_IsArray(ct)) {
            for (const cJSON *c = ct->child; c; c = c->next) {
                const cJSON *name = json_get(c, "name"), *tx = json_get(c, "template");
                if (cJSON_IsString(name) && !strcmp(name->valuestring, "default") && cJSON_IsString(tx))
                    tmpl = tx->valuestring;
            }
            if (!tmpl) {
                st = ms_seterr(err, MS_ERR_FORMAT, "%s: chat_template: a list without a \"default\" template", path);
                goto out;
            }
        } else if (ct && !cJSON_IsNull(ct)) {
            st = ms_seterr(err, MS_ERR_FORMAT, "%s: chat_template: must be a string or a list", path);
            goto out;
        }
        if (tmpl && !(t->chat_template = strdup(tmpl))) {
            st = ms_seterr(err, MS_ERR_NOMEM, "%s: out of memory", path);
            goto out;
        }
    }
    if (snprintf(path, sizeof path, "%s/chat_template.jinja", dir) >= (int)sizeof path) goto out;
    char *jinja = NULL;
    size_t n = 0;
    ms_status js = file_read_all(path, TOK_MAX_TEMPLATE_BYTES, &jinja, &n, &e2);
    if (js == MS_OK) {
        if (tok_utf8_valid_prefix((const uint8_t *)jinja, n) != n || strlen(jinja) != n) {
            free(jinja);
            st = ms_seterr(err, MS_ERR_FORMAT, "%s: not valid UTF-8 text", path);
            goto out;
        }
        free(t->chat_template);
        t->chat_template = jinja;
    } else if (js != MS_ERR_NOTFOUND) {
        st = ms_seterr(err, js, "%s", e2.message);
    }
out:
    cJSON_Delete(cfg);
    return st;
}
