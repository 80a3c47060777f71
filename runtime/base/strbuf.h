/* strbuf.h: a growable byte buffer (JSON headers and indexes, HTTP replies, SSE).
 * An allocation failure sets oom and turns further appends into no-ops, so
 * callers check once at the end. */
#ifndef MS_STRBUF_H
#define MS_STRBUF_H

#include <stddef.h>

typedef struct strbuf {
    char *p;       /* NUL-terminated when non-NULL */
    size_t n, cap;
    int oom;
} strbuf;

void sb_append(strbuf *b, const char *s, size_t n);
void sb_puts(strbuf *b, const char *s);
void sb_reset(strbuf *b);              /* keeps the allocation */
void sb_free(strbuf *b);               /* NULL-safe, leaves b empty */
/* Drops the first n bytes. */
void sb_consume(strbuf *b, size_t n);

#endif
