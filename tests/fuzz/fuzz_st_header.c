/* fuzz_st_header.c: libFuzzer target for the safetensors reader (st.c). The
 * input is a whole .safetensors file; it is written to a scratch file and
 * opened with st_file_open. On success every tensor is looked up by name and
 * its first and last elements are read, so a view that points outside the
 * mapping is caught by ASan/SIGSEGV. Invariants checked: find returns the
 * listed tensor, numel matches the shape, nbytes matches numel and dtype.
 * Header mode: an input starting with '{' is taken as the header JSON alone;
 * the harness adds the 8-byte length and as many data bytes as the largest
 * data_offsets end it finds (at most 1 MiB), so mutations of the JSON reach
 * the offset, shape and dtype checks instead of failing the length check. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "fuzz_util.h"
#include "io/st.h"

/* Aborts (a fuzzer finding) when an invariant of an opened file fails. */
static void check_file(const st_file *f)
{
    size_t n = st_file_count(f);
    (void)st_file_meta(f, "format");
    for (size_t i = 0; i < n; i++) {
        const st_tensor *t = st_file_get(f, i);
        if (!t || !t->name || st_file_find(f, t->name) != t) abort();
        if (t->ndim < 0 || t->ndim > ST_MAX_DIMS) abort();
        uint64_t numel = 1;
        for (int d = 0; d < t->ndim; d++) {
            if (t->shape[d] < 0) abort();
            numel *= (uint64_t)t->shape[d];
        }
        if (numel != t->numel) abort();
        if (st_dtype_size(t->dtype) && t->nbytes != numel * st_dtype_size(t->dtype)) abort();
        if (t->nbytes) {
            volatile unsigned char a = ((const unsigned char *)t->data)[0];
            volatile unsigned char b = ((const unsigned char *)t->data)[t->nbytes - 1];
            (void)a;
            (void)b;
        }
        if (st_dtype_supported(t->dtype) && t->numel) {
            volatile float x = st_tensor_getf(t, 0) + st_tensor_getf(t, t->numel - 1);
            (void)x;
        }
    }
}

/* Header mode: returns a malloc'd file (length prefix + header + data) for the
 * header JSON in data, sized by the largest data_offsets end; *n its size. */
static unsigned char *wrap_header(const uint8_t *data, size_t size, size_t *n)
{
    double end = 0;
    cJSON *h = cJSON_ParseWithLength((const char *)data, size);
    for (const cJSON *e = h ? h->child : NULL; e; e = e->next) {
        const cJSON *o = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
        const cJSON *b = cJSON_GetArrayItem(o, 1);
        if (cJSON_IsNumber(b) && b->valuedouble > end) end = b->valuedouble;
    }
    cJSON_Delete(h);
    size_t nd = end > (double)(1 << 20) ? (size_t)1 << 20 : (size_t)end;
    unsigned char *f = malloc(8 + size + nd);
    if (!f) abort();
    for (int i = 0; i < 8; i++) f[i] = (unsigned char)((uint64_t)size >> (8 * i));
    memcpy(f + 8, data, size);
    for (size_t i = 0; i < nd; i++) f[8 + size + i] = (unsigned char)(i * 131u);
    *n = 8 + size + nd;
    return f;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[256];
    if (size && data[0] == '{') {
        size_t n;
        unsigned char *f = wrap_header(data, size, &n);
        fuzz_write("x.safetensors", f, n, path, sizeof path);
        free(f);
    } else {
        fuzz_write("x.safetensors", data, size, path, sizeof path);
    }
    st_file *f = NULL;
    ms_error err;
    if (st_file_open(path, &f, &err) == MS_OK) {
        check_file(f);
        if (st_file_recheck(f, &err) != MS_OK) abort();
    } else if (f || !err.message[0]) {
        abort(); /* a failure must leave no handle and must say why */
    }
    st_file_close(f);
    return 0;
}
