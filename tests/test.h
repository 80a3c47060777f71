/* test.h: the tiny test harness. Each test binary registers cases with
 * TEST_CASE and runs them from main with test_main; every case prints
 * "ok NAME" or "not ok NAME" followed by its failed checks, which
 * tests/run.sh counts. Tests run from the repository root. */
#ifndef MS_TEST_H
#define MS_TEST_H

#include <math.h>
#include <stdio.h>
#include <string.h>

static int test_failed_checks_;

#define CHECK(cond, ...)                                                     \
    do {                                                                     \
        if (!(cond)) {                                                       \
            test_failed_checks_++;                                           \
            printf("  check failed %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            printf(__VA_ARGS__);                                             \
            printf("\n");                                                    \
        }                                                                    \
    } while (0)

typedef struct test_case {
    const char *name;
    void (*fn)(void);
} test_case;

/* Runs cases (all, or those whose name contains argv[1]); returns the exit code. */
static inline int test_main(int argc, char **argv, const test_case *cases, int n)
{
    int failed = 0, ran = 0;
    for (int i = 0; i < n; i++) {
        if (argc > 1 && !strstr(cases[i].name, argv[1])) continue;
        test_failed_checks_ = 0;
        cases[i].fn();
        ran++;
        if (test_failed_checks_) failed++;
        printf("%s %s\n", test_failed_checks_ ? "not ok" : "ok", cases[i].name);
        fflush(stdout);
    }
    return failed ? 1 : (ran ? 0 : 1);
}

#endif
