/* test_sha256.c: SHA-256 against the FIPS 180-4 / NIST example vectors,
 * streaming in odd chunk sizes, and file hashing. Expected digests are the
 * published NIST values (also what `sha256sum` prints). */
#include <stdlib.h>
#include <unistd.h>

#include "base/sha256.h"
#include "util.h"

/* Hex digest of a buffer fed in pieces of size step. */
static void hex_of(const void *p, size_t n, size_t step, char out[65])
{
    sha256_ctx c;
    uint8_t d[32];
    sha256_init(&c);
    for (size_t i = 0; i < n; i += step) sha256_update(&c, (const char *)p + i, n - i < step ? n - i : step);
    sha256_final(&c, d);
    sha256_hex(d, out);
}

static void t_vectors(void)
{
    static const struct {
        const char *msg;
        const char *hex;
    } v[] = {
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
        {"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
         "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        size_t n = strlen(v[i].msg);
        char h[65];
        uint8_t d[32];
        sha256(v[i].msg, n, d);
        sha256_hex(d, h);
        CHECK(strcmp(h, v[i].hex) == 0, "vector %zu one-shot: %s", i, h);
        for (size_t step = 1; step <= 7; step += 3) {
            hex_of(v[i].msg, n, step, h);
            CHECK(strcmp(h, v[i].hex) == 0, "vector %zu step %zu: %s", i, step, h);
        }
    }
}

static void t_million_a(void)
{
    size_t n = 1000000;
    char *a = malloc(n);
    CHECK(a != NULL, "malloc");
    if (!a) return;
    memset(a, 'a', n);
    char h[65];
    hex_of(a, n, 4093, h);
    CHECK(strcmp(h, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0") == 0, "1M a: %s", h);
    /* Boundary lengths around the padding split (55, 56, 63, 64, 65 bytes):
     * one-shot and byte-at-a-time must agree. */
    for (size_t len = 50; len < 130; len++) {
        char h1[65], h2[65];
        hex_of(a, len, len ? len : 1, h1);
        hex_of(a, len, 1, h2);
        CHECK(strcmp(h1, h2) == 0, "len %zu chunking differs", len);
    }
    free(a);
}

static void t_file(void)
{
    char path[] = "/tmp/ms_sha256_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    if (fd < 0) return;
    CHECK(write(fd, "abc", 3) == 3, "write");
    close(fd);
    char h[65];
    ms_error e = {0};
    CHECK(sha256_file(path, h, &e) == MS_OK, "%s", e.message);
    CHECK(strcmp(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") == 0, "file: %s", h);
    unlink(path);
    CHECK(sha256_file(path, h, &e) == MS_ERR_NOTFOUND, "missing file status %d", e.status);
    CHECK(strstr(e.message, path) != NULL, "message names the path: %s", e.message);
}

/* The same vectors with the portable compression function forced. */
static void t_generic(void)
{
    const char *fast = sha256_impl();
    sha256_set_generic(1);
    CHECK(!strcmp(sha256_impl(), "generic"), "forcing generic: %s", sha256_impl());
    t_vectors();
    t_million_a();
    sha256_set_generic(0);
    printf("  fast implementation on this CPU: %s\n", fast);
}

/* Random lengths: the fast and generic implementations agree. */
static void t_agree(void)
{
    size_t n = 1 << 16;
    unsigned char *b = malloc(n);
    CHECK(b != NULL, "malloc");
    if (!b) return;
    uint32_t x = 12345;
    for (size_t i = 0; i < n; i++) b[i] = (unsigned char)((x = x * 1103515245u + 12345u) >> 16);
    for (size_t len = 0; len < n; len = len * 3 + 1) {
        uint8_t d1[32], d2[32];
        sha256(b, len, d1);
        sha256_set_generic(1);
        sha256(b, len, d2);
        sha256_set_generic(0);
        CHECK(!memcmp(d1, d2, 32), "len %zu: implementations disagree", len);
    }
    free(b);
}

int main(int argc, char **argv)
{
    static const test_case cases[] = {
        {"sha256_vectors", t_vectors}, {"sha256_million_a", t_million_a}, {"sha256_file", t_file},
        {"sha256_generic", t_generic}, {"sha256_impls_agree", t_agree},
    };
    return test_main(argc, argv, cases, 5);
}
