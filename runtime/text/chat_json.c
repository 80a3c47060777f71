/* chat_json.c: number-literal-preserving strict parse, and a Python
 * json.dumps(ensure_ascii=False) writer (the template's `tojson`).
 * Parsing and all input checks are json_parse_strict's; this file only adds
 * the exact JSON number grammar and remembers each literal. It does not
 * pretty-print, sort keys or escape non-ASCII (Python does neither here). */
#include "text/chat_json.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/json.h"

/* ---- number literals ------------------------------------------------- */

typedef struct span {
    size_t begin, end;
} span;

/* Length of a JSON-grammar number at s (n bytes), or 0 when the text there is
 * not one or runs on into characters a lenient parser would still eat. */
static size_t number_len(const char *s, size_t n)
{
    size_t i = 0;
    if (i < n && s[i] == '-') i++;
    if (i >= n) return 0;
    if (s[i] == '0') i++;
    else if (s[i] >= '1' && s[i] <= '9')
        while (i < n && s[i] >= '0' && s[i] <= '9') i++;
    else return 0;
    if (i < n && s[i] == '.') {
        i++;
        size_t d = i;
        while (i < n && s[i] >= '0' && s[i] <= '9') i++;
        if (i == d) return 0;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-')) i++;
        size_t d = i;
        while (i < n && s[i] >= '0' && s[i] <= '9') i++;
        if (i == d) return 0;
    }
    if (i < n && (strchr("0123456789.eE+-", s[i]) != NULL)) return 0;
    return i;
}

/* Collects the spans of every number literal outside strings, in text order. */
static ms_status scan_numbers(const char *t, size_t len, span **out, size_t *n_out, const char *what, ms_error *err)
{
    span *v = NULL;
    size_t n = 0, cap = 0;
    int in_str = 0, esc = 0;
    for (size_t i = 0; i < len; i++) {
        char c = t[i];
        if (in_str) {
            if (esc) esc = 0;
            else if (c == '\\') esc = 1;
            else if (c == '"') in_str = 0;
            continue;
        }
        if (c == '"') {
            in_str = 1;
            continue;
        }
        if (c != '-' && !(c >= '0' && c <= '9')) continue;
        size_t k = number_len(t + i, len - i);
        if (!k) {
            free(v);
            return ms_seterr(err, MS_ERR_FORMAT, "%s: malformed number at offset %zu", what, i);
        }
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            if (nc > SIZE_MAX / sizeof *v) {
                free(v);
                return ms_seterr(err, MS_ERR_NOMEM, "%s: too many numbers", what);
            }
            span *nv = realloc(v, nc * sizeof *nv);
            if (!nv) {
                free(v);
                return ms_seterr(err, MS_ERR_NOMEM, "%s: out of memory", what);
            }
            v = nv;
            cap = nc;
        }
        v[n].begin = i;
        v[n].end = i + k;
        n++;
        i += k - 1;
    }
    *out = v;
    *n_out = n;
    return MS_OK;
}

/* Gives each number node of j, in document order, its literal from spans. */
static ms_status attach_literals(cJSON *j, const char *t, const span *sp, size_t n, size_t *next, const char *what,
                                 ms_error *err)
{
    for (; j; j = j->next) {
        if (cJSON_IsNumber(j)) {
            if (*next >= n) return ms_seterr(err, MS_ERR_INTERNAL, "%s: number literal count mismatch", what);
            size_t k = sp[*next].end - sp[*next].begin;
            char *lit = malloc(k + 1);
            if (!lit) return ms_seterr(err, MS_ERR_NOMEM, "%s: out of memory", what);
            memcpy(lit, t + sp[*next].begin, k);
            lit[k] = '\0';
            free(j->valuestring);
            j->valuestring = lit;
            (*next)++;
        }
        if (j->child) {
            ms_status s = attach_literals(j->child, t, sp, n, next, what, err);
            if (s) return s;
        }
    }
    return MS_OK;
}

