/* tok_unicode.h: the Unicode pieces the tokenizer needs (private to the
 * tok_*.c files): UTF-8 validation and decoding, a per-code-point class
 * (letter / number / whitespace / CR-LF / other, as the Qwen2 split regex
 * sees them) with an "NFC-inert" bit, NFC through utf8proc, and UTF-8 repair
 * with U+FFFD exactly as Python's / Rust's lossy decoders do it. */
#ifndef MS_TOK_UNICODE_H
#define MS_TOK_UNICODE_H

#include <stddef.h>
#include <stdint.h>

/* Character classes of the split regex (low 3 bits of tok_cp_info). */
enum {
    TOKC_O = 0,    /* anything else: [^\s\p{L}\p{N}] */
    TOKC_L = 1,    /* \p{L} */
    TOKC_N = 2,    /* \p{N} */
    TOKC_WS = 3,   /* \s other than CR and LF */
    TOKC_CRLF = 4, /* \r or \n */
    TOKC_MASK = 7,
    TOKC_NFC_CUT = 0x40, /* unknown to HF's (Unicode 9) NFC: normalization stops at it */
    TOKC_INERT = 0x80    /* a string made only of inert code points is already NFC */
};

/* Builds the class tables once per process (thread-safe); 0 on success. */
int tok_unicode_init(void);

/* Class | TOKC_INERT of a code point (tok_unicode_init must have succeeded). */
uint8_t tok_cp_info(uint32_t cp);

/* Length of the longest valid UTF-8 prefix of s (== n when all of s is valid). */
size_t tok_utf8_valid_prefix(const uint8_t *s, size_t n);

/* Decodes the code point at s (valid UTF-8 assumed); *len gets its byte length. */
static inline uint32_t tok_utf8_decode(const uint8_t *s, size_t *len)
{
    uint32_t c = s[0];
    if (c < 0x80) {
        *len = 1;
        return c;
    }
    if (c < 0xE0) {
        *len = 2;
        return ((c & 0x1F) << 6) | (s[1] & 0x3F);
    }
    if (c < 0xF0) {
        *len = 3;
        return ((c & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
    }
    *len = 4;
    return ((c & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) | ((uint32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
}

/* 1 when NFC(s) == s is certain without normalizing (every code point inert). */
int tok_nfc_inert(const uint8_t *s, size_t n);

/* NFC of n bytes of valid UTF-8 into a malloc'd buffer (*out, *out_len); 0 on success. */
int tok_nfc(const uint8_t *s, size_t n, uint8_t **out, size_t *out_len);

/* Writes s with every maximal invalid subsequence replaced by U+FFFD (out needs 3*n bytes);
 * returns the bytes written. */
size_t tok_utf8_repair(const uint8_t *s, size_t n, uint8_t *out);

/* Number of trailing bytes of s that are a valid but incomplete UTF-8 sequence (0..3). */
size_t tok_utf8_incomplete_tail(const uint8_t *s, size_t n);

#endif
