/* stop.h: stop strings over a stream of generated text. Text is fed piece by
 * piece (one token's newly decodable UTF-8 at a time); the matcher releases
 * everything that cannot be the start of a stop string, holds back the
 * longest tail that is a proper prefix of one, and on a match releases only
 * the text before the earliest match (the stop string and the rest are cut).
 * Matches across token boundaries are found because held text is kept. */
#ifndef MS_STOP_H
#define MS_STOP_H

#include <stddef.h>

#include "medserve.h"

#define STOP_MAX_LEN 1024 /* bytes per stop string */

typedef struct stop_matcher {
    char *strs[MS_MAX_STOP]; /* owned copies */
    size_t lens[MS_MAX_STOP];
    int n;
    size_t max_len;           /* longest stop string (0 if none) */
    char *buf;                /* held text then new text; [cap] */
    size_t cap, n_buf, n_out; /* buf[0..n_out) released by the last call */
    int matched;
} stop_matcher;

/* Checks stops (NULL-terminated or MS_MAX_STOP entries): non-empty, at most
 * STOP_MAX_LEN bytes, valid UTF-8. Allocates nothing. */
ms_status stop_validate(const char *const *stops, ms_error *err);
/* Copies stops; max_piece bounds the bytes of one stop_feed call. */
ms_status stop_init(stop_matcher *m, const char *const *stops, size_t max_piece, ms_error *err);
void stop_free(stop_matcher *m); /* NULL-safe; leaves m zeroed */

/* Appends text (len <= max_piece). Sets *out and *out_len to the bytes released
 * now (valid until the next call). Returns 1 when a stop string matched (out
 * ends right before it; later calls release nothing), 0 otherwise, -1 if len
 * exceeds max_piece (nothing consumed). */
int stop_feed(stop_matcher *m, const char *text, size_t len, const char **out, size_t *out_len);
/* Releases the held tail (at the end of generation); nothing after a match. */
void stop_finish(stop_matcher *m, const char **out, size_t *out_len);

#endif
