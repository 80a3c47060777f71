/* kernel.c: the generic build of the merge kernels (kernel_body.h), the
 * run-time choice between generic / AVX2 / AVX-512, and dtype conversion
 * helpers over byte buffers. Does no merging policy itself (see apply.c). */
#include "kernel.h"

#include <stdlib.h>

#define MG_SFX(name) name##_generic
#include "kernel_body.h"

extern const mg_kernels mg_kernels_avx2;
extern const mg_kernels mg_kernels_avx512;

static const mg_kernels mg_kernels_generic = {
    "generic", lora_row_generic, bf16_to_f32_generic, f16_to_f32_generic, f32_to_bf16_generic, f32_to_f16_generic,
};

/* Whether this CPU can run the table called name. */
static int cpu_can(const char *name)
{
    __builtin_cpu_init();
    if (!strcmp(name, "generic")) return 1;
    if (!strcmp(name, "avx2"))
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    if (!strcmp(name, "avx512"))
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512vnni") &&
               __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    return 0;
}

/* Returns the named table if this CPU runs it, else NULL. */
const mg_kernels *mg_kernels_named(const char *name)
{
    if (!name || !cpu_can(name)) return NULL;
    if (!strcmp(name, "avx512")) return &mg_kernels_avx512;
    if (!strcmp(name, "avx2")) return &mg_kernels_avx2;
    return &mg_kernels_generic;
}

/* Returns the fastest table this CPU runs; MEDSERVE_MERGE_KERNEL overrides. */
const mg_kernels *mg_kernels_get(void)
{
    const char *force = getenv("MEDSERVE_MERGE_KERNEL");
    const mg_kernels *k = force ? mg_kernels_named(force) : NULL;
    if (k) return k;
    if ((k = mg_kernels_named("avx512"))) return k;
    if ((k = mg_kernels_named("avx2"))) return k;
    return &mg_kernels_generic;
}

/* Converts n elements of src (BF16/F16/F32; only element-aligned) to f32. */
void mg_to_f32(const mg_kernels *k, float *dst, const void *src, st_dtype t, size_t n)
{
    enum { B = 4096 };
    uint16_t tmp[B];
    if (t == ST_F32) {
        memcpy(dst, src, n * sizeof(float));
        return;
    }
    /* Copy through an aligned buffer: safetensors data is only element-aligned
     * and the source may be a 2-byte-aligned mmap address. */
    for (size_t i = 0; i < n; i += B) {
        size_t m = n - i < B ? n - i : B;
        memcpy(tmp, (const uint16_t *)src + i, m * 2);
        if (t == ST_BF16) k->bf16_to_f32(dst + i, tmp, m);
        else k->f16_to_f32(dst + i, tmp, m);
    }
}

/* Converts n f32 values to dtype t into dst bytes. */
void mg_from_f32(const mg_kernels *k, void *dst, const float *src, st_dtype t, size_t n)
{
    if (t == ST_F32) memcpy(dst, src, n * sizeof(float));
    else if (t == ST_BF16) k->f32_to_bf16(dst, src, n);
    else k->f32_to_f16(dst, src, n);
}

/* Rounds x to dtype t in place (x = f32(t(x))). */
void mg_round_inplace(const mg_kernels *k, float *x, st_dtype t, size_t n)
{
    enum { B = 4096 };
    uint16_t scratch[B];
    if (t == ST_F32) return;
    for (size_t i = 0; i < n; i += B) {
        size_t m = n - i < B ? n - i : B;
        if (t == ST_BF16) {
            k->f32_to_bf16(scratch, x + i, m);
            k->bf16_to_f32(x + i, scratch, m);
        } else {
            k->f32_to_f16(scratch, x + i, m);
            k->f16_to_f32(x + i, scratch, m);
        }
    }
}
