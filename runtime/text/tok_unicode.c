/* tok_unicode.c: code-point classes for the split scanner, the NFC fast
 * path, NFC itself (utf8proc) and lossy UTF-8 repair.
 *
 * The class table is two-stage (256-code-point blocks, identical blocks
 * shared) and is derived once per process from utf8proc's tables. A code
 * point is marked NFC-inert when it has combining class 0, is never the
 * second half of a canonical composition, and either has no canonical
 * decomposition or decomposes into a starter that is itself never a second
 * half and recomposes to itself (Hangul syllables qualify). A string of inert
 * code points is left unchanged by NFC, so it can skip utf8proc entirely.
 * HF tokenizers' own Unicode data differs from utf8proc's in two ways
 * (tok_unicode_hf.h, generated with HF as the oracle): its regex knows
 * letters and numbers newer than utf8proc, and its NFC is Unicode 9, so
 * marks added since are plain starters to it. The class table applies the
 * first list; tok_nfc splits the text at the code points of the second
 * (nothing composes or reorders across a starter that composes with nothing).
 * This file does not split text or know about tokens. */
#include "text/tok_unicode.h"

#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <utf8proc.h>

#include "text/tok_unicode_hf.h"

#define CP_LIMIT 0x110000u
#define N_BLOCKS (CP_LIMIT >> 8)

static uint16_t g_stage1[N_BLOCKS];
static uint8_t *g_stage2; /* [n_unique_blocks][256] */
static int g_init_status = -1;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

/* Whitespace as Oniguruma's Unicode \s (= the White_Space property). */
static int is_space(uint32_t c)
{
    if (c == 0x20 || (c >= 0x09 && c <= 0x0D)) return 1;
    if (c < 0x85) return 0;
    return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
           c == 0x202F || c == 0x205F || c == 0x3000;
}

/* 1 if c lies in one of the n [first, last] ranges (sorted). */
static int in_ranges(const uint32_t (*r)[2], size_t n, uint32_t c)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c < r[mid][0]) hi = mid;
        else if (c > r[mid][1]) lo = mid + 1;
        else return 1;
    }
    return 0;
}

#define IN_TABLE(t, c) in_ranges(t, sizeof t / sizeof *t, c)

/* Regex class of one code point from its general category. */
static uint8_t cp_class(uint32_t c)
{
    if (IN_TABLE(TOK_HF_LETTER, c)) return TOKC_L;
    if (IN_TABLE(TOK_HF_NUMBER, c)) return TOKC_N;
    if (c == '\r' || c == '\n') return TOKC_CRLF;
    if (is_space(c)) return TOKC_WS;
    switch (utf8proc_category((utf8proc_int32_t)c)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO: return TOKC_L;
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO: return TOKC_N;
    default: return TOKC_O;
    }
}

/* UTF-16 surrogate code points (never valid in UTF-8). */
static int is_surrogate(uint32_t c)
{
    return c >= 0xD800 && c <= 0xDFFF;
}

/* Canonical full decomposition of c into d (up to 8); returns its length (1 and d[0]==c if none). */
static int decompose(uint32_t c, utf8proc_int32_t d[8])
{
    if (utf8proc_get_property((utf8proc_int32_t)c)->decomp_seqindex == UINT16_MAX && !(c >= 0xAC00 && c <= 0xD7A3)) {
        d[0] = (utf8proc_int32_t)c; /* no decomposition at all (the common case) */
        return 1;
    }
    utf8proc_ssize_t k = utf8proc_decompose_char((utf8proc_int32_t)c, d, 8, UTF8PROC_DECOMPOSE, NULL);
    if (k < 1 || k > 8) {
        d[0] = (utf8proc_int32_t)c;
        return 1;
    }
    return (int)k;
}

