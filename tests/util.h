/* util.h: the tiny test harness and the helpers every C test shares.
 *
 * Each test binary lists its cases in main and runs them with test_main;
 * every case prints "ok NAME" or "not ok NAME" after its failed checks, which
 * tests/run.sh counts. CHECK records a failure and goes on; REQUIRE records
 * it and ends the current case at once (from any depth of helper calls), for
 * a precondition without which the rest of the case means nothing. Tests run
 * from the repository root, and on a loaded machine too (make stress-test):
 * state another thread reaches is waited for with a generous deadline
 * (ut_wait_until), never read once after a sleep, and a bound on how long
 * something takes is put on CPU time (ut_cpu_now), not on wall time. */
#ifndef MS_TEST_UTIL_H
#define MS_TEST_UTIL_H

#include <math.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int test_failed_checks_;
static jmp_buf test_case_exit_;
static int test_case_running_;

#define CHECK(cond, ...)                                                     \
    do {                                                                     \
        if (!(cond)) {                                                       \
            test_failed_checks_++;                                           \
            printf("  check failed %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            printf(__VA_ARGS__);                                             \
            printf("\n");                                                    \
        }                                                                    \
    } while (0)

/* A failed REQUIRE ends the case (memory it held is not freed: the case has
 * failed already, and LeakSanitizer's report then points at the cause). */
#define REQUIRE(cond, ...)                                                            \
    do {                                                                              \
        if (!(cond)) {                                                                \
            test_failed_checks_++;                                                    \
            printf("  required check failed %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            printf(__VA_ARGS__);                                                      \
            printf("\n");                                                             \
            if (test_case_running_) longjmp(test_case_exit_, 1);                      \
            exit(1);                                                                  \
        }                                                                             \
    } while (0)

typedef struct test_case {
    const char *name;
    void (*fn)(void);
} test_case;

/* Runs cases (all, or those whose name contains argv[1]); returns the exit code. */
static inline int test_main(int argc, char **argv, const test_case *cases, int n)
{
    volatile int failed = 0, ran = 0; /* kept across a REQUIRE's longjmp */
    for (volatile int i = 0; i < n; i++) {
        if (argc > 1 && !strstr(cases[i].name, argv[1])) continue;
        test_failed_checks_ = 0;
        test_case_running_ = 1;
        if (!setjmp(test_case_exit_)) cases[i].fn();
        test_case_running_ = 0;
        ran++;
        if (test_failed_checks_) failed++;
        printf("%s %s\n", test_failed_checks_ ? "not ok" : "ok", cases[i].name);
        fflush(stdout);
    }
    return failed ? 1 : (ran ? 0 : 1);
}

/* Whether this run is the ASan+UBSan one (tests/run.sh sets the variable):
 * slow cases then take fewer rounds. */
static inline int ut_sanitized(void)
{
    return getenv("MEDSERVE_SANITIZED") != NULL;
}

/* Monotonic seconds, for deadlines (never for asserting on speed). */
static inline double ut_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* CPU seconds used by the calling thread: for a bound on how much work a
 * call does (a malformed file must not cost seconds), which other processes
 * competing for the CPUs do not inflate the way they inflate wall time. */
static inline double ut_cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The deadline for state another thread reaches (a final event, an idle
 * engine): generous, since a loaded machine may delay any thread by seconds. */
#define UT_WAIT_S 30.0

/* Polls pred(ctx) every millisecond until it returns nonzero (then returns 1)
 * or timeout_s seconds pass (then returns 0). State that changes
 * asynchronously (engine stats after the last event, a worker parked) is
 * waited for with this, never read once. */
static inline int ut_wait_until(int (*pred)(void *ctx), void *ctx, double timeout_s)
{
    double deadline = ut_now() + timeout_s;
    for (;;) {
        if (pred(ctx)) return 1;
        if (ut_now() > deadline) return pred(ctx) ? 1 : 0;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

/* xorshift64*: a deterministic stream of test data from *state (nonzero). */
static inline uint64_t ut_rng(uint64_t *state)
{
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return *state * 0x2545f4914f6cdd1dull;
}

/* Fills buf with a fresh empty directory /tmp/ms_test_<tag>_XXXXXX; returns
 * buf, or NULL (buf empty) when it cannot be made. */
static inline char *ut_tmpdir(char *buf, size_t n, const char *tag)
{
    snprintf(buf, n, "/tmp/ms_test_%s_XXXXXX", tag);
    if (!mkdtemp(buf)) {
        buf[0] = '\0';
        return NULL;
    }
    return buf;
}

/* The whole file at path, NUL-terminated (not counted in *n); NULL if it
 * cannot be read. The caller frees it. */
static inline char *ut_read_file(const char *path, size_t *n)
{
    if (n) *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *b = NULL;
    long k = -1;
    if (fseek(f, 0, SEEK_END) == 0 && (k = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) b = malloc((size_t)k + 1);
    if (b && fread(b, 1, (size_t)k, f) != (size_t)k) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (!b) return NULL;
    b[k] = '\0';
    if (n) *n = (size_t)k;
    return b;
}

#endif
