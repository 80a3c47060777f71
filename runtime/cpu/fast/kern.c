/* kern.c: run-time ISA choice, bf16 panel packing, the portable scalar
 * GEMM and the shared tile epilogue of kern.h. The vector GEMMs live in
 * kern_avx512.c and kern_avx2.c (compiled with their ISA flags, called only
 * after kern_isa_best has checked the CPU). No threading here: callers split
 * panels over their threads. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>

#include "base/err.h"
#include "base/half.h"
#include "cpu/fast/kern.h"

#define HUGE_ALIGN ((size_t)2 << 20) /* THP size: packed panels are streamed, TLB misses matter */

/* The best ISA of this CPU, possibly lowered by MEDSERVE_ISA (kern.h). */
kern_isa kern_isa_best(void)
{
    kern_isa best = KERN_SCALAR;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
        best = KERN_AVX2;
    if (best == KERN_AVX2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512vnni"))
        best = KERN_AVX512;
#endif
    const char *env = getenv("MEDSERVE_ISA");
    if (env) {
        kern_isa want = best;
        if (!strcasecmp(env, "scalar")) want = KERN_SCALAR;
        else if (!strcasecmp(env, "avx2")) want = KERN_AVX2;
        else if (!strcasecmp(env, "avx512")) want = KERN_AVX512;
        if (want < best) best = want;
    }
    return best;
}

/* A short printable name of isa. */
const char *kern_isa_name(kern_isa isa)
{
    switch (isa) {
    case KERN_AVX512: return "avx512-bf16";
    case KERN_AVX2: return "avx2-fma";
    default: return "scalar";
    }
}

/* Whether huge pages are wanted at all (MEDSERVE_NO_HUGEPAGES unset). */
int kern_huge_default(void)
{
    return getenv("MEDSERVE_NO_HUGEPAGES") == NULL;
}

/* Maps zeroed, 2 MiB aligned anonymous memory, advised for huge pages when huge. */
void *kern_alloc_huge(size_t bytes, size_t *mapped, int huge)
{
    if (bytes > SIZE_MAX - 2 * HUGE_ALIGN) return NULL;
    /* mmap gives zeroed memory; over-map to align to 2 MiB, then trim */
    size_t map = (bytes + HUGE_ALIGN - 1) / HUGE_ALIGN * HUGE_ALIGN;
    if (!map) map = HUGE_ALIGN;
    unsigned char *raw = mmap(NULL, map + HUGE_ALIGN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return NULL;
    size_t head = (HUGE_ALIGN - (uintptr_t)raw % HUGE_ALIGN) % HUGE_ALIGN;
    if (head) munmap(raw, head);
    if (HUGE_ALIGN - head) munmap(raw + head + map, HUGE_ALIGN - head);
    if (huge) madvise(raw + head, map, MADV_HUGEPAGE); /* advice only */
    *mapped = map;
    return raw + head;
}

/* Unmaps memory from kern_alloc_huge; NULL-safe. */
void kern_free_huge(void *p, size_t mapped)
{
    if (p) munmap(p, mapped);
}

/* Sizes (overflow-checked) and maps the panels of an [n, k] bf16 matrix. */
ms_status kpack_alloc(kpack *p, int64_t n, int64_t k, int huge, ms_error *err)
{
    memset(p, 0, sizeof *p);
    if (n <= 0 || k <= 0)
        return ms_seterr(err, MS_ERR_INVALID, "kpack: matrix [%lld, %lld] must be non-empty", (long long)n,
                         (long long)k);
    const int64_t kp = (k + 1) / 2, np = (n + KERN_PW - 1) / KERN_PW;
    size_t bytes; /* np * kp * 64 u16 */
    if (__builtin_mul_overflow((size_t)np, (size_t)kp, &bytes) ||
        __builtin_mul_overflow(bytes, (size_t)KERN_PW * 2 * sizeof(uint16_t), &bytes))
        return ms_seterr(err, MS_ERR_NOMEM, "kpack: matrix [%lld, %lld] overflows size_t", (long long)n, (long long)k);
    size_t map = 0;
    void *data = kern_alloc_huge(bytes, &map, huge);
    if (!data)
        return ms_seterr(err, MS_ERR_NOMEM, "kpack: cannot map %zu bytes for a [%lld, %lld] matrix", bytes,
                         (long long)n, (long long)k);
    p->n = n;
    p->k = k;
    p->kp = kp;
    p->n_panels = np;
    p->data = (uint16_t *)data;
    p->bytes = map;
    return MS_OK;
}

/* Copies source rows into the panels [p0, p1), 16-row transposes where the CPU has AVX-512. */
void kpack_fill(kpack *p, int64_t row0, const void *src, int64_t rows, int64_t p0, int64_t p1)
{
    const unsigned char *s = (const unsigned char *)src;
    const int64_t kp = p->kp, full = p->k / 2; /* pairs with both elements present */
    const size_t ld = (size_t)p->k * 2;
    int64_t lo = row0 > p0 * KERN_PW ? row0 : p0 * KERN_PW;
    int64_t hi = row0 + rows < p1 * KERN_PW ? row0 + rows : p1 * KERN_PW;
    if (hi > p->n) hi = p->n;
    const int vec = kern_isa_best() == KERN_AVX512;
    const int64_t jv = vec ? full / 16 * 16 : 0; /* pairs done by the 16-row transposes */
    for (int64_t r = lo; r < hi;) {
        const unsigned char *sr = s + (size_t)(r - row0) * ld;
        if (jv && r % 16 == 0 && r + 16 <= hi) {
            kpack_rows16_avx512(p, r, sr, ld, 0, jv);
            for (int64_t i = r; i < r + 16; i++) {
                uint16_t *d = p->data + (size_t)(i / KERN_PW) * (size_t)kp * 64 + 2 * (size_t)(i % KERN_PW);
                const unsigned char *si = sr + (size_t)(i - r) * ld;
                for (int64_t j = jv; j < full; j++) memcpy(d + (size_t)j * 64, si + 4 * (size_t)j, 4);
                if (full < kp) memcpy(d + (size_t)full * 64, si + 4 * (size_t)full, 2);
            }
            r += 16;
            continue;
        }
        uint16_t *d = p->data + (size_t)(r / KERN_PW) * (size_t)kp * 64 + 2 * (size_t)(r % KERN_PW);
        for (int64_t j = 0; j < full; j++) memcpy(d + (size_t)j * 64, sr + 4 * (size_t)j, 4);
        if (full < kp) memcpy(d + (size_t)full * 64, sr + 4 * (size_t)full, 2); /* odd k: pair (x, 0) */
        r++;
    }
}

/* Reads one packed element back (tests). */
uint16_t kpack_get(const kpack *p, int64_t row, int64_t col)
{
    return p->data[((size_t)(row / KERN_PW) * (size_t)p->kp + (size_t)(col / 2)) * 64 + 2 * (size_t)(row % KERN_PW) +
                   (size_t)(col % 2)];
}

/* Unmaps the panels and zeroes p; NULL-safe. */
void kpack_free(kpack *p)
{
    if (!p) return;
    kern_free_huge(p->data, p->bytes);
    memset(p, 0, sizeof *p);
}

/* Writes bf16 bits of k floats and zero padding up to kpad. */
void kern_to_bf16(uint16_t *dst, const float *src, int64_t k, int64_t kpad)
{
    for (int64_t i = 0; i < k; i++) dst[i] = half_f32_to_bf16(src[i]);
    for (int64_t i = k; i < kpad; i++) dst[i] = 0;
}

void kern_store_tile(const float *tile, int rows, int np, const kpack *w, int64_t panel, float *y, int64_t ldy,
                     const float *bias)
{
    const int64_t n0 = panel * KERN_PW;
    const int64_t ncols = w->n - n0 < (int64_t)np * KERN_PW ? w->n - n0 : (int64_t)np * KERN_PW;
    for (int r = 0; r < rows; r++) {
        const float *tr = tile + (size_t)r * (size_t)np * KERN_PW;
        float *yr = y + (size_t)r * (size_t)ldy + n0;
        if (bias)
            for (int64_t c = 0; c < ncols; c++) yr[c] = half_bf16_to_f32(half_f32_to_bf16(tr[c] + bias[n0 + c]));
        else
            for (int64_t c = 0; c < ncols; c++) yr[c] = half_bf16_to_f32(half_f32_to_bf16(tr[c]));
    }
}

void kern_gemm_bf16_scalar(const kpack *w, const uint16_t *x, int64_t ldx, int T, float *y, int64_t ldy,
                           const float *bias, int64_t p0, int64_t p1)
{
    float acc[KERN_PW];
    for (int64_t p = p0; p < p1; p++) {
        const uint16_t *wp = w->data + (size_t)p * (size_t)w->kp * 64;
        for (int t = 0; t < T; t++) {
            const uint16_t *xt = x + (size_t)t * (size_t)ldx;
            for (int r = 0; r < KERN_PW; r++) acc[r] = 0.0f;
            for (int64_t j = 0; j < w->kp; j++) {
                const float x0 = half_bf16_to_f32(xt[2 * j]), x1 = half_bf16_to_f32(xt[2 * j + 1]);
                const uint16_t *wj = wp + (size_t)j * 64;
                /* odd element first, as a vdpbf16ps lane; the products are exact */
                for (int r = 0; r < KERN_PW; r++) {
                    acc[r] = acc[r] + x1 * half_bf16_to_f32(wj[2 * r + 1]);
                    acc[r] = acc[r] + x0 * half_bf16_to_f32(wj[2 * r]);
                }
            }
            kern_store_tile(acc, 1, 1, w, p, y + (size_t)t * (size_t)ldy, ldy, bias);
        }
    }
}

void kern_gemm_bf16(kern_isa isa, const kpack *w, const uint16_t *x, int64_t ldx, int T, float *y, int64_t ldy,
                    const float *bias, int64_t p0, int64_t p1)
{
    if (p1 > w->n_panels) p1 = w->n_panels;
    if (T <= 0 || p0 >= p1) return;
    if (isa == KERN_AVX512) kern_gemm_bf16_avx512(w, x, ldx, T, y, ldy, bias, p0, p1);
    else if (isa == KERN_AVX2) kern_gemm_bf16_avx2(w, x, ldx, T, y, ldy, bias, p0, p1);
    else kern_gemm_bf16_scalar(w, x, ldx, T, y, ldy, bias, p0, p1);
}