/* 1 if NFC of the single code point c is c itself. */
static int nfc_fixed(uint32_t c)
{
    uint8_t in[4], *out = NULL;
    utf8proc_ssize_t n = utf8proc_encode_char((utf8proc_int32_t)c, in);
    utf8proc_ssize_t m = utf8proc_map(in, n, &out, UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    int same = m == n && out && memcmp(in, out, (size_t)n) == 0;
    free(out);
    return same;
}

/* FNV-1a of one 256-entry block, to share identical blocks. */
static uint32_t hash_block(const uint8_t *b)
{
    uint32_t h = 2166136261u;
    for (int i = 0; i < 256; i++) h = (h ^ b[i]) * 16777619u;
    return h;
}

/* Builds the second-half bitmap, then every block, sharing identical ones. */
static void build_tables(void)
{
    uint8_t *second = calloc(CP_LIMIT / 8, 1);
    uint8_t *blocks = malloc((size_t)N_BLOCKS * 256);
    uint32_t *hashes = malloc(N_BLOCKS * sizeof *hashes);
    if (!second || !blocks || !hashes) goto out;
    utf8proc_int32_t d[8];
    for (uint32_t c = 0; c < CP_LIMIT; c++) {
        if (is_surrogate(c)) continue;
        int k = decompose(c, d);
        if (k == 1 && (uint32_t)d[0] == c) continue;
        for (int j = 1; j < k; j++) second[(uint32_t)d[j] >> 3] |= (uint8_t)(1u << (d[j] & 7));
    }
#define IS_SECOND(c) (second[(uint32_t)(c) >> 3] & (1u << ((c)&7)))
    size_t n_unique = 0;
    uint8_t cur[256];
    for (uint32_t b = 0; b < N_BLOCKS; b++) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = (b << 8) | i;
            uint8_t info = is_surrogate(c) ? TOKC_O : cp_class(c);
            int inert = 0;
            if (is_surrogate(c)) inert = 0;
            else if (IN_TABLE(TOK_HF_NFC_INERT, c)) inert = 2; /* a plain starter to HF's NFC */
            else if (c < 0x300 || (c >= 0xAC00 && c <= 0xD7A3)) inert = 1;
            else if (utf8proc_get_property((utf8proc_int32_t)c)->combining_class == 0 && !IS_SECOND(c)) {
                int k = decompose(c, d);
                if (k == 1 && (uint32_t)d[0] == c) inert = 1;
                else inert = utf8proc_get_property(d[0])->combining_class == 0 && !IS_SECOND(d[0]) && nfc_fixed(c);
            }
            cur[i] = (uint8_t)(info | (inert ? TOKC_INERT : 0) | (inert == 2 ? TOKC_NFC_CUT : 0));
        }
        uint32_t h = hash_block(cur);
        size_t u;
        for (u = 0; u < n_unique; u++)
            if (hashes[u] == h && memcmp(blocks + u * 256, cur, 256) == 0) break;
        if (u == n_unique) {
            memcpy(blocks + u * 256, cur, 256);
            hashes[u] = h;
            n_unique++;
        }
        g_stage1[b] = (uint16_t)u;
    }
#undef IS_SECOND
    g_stage2 = realloc(blocks, n_unique * 256);
    if (!g_stage2) g_stage2 = blocks;
    blocks = NULL;
    g_init_status = 0;
out:
    free(second);
    free(blocks);
    free(hashes);
}

/* Builds the tables once per process. */
int tok_unicode_init(void)
{
    pthread_once(&g_once, build_tables);
    return g_init_status;
}

/* Two-stage table lookup. */
uint8_t tok_cp_info(uint32_t cp)
{
    if (cp >= CP_LIMIT) return TOKC_O;
    return g_stage2[(size_t)g_stage1[cp >> 8] * 256 + (cp & 255)];
}

/* Length of the well-formed prefix of the sequence at s (0 if the lead byte
 * is invalid); *need gets the full length the lead byte announces. */
static size_t seq_prefix(const uint8_t *s, size_t n, size_t *need)
{
    uint8_t b = s[0], lo = 0x80, hi = 0xBF;
    size_t k;
    if (b < 0x80) {
        *need = 1;
        return 1;
    }
    if (b >= 0xC2 && b <= 0xDF) k = 2;
    else if (b >= 0xE0 && b <= 0xEF) {
        k = 3;
        if (b == 0xE0) lo = 0xA0;
        else if (b == 0xED) hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
        k = 4;
        if (b == 0xF0) lo = 0x90;
        else if (b == 0xF4) hi = 0x8F;
    } else {
        *need = 0;
        return 0;
    }
    *need = k;
    if (n < 2 || s[1] < lo || s[1] > hi) return 1;
    size_t j = 2;
    while (j < k && j < n && (s[j] & 0xC0) == 0x80) j++;
    return j;
}

