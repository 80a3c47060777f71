/* test_half.c: the bf16/f16 conversion rule of base/half.h, and the fast
 * path's vector copies of it.
 * - bf16 and f16: every 16-bit pattern widens exactly (NaN payload and sign
 *   kept) and comes back unchanged, NaN as the signed canonical quiet NaN;
 *   every midpoint between neighbours rounds to the even one and the floats
 *   beside it to the nearer one; overflow to infinity, subnormals, signed
 *   zeros and the NaN bits of each direction, as named cases too;
 * - f32 -> bf16/f16 against oracles written without bit tricks (libm
 *   frexp/nearbyint in double) on the half_cases.h inputs and on a sweep of
 *   every f32 exponent and top significand bits;
 * - the fast path's vector rounding (kern_avx2.h v8_round_bf16,
 *   kern_avx512.h v_round_bf16 and the bit stores behind them) through the
 *   public kernels, on every ISA this CPU runs, against the scalar rule with
 *   NaN payloads of both signs, infinities, ties and subnormals.
 * The merge kernel's vector tables are compared in test_merge_half.c (it
 * needs the merge objects). */
#include <stdio.h>
#include <stdlib.h>

#include "base/half.h"
#include "cpu/fast/kern.h"
#include "cpu/fast/kern_attn.h"
#include "cpu/fast/kern_ops.h"
#include "half_cases.h"
#include "util.h"

/* f32 -> bf16 by arithmetic in double: the nearest bf16 value (ties to the
 * even significand), 2^128 and beyond as infinity, NaN as sign | 0x7fc0. */
static uint16_t oracle_bf16(float x)
{
    const uint16_t sign = (uint16_t)((hc_bits(x) >> 16) & 0x8000u);
    if (isnan(x)) return sign | 0x7fc0u;
    const double a = fabs((double)x);
    if (a == 0.0) return sign;
    if (isinf(a)) return sign | 0x7f80u;
    int e;
    frexp(a, &e);                                                         /* a in [2^(e-1), 2^e) */
    const double q = e - 1 < -126 ? ldexp(1, -133) : ldexp(1, e - 1 - 7); /* spacing of bf16 there */
    const double v = nearbyint(a / q) * q;                                /* a / q is exact */
    if (v >= ldexp(1, 128)) return sign | 0x7f80u;
    if (v < ldexp(1, -126)) return sign | (uint16_t)(v / ldexp(1, -133));
    frexp(v, &e);
    const uint32_t mant = (uint32_t)(ldexp(v, 8 - e) - 128); /* v = (1 + mant/128) 2^(e-1) */
    return sign | (uint16_t)(((uint32_t)(e - 1 + 127) << 7) | mant);
}

/* f32 -> f16 the same way: nearest (ties to even), |x| >= 65520 infinity,
 * NaN as sign | 0x7e00. */
static uint16_t oracle_f16(float x)
{
    const uint16_t sign = (uint16_t)((hc_bits(x) >> 16) & 0x8000u);
    if (isnan(x)) return sign | 0x7e00u;
    const double a = fabs((double)x);
    if (a == 0.0) return sign;
    int e;
    frexp(a, &e);
    const double q = e - 1 < -14 ? ldexp(1, -24) : ldexp(1, e - 1 - 10);
    const double v = isinf(a) ? a : nearbyint(a / q) * q;
    if (v >= 65536.0) return sign | 0x7c00u; /* the first value past 65504 is 65536 */
    if (v < ldexp(1, -14)) return sign | (uint16_t)(v / ldexp(1, -24));
    frexp(v, &e);
    const uint32_t mant = (uint32_t)(ldexp(v, 11 - e) - 1024);
    return sign | (uint16_t)(((uint32_t)(e - 1 + 15) << 10) | mant);
}

/* The f16 value of h by arithmetic (for the widening check). */
static double f16_value(uint32_t h)
{
    const double s = (h & 0x8000u) ? -1.0 : 1.0;
    const int e = (int)((h >> 10) & 0x1fu), m = (int)(h & 0x3ffu);
    if (e == 31) return m ? NAN : s * INFINITY;
    return e ? s * ldexp(1024 + m, e - 25) : s * ldexp(m, -24);
}

