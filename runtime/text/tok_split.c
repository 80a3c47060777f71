/* tok_split.c: a hand-written scanner equal to the Qwen2/Qwen3 split regex.
 *
 * The alternatives are tried in order at the current position, the way a
 * backtracking engine (Oniguruma, which HF tokenizers uses) would:
 *   1 (?i:'s|'t|'re|'ve|'m|'ll|'d)    ASCII apostrophe; 's' also folds to U+017F
 *   2 [^\r\n\p{L}\p{N}]?\p{L}+         letter run, with at most one leading
 *                                     non-letter, non-number, non-CR/LF char
 *   3 \p{N}                            one number char
 *   4  ?[^\s\p{L}\p{N}]+[\r\n]*        run of "other" chars, optional leading
 *                                     U+0020, then any CR/LF
 *   5 \s*[\r\n]+                       whitespace run up to its last CR/LF
 *   6 \s+(?!\S)                        whitespace run minus its last char
 *                                     (the whole run at the end of the text)
 *   7 \s+                              one whitespace char before a non-space
 * Every code point is covered by some alternative, so the pieces tile the
 * segment. Each byte is examined a bounded number of times: linear time, no
 * backtracking on untrusted input. This file does not normalize or encode. */
#include "text/tok_split.h"

#include "text/tok_unicode.h"

const char TOK_QWEN2_PATTERN[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/* Classes of the ASCII range, without touching the Unicode tables. */
static const uint8_t ascii_class[128] = {
    ['\t'] = TOKC_WS, ['\n'] = TOKC_CRLF, [0x0B] = TOKC_WS, [0x0C] = TOKC_WS, ['\r'] = TOKC_CRLF, [' '] = TOKC_WS,
    ['0'] = TOKC_N,   ['1'] = TOKC_N,     ['2'] = TOKC_N,   ['3'] = TOKC_N,   ['4'] = TOKC_N,     ['5'] = TOKC_N,
    ['6'] = TOKC_N,   ['7'] = TOKC_N,     ['8'] = TOKC_N,   ['9'] = TOKC_N,   ['A'] = TOKC_L,     ['B'] = TOKC_L,
    ['C'] = TOKC_L,   ['D'] = TOKC_L,     ['E'] = TOKC_L,   ['F'] = TOKC_L,   ['G'] = TOKC_L,     ['H'] = TOKC_L,
    ['I'] = TOKC_L,   ['J'] = TOKC_L,     ['K'] = TOKC_L,   ['L'] = TOKC_L,   ['M'] = TOKC_L,     ['N'] = TOKC_L,
    ['O'] = TOKC_L,   ['P'] = TOKC_L,     ['Q'] = TOKC_L,   ['R'] = TOKC_L,   ['S'] = TOKC_L,     ['T'] = TOKC_L,
    ['U'] = TOKC_L,   ['V'] = TOKC_L,     ['W'] = TOKC_L,   ['X'] = TOKC_L,   ['Y'] = TOKC_L,     ['Z'] = TOKC_L,
    ['a'] = TOKC_L,   ['b'] = TOKC_L,     ['c'] = TOKC_L,   ['d'] = TOKC_L,   ['e'] = TOKC_L,     ['f'] = TOKC_L,
    ['g'] = TOKC_L,   ['h'] = TOKC_L,     ['i'] = TOKC_L,   ['j'] = TOKC_L,   ['k'] = TOKC_L,     ['l'] = TOKC_L,
    ['m'] = TOKC_L,   ['n'] = TOKC_L,     ['o'] = TOKC_L,   ['p'] = TOKC_L,   ['q'] = TOKC_L,     ['r'] = TOKC_L,
    ['s'] = TOKC_L,   ['t'] = TOKC_L,     ['u'] = TOKC_L,   ['v'] = TOKC_L,   ['w'] = TOKC_L,     ['x'] = TOKC_L,
    ['y'] = TOKC_L,   ['z'] = TOKC_L,
};

/* Class of the code point at byte i (i < n); *len gets its byte length. */
static inline uint8_t class_at(const uint8_t *s, size_t i, size_t *len)
{
    if (s[i] < 0x80) {
        *len = 1;
        return ascii_class[s[i]];
    }
    return tok_cp_info(tok_utf8_decode(s + i, len)) & TOKC_MASK;
}

/* End of the run of code points of class cls starting at byte i. */
static size_t run_end(const uint8_t *s, size_t n, size_t i, uint8_t cls)
{
    size_t k;
    while (i < n && class_at(s, i, &k) == cls) i += k;
    return i;
}

/* Lower-cases an ASCII letter (other bytes are returned unchanged). */
static inline uint8_t lower(uint8_t c)
{
    return (c >= 'A' && c <= 'Z') ? (uint8_t)(c | 0x20) : c;
}

/* Alternative 1: length of a contraction at s[i] == '\'', or 0. */
static size_t contraction(const uint8_t *s, size_t n, size_t i)
{
    if (i + 1 >= n) return 0;
    uint8_t a = lower(s[i + 1]);
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if (s[i + 1] == 0xC5 && i + 2 < n && s[i + 2] == 0xBF) return 3; /* U+017F folds to 's' */
    if (i + 2 >= n) return 0;
    uint8_t b = lower(s[i + 2]);
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    return 0;
}

/* Tries the seven alternatives in order at byte i; returns the end of the match. */
size_t tok_split_next(const uint8_t *s, size_t n, size_t i)
{
    size_t k0, k1 = 0;
    uint8_t c0 = class_at(s, i, &k0);
    size_t i1 = i + k0;
    uint8_t c1 = i1 < n ? class_at(s, i1, &k1) : 0xFF;

    if (s[i] == '\'') {
        size_t k = contraction(s, n, i);
        if (k) return i + k;
    }
    if (c0 == TOKC_L) return run_end(s, n, i1, TOKC_L);
    if (c1 == TOKC_L && c0 != TOKC_CRLF && c0 != TOKC_N) return run_end(s, n, i1 + k1, TOKC_L);
    if (c0 == TOKC_N) return i1;
    if (c0 == TOKC_O || (s[i] == ' ' && c1 == TOKC_O)) {
        size_t j = run_end(s, n, c0 == TOKC_O ? i1 : i1 + k1, TOKC_O);
        while (j < n && (s[j] == '\r' || s[j] == '\n')) j++;
        return j;
    }
    /* c0 is whitespace: alternatives 5, 6, 7 over the maximal whitespace run. */
    size_t j = i, last = i, crlf_end = 0, k;
    while (j < n) {
        uint8_t c = class_at(s, j, &k);
        if (c != TOKC_WS && c != TOKC_CRLF) break;
        if (c == TOKC_CRLF) crlf_end = j + k;
        last = j;
        j += k;
    }
    if (crlf_end) return crlf_end;
    if (j == n) return n;
    return last > i ? last : j;
}