/* Validates UTF-8, eight ASCII bytes at a time where possible. */
size_t tok_utf8_valid_prefix(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (s[i] < 0x80) {
            while (i + 8 <= n) {
                uint64_t w;
                memcpy(&w, s + i, 8);
                if (w & 0x8080808080808080ull) break;
                i += 8;
            }
            while (i < n && s[i] < 0x80) i++;
            continue;
        }
        size_t need, k = seq_prefix(s + i, n - i, &need);
        if (!need || k != need) return i;
        i += k;
    }
    return n;
}

/* Checks every code point of s for the inert bit. */
int tok_nfc_inert(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (s[i] < 0xCC) { /* every code point below U+0300 is inert */
            i++;
            continue;
        }
        size_t k;
        uint32_t c = tok_utf8_decode(s + i, &k);
        if (!(tok_cp_info(c) & TOKC_INERT)) return 0;
        i += k;
    }
    return 1;
}

/* Appends utf8proc's NFC of s[0..n) to the growing buffer *buf (*len used, *cap allocated). */
static int append_nfc(const uint8_t *s, size_t n, uint8_t **buf, size_t *len, size_t *cap)
{
    utf8proc_uint8_t *dst = NULL;
    utf8proc_ssize_t m = 0;
    if (n) {
        m = utf8proc_map(s, (utf8proc_ssize_t)n, &dst, UTF8PROC_STABLE | UTF8PROC_COMPOSE);
        if (m < 0) {
            free(dst);
            return -1;
        }
    }
    if ((size_t)m > SIZE_MAX - *len - 1) {
        free(dst);
        return -1;
    }
    if (*len + (size_t)m + 1 > *cap) {
        size_t nc = (*len + (size_t)m + 1) * 2;
        uint8_t *p = realloc(*buf, nc);
        if (!p) {
            free(dst);
            return -1;
        }
        *buf = p;
        *cap = nc;
    }
    if (m) memcpy(*buf + *len, dst, (size_t)m);
    *len += (size_t)m;
    free(dst);
    return 0;
}

/* utf8proc NFC of each stretch between code points unknown to HF's NFC. */
int tok_nfc(const uint8_t *s, size_t n, uint8_t **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    if (n > (size_t)PTRDIFF_MAX / 8) return -1;
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0, start = 0, i = 0;
    while (i < n) { /* normalize between the code points HF's NFC does not know */
        size_t k = 1;
        if (s[i] >= 0xC0 && (tok_cp_info(tok_utf8_decode(s + i, &k)) & TOKC_NFC_CUT)) {
            if (append_nfc(s + start, i - start, &buf, &len, &cap) || append_nfc(s + i, 0, &buf, &len, &cap)) break;
            if (len + k + 1 > cap) {
                uint8_t *p = realloc(buf, (len + k + 1) * 2);
                if (!p) break;
                buf = p;
                cap = (len + k + 1) * 2;
            }
            memcpy(buf + len, s + i, k);
            len += k;
            start = i + k;
        }
        i += k;
    }
    if (i < n || append_nfc(s + start, n - start, &buf, &len, &cap)) {
        free(buf);
        return -1;
    }
    if (!buf && !(buf = malloc(1))) return -1;
    *out = buf;
    *out_len = len;
    return 0;
}

/* Copies valid sequences, U+FFFD for each maximal invalid subpart. */
size_t tok_utf8_repair(const uint8_t *s, size_t n, uint8_t *out)
{
    size_t i = 0, o = 0;
    while (i < n) {
        size_t need, k = seq_prefix(s + i, n - i, &need);
        if (need && k == need) {
            memcpy(out + o, s + i, k);
            o += k;
            i += k;
        } else {
            out[o++] = 0xEF, out[o++] = 0xBF, out[o++] = 0xBD;
            i += k ? k : 1;
        }
    }
    return o;
}

/* Looks back at most three bytes for a lead byte whose sequence is cut by the end. */
size_t tok_utf8_incomplete_tail(const uint8_t *s, size_t n)
{
    for (size_t back = 1; back <= 3 && back <= n; back++) {
        uint8_t b = s[n - back];
        if ((b & 0xC0) == 0x80) continue; /* continuation: the lead is further back */
        size_t need, k = seq_prefix(s + n - back, back, &need);
        return (need > back && k == back) ? back : 0;
    }
    return 0;
}
