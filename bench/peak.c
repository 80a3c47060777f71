/* peak.c: compute peak probe, the denominator of "fraction of the bf16
 * peak" in bench/README.md: register-resident vdpbf16ps chains (16
 * independent accumulators per thread, 64 FLOP per instruction) on N
 * threads started together; on CPUs without AVX-512 BF16, fp32 FMA chains
 * (AVX2, 16 FLOP per instruction) instead, labelled as such.
 *
 *   peak [--threads N] [--ms M]      prints one JSON line, best of 5
 * Build with -march=native (bench/run.sh does). */
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Monotonic seconds. */
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Runs iters x 16 chained instructions; returns a value that depends on all of them. */
static float chains(long iters)
{
#if defined(__AVX512BF16__)
    __m512 a[16];
    for (int i = 0; i < 16; i++) a[i] = _mm512_set1_ps((float)i * 1e-3f);
    __m512bh x = (__m512bh)_mm512_set1_epi32(0x3f803f80), y = (__m512bh)_mm512_set1_epi32(0x00010001);
    for (long i = 0; i < iters; i++) {
#pragma GCC unroll 16
        for (int j = 0; j < 16; j++) a[j] = _mm512_dpbf16_ps(a[j], x, y);
        __asm__ volatile("" : "+v"(x), "+v"(y));
    }
    float s = 0;
    for (int i = 0; i < 16; i++) s += _mm512_reduce_add_ps(a[i]);
    return s;
#elif defined(__FMA__)
    __m256 a[16];
    for (int i = 0; i < 16; i++) a[i] = _mm256_set1_ps((float)i * 1e-3f);
    __m256 x = _mm256_set1_ps(1.0f), y = _mm256_set1_ps(1e-9f);
    for (long i = 0; i < iters; i++) {
#pragma GCC unroll 16
        for (int j = 0; j < 16; j++) a[j] = _mm256_fmadd_ps(a[j], x, y);
        __asm__ volatile("" : "+x"(x), "+x"(y));
    }
    float s = 0, t[8];
    for (int i = 0; i < 16; i++) {
        _mm256_storeu_ps(t, a[i]);
        for (int k = 0; k < 8; k++) s += t[k];
    }
    return s;
#else
    (void)iters;
    return 0;
#endif
}

/* Calibrates, then the best of 5 timed runs on N threads. */
int main(int argc, char **argv)
{
    int threads = 1, ms = 300;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--ms")) ms = atoi(argv[i + 1]);
    }
    if (threads < 1 || ms < 1) {
        fprintf(stderr, "usage: %s [--threads N] [--ms M]\n", argv[0]);
        return 2;
    }
#if defined(__AVX512BF16__)
    const char *kind = "vdpbf16ps";
    const double flop_per_iter = 16.0 * 64;
#elif defined(__FMA__)
    const char *kind = "fma-f32-avx2";
    const double flop_per_iter = 16.0 * 16;
#else
    const char *kind = "none";
    const double flop_per_iter = 0;
#endif
    /* calibrate the iteration count to about ms milliseconds */
    long iters = 1000000;
    double t0 = now_s();
    volatile float sink = chains(iters);
    double dt = now_s() - t0;
    if (dt > 0) iters = (long)((double)iters * (ms / 1e3) / dt) + 1;
    double best = 0;
    for (int r = 0; r < 5; r++) {
        double t1 = 0, t2 = 0;
        float part = 0;
#pragma omp parallel num_threads(threads) reduction(+ : part)
        {
#pragma omp barrier
#pragma omp master
            t1 = now_s();
            part += chains(iters);
#pragma omp barrier
#pragma omp master
            t2 = now_s();
        }
        sink = sink + part;
        double g = flop_per_iter * (double)iters * threads / (t2 - t1) / 1e9;
        if (g > best) best = g;
    }
    printf("{\"probe\":\"peak\",\"kind\":\"%s\",\"threads\":%d,\"best_gflops\":%.1f}\n", kind, threads, best);
    return 0;
}
