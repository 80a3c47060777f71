/* half_cases.h: the f32 inputs on which test_half.c and test_merge_half.c
 * compare every copy of the bf16/f16 conversion rule (vector kernels,
 * independent oracles) with base/half.h: NaNs of both signs with payloads
 * in the high bits, only in the bits bf16 drops and only in the bits f16
 * drops, signalling and quiet; infinities; signed zeros; f32 subnormals;
 * every bf16 rounding tie and its two neighbours; every f16 rounding tie
 * (subnormal, normal and the one at 65520 that overflows) and its two
 * neighbours; the overflow boundaries; and seeded random values. */
#ifndef MS_HALF_CASES_H
#define MS_HALF_CASES_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/half.h"

/* The bits of a float. */
static inline uint32_t hc_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* The float with bits u. */
static inline float hc_float(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* NaN bit patterns of both signs: quiet and signalling, payload in the top
 * bits, only in the low 16 bits (dropped by bf16) or the low 13 (dropped by
 * f16), all ones. */
static const uint32_t HC_NANS[] = {
    0x7fc00000u, 0xffc00000u, 0x7fc00001u, 0xffc00001u, 0x7f800001u, 0xff800001u, 0x7f800fffu, 0xff801000u,
    0x7f80ffffu, 0xff80ffffu, 0x7f810000u, 0xff810000u, 0x7fa00000u, 0xffa00000u, 0x7fbfffffu, 0xffbfffffu,
    0x7fd23456u, 0xffd23456u, 0x7fffffffu, 0xffffffffu, 0x7fff8000u, 0xffff7fffu, 0x7f802000u, 0xff802000u,
};

/* Appends x to out[*n] if there is room. */
static inline void hc_put(uint32_t *out, size_t cap, size_t *n, uint32_t x)
{
    if (*n < cap) out[(*n)++] = x;
}

/* Fills out (room for cap, at least HC_MAX) with the cases; returns how many. */
#define HC_MAX 700000
static inline size_t hc_cases(uint32_t *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < sizeof HC_NANS / sizeof *HC_NANS; i++) hc_put(out, cap, &n, HC_NANS[i]);
    static const uint32_t fixed[] = {
        0x00000000u, 0x80000000u, 0x7f800000u, 0xff800000u,                           /* zeros, infinities */
        0x00000001u, 0x80000001u, 0x00008000u, 0x00018000u, 0x007fffffu, 0x807fffffu, /* f32 subnormals */
        0x00800000u, 0x7f7fffffu, 0xff7fffffu, 0x7f7f7fffu, 0x7f7f8000u, 0xff7f8000u, /* bf16 overflow edge */
        0x477fe000u, 0x477fefffu, 0x477ff000u, 0xc77ff000u, 0x47800000u,              /* f16 overflow edge */
        0x33000000u, 0x33000001u, 0xb3000000u, 0x33c00000u, 0x387fc000u, 0x387fe000u, /* f16 underflow edge */
        0x38800000u, 0x3f800000u, 0xbf800000u, 0x3f808000u, 0x3f818000u, 0x3f7fffffu,
    };
    for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++) hc_put(out, cap, &n, fixed[i]);
    /* bf16: each 16-bit pattern with the dropped half at the tie and beside it
     * (and, for NaN and infinity patterns, NaNs with those payloads) */
    for (uint32_t h = 0; h < 65536; h++) {
        hc_put(out, cap, &n, (h << 16) | 0x7fffu);
        hc_put(out, cap, &n, (h << 16) | 0x8000u);
        hc_put(out, cap, &n, (h << 16) | 0x8001u);
    }
    /* f16: the midpoint between each finite magnitude and the next one up
     * (65520 for the largest), and the floats beside it */
    for (uint32_t h = 0; h < 0x7c00u; h++) {
        const double a = half_f16_to_f32((uint16_t)h);
        const double b = h == 0x7bffu ? 65536.0 : half_f16_to_f32((uint16_t)(h + 1));
        const float mid = (float)((a + b) / 2); /* exact: 12 significant bits */
        for (int s = 0; s < 2; s++) {
            const float m = s ? -mid : mid;
            hc_put(out, cap, &n, hc_bits(m));
            hc_put(out, cap, &n, hc_bits(nextafterf(m, 0.0f)));
            hc_put(out, cap, &n, hc_bits(nextafterf(m, s ? -INFINITY : INFINITY)));
        }
    }
    /* random bit patterns, and random values in the f16 range */
    uint64_t st = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < 20000; i++) {
        st ^= st << 13, st ^= st >> 7, st ^= st << 17;
        hc_put(out, cap, &n, (uint32_t)st);
        hc_put(out, cap, &n, hc_bits(ldexpf((float)(st >> 40) / 16777216.0f, (int)(st % 48) - 30)));
    }
    return n;
}

#endif