static void t_bf16_exhaustive(void)
{
    int bad_wide = 0, bad_trip = 0, bad_tie = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        const float f = half_bf16_to_f32((uint16_t)h);
        bad_wide += hc_bits(f) != h << 16;
        const int is_nan = (h & 0x7f80u) == 0x7f80u && (h & 0x7fu);
        const uint16_t want = is_nan ? (uint16_t)((h & 0x8000u) | HALF_BF16_QNAN) : (uint16_t)h;
        if (half_f32_to_bf16(f) != want) {
            if (bad_trip++ < 5)
                printf("  bf16 %04x -> %08x -> %04x, want %04x\n", h, hc_bits(f), half_f32_to_bf16(f), want);
        }
        if ((h & 0x7fffu) >= 0x7f80u) continue; /* infinity, NaN: no neighbour above */
        /* the f32 exactly halfway to the next magnitude up (infinity after 0x7f7f) */
        const uint16_t even = (h & 1u) ? (uint16_t)(h + 1) : (uint16_t)h;
        bad_tie += half_f32_to_bf16(hc_float((h << 16) | 0x8000u)) != even;
        bad_tie += half_f32_to_bf16(hc_float((h << 16) | 0x7fffu)) != h;
        bad_tie += half_f32_to_bf16(hc_float((h << 16) | 0x8001u)) != (uint16_t)(h + 1);
    }
    CHECK(bad_wide == 0, "%d bf16 patterns do not widen to their top-half f32", bad_wide);
    CHECK(bad_trip == 0, "%d bf16 patterns do not round-trip", bad_trip);
    CHECK(bad_tie == 0, "%d bf16 ties or tie neighbours rounded wrong", bad_tie);
}

static void t_f16_exhaustive(void)
{
    int bad_wide = 0, bad_trip = 0, bad_tie = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        const float f = half_f16_to_f32((uint16_t)h);
        const int is_nan = (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu);
        if (is_nan) bad_wide += hc_bits(f) != (((h & 0x8000u) << 16) | 0x7f800000u | ((h & 0x3ffu) << 13));
        else bad_wide += (double)f != f16_value(h) || !!signbit(f) != !!(h & 0x8000u);
        const uint16_t want = is_nan ? (uint16_t)((h & 0x8000u) | HALF_F16_QNAN) : (uint16_t)h;
        if (half_f32_to_f16(f) != want) {
            if (bad_trip++ < 5)
                printf("  f16 %04x -> %08x -> %04x, want %04x\n", h, hc_bits(f), half_f32_to_f16(f), want);
        }
        if ((h & 0x7fffu) >= 0x7c00u) continue;
        const double a = f, b = (h & 0x7fffu) == 0x7bffu ? (h & 0x8000u ? -65536.0 : 65536.0)
                                                         : (double)half_f16_to_f32((uint16_t)(h + 1));
        const float mid = (float)((a + b) / 2);
        const uint16_t even = (h & 1u) ? (uint16_t)(h + 1) : (uint16_t)h;
        bad_tie += half_f32_to_f16(mid) != even;
        bad_tie += half_f32_to_f16(nextafterf(mid, (float)a)) != h;
        bad_tie += half_f32_to_f16(nextafterf(mid, (float)b)) != (uint16_t)(h + 1);
    }
    CHECK(bad_wide == 0, "%d f16 patterns widen wrong", bad_wide);
    CHECK(bad_trip == 0, "%d f16 patterns do not round-trip", bad_trip);
    CHECK(bad_tie == 0, "%d f16 ties or tie neighbours rounded wrong", bad_tie);
}

