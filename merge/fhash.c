/* fhash.c: the checksum of fhash.h. Each lane absorbs one 8-byte
 * little-endian word per 32-byte block: v = rotl(v + w·P2, 31)·P1; the
 * final value mixes the lanes, the buffered tail and the length. Any chunking
 * of the same bytes gives the same result. */
#include "fhash.h"

#include <string.h>

#define P1 0x9E3779B185EBCA87ull
#define P2 0xC2B2AE3D27D4EB4Full
#define P3 0x165667B19E3779F9ull

/* Rotate left. */
static inline uint64_t rotl(uint64_t x, int r)
{
    return (x << r) | (x >> (64 - r));
}

/* Loads a little-endian 64-bit word. */
static inline uint64_t load64(const uint8_t *p)
{
    uint64_t w;
    memcpy(&w, p, 8);
    return w; /* x86-64 and aarch64 Linux are little-endian */
}

/* Absorbs one 32-byte block. */
static inline void block(uint64_t v[4], const uint8_t *p)
{
    for (int i = 0; i < 4; i++) v[i] = rotl(v[i] + load64(p + 8 * i) * P2, 31) * P1;
}

/* Starts a checksum. */
void mg_fhash_init(mg_fhash *h)
{
    h->v[0] = P1 + P2;
    h->v[1] = P2;
    h->v[2] = 0;
    h->v[3] = 0 - P1;
    h->nbuf = 0;
    h->len = 0;
}

/* Absorbs n bytes. */
void mg_fhash_update(mg_fhash *h, const void *data, size_t n)
{
    const uint8_t *p = data;
    h->len += n;
    if (h->nbuf) {
        size_t take = 32 - h->nbuf < n ? 32 - h->nbuf : n;
        memcpy(h->buf + h->nbuf, p, take);
        h->nbuf += take;
        p += take;
        n -= take;
        if (h->nbuf < 32) return;
        block(h->v, h->buf);
        h->nbuf = 0;
    }
    for (; n >= 32; n -= 32, p += 32) block(h->v, p);
    if (n) {
        memcpy(h->buf, p, n);
        h->nbuf = n;
    }
}

/* Finishes (does not modify h). */
uint64_t mg_fhash_final(const mg_fhash *h)
{
    uint64_t x = rotl(h->v[0], 1) + rotl(h->v[1], 7) + rotl(h->v[2], 12) + rotl(h->v[3], 18);
    x ^= h->len * P3;
    for (size_t i = 0; i < h->nbuf; i++) x = rotl(x ^ (h->buf[i] * P3), 11) * P1;
    x ^= x >> 33;
    x *= P2;
    x ^= x >> 29;
    x *= P3;
    x ^= x >> 32;
    return x;
}
