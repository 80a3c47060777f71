/* tok_split.h: the Qwen2/Qwen3 pre-tokenizer split, hand-written (private).
 * It is equal to the leftmost-first matches of
 *   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}
 *   | ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 * over a whole segment (matches always cover every code point), in linear time. */
#ifndef MS_TOK_SPLIT_H
#define MS_TOK_SPLIT_H

#include <stddef.h>
#include <stdint.h>

/* The pattern this scanner implements, as written in tokenizer.json. */
extern const char TOK_QWEN2_PATTERN[];

/* End (exclusive) of the piece that starts at byte i of the valid UTF-8
 * segment s[0..n); i < n. tok_unicode_init must have succeeded. */
size_t tok_split_next(const uint8_t *s, size_t n, size_t i);

#endif
