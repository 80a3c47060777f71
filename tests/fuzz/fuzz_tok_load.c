/* fuzz_tok_load.c: libFuzzer target for tokenizer loading (tok_load.c). The
 * input is tokenizer.json; if it contains the line "#tokenizer_config.json",
 * the bytes after that line are written as tokenizer_config.json (else that
 * file is absent). Seeded with a trimmed Qwen3 tokenizer (seeds/tok_load).
 * A loaded tokenizer must encode and decode a fixed text with special
 * tokens, and every id it gives must be below tok_n_ids. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "text/tokenizer.h"

static const char SEP[] = "\n#tokenizer_config.json\n";

/* Encodes and decodes a short text with the loaded tokenizer t. */
static void exercise(const tokenizer *t)
{
    static const char text[] = "<|im_start|>user\nHello wörld 123 \xe4\xbd\xa0\xe5\xa5\xbd!!\n<|im_end|>  x";
    int32_t *ids = NULL;
    size_t n = 0;
    ms_error err;
    if (tok_encode(t, text, sizeof text - 1, &ids, &n, &err) == MS_OK) {
        for (size_t i = 0; i < n; i++)
            if (ids[i] < 0 || ids[i] >= tok_n_ids(t)) abort();
        char *out = NULL;
        size_t len = 0;
        if (tok_decode(t, ids, n, 0, &out, &len, &err) == MS_OK && !out) abort();
        free(out);
    }
    free(ids);
    (void)tok_chat_template(t);
    (void)tok_eos_id(t);
    (void)tok_lookup(t, "<|im_end|>");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *d = (const char *)data;
    const char *sep = memmem(d, size, SEP, sizeof SEP - 1);
    char path[256];
    size_t n1 = sep ? (size_t)(sep - d) : size;
    fuzz_write("tokenizer.json", d, n1, path, sizeof path);
    if (sep) {
        const char *c = sep + sizeof SEP - 1;
        fuzz_write("tokenizer_config.json", c, size - (size_t)(c - d), path, sizeof path);
    } else {
        fuzz_unlink("tokenizer_config.json");
    }
    tokenizer *t = NULL;
    ms_error err;
    err.message[0] = 0;
    if (tok_load(fuzz_dir(), &t, &err) == MS_OK) {
        if (!t) abort();
        exercise(t);
    } else if (t || !err.message[0]) {
        abort();
    }
    tok_free(t);
    return 0;
}
