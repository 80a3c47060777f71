/* q8.c: int8 weight packing and quantisation, activation quantisation, the
 * portable scalar int8 GEMM that defines q8.h's arithmetic, and the
 * dispatch to the VNNI and AVX2 copies (q8_avx512.c, q8_avx2.c). No threading here: callers split
 * panels (GEMM, packing) and rows (activations) over their threads. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/half.h"
#include "cpu/fast/q8.h"
#include "cpu/ref/cpu.h"

/* Sizes (overflow-checked) and maps an [n, k] int8 matrix and its row scales. */
ms_status q8pack_alloc(q8pack *p, int64_t n, int64_t k, int huge, ms_error *err)
{
    memset(p, 0, sizeof *p);
    if (n <= 0 || k <= 0)
        return ms_seterr(err, MS_ERR_INVALID, "q8pack: matrix [%lld, %lld] must be non-empty", (long long)n,
                         (long long)k);
    const int64_t kq = (k + 3) / 4, np = (n + KERN_PW - 1) / KERN_PW;
    size_t bytes;
    if (__builtin_mul_overflow((size_t)np, (size_t)kq, &bytes) ||
        __builtin_mul_overflow(bytes, (size_t)KERN_PW * 4, &bytes))
        return ms_seterr(err, MS_ERR_NOMEM, "q8pack: matrix [%lld, %lld] overflows size_t", (long long)n, (long long)k);
    size_t map = 0;
    p->data = kern_alloc_huge(bytes, &map, huge);
    p->scale = calloc((size_t)np * KERN_PW, sizeof(float));
    if (!p->data || !p->scale) {
        kern_free_huge(p->data, map);
        free(p->scale);
        memset(p, 0, sizeof *p);
        return ms_seterr(err, MS_ERR_NOMEM, "q8pack: cannot allocate %zu bytes for a [%lld, %lld] matrix", bytes,
                         (long long)n, (long long)k);
    }
    p->n = n;
    p->k = k;
    p->kq = kq;
    p->n_panels = np;
    p->groups = (k + Q8_GROUP - 1) / Q8_GROUP;
    p->bytes = map;
    return MS_OK;
}

/* Frees the int8 panels and scales; NULL-safe. */
void q8pack_free(q8pack *p)
{
    if (!p) return;
    kern_free_huge(p->data, p->bytes);
    free(p->scale);
    memset(p, 0, sizeof *p);
}

/* Quantises one weight row (already as floats) into p's row r. */
static void quant_wrow(q8pack *p, int64_t r, const float *w)
{
    float amax = 0.0f;
    for (int64_t i = 0; i < p->k; i++) amax = fabsf(w[i]) > amax ? fabsf(w[i]) : amax;
    p->scale[r] = amax / 127.0f;
    const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
    uint8_t *d = p->data + (size_t)(r / KERN_PW) * (size_t)p->kq * 128 + 4 * (size_t)(r % KERN_PW);
    for (int64_t i = 0; i < p->k; i++) {
        float q = nearbyintf(w[i] * inv);
        q = q > 127.0f ? 127.0f : q < -127.0f ? -127.0f : q;
        d[(size_t)(i / 4) * 128 + (size_t)(i % 4)] = (uint8_t)((int)q + 128);
    }
}

/* Quantises source rows into the panels [p0, p1) (vector path for bf16 on AVX-512). */
void q8pack_fill(q8pack *p, int64_t row0, const void *src, int dtype, int64_t rows, int64_t p0, int64_t p1)
{
    int64_t lo = row0 > p0 * KERN_PW ? row0 : p0 * KERN_PW;
    int64_t hi = row0 + rows < p1 * KERN_PW ? row0 + rows : p1 * KERN_PW;
    if (hi > p->n) hi = p->n;
    float *w = malloc(sizeof(float) * (size_t)p->k);
    if (!w) return; /* callers check q8pack_alloc; this small buffer failing is not recoverable here */
    const size_t es = dtype == ST_F32 ? 4 : 2;
    if (dtype == ST_BF16 && kern_isa_best() == KERN_AVX512) {
        /* bf16 rows may be only 2-byte aligned: read them as uint16 through the byte pointer */
        for (int64_t r = lo; r < hi; r++)
            q8_quant_wrow_avx512(p, r,
                                 (const uint16_t *)((const unsigned char *)src + (size_t)(r - row0) * (size_t)p->k * 2),
                                 (uint8_t *)w);
        free(w);
        return;
    }
    for (int64_t r = lo; r < hi; r++) {
        const unsigned char *sr = (const unsigned char *)src + (size_t)(r - row0) * (size_t)p->k * es;
        for (int64_t i = 0; i < p->k; i++) w[i] = elem_get(sr, (st_dtype)dtype, i);
        quant_wrow(p, r, w);
    }
    free(w);
}

