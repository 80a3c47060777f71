/* test_merge_half.c: lora-merge's conversion tables (merge/kernel.h:
 * generic, and the AVX2 and AVX-512 builds of kernel_body.h where this CPU
 * runs them) give exactly base/half.h's scalar bits: every bf16 and f16
 * pattern widened, and the half_cases.h inputs (NaN payloads of both signs,
 * infinities, ties, subnormals, signed zeros) narrowed, at every vector lane
 * position and from unaligned addresses, plus mg_round_inplace. Lives apart
 * from test_half.c because it links the merge objects. */
#include <stdio.h>
#include <stdlib.h>

#include "base/half.h"
#include "half_cases.h"
#include "kernel.h"
#include "util.h"

/* Counts of elements that differ from half.h, per conversion. */
typedef struct diffs {
    int bf16, f16, round;
} diffs;

/* Narrows f[0..n) with k both ways and rounds it in place, comparing each
 * element with half.h; out and g are scratch of n elements. */
static void narrow_window(const mg_kernels *k, const float *f, size_t n, uint16_t *out, float *g, diffs *d)
{
    k->f32_to_bf16(out, f, n);
    for (size_t i = 0; i < n; i++) d->bf16 += out[i] != half_f32_to_bf16(f[i]);
    k->f32_to_f16(out, f, n);
    for (size_t i = 0; i < n; i++) d->f16 += out[i] != half_f32_to_f16(f[i]);
    memcpy(g, f, n * 4);
    mg_round_inplace(k, g, ST_BF16, n);
    for (size_t i = 0; i < n; i++) d->round += hc_bits(g[i]) != hc_bits(half_bf16_to_f32(half_f32_to_bf16(f[i])));
    memcpy(g, f, n * 4);
    mg_round_inplace(k, g, ST_F16, n);
    for (size_t i = 0; i < n; i++) d->round += hc_bits(g[i]) != hc_bits(half_f16_to_f32(half_f32_to_f16(f[i])));
}

/* Element-wise comparison of one table with the scalar functions. */
static void check_table(const mg_kernels *k, const uint32_t *cases, size_t nc)
{
    const size_t n = 65536 + 3; /* odd: vector body and scalar tail */
    uint16_t *h = malloc((n + 1) * 2), *out = malloc((n + 1) * 2);
    float *f = malloc((n + 1) * 4), *g = malloc((n + 1) * 4);
    /* widening: all patterns, from an aligned and an odd address */
    for (int off = 0; off < 2; off++) {
        int bad_bf = 0, bad_h = 0;
        for (size_t i = 0; i < n; i++) h[off + i] = (uint16_t)i;
        k->bf16_to_f32(f + off, h + off, n);
        for (size_t i = 0; i < n; i++) bad_bf += hc_bits(f[off + i]) != hc_bits(half_bf16_to_f32((uint16_t)i));
        k->f16_to_f32(f + off, h + off, n);
        for (size_t i = 0; i < n; i++) bad_h += hc_bits(f[off + i]) != hc_bits(half_f16_to_f32((uint16_t)i));
        CHECK(bad_bf == 0, "%s bf16_to_f32 (offset %d): %d differ", k->name, off, bad_bf);
        CHECK(bad_h == 0, "%s f16_to_f32 (offset %d): %d differ", k->name, off, bad_h);
    }
    /* narrowing: three passes of windows over all the cases, each pass
     * shifted by 5 so a case meets three lane positions, windows alternately
     * from an aligned and an odd address */
    diffs d = {0, 0, 0};
    int w = 0;
    for (size_t pass = 0; pass < 3; pass++)
        for (size_t base = pass * 5; base < nc + pass * 5; base += n, w++) {
            const int off = w & 1;
            for (size_t i = 0; i < n; i++) f[off + i] = hc_float(cases[(base + i) % nc]);
            narrow_window(k, f + off, n, out + off, g + off, &d);
        }
    CHECK(d.bf16 == 0, "%s f32_to_bf16: %d differ from half_f32_to_bf16", k->name, d.bf16);
    CHECK(d.f16 == 0, "%s f32_to_f16: %d differ from half_f32_to_f16", k->name, d.f16);
    CHECK(d.round == 0, "%s mg_round_inplace: %d differ", k->name, d.round);
    free(h), free(out), free(f), free(g);
}

static void t_tables(void)
{
    static const char *const names[] = {"generic", "avx2", "avx512"};
    uint32_t *c = malloc(HC_MAX * sizeof *c);
    const size_t nc = hc_cases(c, HC_MAX);
    int tested = 0;
    for (size_t v = 0; v < sizeof names / sizeof *names; v++) {
        const mg_kernels *k = mg_kernels_named(names[v]);
        if (!k) {
            printf("  %s kernels: not supported by this CPU, skipped\n", names[v]);
            continue;
        }
        check_table(k, c, nc);
        tested++;
    }
    printf("  %d merge kernel tables compared with base/half.h on %zu cases\n", tested, nc);
    CHECK(tested >= 1, "at least the generic table");
    free(c);
}

int main(int argc, char **argv)
{
    static const test_case cases[] = {
        {"merge_half_tables", t_tables},
    };
    return test_main(argc, argv, cases, (int)(sizeof cases / sizeof cases[0]));
}
