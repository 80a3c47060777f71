/* test_server_auth.c: API keys (server/auth.c): file rules (mode 0600, format),
 * Bearer parsing, the docs/threats.md F2 cases, and the constant-time compare. */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "base/sha256.h"
#include "util.h"

#define K1 "k1-0123456789abcdef"
#define K2 "k2-fedcba9876543210"

/* A key set parsed from text (NULL on error). */
static auth *from(const char *text, ms_error *e)
{
    auth *a = NULL;
    auth_from_text(text, strlen(text), "keys", &a, e);
    return a;
}

/* Accepted and refused key-file contents. */
static void t_format(void)
{
    ms_error e;
    auth *a = from("# comment\n\nalice:" K1 "\r\nbob:" K2 "\n", &e);
    CHECK(a && auth_count(a) == 2, "two keys: %s", a ? "" : e.message);
    auth_free(a);
    static const struct {
        const char *text, *msg;
    } bad[] = {
        {"", "no keys"},
        {"# only a comment\n", "no keys"},
        {"alice\n", "expected 'id:key'"},
        {":" K1 "\n", "key id"},
        {"al ice:" K1 "\n", "key id"},
        {"alice:short\n", "key must have"},
        {"alice:" K1 "\nalice:" K2 "\n", "duplicate key id"},
        {"alice:" K1 "\nbob:" K1 "\n", "the same key"},
        {"alice:k1-0123456789 abcdef\n", "printable"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        a = from(bad[i].text, &e);
        CHECK(!a && strstr(e.message, bad[i].msg) && strstr(e.message, "keys"), "case %zu: '%s' (want '%s')", i,
              a ? "accepted" : e.message, bad[i].msg);
        auth_free(a);
    }
}

/* The F2 cases: only one exact "Bearer <key>" passes. */
static void t_check(void)
{
    ms_error e;
    auth *a = from("alice:" K1 "\nbob:" K2 "\n", &e);
    const char *id = NULL;
    CHECK(auth_check(a, "Bearer " K1, &id) == 0 && id && !strcmp(id, "alice"), "alice");
    CHECK(auth_check(a, "Bearer " K2, &id) == 1 && id && !strcmp(id, "bob"), "bob");
    static const char *const bad[] = {
        NULL,
        "",
        "Bearer ",
        "Bearer " K1 "x",            /* key + suffix */
        "Bearer k1-0123456789abcde", /* key prefix */
        "bearer " K1,                /* lower-case scheme */
        "BEARER " K1,
        "Bearer  " K1, /* two spaces */
        "Basic " K1,
        K1,
        "Bearer alice:" K1,
        "Bearer " K1 " ",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        id = "x";
        CHECK(auth_check(a, bad[i], &id) == -1 && id == NULL, "case %zu ('%s') must fail", i,
              bad[i] ? bad[i] : "(null)");
    }
    CHECK(auth_check(NULL, "Bearer " K1, &id) == -1, "no key set");
    auth_free(a);
}

/* Every single-bit difference is detected. */
static void t_ct_diff(void)
{
    uint8_t x[32], y[32];
    for (int i = 0; i < 32; i++) x[i] = y[i] = (uint8_t)(i * 7);
    CHECK(auth_ct_diff(x, y, 32) == 0, "equal");
    for (int i = 0; i < 32; i++) {
        y[i] ^= 0x80;
        CHECK(auth_ct_diff(x, y, 32) != 0, "differs at %d", i);
        y[i] ^= 0x80;
    }
}

/* Writes text to a temp file with mode; returns its path (static buffer). */
static const char *write_keys(const char *text, mode_t mode)
{
    static char path[64];
    snprintf(path, sizeof path, "/tmp/ms_keys_XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0) return NULL;
    ssize_t w = write(fd, text, strlen(text));
    (void)w;
    fchmod(fd, mode);
    close(fd);
    return path;
}

/* Key files: modes 0600/0400 accepted, group/other bits refused. */
static void t_file(void)
{
    ms_error e;
    auth *a = NULL;
    const char *p = write_keys("alice:" K1 "\n", 0600);
    CHECK(p && auth_load(p, &a, &e) == MS_OK && auth_count(a) == 1, "0600 accepted: %s", e.message);
    auth_free(a);
    a = NULL;
    if (p) unlink(p);
    p = write_keys("alice:" K1 "\n", 0400);
    CHECK(p && auth_load(p, &a, &e) == MS_OK, "0400 accepted");
    auth_free(a);
    a = NULL;
    if (p) unlink(p);
    static const mode_t loose[] = {0644, 0640, 0604, 0660, 0602};
    for (size_t i = 0; i < sizeof loose / sizeof *loose; i++) {
        p = write_keys("alice:" K1 "\n", loose[i]);
        ms_status st = p ? auth_load(p, &a, &e) : MS_ERR_IO;
        CHECK(st != MS_OK && strstr(e.message, "chmod 600"), "mode %03o refused: %s", (unsigned)loose[i], e.message);
        auth_free(a);
        a = NULL;
        if (p) unlink(p);
    }
    CHECK(auth_load("/nonexistent/keys", &a, &e) == MS_ERR_IO, "missing file");
    CHECK(auth_load("/tmp", &a, &e) != MS_OK, "directory");
}

/* Reported, not gating (docs/threats.md T7): wrong first byte vs wrong last byte. */
static void t_timing_report(void)
{
    ms_error e;
    auth *a = from("alice:" K1 "\n", &e);
    char first[64], last[64];
    snprintf(first, sizeof first, "Bearer X%s", K1 + 1);
    snprintf(last, sizeof last, "Bearer %.*sX", (int)strlen(K1) - 1, K1);
    int rounds = getenv("MEDSERVE_SANITIZED") ? 2000 : 20000;
    struct timespec t0, t1, t2;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < rounds; i++) CHECK(auth_check(a, first, NULL) == -1, "first");
    clock_gettime(CLOCK_MONOTONIC, &t1);
    for (int i = 0; i < rounds; i++) CHECK(auth_check(a, last, NULL) == -1, "last");
    clock_gettime(CLOCK_MONOTONIC, &t2);
    double d1 = (double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec);
    double d2 = (double)(t2.tv_sec - t1.tv_sec) * 1e9 + (double)(t2.tv_nsec - t1.tv_nsec);
    printf("  timing: wrong first byte %.0f ns/check, wrong last byte %.0f ns/check\n", d1 / rounds, d2 / rounds);
    auth_free(a);
}

int main(int argc, char **argv)
{
    static const test_case cases[] = {
        {"api_auth_format", t_format},
        {"api_auth_check", t_check},
        {"api_auth_ct_diff", t_ct_diff},
        {"api_auth_file", t_file},
        {"api_auth_timing_report", t_timing_report},
    };
    return test_main(argc, argv, cases, sizeof cases / sizeof *cases);
}
