/* fhash.h: a fast streaming 64-bit checksum (4 lanes of multiply-rotate over
 * 32-byte blocks) used to compare what was written with what reads back from
 * disk. Not cryptographic: the manifest uses SHA-256. */
#ifndef MG_FHASH_H
#define MG_FHASH_H

#include <stddef.h>
#include <stdint.h>

typedef struct mg_fhash {
    uint64_t v[4];
    uint8_t buf[32];
    size_t nbuf;
    uint64_t len;
} mg_fhash;

void mg_fhash_init(mg_fhash *h);
void mg_fhash_update(mg_fhash *h, const void *data, size_t n);
uint64_t mg_fhash_final(const mg_fhash *h);

#endif
