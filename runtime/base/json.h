/* json.h: strict helpers over cJSON for untrusted files and requests:
 * parse with a depth limit and duplicate-key rejection, case-sensitive typed
 * getters with error messages naming the file and field. */
#ifndef MS_JSON_H
#define MS_JSON_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "medserve.h"

#define JSON_MAX_DEPTH 64

/* Parses len bytes (need not be NUL-terminated). Rejects invalid UTF-8,
 * embedded NUL / \u0000, nesting deeper than JSON_MAX_DEPTH, duplicate keys
 * in any object, and trailing garbage. what names the source in errors. */
cJSON *json_parse_strict(const char *buf, size_t len, const char *what, ms_error *err);
/* Reads a whole file (at most max_bytes) and parses it strictly. */
cJSON *json_load_file(const char *path, size_t max_bytes, ms_error *err);

/* Case-sensitive member lookup (never the case-insensitive cJSON getter). */
const cJSON *json_get(const cJSON *obj, const char *key);
/* The member key of obj, or NULL when it is absent or JSON null: what the
 * typed getters below take as "not given". */
const cJSON *json_get_opt(const cJSON *obj, const char *key);
/* 1 when v is a number with a finite, integral value: what json_get_int
 * accepts before its range check. */
int json_is_integer(const cJSON *v);

/* Typed getters: return MS_OK and set *out when present with the right type;
 * when absent and required == 0 leave *out untouched and return MS_OK;
 * otherwise an error naming what/key. Integers must be integral and in range. */
ms_status json_get_int(const cJSON *obj, const char *key, int required, int64_t min, int64_t max, int64_t *out,
                       const char *what, ms_error *err);
ms_status json_get_double(const cJSON *obj, const char *key, int required, double *out, const char *what,
                          ms_error *err);
ms_status json_get_bool(const cJSON *obj, const char *key, int required, int *out, const char *what, ms_error *err);
ms_status json_get_string(const cJSON *obj, const char *key, int required, const char **out, const char *what,
                          ms_error *err);

/* Reads a whole file into a malloc'd NUL-terminated buffer (at most max_bytes). */
ms_status file_read_all(const char *path, size_t max_bytes, char **out, size_t *len, ms_error *err);

#endif
