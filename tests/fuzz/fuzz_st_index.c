/* fuzz_st_index.c: libFuzzer target for model.safetensors.index.json as read
 * by st_set_open (st_set.c). The scratch directory holds two valid shards,
 * made once ("model-00001-of-00002.safetensors" with tensors a and b,
 * "model-00002-of-00002.safetensors" with c), so the index's weight_map can
 * name real files; the input is the index text. On success the set is
 * checked: sorted, unique, each name found, each tensor in the file the map
 * names. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "io/st.h"

/* Writes a safetensors file with the given header JSON and zeroed data. */
static void make_shard(const char *name, const char *header, size_t data_bytes)
{
    size_t hl = strlen(header), pad = (8 - hl % 8) % 8, total = 8 + hl + pad + data_bytes;
    unsigned char *b = calloc(1, total);
    if (!b) abort();
    uint64_t h = hl + pad;
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(h >> (8 * i));
    memcpy(b + 8, header, hl);
    memset(b + 8 + hl, ' ', pad);
    char path[256];
    fuzz_write(name, b, total, path, sizeof path);
    free(b);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    make_shard("model-00001-of-00002.safetensors",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"b\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[8,16]}}",
               16);
    make_shard("model-00002-of-00002.safetensors",
               "{\"__metadata__\":{\"format\":\"pt\"},\"c\":{\"dtype\":\"I64\",\"shape\":[1],"
               "\"data_offsets\":[0,8]}}",
               8);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[256];
    fuzz_write("model.safetensors.index.json", data, size, path, sizeof path);
    st_set *s = NULL;
    ms_error err;
    if (st_set_open(fuzz_dir(), &s, &err) == MS_OK) {
        size_t n = st_set_count(s);
        for (size_t i = 0; i < n; i++) {
            const st_tensor *t = st_set_get(s, i);
            if (!t || st_set_find(s, t->name) != t) abort();
            if (i && strcmp(st_set_get(s, i - 1)->name, t->name) >= 0) abort();
        }
        if (st_set_nfiles(s) < 1) abort();
    } else if (s || !err.message[0]) {
        abort();
    }
    st_set_close(s);
    return 0;
}
