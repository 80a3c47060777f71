/* stream.c: memory read bandwidth probe (STREAM-like sum), the denominator
 * of every "fraction of the bandwidth bound" in bench/README.md.
 *
 *   stream [--threads N] [--mb SIZE_MB] [--reps R] [--json]
 *
 * A SIZE_MB float array (default 1024 MB: far beyond any cache), touched
 * first, huge-page advised, then summed by N threads (each its contiguous
 * part) with 64 independent accumulators; threads start together at a
 * barrier, time runs barrier to barrier. Prints best and median GB/s over
 * R repetitions. Portable C (gcc vectorises the sum at -O2 -march=native). */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

/* Monotonic seconds. */
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* qsort order for doubles. */
static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Allocates, touches, then times R summing passes. */
int main(int argc, char **argv)
{
    int threads = 1, reps = 10, json = 0;
    size_t mb = 1024;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--mb") && i + 1 < argc) mb = (size_t)atol(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--json")) json = 1;
        else {
            fprintf(stderr, "usage: %s [--threads N] [--mb SIZE_MB] [--reps R] [--json]\n", argv[0]);
            return 2;
        }
    }
    if (threads < 1 || reps < 1 || mb < 1 || reps > 1000) {
        fprintf(stderr, "%s: threads, reps and mb must be positive\n", argv[0]);
        return 2;
    }
    const size_t n = mb * 1024 * 1024 / sizeof(float);
    float *a = NULL;
    if (posix_memalign((void **)&a, (size_t)2 << 20, n * sizeof(float))) {
        fprintf(stderr, "%s: cannot allocate %zu MB\n", argv[0], mb);
        return 1;
    }
    madvise(a, n * sizeof(float), MADV_HUGEPAGE);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (size_t i = 0; i < n; i++) a[i] = (float)(i & 7) * 0.5f;
    double *gbs = malloc(sizeof(double) * (size_t)reps);
    volatile float sink = 0;
    for (int r = 0; r < reps; r++) {
        double t0 = 0, t1 = 0;
        float total = 0;
#pragma omp parallel num_threads(threads) reduction(+ : total)
        {
            const int id = omp_get_thread_num(), nt = omp_get_num_threads();
            const size_t lo = n / 64 * (size_t)id / (size_t)nt * 64, hi = n / 64 * (size_t)(id + 1) / (size_t)nt * 64;
            float s[64] = {0}; /* 64 independent chains: latency never limits */
#pragma omp barrier
#pragma omp master
            t0 = now_s();
            for (size_t i = lo; i < hi; i += 64)
                for (int j = 0; j < 64; j++) s[j] += a[i + j];
#pragma omp barrier
#pragma omp master
            t1 = now_s();
            for (int j = 0; j < 64; j++) total += s[j];
        }
        sink = sink + total;
        gbs[r] = (double)(n / 64 * 64) * sizeof(float) / (t1 - t0) / 1e9;
    }
    qsort(gbs, (size_t)reps, sizeof(double), cmp_d);
    if (json)
        printf("{\"probe\":\"stream\",\"threads\":%d,\"mb\":%zu,\"best_gbs\":%.2f,\"median_gbs\":%.2f}\n", threads, mb,
               gbs[reps - 1], gbs[reps / 2]);
    else
        printf("stream read, %d threads, %zu MB: best %.1f GB/s, median %.1f GB/s\n", threads, mb, gbs[reps - 1],
               gbs[reps / 2]);
    free(gbs);
    free(a);
    return 0;
}