/* The rule's corners by name, as docs and reviewers read them. */
static void t_named(void)
{
    /* bf16 */
    CHECK(half_f32_to_bf16(1.0f) == 0x3f80, "bf16 1");
    CHECK(half_f32_to_bf16(1.00390625f) == 0x3f80, "bf16 1 + 2^-8 ties down to even");
    CHECK(half_f32_to_bf16(1.01171875f) == 0x3f82, "bf16 1 + 3 * 2^-8 ties up to even");
    CHECK(half_f32_to_bf16(hc_float(0x7f7fffffu)) == 0x7f80, "FLT_MAX overflows to bf16 inf");
    CHECK(half_f32_to_bf16(hc_float(0x7f7f7fffu)) == 0x7f7f, "just below the overflow tie stays finite");
    CHECK(half_f32_to_bf16(hc_float(0xff7f8000u)) == 0xff80, "the overflow tie goes to -inf");
    CHECK(half_f32_to_bf16(INFINITY) == 0x7f80 && half_f32_to_bf16(-INFINITY) == 0xff80, "bf16 infinities");
    CHECK(half_f32_to_bf16(0.0f) == 0x0000 && half_f32_to_bf16(-0.0f) == 0x8000, "bf16 signed zeros");
    CHECK(half_f32_to_bf16(hc_float(0x00008000u)) == 0x0000, "f32 subnormal tie to bf16 zero (even)");
    CHECK(half_f32_to_bf16(hc_float(0x00018000u)) == 0x0002, "f32 subnormal tie up to even 2");
    CHECK(half_f32_to_bf16(hc_float(0x807fffffu)) == 0x8080, "largest f32 subnormal rounds to -min normal");
    CHECK(hc_bits(half_bf16_to_f32(0x0001)) == 0x00010000u, "bf16 subnormal widens exactly");
    CHECK(hc_bits(half_bf16_to_f32(0x8000)) == 0x80000000u, "bf16 -0 widens to -0");
    /* bf16 NaN, both directions */
    CHECK(half_f32_to_bf16(hc_float(0x7fc00000u)) == 0x7fc0, "default NaN");
    CHECK(half_f32_to_bf16(hc_float(0xffffffffu)) == 0xffc0, "-NaN all payload -> 0xffc0");
    CHECK(half_f32_to_bf16(hc_float(0x7f800001u)) == 0x7fc0, "sNaN with payload only in dropped bits stays NaN");
    CHECK(half_f32_to_bf16(hc_float(0xff812345u)) == 0xffc0, "-sNaN -> quiet, payload dropped");
    CHECK(hc_bits(half_bf16_to_f32(0x7f81)) == 0x7f810000u, "bf16 sNaN widens unchanged (still signalling)");
    CHECK(hc_bits(half_bf16_to_f32(0xffc1)) == 0xffc10000u, "bf16 -qNaN payload kept when widening");
    /* f16 */
    CHECK(half_f16_to_f32(0x3c00) == 1.0f && half_f16_to_f32(0xc000) == -2.0f, "f16 values");
    CHECK(half_f16_to_f32(0x0001) == 0x1p-24f, "smallest f16 subnormal");
    CHECK(half_f16_to_f32(0x03ff) == 0x3ffp-24f, "largest f16 subnormal");
    CHECK(half_f16_to_f32(0x7bff) == 65504.0f, "largest f16");
    CHECK(hc_bits(half_f16_to_f32(0x8000)) == 0x80000000u, "f16 -0 widens to -0");
    CHECK(half_f32_to_f16(65519.99f) == 0x7bff, "65519.99 -> 65504");
    CHECK(half_f32_to_f16(65520.0f) == 0x7c00, "65520 (the tie above 65504) -> inf");
    CHECK(half_f32_to_f16(-65520.0f) == 0xfc00, "-65520 -> -inf");
    CHECK(half_f32_to_f16(hc_float(0x7f7fffffu)) == 0x7c00, "FLT_MAX -> f16 inf");
    CHECK(half_f32_to_f16(INFINITY) == 0x7c00 && half_f32_to_f16(-INFINITY) == 0xfc00, "f16 infinities");
    CHECK(half_f32_to_f16(0x1p-25f) == 0x0000, "2^-25 ties to zero (even)");
    CHECK(half_f32_to_f16(-0x1p-25f) == 0x8000, "-2^-25 ties to -0");
    CHECK(half_f32_to_f16(nextafterf(0x1p-25f, 1)) == 0x0001, "just above 2^-25 -> smallest subnormal");
    CHECK(half_f32_to_f16(0x3p-25f) == 0x0002, "1.5 x smallest subnormal ties to even 2");
    CHECK(half_f32_to_f16(0x7ffp-25f) == 0x0400, "the tie between largest subnormal and min normal -> 0x0400");
    CHECK(half_f32_to_f16(0x1p-14f) == 0x0400, "min normal");
    CHECK(half_f32_to_f16(hc_float(0x00000001u)) == 0x0000, "f32 subnormal -> 0");
    CHECK(half_f32_to_f16(hc_float(0x80000001u)) == 0x8000, "-f32 subnormal -> -0");
    CHECK(half_f32_to_f16(0.0f) == 0x0000 && half_f32_to_f16(-0.0f) == 0x8000, "f16 signed zeros");
    CHECK(half_f32_to_f16(1.0f + 0x1p-11f) == 0x3c00, "1 + 2^-11 ties down to even");
    CHECK(half_f32_to_f16(1.0f + 0x3p-11f) == 0x3c02, "1 + 3 * 2^-11 ties up to even");
    /* f16 NaN, both directions */
    CHECK(half_f32_to_f16(hc_float(0x7fc00000u)) == 0x7e00, "default NaN -> 0x7e00");
    CHECK(half_f32_to_f16(hc_float(0xffffffffu)) == 0xfe00, "-NaN all payload -> 0xfe00");
    CHECK(half_f32_to_f16(hc_float(0x7f800001u)) == 0x7e00, "sNaN with payload only in dropped bits stays NaN");
    CHECK(half_f32_to_f16(hc_float(0xff812345u)) == 0xfe00, "-sNaN -> quiet, payload dropped");
    CHECK(hc_bits(half_f16_to_f32(0x7c01)) == 0x7f802000u, "f16 sNaN widens unchanged (still signalling)");
    CHECK(hc_bits(half_f16_to_f32(0xfe01)) == 0xffc02000u, "f16 -qNaN payload kept when widening");
}

