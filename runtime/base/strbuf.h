/* strbuf.h: the growable byte buffer, used wherever text is built up (JSON
 * headers and indexes, the chat template, HTTP replies, SSE, metrics).
 * An allocation failure sets oom and turns further appends into no-ops, so
 * callers check once at the end; sb_add / sb_adds report it at each step
 * instead, for code that returns an ms_status per append. oom stays set
 * until sb_free or sb_take. */
#ifndef MS_STRBUF_H
#define MS_STRBUF_H

#include <stddef.h>

#include "medserve.h"

typedef struct strbuf {
    char *p; /* NUL-terminated when non-NULL (after any append, even of 0 bytes) */
    size_t n, cap;
    int oom;
} strbuf;

void sb_append(strbuf *b, const char *s, size_t n);
void sb_puts(strbuf *b, const char *s);
/* Appends printf-formatted text. */
void sb_printf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s as a JSON string literal: quote, backslash and control
 * characters escaped (\n \r \t \b \f, the rest as \u00XX), every other byte
 * (UTF-8 included) as it is. That is serde_json's output and Python's
 * json.dumps(ensure_ascii=False)'s. */
void sb_json_string(strbuf *b, const char *s);
/* MS_OK, or MS_ERR_NOMEM (message in err) when b is out of memory. */
ms_status sb_status(const strbuf *b, ms_error *err);
/* sb_append / sb_puts that also report, as sb_status: MS_ERR_NOMEM when b
 * is out of memory, from this append or an earlier one. */
ms_status sb_add(strbuf *b, const char *s, size_t n, ms_error *err);
ms_status sb_adds(strbuf *b, const char *s, ms_error *err);
void sb_reset(strbuf *b); /* keeps the allocation */
void sb_free(strbuf *b);  /* NULL-safe, leaves b empty */
/* Drops the first n bytes. */
void sb_consume(strbuf *b, size_t n);
/* Hands the text to the caller (malloc'd, NUL-terminated, "" when nothing
 * was appended) and leaves b empty; NULL when b is out of memory (its
 * storage is freed then). */
char *sb_take(strbuf *b);

#endif
