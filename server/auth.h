/* auth.h: API keys. Loaded from a file that only its owner may read or write
 * (mode 0600 or stricter), one `id:key` per line; only SHA-256 digests are
 * kept. A presented key is hashed and compared with every stored digest in
 * constant time, without an early exit, so timing reveals neither which key
 * nor how much of it matched. Only `Authorization: Bearer <key>` counts. */
#ifndef MS_AUTH_H
#define MS_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "medserve.h"

#define AUTH_MAX_KEYS 1024
#define AUTH_MIN_KEY_LEN 16
#define AUTH_MAX_KEY_LEN 512
#define AUTH_MAX_ID_LEN 64
#define AUTH_MAX_FILE (1u << 20)

typedef struct auth auth;

/* Loads keys from path; refuses group/other permissions, bad lines, short
 * keys, duplicate ids and an empty file, naming the line. */
ms_status auth_load(const char *path, auth **out, ms_error *err);
/* Builds a key set from memory (same rules; for tests). */
ms_status auth_from_text(const char *text, size_t len, const char *what, auth **out, ms_error *err);
void auth_free(auth *a);
int auth_count(const auth *a);

/* Checks one Authorization header value ("Bearer KEY"). Returns the key's
 * index and sets *id (owned by a) on success, -1 otherwise. */
int auth_check(const auth *a, const char *header_value, const char **id);

/* 0 when the n bytes at a and b are equal; constant time in their content. */
int auth_ct_diff(const uint8_t *a, const uint8_t *b, size_t n);

#endif
