/* half.h: the one definition of the 16-bit float formats medserve reads and
 * writes (bf16, IEEE binary16 "f16") and their conversions to and from f32.
 * The safetensors reader, the CPU reference and fast paths and lora-merge
 * all use these; their vector copies (merge/kernel_body.h loops,
 * cpu/fast/kern_avx512.h v_round_bf16, cpu/fast/kern_avx2.h v8_round_bf16)
 * give the same bits for every input, NaN included (tests/test_half.c,
 * tests/test_merge_half.c).
 *
 * The rule:
 *   - bf16 -> f32 and f16 -> f32 are exact. Every bf16 and f16 value
 *     (subnormals, infinities, signed zeros) is an f32 value; a NaN keeps
 *     its sign and payload bit for bit (shifted to the top of the f32
 *     significand), so a signalling NaN stays signalling.
 *   - f32 -> bf16 and f32 -> f16 round to nearest, ties to even, computed on
 *     the bits. Magnitudes that round past the largest finite value become
 *     infinity with the sign (bf16: |x| >= 0x1.ffp127 rounds up to it,
 *     i.e. 0x7f7f8000 and above; f16: |x| >= 65520). f16 keeps subnormals
 *     (gradual underflow); |x| <= 2^-25 becomes zero. Zeros keep their sign.
 *   - f32 NaN -> the canonical quiet NaN with the input's sign:
 *     bf16 sign | 0x7fc0, f16 sign | 0x7e00. The payload is dropped.
 *
 * Why this NaN rule. These are PyTorch's scalar conversions (c10/util/Half.h
 * fp16_ieee_from_fp32_value returns sign | 0x7e00; c10/util/BFloat16.h
 * round_to_nearest_even returns 0x7fc0) and the bits lora-merge has always
 * produced (docs/numerics.md §4), with one deliberate difference kept from
 * the merge kernel: c10's bf16 NaN drops the sign, ours keeps it, so bf16
 * and f16 follow one rule and a -NaN stays negative through a round trip.
 * Torch has no single NaN rule to match exactly: ATen's vectorised
 * Float -> BFloat16 (cpu/vec cvtfp32_bf16) writes 0xffff for every NaN and
 * its vectorised Float -> Half (vcvtps2ph) keeps the payload, while the
 * scalar tails use c10. lora-merge copies untouched tensors byte for byte
 * and refuses non-finite values in the ones it changes, so a NaN reaches an
 * export through this rule only when --dtype converts an untouched tensor
 * holding NaN; no fixture does. What matters is that every copy in medserve
 * agrees.
 *
 * Requirements: the default rounding mode (round to nearest), which medserve
 * never changes (the f16 subnormal path rounds with one f32 addition).
 * Flush-to-zero or denormals-are-zero would not change any result.
 * Written branch-light so that loops of these functions vectorise under
 * `#pragma omp simd` (the merge kernels rely on it). */
#ifndef MS_HALF_H
#define MS_HALF_H

#include <stdint.h>
#include <string.h>

#define HALF_BF16_QNAN 0x7fc0u /* the NaN f32 -> bf16 writes (with the sign) */
#define HALF_F16_QNAN 0x7e00u  /* the NaN f32 -> f16 writes (with the sign) */

/* The bf16 bits are the top half of the f32 bits. */
static inline float half_bf16_to_f32(uint16_t h)
{
    const uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Adds 0x7fff plus the lowest kept bit, then truncates: ties go to the even
 * neighbour, overflow carries into the exponent and ends at infinity. */
static inline uint16_t half_f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)(((u >> 16) & 0x8000u) | HALF_BF16_QNAN);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* Rebiases the exponent (15 -> 127) and widens the significand; subnormals
 * are the integer significand times 2^-24, which is exact in f32. */
static inline float half_f16_to_f32(uint16_t h)
{
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    uint32_t u;
    if (e == 0) {
        const float f = (float)m * 0x1p-24f;
        memcpy(&u, &f, 4);
        u |= sign;
    } else if (e == 31) {
        u = sign | 0x7f800000u | (m << 13);
    } else {
        u = sign | ((e + 112u) << 23) | (m << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Normal results: rebias and round the 13 dropped bits to even on the
 * integer bits. Results below 2^-14 (f16 subnormals and zero): adding 0.5
 * puts |x| in [0.5, 1), whose f32 quantum is 2^-24, so the addition itself
 * rounds |x| to a multiple of 2^-24 (ties to even) and the low bits of the
 * sum are the f16 significand. */
static inline uint16_t half_f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    const uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return (uint16_t)(sign | HALF_F16_QNAN);
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds to >= 65520: inf */
    if (ax < 0x38800000u) {
        float a, t;
        memcpy(&a, &ax, 4);
        t = a + 0.5f;
        uint32_t u;
        memcpy(&u, &t, 4);
        return (uint16_t)(sign | (u - 0x3f000000u));
    }
    ax += 0xc8000fffu + ((ax >> 13) & 1u); /* exponent -112 (mod 2^32) and the rounding bias */
    return (uint16_t)(sign | (ax >> 13));
}

#endif
