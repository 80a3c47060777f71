/* json.c: strict parsing and typed, case-sensitive access over cJSON.
 * cJSON alone keeps duplicate keys, truncates strings at \u0000 and does not
 * check UTF-8; the checks here close those gaps before any field is read. */
#include "base/json.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/err.h"

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0 if invalid. */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t k;
    unsigned min;
    if ((c & 0xE0) == 0xC0) {
        k = 2;
        min = 0x80;
        c &= 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
        k = 3;
        min = 0x800;
        c &= 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
        k = 4;
        min = 0x10000;
        c &= 0x07;
    } else return 0;
    if (k > n) return 0;
    for (size_t i = 1; i < k; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        c = (c << 6) | (s[i] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return 0;
    return k;
}

/* Rejects invalid UTF-8, raw NUL bytes and the escape \u0000 (cJSON would cut the string). */
static ms_status check_raw(const char *buf, size_t len, const char *what, ms_error *err)
{
    const unsigned char *s = (const unsigned char *)buf;
    size_t backslashes = 0;
    for (size_t i = 0; i < len;) {
        if (s[i] == 0) return ms_seterr(err, MS_ERR_FORMAT, "%s: NUL byte at offset %zu", what, i);
        size_t k = utf8_seq_len(s + i, len - i);
        if (!k) return ms_seterr(err, MS_ERR_FORMAT, "%s: invalid UTF-8 at offset %zu", what, i);
        if (s[i] == 'u' && (backslashes & 1) && i + 4 < len + 0 && len - i > 4 && s[i + 1] == '0' && s[i + 2] == '0' &&
            s[i + 3] == '0' && s[i + 4] == '0')
            return ms_seterr(err, MS_ERR_FORMAT, "%s: \\u0000 in a string at offset %zu", what, i - 1);
        backslashes = (s[i] == '\\') ? backslashes + 1 : 0;
        i += k;
    }
    return MS_OK;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Walks the tree: depth limit and no duplicate keys in any object. */
static ms_status check_tree(const cJSON *j, int depth, const char *what, ms_error *err)
{
    if (depth > JSON_MAX_DEPTH)
        return ms_seterr(err, MS_ERR_FORMAT, "%s: nesting deeper than %d", what, JSON_MAX_DEPTH);
    size_t n = 0;
    for (const cJSON *c = j->child; c; c = c->next) n++;
    if (cJSON_IsObject(j) && n > 1) {
        const char **keys = malloc(n * sizeof *keys);
        if (!keys) return ms_seterr(err, MS_ERR_NOMEM, "%s: out of memory", what);
        size_t i = 0;
        for (const cJSON *c = j->child; c; c = c->next) keys[i++] = c->string ? c->string : "";
        qsort(keys, n, sizeof *keys, cmp_str);
        for (i = 1; i < n; i++) {
            if (strcmp(keys[i - 1], keys[i]) == 0) {
                ms_status s = ms_seterr(err, MS_ERR_FORMAT, "%s: duplicate key \"%.100s\"", what, keys[i]);
                free(keys);
                return s;
            }
        }
        free(keys);
    }
    for (const cJSON *c = j->child; c; c = c->next) {
        ms_status s = check_tree(c, depth + 1, what, err);
        if (s) return s;
    }
    return MS_OK;
}

/* Bracket depth of the raw text, so deep input is refused before cJSON recurses. */
static int raw_depth_ok(const char *buf, size_t len)
{
    int depth = 0, in_str = 0, esc = 0;
    for (size_t i = 0; i < len; i++) {
        char c = buf[i];
        if (in_str) {
            if (esc) esc = 0;
            else if (c == '\\') esc = 1;
            else if (c == '"') in_str = 0;
        } else if (c == '"') in_str = 1;
        else if (c == '{' || c == '[') {
            if (++depth > JSON_MAX_DEPTH) return 0;
        } else if (c == '}' || c == ']') depth--;
    }
    return 1;
}

cJSON *json_parse_strict(const char *buf, size_t len, const char *what, ms_error *err)
{
    if (check_raw(buf, len, what, err)) return NULL;
    if (!raw_depth_ok(buf, len)) {
        ms_seterr(err, MS_ERR_FORMAT, "%s: nesting deeper than %d", what, JSON_MAX_DEPTH);
        return NULL;
    }
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(buf, len, &end, 0);
    if (!j) {
        size_t off = end ? (size_t)(end - buf) : 0;
        const char *e = cJSON_GetErrorPtr();
        if (e && e >= buf && e <= buf + len) off = (size_t)(e - buf);
        ms_seterr(err, MS_ERR_FORMAT, "%s: invalid JSON near offset %zu", what, off);
        return NULL;
    }
    for (const char *p = end; p && p < buf + len; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            ms_seterr(err, MS_ERR_FORMAT, "%s: trailing data after JSON at offset %zu", what, (size_t)(p - buf));
            cJSON_Delete(j);
            return NULL;
        }
    }
    if (check_tree(j, 0, what, err)) {
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

ms_status file_read_all(const char *path, size_t max_bytes, char **out, size_t *len, ms_error *err)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return ms_seterr(err, errno == ENOENT ? MS_ERR_NOTFOUND : MS_ERR_IO, "%s: cannot open: %s", path,
                         strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return ms_seterr(err, MS_ERR_IO, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > max_bytes) {
        fclose(f);
        return ms_seterr(err, MS_ERR_FORMAT, "%s: file is %lld bytes, over the %zu-byte limit", path,
                         (long long)st.st_size, max_bytes);
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        fclose(f);
        return ms_seterr(err, MS_ERR_NOMEM, "%s: out of memory reading %zu bytes", path, n);
    }
    if (n && fread(buf, 1, n, f) != n) {
        fclose(f);
        free(buf);
        return ms_seterr(err, MS_ERR_IO, "%s: short read", path);
    }
    fclose(f);
    buf[n] = '\0';
    *out = buf;
    if (len) *len = n;
    return MS_OK;
}

cJSON *json_load_file(const char *path, size_t max_bytes, ms_error *err)
{
    char *buf;
    size_t n;
    if (file_read_all(path, max_bytes, &buf, &n, err)) return NULL;
    cJSON *j = json_parse_strict(buf, n, path, err);
    free(buf);
    return j;
}

const cJSON *json_get(const cJSON *obj, const char *key)
{
    if (!cJSON_IsObject(obj)) return NULL;
    return cJSON_GetObjectItemCaseSensitive(obj, key);
}

/* json_get, with JSON null folded into "absent". */
const cJSON *json_get_opt(const cJSON *obj, const char *key)
{
    const cJSON *v = json_get(obj, key);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

/* Finite and equal to its floor: 3 and 3.0 pass, 3.5, 1e999 and "3" do not. */
int json_is_integer(const cJSON *v)
{
    return cJSON_IsNumber(v) && isfinite(v->valuedouble) && v->valuedouble == floor(v->valuedouble);
}

static ms_status absent(const char *key, int required, const char *what, ms_error *err)
{
    if (required) return ms_seterr(err, MS_ERR_FORMAT, "%s: required field \"%s\" is missing", what, key);
    return MS_OK;
}

ms_status json_get_int(const cJSON *obj, const char *key, int required, int64_t min, int64_t max, int64_t *out,
                       const char *what, ms_error *err)
{
    const cJSON *v = json_get_opt(obj, key);
    if (!v) return absent(key, required, what, err);
    if (!json_is_integer(v)) return ms_seterr(err, MS_ERR_FORMAT, "%s: field \"%s\" must be an integer", what, key);
    double d = v->valuedouble;
    if (d < (double)min || d > (double)max)
        return ms_seterr(err, MS_ERR_FORMAT, "%s: field \"%s\" = %.17g is outside [%lld, %lld]", what, key, d,
                         (long long)min, (long long)max);
    *out = (int64_t)d;
    return MS_OK;
}

ms_status json_get_double(const cJSON *obj, const char *key, int required, double *out, const char *what, ms_error *err)
{
    const cJSON *v = json_get_opt(obj, key);
    if (!v) return absent(key, required, what, err);
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return ms_seterr(err, MS_ERR_FORMAT, "%s: field \"%s\" must be a finite number", what, key);
    *out = v->valuedouble;
    return MS_OK;
}

ms_status json_get_bool(const cJSON *obj, const char *key, int required, int *out, const char *what, ms_error *err)
{
    const cJSON *v = json_get_opt(obj, key);
    if (!v) return absent(key, required, what, err);
    if (!cJSON_IsBool(v)) return ms_seterr(err, MS_ERR_FORMAT, "%s: field \"%s\" must be true or false", what, key);
    *out = cJSON_IsTrue(v);
    return MS_OK;
}

ms_status json_get_string(const cJSON *obj, const char *key, int required, const char **out, const char *what,
                          ms_error *err)
{
    const cJSON *v = json_get_opt(obj, key);
    if (!v) return absent(key, required, what, err);
    if (!cJSON_IsString(v)) return ms_seterr(err, MS_ERR_FORMAT, "%s: field \"%s\" must be a string", what, key);
    *out = v->valuestring;
    return MS_OK;
}
