/* jsonw.c: the indent-2 JSON printer of jsonw.h: a recursive walk into a
 * strbuf; strings are escaped as JSON requires (control characters
 * as \u00XX, quote and backslash), numbers that are integers below 2^53 are
 * printed without exponent or fraction, other numbers with cJSON's printer
 * (shortest text that reads back the same double). */
#include "jsonw.h"

#include <math.h>
#include <stdio.h>

#include "base/strbuf.h"

/* Appends 2*depth spaces after a newline. */
static void newline(strbuf *b, int depth)
{
    sb_append(b, "\n", 1);
    for (int i = 0; i < depth; i++) sb_append(b, "  ", 2);
}

/* Appends a number as Python prints it: an integral value below 2^53 without
 * a fraction (1, not 1.0), any other as cJSON's shortest round-trip form. */
static void put_number(strbuf *b, const cJSON *j)
{
    double d = j->valuedouble;
    char tmp[64];
    if (isfinite(d) && d == floor(d) && fabs(d) < 9007199254740992.0) {
        snprintf(tmp, sizeof tmp, "%.0f", d);
        sb_puts(b, tmp);
        return;
    }
    char *s = cJSON_PrintUnformatted(j);
    if (!s) {
        b->oom = 1;
        return;
    }
    sb_puts(b, s);
    cJSON_free(s);
}

/* Appends any value at the given depth. */
static void put_value(strbuf *b, const cJSON *j, int depth)
{
    if (cJSON_IsNull(j)) sb_puts(b, "null");
    else if (cJSON_IsTrue(j)) sb_puts(b, "true");
    else if (cJSON_IsFalse(j)) sb_puts(b, "false");
    else if (cJSON_IsNumber(j)) put_number(b, j);
    else if (cJSON_IsString(j)) sb_json_string(b, j->valuestring);
    else if (cJSON_IsArray(j) || cJSON_IsObject(j)) {
        int obj = cJSON_IsObject(j);
        if (!j->child) {
            sb_puts(b, obj ? "{}" : "[]");
            return;
        }
        sb_append(b, obj ? "{" : "[", 1);
        for (const cJSON *c = j->child; c; c = c->next) {
            newline(b, depth + 1);
            if (obj) {
                sb_json_string(b, c->string ? c->string : "");
                sb_puts(b, ": ");
            }
            put_value(b, c, depth + 1);
            if (c->next) sb_append(b, ",", 1);
        }
        newline(b, depth);
        sb_append(b, obj ? "}" : "]", 1);
    } else {
        sb_puts(b, "null");
    }
}

/* Pretty-prints j with a trailing newline. */
char *mg_json_pretty(const cJSON *j)
{
    strbuf b = {0};
    put_value(&b, j, 0);
    sb_append(&b, "\n", 1);
    return sb_take(&b);
}
