/* auth.c: API-key file loading and constant-time checking (see auth.h). The
 * key file is opened once with O_NOFOLLOW and checked with fstat (mode and
 * regular file) before reading; the plaintext keys are wiped from memory
 * after hashing. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth.h"
#include "base/err.h"
#include "base/sha256.h"

typedef struct auth_key {
    char id[AUTH_MAX_ID_LEN + 1];
    uint8_t digest[32];
} auth_key;

struct auth {
    auth_key *keys;
    int n;
};

/* Ors the XOR of every byte pair: no early exit, no data-dependent branch. */
int auth_ct_diff(const uint8_t *a, const uint8_t *b, size_t n)
{
    volatile uint8_t d = 0;
    for (size_t i = 0; i < n; i++) d |= (uint8_t)(a[i] ^ b[i]);
    return d;
}

/* Wipes n bytes in a way the compiler keeps. */
static void wipe(void *p, size_t n)
{
    volatile uint8_t *v = p;
    while (n--) *v++ = 0;
}

/* 1 if c may appear in a key id. */
static int id_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
           c == '.';
}

/* 1 if c may appear in a key (printable ASCII without space). */
static int key_char(char c)
{
    return c > 0x20 && c < 0x7f;
}

/* Parses one line "id:key" into a->keys[a->n]. */
static ms_status add_line(auth *a, const char *line, size_t len, const char *what, int lineno, ms_error *err)
{
    const char *colon = memchr(line, ':', len);
    if (!colon) return ms_seterr(err, MS_ERR_FORMAT, "%s: line %d: expected 'id:key'", what, lineno);
    size_t il = (size_t)(colon - line), kl = len - il - 1;
    const char *key = colon + 1;
    if (il == 0 || il > AUTH_MAX_ID_LEN)
        return ms_seterr(err, MS_ERR_FORMAT, "%s: line %d: key id must have 1..%d characters", what, lineno,
                         AUTH_MAX_ID_LEN);
    for (size_t i = 0; i < il; i++)
        if (!id_char(line[i]))
            return ms_seterr(err, MS_ERR_FORMAT, "%s: line %d: key id may only use letters, digits, '-', '_', '.'",
                             what, lineno);
    if (kl < AUTH_MIN_KEY_LEN || kl > AUTH_MAX_KEY_LEN)
        return ms_seterr(err, MS_ERR_FORMAT, "%s: line %d: key must have %d..%d characters", what, lineno,
                         AUTH_MIN_KEY_LEN, AUTH_MAX_KEY_LEN);
    for (size_t i = 0; i < kl; i++)
        if (!key_char(key[i]))
            return ms_seterr(err, MS_ERR_FORMAT, "%s: line %d: key must be printable ASCII without spaces", what,
                             lineno);
    if (a->n >= AUTH_MAX_KEYS) return ms_seterr(err, MS_ERR_FORMAT, "%s: more than %d keys", what, AUTH_MAX_KEYS);
    for (int i = 0; i < a->n; i++)
        if (strlen(a->keys[i].id) == il && !memcmp(a->keys[i].id, line, il))
            return ms_seterr(err, MS_ERR_FORMAT, "%s: line %d: duplicate key id '%.*s'", what, lineno, (int)il, line);
    auth_key *k = &a->keys[a->n];
    memcpy(k->id, line, il);
    k->id[il] = 0;
    sha256(key, kl, k->digest);
    for (int i = 0; i < a->n; i++)
        if (!auth_ct_diff(a->keys[i].digest, k->digest, 32))
            return ms_seterr(err, MS_ERR_FORMAT, "%s: line %d: the same key as id '%s'", what, lineno, a->keys[i].id);
    a->n++;
    return MS_OK;
}

/* Parses lines "id:key" (blank lines and # comments skipped) into digests. */
ms_status auth_from_text(const char *text, size_t len, const char *what, auth **out, ms_error *err)
{
    *out = NULL;
    auth *a = calloc(1, sizeof *a);
    if (!a || !(a->keys = calloc(AUTH_MAX_KEYS, sizeof *a->keys))) {
        free(a);
        return ms_seterr(err, MS_ERR_NOMEM, "%s: out of memory", what);
    }
    int lineno = 0;
    size_t i = 0;
    while (i < len) {
        size_t e = i;
        while (e < len && text[e] != '\n') e++;
        size_t l = e - i;
        lineno++;
        if (l && text[i + l - 1] == '\r') l--;
        if (memchr(text + i, 0, l)) {
            auth_free(a);
            return ms_seterr(err, MS_ERR_FORMAT, "%s: line %d: NUL byte", what, lineno);
        }
        if (l && text[i] != '#') {
            ms_status st = add_line(a, text + i, l, what, lineno, err);
            if (st) {
                auth_free(a);
                return st;
            }
        }
        i = e + 1;
    }
    if (a->n == 0) {
        auth_free(a);
        return ms_seterr(err, MS_ERR_FORMAT, "%s: no keys (expected lines 'id:key')", what);
    }
    *out = a;
    return MS_OK;
}

/* Opens without following links, checks mode and type on the open file, then parses. */
ms_status auth_load(const char *path, auth **out, ms_error *err)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return ms_seterr(err, MS_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return ms_seterr(err, MS_ERR_IO, "%s: not a regular file", path);
    }
    if (st.st_mode & 077) {
        close(fd);
        return ms_seterr(err, MS_ERR_INVALID, "%s: mode %03o lets others read or write the keys; run chmod 600 %s",
                         path, (unsigned)(st.st_mode & 0777), path);
    }
    if (st.st_size > (off_t)AUTH_MAX_FILE) {
        close(fd);
        return ms_seterr(err, MS_ERR_INVALID, "%s: larger than %u bytes", path, AUTH_MAX_FILE);
    }
    size_t len = (size_t)st.st_size, got = 0;
    char *buf = malloc(len + 1);
    if (!buf) {
        close(fd);
        return ms_seterr(err, MS_ERR_NOMEM, "%s: out of memory", path);
    }
    while (got < len) {
        ssize_t r = read(fd, buf + got, len - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    ms_status s =
        got == len ? auth_from_text(buf, len, path, out, err) : ms_seterr(err, MS_ERR_IO, "%s: short read", path);
    wipe(buf, len);
    free(buf);
    return s;
}

/* Wipes the digests and frees. */
void auth_free(auth *a)
{
    if (!a) return;
    if (a->keys) wipe(a->keys, AUTH_MAX_KEYS * sizeof *a->keys);
    free(a->keys);
    free(a);
}

int auth_count(const auth *a)
{
    return a ? a->n : 0;
}

/* Hashes the presented key once and compares it with every stored digest. */
int auth_check(const auth *a, const char *v, const char **id)
{
    static const char prefix[] = "Bearer ";
    if (id) *id = NULL;
    if (!a || !v || strncmp(v, prefix, sizeof prefix - 1)) return -1;
    const char *key = v + sizeof prefix - 1;
    size_t kl = strlen(key);
    if (kl == 0 || kl > AUTH_MAX_KEY_LEN) return -1;
    uint8_t d[32];
    sha256(key, kl, d);
    /* every digest is compared; the match is selected with masks, no branch */
    int found = -1;
    for (int i = 0; i < a->n; i++) {
        int diff = auth_ct_diff(a->keys[i].digest, d, 32);
        int mask = -(int)((unsigned)(diff - 1) >> 31 & 1); /* -1 when diff == 0 */
        found = (found & ~mask) | (i & mask);
    }
    if (found >= 0 && id) *id = a->keys[found].id;
    return found;
}