/* Both conversions against the oracles: the shared cases, then every f32
 * exponent with every top-10 significand (the bits f16 keeps) combined with
 * low bits at, below and above both rounding points. */
static void t_oracles(void)
{
    uint32_t *c = malloc(HC_MAX * sizeof *c);
    const size_t n = hc_cases(c, HC_MAX);
    int bad_bf = 0, bad_h = 0;
    for (size_t i = 0; i < n; i++) {
        const float x = hc_float(c[i]);
        if (half_f32_to_bf16(x) != oracle_bf16(x) && bad_bf++ < 5)
            printf("  bf16(%08x) = %04x, oracle %04x\n", c[i], half_f32_to_bf16(x), oracle_bf16(x));
        if (half_f32_to_f16(x) != oracle_f16(x) && bad_h++ < 5)
            printf("  f16(%08x) = %04x, oracle %04x\n", c[i], half_f32_to_f16(x), oracle_f16(x));
    }
    static const uint32_t low[] = {0x0000u, 0x0001u, 0x0fffu, 0x1000u, 0x1001u, 0x1fffu};
    for (uint32_t top = 0; top < (1u << 19); top++)
        for (size_t j = 0; j < sizeof low / sizeof *low; j++) {
            const uint32_t u = top << 13 | low[j];
            const float x = hc_float(u);
            bad_h += half_f32_to_f16(x) != oracle_f16(x);
            if ((u & 0xffffu) == 0x1000u) /* bf16: tie when bits 0-15 are 0x8000 */
                bad_bf += half_f32_to_bf16(hc_float(u | 0x7000u)) != oracle_bf16(hc_float(u | 0x7000u));
        }
    CHECK(n > 400000, "%zu cases", n);
    CHECK(bad_bf == 0, "%d f32 -> bf16 results differ from the oracle", bad_bf);
    CHECK(bad_h == 0, "%d f32 -> f16 results differ from the oracle", bad_h);
    free(c);
}

