/* sha256.c: SHA-256 (FIPS 180-4), written from the standard: streaming
 * context, one-shot helper, hex formatting and a streaming file hash. Used by
 * lora-merge manifests and by the server's API-key digests. The compression
 * function has a portable C version and, on x86-64 CPUs with the SHA
 * extensions, a SHA-NI version (about 5x faster; chosen once at run time,
 * both checked against the NIST vectors). It does not do HMAC or
 * constant-time comparison (callers compare digests themselves). */
#include "base/sha256.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/err.h"

/* First 32 bits of the fractional parts of the cube roots of the first 64 primes. */
static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

/* Rotate right. */
static inline uint32_t ror(uint32_t x, int n)
{
    return (x >> n) | (x << (32 - n));
}

/* Big-endian 32-bit load. */
static inline uint32_t load_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* Processes one 64-byte block into the state h. */
static void sha256_block(uint32_t h[8], const uint8_t *p)
{
    uint32_t w[64];
    for (int i = 0; i < 16; i++) w[i] = load_be32(p + 4 * i);
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ror(w[i - 15], 7) ^ ror(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ror(w[i - 2], 17) ^ ror(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t S1 = ror(e, 6) ^ ror(e, 11) ^ ror(e, 25);
        uint32_t ch = (e & f) ^ (~e & g);
        uint32_t t1 = k + S1 + ch + K[i] + w[i];
        uint32_t S0 = ror(a, 2) ^ ror(a, 13) ^ ror(a, 22);
        uint32_t maj = (a & b) ^ (a & c) ^ (b & c);
        uint32_t t2 = S0 + maj;
        k = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
    h[5] += f;
    h[6] += g;
    h[7] += k;
}

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>

/* n blocks with the SHA extensions. The state is kept as the two halves the
 * sha256rnds2 instruction works on (ABEF and CDGH); each group of four
 * rounds adds four words of K to four schedule words and runs two
 * double-rounds; schedule words 16..63 come from sha256msg1/msg2. */
__attribute__((target("sha,sse4.1,ssse3"))) static void blocks_shani(uint32_t h[8], const uint8_t *p, size_t n)
{
    const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL);
    __m128i t = _mm_loadu_si128((const __m128i *)&h[0]);  /* h0 h1 h2 h3 */
    __m128i s1 = _mm_loadu_si128((const __m128i *)&h[4]); /* h4 h5 h6 h7 */
    t = _mm_shuffle_epi32(t, 0xB1);                       /* h1 h0 h3 h2 */
    s1 = _mm_shuffle_epi32(s1, 0x1B);                     /* h7 h6 h5 h4 */
    __m128i s0 = _mm_alignr_epi8(t, s1, 8);               /* ABEF */
    s1 = _mm_blend_epi16(s1, t, 0xF0);                    /* CDGH */
    for (; n; n--, p += 64) {
        __m128i save0 = s0, save1 = s1, w[4];
        for (int g = 0; g < 16; g++) {
            __m128i m;
            if (g < 4) {
                m = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16 * g)), bswap);
            } else {
                /* W[t-16] + s0(W[t-15]), + W[t-7], then + s1(W[t-2]) */
                m = _mm_sha256msg1_epu32(w[g & 3], w[(g + 1) & 3]);
                m = _mm_add_epi32(m, _mm_alignr_epi8(w[(g + 3) & 3], w[(g + 2) & 3], 4));
                m = _mm_sha256msg2_epu32(m, w[(g + 3) & 3]);
            }
            w[g & 3] = m;
            __m128i k = _mm_add_epi32(m, _mm_loadu_si128((const __m128i *)&K[4 * g]));
            s1 = _mm_sha256rnds2_epu32(s1, s0, k);
            s0 = _mm_sha256rnds2_epu32(s0, s1, _mm_shuffle_epi32(k, 0x0E));
        }
        s0 = _mm_add_epi32(s0, save0);
        s1 = _mm_add_epi32(s1, save1);
    }
    t = _mm_shuffle_epi32(s0, 0x1B);   /* F E B A */
    s1 = _mm_shuffle_epi32(s1, 0xB1);  /* D C H G */
    s0 = _mm_blend_epi16(t, s1, 0xF0); /* D C B A -> h0..h3 */
    s1 = _mm_alignr_epi8(s1, t, 8);    /* H G F E -> h4..h7 */
    _mm_storeu_si128((__m128i *)&h[0], s0);
    _mm_storeu_si128((__m128i *)&h[4], s1);
}
#endif

/* n blocks with the portable compression function. */
static void blocks_generic(uint32_t h[8], const uint8_t *p, size_t n)
{
    for (; n; n--, p += 64) sha256_block(h, p);
}

typedef void (*blocks_fn)(uint32_t h[8], const uint8_t *p, size_t n);
static blocks_fn g_blocks; /* chosen on first use */
static int g_force_generic;

