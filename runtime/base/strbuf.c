/* strbuf.c: growable byte buffer (see strbuf.h). */
#include <stdlib.h>
#include <string.h>

#include "base/strbuf.h"

/* Appends n bytes (overflow-checked), keeping a NUL after them. */
void sb_append(strbuf *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (n >= ((size_t)-1) / 2 - b->n) {
        b->oom = 1;
        return;
    }
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

void sb_puts(strbuf *b, const char *s) { sb_append(b, s, strlen(s)); }

/* Empties the buffer. */
void sb_reset(strbuf *b)
{
    b->n = 0;
    if (b->p) b->p[0] = 0;
}

/* Frees the storage. */
void sb_free(strbuf *b)
{
    if (!b) return;
    free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
    b->oom = 0;
}

/* Moves the tail forward over the first n bytes. */
void sb_consume(strbuf *b, size_t n)
{
    if (n >= b->n) {
        sb_reset(b);
        return;
    }
    memmove(b->p, b->p + n, b->n - n);
    b->n -= n;
    b->p[b->n] = 0;
}