/* The bits half.h gives when rounding x to bf16 and back. */
static uint32_t round_bits(float x)
{
    return hc_bits(half_bf16_to_f32(half_f32_to_bf16(x)));
}

/* The fast path's vector copies of the bf16 rounding against the scalar
 * rule, on every ISA this CPU runs: kattn_sum of one chunk (v_round_bf16),
 * kops_to_bf16 (v_round_bf16 and its bit store), the residual add of
 * kops_add_norm with o = -0 (v_round_bf16 / v8_round_bf16, x + -0 = x) and
 * kops_swiglu with a finite gate (the rounding and bit stores of both). */
static void t_fast_path(void)
{
    enum { N = 2048 }; /* a multiple of 16: every element goes through the vector code */
    uint32_t *c = malloc(HC_MAX * sizeof *c);
    const size_t nc = hc_cases(c, HC_MAX);
    float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y), *o = malloc(N * sizeof *o);
    float *w = malloc(N * sizeof *w), *g = malloc(N * sizeof *g);
    uint16_t *hb = malloc(N * sizeof *hb);
    for (int i = 0; i < N; i++) o[i] = -0.0f, w[i] = 1.0f, g[i] = 1.0f;
    const float s = half_bf16_to_f32(half_f32_to_bf16(1.0f / (1.0f + kattn_exp(-1.0f)))); /* rounded silu(1) */
    const kern_isa best = kern_isa_best();
    int isas = 0;
    for (kern_isa isa = KERN_SCALAR; isa <= best; isa++, isas++) {
        int bad_sum = 0, bad_bits = 0, bad_add = 0, bad_swiglu = 0;
        /* the NaNs first (they matter most), then windows over all the cases */
        for (size_t base = 0; base < nc; base += N - 64) {
            for (int i = 0; i < N; i++)
                x[i] = hc_float(i < 64 && base == 0 ? HC_NANS[i % (sizeof HC_NANS / sizeof *HC_NANS)]
                                                    : c[(base + (size_t)i) % nc]);
            kattn_sum(isa, x, N, 1, N, y);
            for (int i = 0; i < N; i++) bad_sum += hc_bits(y[i]) != round_bits(x[i]);
            kops_to_bf16(isa, x, N, hb);
            for (int i = 0; i < N; i++) bad_bits += hb[i] != half_f32_to_bf16(x[i]);
            kops_swiglu(isa, g, x, N, hb);
            for (int i = 0; i < N; i++) bad_swiglu += hb[i] != half_f32_to_bf16(s * x[i]);
            memcpy(y, x, N * sizeof *y);
            kops_add_norm(isa, y, o, w, N, 1e-6f, hb);
            for (int i = 0; i < N; i++) bad_add += hc_bits(y[i]) != round_bits(x[i] + o[i]);
        }
        CHECK(bad_sum == 0, "%s kattn_sum: %d elements differ from half.h", kern_isa_name(isa), bad_sum);
        CHECK(bad_bits == 0, "%s kops_to_bf16: %d elements differ from half.h", kern_isa_name(isa), bad_bits);
        CHECK(bad_add == 0, "%s kops_add_norm residual: %d elements differ from half.h", kern_isa_name(isa), bad_add);
        CHECK(bad_swiglu == 0, "%s kops_swiglu: %d elements differ from half.h", kern_isa_name(isa), bad_swiglu);
    }
    printf("  %d ISAs compared (best: %s)\n", isas, kern_isa_name(best));
    free(c), free(x), free(y), free(o), free(w), free(g), free(hb);
}

int main(int argc, char **argv)
{
    static const test_case cases[] = {
        {"half_bf16_exhaustive", t_bf16_exhaustive},
        {"half_f16_exhaustive", t_f16_exhaustive},
        {"half_named", t_named},
        {"half_oracles", t_oracles},
        {"half_fast_path", t_fast_path},
    };
    return test_main(argc, argv, cases, (int)(sizeof cases / sizeof cases[0]));
}