#if defined(__x86_64__)
/* SHA extensions + SSSE3 + SSE4.1, read from CPUID (clang's __builtin_cpu_supports lacks "sha"). */
static int cpu_has_shani(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    int ssse3 = (c >> 9) & 1, sse41 = (c >> 19) & 1;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    return ssse3 && sse41 && ((b >> 29) & 1);
}
#endif

/* The compression function to use. */
static blocks_fn pick(void)
{
    blocks_fn f = __atomic_load_n(&g_blocks, __ATOMIC_ACQUIRE);
    if (f) return f;
    f = blocks_generic;
#if defined(__x86_64__)
    if (!g_force_generic && cpu_has_shani()) f = blocks_shani;
#endif
    __atomic_store_n(&g_blocks, f, __ATOMIC_RELEASE);
    return f;
}

/* Chooses the portable compression function (1) or the fastest (0); for tests. */
void sha256_set_generic(int on)
{
    g_force_generic = on;
    __atomic_store_n(&g_blocks, (blocks_fn)0, __ATOMIC_RELEASE);
}

/* "sha-ni" or "generic". */
const char *sha256_impl(void)
{
    return pick() == blocks_generic ? "generic" : "sha-ni";
}

/* Sets the initial hash value (FIPS 180-4 §5.3.3). */
void sha256_init(sha256_ctx *c)
{
    static const uint32_t H0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(c->h, H0, sizeof H0);
    c->len = 0;
    c->nbuf = 0;
}

/* Absorbs n bytes. */
void sha256_update(sha256_ctx *c, const void *data, size_t n)
{
    const uint8_t *p = data;
    c->len += (uint64_t)n;
    if (c->nbuf) {
        size_t take = 64 - c->nbuf;
        if (take > n) take = n;
        memcpy(c->buf + c->nbuf, p, take);
        c->nbuf += take;
        p += take;
        n -= take;
        if (c->nbuf < 64) return;
        pick()(c->h, c->buf, 1);
        c->nbuf = 0;
    }
    if (n >= 64) {
        pick()(c->h, p, n / 64);
        p += n / 64 * 64;
        n %= 64;
    }
    if (n) {
        memcpy(c->buf, p, n);
        c->nbuf = n;
    }
}

/* Pads, processes the last block(s) and writes the 32-byte digest. */
void sha256_final(sha256_ctx *c, uint8_t out[32])
{
    uint64_t bits = c->len * 8;
    uint8_t pad[72] = {0x80};
    size_t padlen = (c->nbuf < 56) ? 56 - c->nbuf : 120 - c->nbuf;
    for (int i = 0; i < 8; i++) pad[padlen + i] = (uint8_t)(bits >> (56 - 8 * i));
    uint64_t keep = c->len;
    sha256_update(c, pad, padlen + 8);
    c->len = keep;
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (uint8_t)(c->h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(c->h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(c->h[i] >> 8);
        out[4 * i + 3] = (uint8_t)c->h[i];
    }
}

/* One-shot digest of a buffer. */
void sha256(const void *data, size_t n, uint8_t out[32])
{
    sha256_ctx c;
    sha256_init(&c);
    sha256_update(&c, data, n);
    sha256_final(&c, out);
}

/* Formats a digest as 64 lowercase hex characters plus NUL. */
void sha256_hex(const uint8_t d[32], char out[65])
{
    static const char hx[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hx[d[i] >> 4];
        out[2 * i + 1] = hx[d[i] & 15];
    }
    out[64] = '\0';
}

/* Hashes a whole file with 1 MiB reads (the file is never mapped); out gets the hex digest. */
ms_status sha256_file(const char *path, char out[65], ms_error *err)
{
    enum { CHUNK = 1 << 20 };
    if (!path || !out) return ms_seterr(err, MS_ERR_INVALID, "sha256_file: NULL argument");
    uint8_t *buf = malloc(CHUNK);
    if (!buf) return ms_seterr(err, MS_ERR_NOMEM, "%s: sha256: out of memory", path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        free(buf);
        return ms_seterr(err, e == ENOENT ? MS_ERR_NOTFOUND : MS_ERR_IO, "%s: open: %s", path, strerror(e));
    }
    sha256_ctx c;
    sha256_init(&c);
    for (;;) {
        ssize_t r = read(fd, buf, CHUNK);
        if (r < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            close(fd);
            free(buf);
            return ms_seterr(err, MS_ERR_IO, "%s: read: %s", path, strerror(e));
        }
        if (r == 0) break;
        sha256_update(&c, buf, (size_t)r);
    }
    close(fd);
    free(buf);
    uint8_t d[32];
    sha256_final(&c, d);
    sha256_hex(d, out);
    return MS_OK;
}
