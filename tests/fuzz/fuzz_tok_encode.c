/* fuzz_tok_encode.c: libFuzzer target for tok_encode / tok_encode_masked /
 * tok_decode / the streaming decoder (tokenizer.c, tok_bpe.c, tok_split.c)
 * with the real Qwen3 tokenizer loaded once (tests/data/qwen3-tokenizer, or
 * $MS_FUZZ_TOKDIR). The input is the text. Checks the documented contracts:
 * invalid UTF-8 is an error, ids are in range, masked encode with no ranges
 * equals encode, a fully untrusted text yields no special token, and the
 * stream decoder's pieces concatenate to tok_decode's text. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "text/tokenizer.h"

static tokenizer *T;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *dir = getenv("MS_FUZZ_TOKDIR");
    ms_error err;
    if (tok_load(dir ? dir : "tests/data/qwen3-tokenizer", &T, &err) != MS_OK) {
        fprintf(stderr, "fuzz_tok_encode: %s\n", err.message);
        abort();
    }
    return 0;
}

/* Checks that stream decoding of ids equals tok_decode (skip_special given). */
static void check_stream(const int32_t *ids, size_t n, int skip)
{
    ms_error err;
    char *whole = NULL;
    size_t wlen = 0;
    if (tok_decode(T, ids, n, skip, &whole, &wlen, &err) != MS_OK) abort();
    char *cat = malloc(wlen + TOK_STREAM_MIN_CAP);
    static char piece[TOK_STREAM_MIN_CAP];
    size_t clen = 0;
    tok_stream s = {0};
    if (!cat) abort();
    for (size_t i = 0; i < n; i++) {
        size_t k = tok_stream_feed(T, &s, ids[i], skip, piece, sizeof piece);
        if (clen + k > wlen) abort(); /* stream gave more than the whole decode */
        memcpy(cat + clen, piece, k);
        clen += k;
    }
    size_t k = tok_stream_flush(&s, piece, sizeof piece);
    if (clen + k != wlen) abort();
    memcpy(cat + clen, piece, k);
    if (memcmp(cat, whole, wlen)) abort();
    free(cat);
    free(whole);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    int32_t *ids = NULL, *ids2 = NULL, *ids3 = NULL;
    size_t n = 0, n2 = 0, n3 = 0;
    ms_error err;
    err.message[0] = 0;
    if (tok_encode(T, text, size, &ids, &n, &err) != MS_OK) {
        if (!err.message[0]) abort();
        return 0;
    }
    if (!ids) abort();
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= tok_n_ids(T)) abort();
    if (tok_encode_masked(T, text, size, NULL, 0, &ids2, &n2, &err) != MS_OK) abort();
    if (n2 != n || memcmp(ids, ids2, n * sizeof *ids)) abort();
    size_t all[2] = {0, size};
    if (size && tok_encode_masked(T, text, size, all, 1, &ids3, &n3, &err) == MS_OK) {
        for (size_t i = 0; i < n3; i++)
            if (tok_is_special(T, ids3[i])) abort();
    } else if (size) {
        abort();
    }
    check_stream(ids, n, 0);
    check_stream(ids, n, 1);
    free(ids);
    free(ids2);
    free(ids3);
    return 0;
}
