/* st_dtype.h: the element types of the safetensors format: the enum, their
 * names as spelled in a file header, their sizes, and which of them medserve
 * computes with. Table in st_dtype.c; st.h (the reader and writer) includes
 * this, so callers of st.h need not. Value conversions are base/half.h. */
#ifndef MS_ST_DTYPE_H
#define MS_ST_DTYPE_H

#include <stddef.h>

/* Every dtype of the safetensors spec (22). The reader validates files with
 * any of them; medserve computes only with those st_dtype_supported says
 * (F32 F16 BF16 I8 U8 I32 I64); consumers call st_tensor_require_dtype. */
typedef enum st_dtype {
    ST_BOOL,
    ST_U8,
    ST_I8,
    ST_F8_E5M2,
    ST_F8_E4M3,
    ST_I16,
    ST_U16,
    ST_F16,
    ST_BF16,
    ST_I32,
    ST_U32,
    ST_F32,
    ST_I64,
    ST_U64,
    ST_F64,
    ST_F8_E8M0,
    ST_F8_E4M3FNUZ,
    ST_F8_E5M2FNUZ,
    ST_C64,
    ST_F4,
    ST_F6_E2M3,
    ST_F6_E3M2,
    ST_DTYPE_COUNT
} st_dtype;

/* "F32" -> ST_F32; returns -1 for an unknown name. */
int st_dtype_parse(const char *name);
const char *st_dtype_name(st_dtype t);
size_t st_dtype_size(st_dtype t);   /* bytes per element; 0 for sub-byte F4/F6 */
unsigned st_dtype_bits(st_dtype t); /* bits per element (4, 6, 8, 16, 32, 64) */
/* 1 for the dtypes medserve computes with: F32 F16 BF16 I8 U8 I32 I64. */
int st_dtype_supported(st_dtype t);

#endif
