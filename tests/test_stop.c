/* test_stop.c: the stop-string matcher (runtime/text/stop.c) against a brute-force
 * statement of its contract, on 20,000 random cases: texts over a small
 * alphabet (ASCII and a 2-byte character) split into random pieces, 1-4
 * random stop strings. After every piece the released text must equal the
 * text so far minus its longest tail that is a proper prefix of a stop string
 * (or, once a stop string occurs, exactly the text before the earliest
 * occurrence), and stop_finish must release the rest. Plus the validation
 * rules and the pass-through without stop strings. */
#include <stdlib.h>

#include "text/stop.h"
#include "util.h"

static uint64_t rng = 88172645463325252ull;

static unsigned rnd(unsigned n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (unsigned)(rng % n);
}

/* Appends a random "character" (a, b, c or the 2-byte é) to s. */
static size_t rand_char(char *s)
{
    switch (rnd(4)) {
    case 0: s[0] = 'a'; return 1;
    case 1: s[0] = 'b'; return 1;
    case 2: s[0] = 'c'; return 1;
    default: s[0] = (char)0xC3, s[1] = (char)0xA9; return 2;
    }
}

/* Earliest occurrence of any stop in t[0..n) (SIZE_MAX if none). */
static size_t earliest(const char *t, size_t n, char stops[][16], const size_t *sl, int ns)
{
    size_t best = SIZE_MAX;
    for (int k = 0; k < ns; k++)
        for (size_t i = 0; i + sl[k] <= n && i < best; i++)
            if (!memcmp(t + i, stops[k], sl[k])) best = i;
    return best;
}

/* Longest tail of t[0..n) that is a proper prefix of a stop. */
static size_t tail(const char *t, size_t n, char stops[][16], const size_t *sl, int ns)
{
    size_t best = 0;
    for (int k = 0; k < ns; k++)
        for (size_t len = 1; len < sl[k] && len <= n; len++)
            if (len > best && !memcmp(t + n - len, stops[k], len)) best = len;
    return best;
}

static void t_random(void)
{
    int bad = 0, matched_cases = 0;
    for (int c = 0; c < 20000 && bad < 5; c++) {
        char stops[4][16];
        size_t sl[4];
        const char *ptrs[MS_MAX_STOP + 1] = {0};
        int ns = 1 + (int)rnd(4);
        for (int k = 0; k < ns; k++) {
            sl[k] = 0;
            int nch = 1 + (int)rnd(4);
            for (int j = 0; j < nch; j++) sl[k] += rand_char(stops[k] + sl[k]);
            stops[k][sl[k]] = 0;
            ptrs[k] = stops[k];
        }
        stop_matcher m;
        ms_error err = {0};
        if (stop_init(&m, ptrs, 16, &err) != MS_OK) {
            CHECK(0, "stop_init: %s", err.message);
            return;
        }
        char text[256], got[256];
        size_t tn = 0, gn = 0;
        int done = 0;
        for (int p = 0; p < 12 && !done; p++) {
            char piece[16];
            size_t pl = 0;
            int nch = (int)rnd(4);
            for (int j = 0; j < nch; j++) pl += rand_char(piece + pl);
            memcpy(text + tn, piece, pl);
            tn += pl;
            const char *o;
            size_t ol;
            int r = stop_feed(&m, piece, pl, &o, &ol);
            memcpy(got + gn, o, ol);
            gn += ol;
            size_t e = earliest(text, tn, stops, sl, ns);
            size_t want = e != SIZE_MAX ? e : tn - tail(text, tn, stops, sl, ns);
            if (r != (e != SIZE_MAX) || gn != want || memcmp(got, text, gn)) {
                bad++;
                CHECK(0, "case %d piece %d: released %zu bytes (want %zu), match %d", c, p, gn, want, r);
            }
            done = r == 1;
        }
        const char *o;
        size_t ol;
        stop_finish(&m, &o, &ol);
        memcpy(got + gn, o, ol);
        gn += ol;
        size_t e = earliest(text, tn, stops, sl, ns);
        size_t want = e != SIZE_MAX ? e : tn;
        matched_cases += e != SIZE_MAX;
        if (gn != want || memcmp(got, text, gn)) {
            bad++;
            CHECK(0, "case %d: final text %zu bytes, want %zu", c, gn, want);
        }
        stop_free(&m);
    }
    CHECK(matched_cases > 2000 && matched_cases < 18000, "only %d of 20000 cases matched", matched_cases);
}

static void t_validation_and_passthrough(void)
{
    ms_error err = {0};
    const char *empty[2] = {"", NULL}, *utf[2] = {"a\xC3", NULL}, *sur[2] = {"\xED\xA0\x80", NULL};
    CHECK(stop_validate(empty, &err) == MS_ERR_INVALID && strstr(err.message, "stop[0]"), "empty");
    CHECK(stop_validate(utf, &err) == MS_ERR_INVALID && strstr(err.message, "UTF-8"), "truncated UTF-8");
    CHECK(stop_validate(sur, &err) == MS_ERR_INVALID, "surrogate");
    char *big = malloc(STOP_MAX_LEN + 2);
    memset(big, 'x', STOP_MAX_LEN + 1);
    big[STOP_MAX_LEN + 1] = 0;
    const char *lng[2] = {big, NULL};
    CHECK(stop_validate(lng, &err) == MS_ERR_INVALID && strstr(err.message, "longer"), "too long");
    free(big);
    const char *four[MS_MAX_STOP] = {"a", "b", "c", "d"}; /* full array, no NULL */
    CHECK(stop_validate(four, &err) == MS_OK, "four stops: %s", err.message);

    stop_matcher m;
    CHECK(stop_init(&m, NULL, 8, &err) == MS_OK, "no stops");
    const char *o;
    size_t ol;
    CHECK(stop_feed(&m, "hello", 5, &o, &ol) == 0 && ol == 5 && !memcmp(o, "hello", 5), "pass-through");
    stop_finish(&m, &o, &ol);
    CHECK(ol == 0, "nothing held without stop strings");
    stop_free(&m);
    const char *one[2] = {"xyz", NULL};
    CHECK(stop_init(&m, one, 4, &err) == MS_OK, "init");
    CHECK(stop_feed(&m, "abcde", 5, &o, &ol) == -1, "piece over max_piece must be refused");
    stop_free(&m);
    stop_free(NULL);
}

int main(int argc, char **argv)
{
    static const test_case cases[] = {
        {"stop_random_vs_brute_force", t_random},
        {"stop_validation_passthrough", t_validation_and_passthrough},
    };
    return test_main(argc, argv, cases, sizeof cases / sizeof *cases);
}
