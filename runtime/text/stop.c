/* stop.c: the stop-string matcher of stop.h. The buffer holds the tail that
 * was held back by the previous call followed by the new piece; a match must
 * end inside the new piece (earlier ones were found before), and the tail
 * held back is always shorter than the longest stop string, so one buffer of
 * max_len + max_piece bytes suffices and nothing is allocated per token.
 * Valid UTF-8 stop strings start with a lead byte, so a held tail never
 * starts inside a character of valid UTF-8 text. */
#include "text/stop.h"

#include <stdlib.h>
#include <string.h>

#include "base/err.h"

/* 1 if s[0..n) is valid UTF-8 (no overlongs, surrogates or values > U+10FFFF). */
static int utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t k;
        unsigned min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            k = 1, min = 0x80, c &= 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            k = 2, min = 0x800, c &= 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            k = 3, min = 0x10000, c &= 0x07;
        } else {
            return 0;
        }
        if (n - i <= k) return 0;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xC0) != 0x80) return 0;
            c = (c << 6) | (s[i + j] & 0x3F);
        }
        if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return 0;
        i += k + 1;
    }
    return 1;
}

/* Checks each stop string: non-empty, bounded, valid UTF-8. */
ms_status stop_validate(const char *const *stops, ms_error *err)
{
    for (int i = 0; stops && i < MS_MAX_STOP && stops[i]; i++) {
        size_t len = strnlen(stops[i], STOP_MAX_LEN + 1);
        if (len == 0) return ms_seterr(err, MS_ERR_INVALID, "stop[%d]: empty stop string", i);
        if (len > STOP_MAX_LEN)
            return ms_seterr(err, MS_ERR_INVALID, "stop[%d]: longer than %d bytes", i, STOP_MAX_LEN);
        if (!utf8_valid((const unsigned char *)stops[i], len))
            return ms_seterr(err, MS_ERR_INVALID, "stop[%d]: not valid UTF-8", i);
    }
    return MS_OK;
}

/* Frees the copies and the buffer; NULL-safe. */
void stop_free(stop_matcher *m)
{
    if (!m) return;
    for (int i = 0; i < m->n; i++) free(m->strs[i]);
    free(m->buf);
    memset(m, 0, sizeof *m);
}

/* Copies the stop strings and sizes the buffer for one piece plus a held tail. */
ms_status stop_init(stop_matcher *m, const char *const *stops, size_t max_piece, ms_error *err)
{
    memset(m, 0, sizeof *m);
    ms_status st = stop_validate(stops, err);
    if (st != MS_OK) return st;
    for (int i = 0; stops && i < MS_MAX_STOP && stops[i]; i++) {
        m->lens[i] = strlen(stops[i]);
        m->strs[i] = malloc(m->lens[i] + 1);
        if (!m->strs[i]) goto nomem;
        memcpy(m->strs[i], stops[i], m->lens[i] + 1);
        m->n = i + 1;
        if (m->lens[i] > m->max_len) m->max_len = m->lens[i];
    }
    if (max_piece > SIZE_MAX / 2) return ms_seterr(err, MS_ERR_INVALID, "stop: piece size too large");
    m->cap = m->max_len + max_piece + 1;
    m->buf = malloc(m->cap);
    if (!m->buf) goto nomem;
    return MS_OK;
nomem:
    stop_free(m);
    return ms_seterr(err, MS_ERR_NOMEM, "stop: out of memory");
}

/* Length of the longest tail of buf[0..n) that is a proper prefix of a stop string. */
static size_t held_tail(const stop_matcher *m, const char *buf, size_t n)
{
    size_t lim = m->max_len ? m->max_len - 1 : 0;
    if (lim > n) lim = n;
    for (size_t k = lim; k > 0; k--) {
        const char *tail = buf + n - k;
        for (int i = 0; i < m->n; i++)
            if (m->lens[i] > k && tail[0] == m->strs[i][0] && !memcmp(tail, m->strs[i], k)) return k;
    }
    return 0;
}

/* Adds a piece of text; releases what can no longer start a stop string. */
int stop_feed(stop_matcher *m, const char *text, size_t len, const char **out, size_t *out_len)
{
    *out = m->buf;
    *out_len = 0;
    if (m->matched) return 1;
    if (m->n == 0) { /* no stop strings: pass the text through */
        *out = text;
        *out_len = len;
        return 0;
    }
    if (len > m->cap - m->max_len - 1) return -1;
    /* drop what the previous call released; the held tail moves to the front */
    size_t held = m->n_buf - m->n_out;
    memmove(m->buf, m->buf + m->n_out, held);
    memcpy(m->buf + held, text, len);
    m->n_buf = held + len;
    m->n_out = 0;
    /* earliest match; it must end inside the new text */
    size_t best = SIZE_MAX;
    for (int i = 0; i < m->n; i++) {
        const char *hit = memmem(m->buf, m->n_buf, m->strs[i], m->lens[i]);
        if (hit && (size_t)(hit - m->buf) < best) best = (size_t)(hit - m->buf);
    }
    if (best != SIZE_MAX) {
        m->matched = 1;
        m->n_out = best;
        m->n_buf = best;
        *out_len = best;
        return 1;
    }
    m->n_out = m->n_buf - held_tail(m, m->buf, m->n_buf);
    *out_len = m->n_out;
    return 0;
}

/* Releases the held tail at the end of generation. */
void stop_finish(stop_matcher *m, const char **out, size_t *out_len)
{
    *out = m->buf + m->n_out;
    *out_len = m->matched ? 0 : m->n_buf - m->n_out;
    m->n_out = m->n_buf;
}