/* Quantises one float activation row in groups of Q8_GROUP. */
void q8_quant_row(const float *x, int64_t k, q8act *a, int t)
{
    int8_t *q = a->q + (size_t)t * (size_t)a->ld;
    for (int64_t g = 0; g * Q8_GROUP < k; g++) {
        const int64_t i0 = g * Q8_GROUP, i1 = i0 + Q8_GROUP < k ? i0 + Q8_GROUP : k;
        float amax = 0.0f;
        for (int64_t i = i0; i < i1; i++) amax = fabsf(x[i]) > amax ? fabsf(x[i]) : amax;
        const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
        int32_t sum = 0;
        for (int64_t i = i0; i < i1; i++) {
            float v = nearbyintf(x[i] * inv);
            v = v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v;
            q[i] = (int8_t)v;
            sum += (int32_t)v;
        }
        a->sx[(size_t)t * (size_t)a->groups + (size_t)g] = amax / 127.0f;
        a->corr[(size_t)t * (size_t)a->groups + (size_t)g] = 128 * sum;
    }
    for (int64_t i = k; i < a->ld; i++) q[i] = 0;
}

/* Quantises one bf16 activation row in groups of Q8_GROUP. */
void q8_quant_row_bf16(kern_isa isa, const uint16_t *x, int64_t k, q8act *a, int t)
{
    if (isa == KERN_AVX512) {
        q8_quant_act_avx512(x, k, a, t);
        return;
    }
    float buf[Q8_GROUP];
    int8_t *q = a->q + (size_t)t * (size_t)a->ld;
    for (int64_t g = 0; g * Q8_GROUP < k; g++) {
        const int64_t i0 = g * Q8_GROUP, n = i0 + Q8_GROUP < k ? Q8_GROUP : k - i0;
        for (int64_t i = 0; i < n; i++) buf[i] = half_bf16_to_f32(x[i0 + i]);
        float amax = 0.0f;
        for (int64_t i = 0; i < n; i++) amax = fabsf(buf[i]) > amax ? fabsf(buf[i]) : amax;
        const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
        int32_t sum = 0;
        for (int64_t i = 0; i < n; i++) {
            float v = nearbyintf(buf[i] * inv);
            v = v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v;
            q[i0 + i] = (int8_t)v;
            sum += (int32_t)v;
        }
        a->sx[(size_t)t * (size_t)a->groups + (size_t)g] = amax / 127.0f;
        a->corr[(size_t)t * (size_t)a->groups + (size_t)g] = 128 * sum;
    }
    for (int64_t i = k; i < a->ld; i++) q[i] = 0;
}

void q8_gemm_scalar(const q8pack *w, const q8act *x, int T, float *y, int64_t ldy, const float *bias, int64_t p0,
                    int64_t p1)
{
    for (int64_t p = p0; p < p1; p++) {
        const uint8_t *wp = w->data + (size_t)p * (size_t)w->kq * 128;
        for (int t = 0; t < T; t++) {
            const int8_t *xt = x->q + (size_t)t * (size_t)x->ld;
            const float *sx = x->sx + (size_t)t * (size_t)x->groups;
            const int32_t *corr = x->corr + (size_t)t * (size_t)x->groups;
            for (int r = 0; r < KERN_PW; r++) {
                const int64_t n = p * KERN_PW + r;
                if (n >= w->n) break;
                float facc = 0.0f;
                for (int64_t g = 0; g < w->groups; g++) {
                    const int64_t j0 = g * (Q8_GROUP / 4), j1 = j0 + Q8_GROUP / 4 < w->kq ? j0 + Q8_GROUP / 4 : w->kq;
                    int32_t acc = 0;
                    for (int64_t j = j0; j < j1; j++)
                        for (int i = 0; i < 4; i++)
                            acc += (int32_t)wp[(size_t)j * 128 + 4 * (size_t)r + (size_t)i] * (int32_t)xt[4 * j + i];
                    facc = fmaf((float)(acc - corr[g]), sx[g], facc);
                }
                float v = facc * w->scale[n];
                if (bias) v += bias[n];
                y[(size_t)t * (size_t)ldy + (size_t)n] = half_bf16_to_f32(half_f32_to_bf16(v));
            }
        }
    }
}

void q8_gemm(kern_isa isa, const q8pack *w, const q8act *x, int T, float *y, int64_t ldy, const float *bias, int64_t p0,
             int64_t p1)
{
    if (p1 > w->n_panels) p1 = w->n_panels;
    if (T <= 0 || p0 >= p1) return;
    if (isa == KERN_AVX512) q8_gemm_avx512(w, x, T, y, ldy, bias, p0, p1);
    else if (isa == KERN_AVX2) q8_gemm_avx2(w, x, T, y, ldy, bias, p0, p1);
    else q8_gemm_scalar(w, x, T, y, ldy, bias, p0, p1);
}
