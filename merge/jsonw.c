/* jsonw.c: the indent-2 JSON printer of jsonw.h. A growable buffer and a
 * recursive walk; strings are escaped as JSON requires (control characters
 * as \u00XX, quote and backslash), numbers that are integers below 2^53 are
 * printed without exponent or fraction, other numbers with cJSON's printer
 * (shortest text that reads back the same double). */
#include "jsonw.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct buf {
    char *p;
    size_t n, cap;
    int oom;
} buf;

/* Appends n bytes. */
static void put(buf *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t c = b->cap ? b->cap * 2 : 4096;
        while (c < b->n + n + 1) c *= 2;
        char *q = realloc(b->p, c);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q;
        b->cap = c;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

/* Appends a C string. */
static void puts_(buf *b, const char *s) { put(b, s, strlen(s)); }

/* Appends 2*depth spaces after a newline. */
static void newline(buf *b, int depth)
{
    put(b, "\n", 1);
    for (int i = 0; i < depth; i++) put(b, "  ", 2);
}

/* Appends a JSON string literal. */
static void put_string(buf *b, const char *s)
{
    put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char e[8];
        switch (*p) {
        case '"': puts_(b, "\\\""); break;
        case '\\': puts_(b, "\\\\"); break;
        case '\n': puts_(b, "\\n"); break;
        case '\r': puts_(b, "\\r"); break;
        case '\t': puts_(b, "\\t"); break;
        case '\b': puts_(b, "\\b"); break;
        case '\f': puts_(b, "\\f"); break;
        default:
            if (*p < 0x20) {
                snprintf(e, sizeof e, "\\u%04x", *p);
                puts_(b, e);
            } else {
                put(b, (const char *)p, 1);
            }
        }
    }
    put(b, "\"", 1);
}

/* Appends a number. */
static void put_number(buf *b, const cJSON *j)
{
    double d = j->valuedouble;
    char tmp[64];
    if (isfinite(d) && d == floor(d) && fabs(d) < 9007199254740992.0) {
        snprintf(tmp, sizeof tmp, "%.0f", d);
        puts_(b, tmp);
        return;
    }
    char *s = cJSON_PrintUnformatted(j);
    if (!s) {
        b->oom = 1;
        return;
    }
    puts_(b, s);
    cJSON_free(s);
}

/* Appends any value at the given depth. */
static void put_value(buf *b, const cJSON *j, int depth)
{
    if (cJSON_IsNull(j)) puts_(b, "null");
    else if (cJSON_IsTrue(j)) puts_(b, "true");
    else if (cJSON_IsFalse(j)) puts_(b, "false");
    else if (cJSON_IsNumber(j)) put_number(b, j);
    else if (cJSON_IsString(j)) put_string(b, j->valuestring);
    else if (cJSON_IsArray(j) || cJSON_IsObject(j)) {
        int obj = cJSON_IsObject(j);
        if (!j->child) {
            puts_(b, obj ? "{}" : "[]");
            return;
        }
        put(b, obj ? "{" : "[", 1);
        for (const cJSON *c = j->child; c; c = c->next) {
            newline(b, depth + 1);
            if (obj) {
                put_string(b, c->string ? c->string : "");
                puts_(b, ": ");
            }
            put_value(b, c, depth + 1);
            if (c->next) put(b, ",", 1);
        }
        newline(b, depth);
        put(b, obj ? "}" : "]", 1);
    } else {
        puts_(b, "null");
    }
}

/* Pretty-prints j with a trailing newline. */
char *mg_json_pretty(const cJSON *j)
{
    buf b = {0};
    put_value(&b, j, 0);
    put(&b, "\n", 1);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}
