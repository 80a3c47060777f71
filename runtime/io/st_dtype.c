/* st_dtype.c: the safetensors dtype table (name as spelled in a file header,
 * bits per element) and its lookups, declared in st_dtype.h. No file I/O. */
#include "io/st_dtype.h"

#include <string.h>

typedef struct dtype_info {
    const char *name;
    unsigned bits;
} dtype_info;

static const dtype_info DTYPES[ST_DTYPE_COUNT] = {
    [ST_BOOL] = {"BOOL", 8},
    [ST_U8] = {"U8", 8},
    [ST_I8] = {"I8", 8},
    [ST_F8_E5M2] = {"F8_E5M2", 8},
    [ST_F8_E4M3] = {"F8_E4M3", 8},
    [ST_I16] = {"I16", 16},
    [ST_U16] = {"U16", 16},
    [ST_F16] = {"F16", 16},
    [ST_BF16] = {"BF16", 16},
    [ST_I32] = {"I32", 32},
    [ST_U32] = {"U32", 32},
    [ST_F32] = {"F32", 32},
    [ST_I64] = {"I64", 64},
    [ST_U64] = {"U64", 64},
    [ST_F64] = {"F64", 64},
    [ST_F8_E8M0] = {"F8_E8M0", 8},
    [ST_F8_E4M3FNUZ] = {"F8_E4M3FNUZ", 8},
    [ST_F8_E5M2FNUZ] = {"F8_E5M2FNUZ", 8},
    [ST_C64] = {"C64", 64},
    [ST_F4] = {"F4", 4},
    [ST_F6_E2M3] = {"F6_E2M3", 6},
    [ST_F6_E3M2] = {"F6_E3M2", 6},
};

/* Finds the dtype whose header spelling is name (case-sensitive), or -1. */
int st_dtype_parse(const char *name)
{
    if (!name) return -1;
    for (int i = 0; i < ST_DTYPE_COUNT; i++)
        if (strcmp(DTYPES[i].name, name) == 0) return i;
    return -1;
}

/* The header spelling of t ("?" for a value outside the enum). */
const char *st_dtype_name(st_dtype t)
{
    return (unsigned)t < ST_DTYPE_COUNT ? DTYPES[t].name : "?";
}

/* Bits per element of t (0 outside the enum). */
unsigned st_dtype_bits(st_dtype t)
{
    return (unsigned)t < ST_DTYPE_COUNT ? DTYPES[t].bits : 0;
}

/* Whole bytes per element of t; 0 for the sub-byte F4/F6 types. */
size_t st_dtype_size(st_dtype t)
{
    unsigned b = st_dtype_bits(t);
    return b % 8 ? 0 : b / 8;
}

/* Whether medserve computes with t: F32 F16 BF16 I8 U8 I32 I64. */
int st_dtype_supported(st_dtype t)
{
    return t == ST_F32 || t == ST_F16 || t == ST_BF16 || t == ST_I8 || t == ST_U8 || t == ST_I32 || t == ST_I64;
}
