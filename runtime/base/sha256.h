/* sha256.h: SHA-256 (FIPS 180-4) for manifests and API-key digests. */
#ifndef MS_SHA256_H
#define MS_SHA256_H

#include <stddef.h>
#include <stdint.h>

#include "medserve.h"

typedef struct sha256_ctx {
    uint32_t h[8];
    uint64_t len;
    uint8_t buf[64];
    size_t nbuf;
} sha256_ctx;

void sha256_init(sha256_ctx *c);
void sha256_update(sha256_ctx *c, const void *data, size_t n);
void sha256_final(sha256_ctx *c, uint8_t out[32]);
void sha256(const void *data, size_t n, uint8_t out[32]);
/* 64 lowercase hex chars + NUL. */
void sha256_hex(const uint8_t d[32], char out[65]);
/* Which compression function is used: "sha-ni" or "generic". */
const char *sha256_impl(void);
/* Forces the portable compression function (on = 1) or the fastest (0). Tests. */
void sha256_set_generic(int on);
/* Hashes a file by streaming reads; out is hex. */
ms_status sha256_file(const char *path, char out[65], ms_error *err);

#endif
