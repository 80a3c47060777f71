/* fuzz_st_header.c: libFuzzer target for the safetensors reader (st.c). The
 * input is a whole .safetensors file; it is written to a scratch file and
 * opened with st_file_open. On success every tensor is looked up by name and
 * its first and last elements are read, so a view that points outside the
 * mapping is caught by ASan/SIGSEGV. Invariants checked: find returns the
 * listed tensor, numel matches the shape, nbytes matches numel and dtype. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "st.h"

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[256];
    fuzz_write("x.safetensors", data, size, path, sizeof path);
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
