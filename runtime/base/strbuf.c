/* strbuf.c: growable byte buffer (see strbuf.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/strbuf.h"

/* Makes room for n more bytes and a NUL (overflow-checked); sets oom and
 * returns -1 when it cannot. */
static int grow(strbuf *b, size_t n)
{
    if (b->oom) return -1;
    if (n >= ((size_t)-1) / 2 - b->n) {
        b->oom = 1;
        return -1;
    }
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return -1;
        }
        b->p = p;
        b->cap = cap;
    }
    return 0;
}

/* Appends n bytes, keeping a NUL after them. */
void sb_append(strbuf *b, const char *s, size_t n)
{
    if (grow(b, n)) return;
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

void sb_puts(strbuf *b, const char *s)
{
    sb_append(b, s, strlen(s));
}

/* Formats into the free space; when that is too small, grows to the length
 * vsnprintf asked for and formats again. */
void sb_printf(strbuf *b, const char *fmt, ...)
{
    if (b->oom) return;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
    va_end(ap);
    if (k < 0) {
        b->oom = 1;
        return;
    }
    if (!b->p || (size_t)k >= b->cap - b->n) {
        if (grow(b, (size_t)k)) {
            if (b->p) b->p[b->n] = 0; /* the truncated attempt wrote past n */
            return;
        }
        va_start(ap, fmt);
        vsnprintf(b->p + b->n, b->cap - b->n, fmt, ap);
        va_end(ap);
    }
    b->n += (size_t)k;
}

/* Copies runs of plain bytes whole and escapes the bytes between them. */
void sb_json_string(strbuf *b, const char *s)
{
    sb_append(b, "\"", 1);
    const char *run = s;
    for (const char *p = s;; p++) {
        unsigned char c = (unsigned char)*p;
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        sb_append(b, run, (size_t)(p - run));
        if (!c) break;
        char u[8];
        const char *esc = u;
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        default: snprintf(u, sizeof u, "\\u%04x", c);
        }
        sb_puts(b, esc);
        run = p + 1;
    }
    sb_append(b, "\"", 1);
}

/* Turns the oom flag into a status. */
ms_status sb_status(const strbuf *b, ms_error *err)
{
    if (b->oom) return ms_seterr(err, MS_ERR_NOMEM, "out of memory growing a %zu-byte buffer", b->n);
    return MS_OK;
}

/* Appends, then reports the oom flag. */
ms_status sb_add(strbuf *b, const char *s, size_t n, ms_error *err)
{
    sb_append(b, s, n);
    return sb_status(b, err);
}

ms_status sb_adds(strbuf *b, const char *s, ms_error *err)
{
    return sb_add(b, s, strlen(s), err);
}

/* Empties the buffer. */
void sb_reset(strbuf *b)
{
    b->n = 0;
    if (b->p) b->p[0] = 0;
}

/* Frees the bytes and leaves b empty and reusable; NULL-safe. */
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

/* Gives away p (allocating "" for a buffer never appended to). */
char *sb_take(strbuf *b)
{
    if (!b->oom && !b->p) sb_append(b, "", 0);
    char *p = b->oom ? NULL : b->p;
    if (!p) free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
    b->oom = 0;
    return p;
}