cJSON *chat_json_parse(const char *text, size_t len, const char *what, ms_error *err)
{
    cJSON *j = json_parse_strict(text, len, what, err);
    if (!j) return NULL;
    span *sp = NULL;
    size_t n = 0, next = 0;
    ms_status s = scan_numbers(text, len, &sp, &n, what, err);
    if (!s) s = attach_literals(j, text, sp, n, &next, what, err);
    if (!s && next != n) s = ms_seterr(err, MS_ERR_INTERNAL, "%s: number literal count mismatch", what);
    free(sp);
    if (s) {
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

/* ---- Python float repr ------------------------------------------------ */

/* Round-trip check of a decimal string. */
static int reads_back(const char *s, double x)
{
    return strtod(s, NULL) == x;
}

/* Shortest decimal digits (no trailing zeros) that read back as x > 0, and
 * the exponent e with x ~ 0.d1d2... * 10^e, as David Gay's mode 0 gives. */
static void shortest_digits(double x, char *digits, int *nd, int *decpt)
{
    char buf[48];
    for (int p = 1; p <= 17; p++) {
        snprintf(buf, sizeof buf, "%.*e", p - 1, x);
        char *e = strchr(buf, 'e');
        int ex = atoi(e + 1);
        uint64_t m = 0;
        for (char *q = buf; q < e; q++)
            if (*q != '.') m = m * 10 + (uint64_t)(*q - '0');
        int found = reads_back(buf, x);
        if (!found) {
            /* The correctly rounded string misses; at a power of two the
             * interval is lopsided, so a neighbour of the same length may hit. */
            char c1[48], c2[48];
            snprintf(c1, sizeof c1, "%llue%d", (unsigned long long)(m + 1), ex - (p - 1));
            snprintf(c2, sizeof c2, "%llue%d", (unsigned long long)(m - 1), ex - (p - 1));
            int ok1 = reads_back(c1, x), ok2 = m > 1 && reads_back(c2, x);
            if (ok1 && ok2) {
                double d1 = fabs(strtod(c1, NULL) - x), d2 = fabs(strtod(c2, NULL) - x);
                ok1 = d1 <= d2;
                ok2 = !ok1;
            }
            if (ok1) m = m + 1;
            else if (ok2) m = m - 1;
            found = ok1 || ok2;
        }
        if (!found) continue;
        /* m has p digits (or p+1 after a carry); e is the exponent of its first digit. */
        char ds[24];
        int k = snprintf(ds, sizeof ds, "%llu", (unsigned long long)m);
        int first_exp = ex - (p - 1) + (k - 1);
        while (k > 1 && ds[k - 1] == '0') k--;
        memcpy(digits, ds, (size_t)k);
        digits[k] = '\0';
        *nd = k;
        *decpt = first_exp + 1;
        return;
    }
    /* 17 significant digits always round-trip; not reached. */
    snprintf(digits, 24, "0");
    *nd = 1;
    *decpt = 1;
}

void chat_json_float_repr(double x, char *out)
{
    if (isnan(x)) {
        strcpy(out, "NaN");
        return;
    }
    if (isinf(x)) {
        strcpy(out, x < 0 ? "-Infinity" : "Infinity");
        return;
    }
    char *o = out;
    if (signbit(x)) *o++ = '-';
    double ax = fabs(x);
    char d[24];
    int nd = 1, decpt = 1;
    if (ax == 0) strcpy(d, "0");
    else shortest_digits(ax, d, &nd, &decpt);
    if (decpt <= -4 || decpt > 16) {
        *o++ = d[0];
        if (nd > 1) {
            *o++ = '.';
            memcpy(o, d + 1, (size_t)nd - 1);
            o += nd - 1;
        }
        int e = decpt - 1;
        sprintf(o, "e%c%02d", e < 0 ? '-' : '+', e < 0 ? -e : e);
        return;
    }
    if (decpt <= 0) {
        *o++ = '0';
        *o++ = '.';
        for (int i = 0; i < -decpt; i++) *o++ = '0';
        memcpy(o, d, (size_t)nd);
        o += nd;
    } else if (decpt < nd) {
        memcpy(o, d, (size_t)decpt);
        o += decpt;
        *o++ = '.';
        memcpy(o, d + decpt, (size_t)(nd - decpt));
        o += nd - decpt;
    } else {
        memcpy(o, d, (size_t)nd);
        o += nd;
        for (int i = nd; i < decpt; i++) *o++ = '0';
        *o++ = '.';
        *o++ = '0';
    }
    *o = '\0';
}

/* ---- json.dumps --------------------------------------------------------- */

/* Appends s as a JSON string, escaped as Python's ensure_ascii=False does
 * (which is sb_json_string's escaping). */
static ms_status dump_string(const char *s, strbuf *b, ms_error *err)
{
    sb_json_string(b, s);
    return sb_status(b, err);
}

/* Appends a number node: its literal when kept, else a best guess from the
 * double. python: as json.dumps writes the parsed value; else the literal as is. */
static ms_status dump_number(const cJSON *v, int python, strbuf *b, ms_error *err)
{
    const char *lit = v->valuestring;
    char out[40];
    if (lit && *lit && !python) return sb_adds(b, lit, err);
    if (lit && *lit) {
        if (!strpbrk(lit, ".eE")) {
            /* JSON forbids leading zeros, so only "-0" changes under int(). */
            if (!strcmp(lit, "-0")) return sb_adds(b, "0", err);
            return sb_adds(b, lit, err);
        }
        chat_json_float_repr(strtod(lit, NULL), out);
        return sb_adds(b, out, err);
    }
    double d = v->valuedouble;
    if (isfinite(d) && d == floor(d) && fabs(d) < 9007199254740992.0) {
        snprintf(out, sizeof out, "%.0f", d);
        return sb_adds(b, strcmp(out, "-0") ? out : "0", err);
    }
    if (!python && isinf(d)) return sb_adds(b, d < 0 ? "-1e999" : "1e999", err);
    if (!python && isnan(d)) return ms_seterr(err, MS_ERR_INVALID, "chat: NaN has no JSON form");
    chat_json_float_repr(d, out);
    return sb_adds(b, out, err);
}

/* The writer behind chat_json_dump and chat_json_dump_literal. */
static ms_status dump(const cJSON *v, int python, strbuf *b, ms_error *err)
{
    if (!v) return ms_seterr(err, MS_ERR_INVALID, "chat: no JSON value to write");
    if (cJSON_IsNull(v)) return sb_adds(b, "null", err);
    if (cJSON_IsTrue(v)) return sb_adds(b, "true", err);
    if (cJSON_IsFalse(v)) return sb_adds(b, "false", err);
    if (cJSON_IsNumber(v)) return dump_number(v, python, b, err);
    if (cJSON_IsString(v)) return dump_string(v->valuestring ? v->valuestring : "", b, err);
    if (cJSON_IsArray(v) || cJSON_IsObject(v)) {
        int obj = cJSON_IsObject(v);
        ms_status s = sb_add(b, obj ? "{" : "[", 1, err);
        for (const cJSON *c = v->child; !s && c; c = c->next) {
            if (c != v->child) s = sb_add(b, ", ", 2, err);
            if (!s && obj) s = dump_string(c->string ? c->string : "", b, err);
            if (!s && obj) s = sb_add(b, ": ", 2, err);
            if (!s) s = dump(c, python, b, err);
        }
        if (!s) s = sb_add(b, obj ? "}" : "]", 1, err);
        return s;
    }
    return ms_seterr(err, MS_ERR_INVALID, "chat: unsupported JSON value type %d", v->type);
}

ms_status chat_json_dump(const cJSON *v, strbuf *b, ms_error *err)
{
    return dump(v, 1, b, err);
}

ms_status chat_json_dump_literal(const cJSON *v, strbuf *b, ms_error *err)
{
    return dump(v, 0, b, err);
}
