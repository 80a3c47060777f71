/* st.h: safetensors files and directories. Reader: mmap, strict validation
 * (reference.md §5.2), zero-copy tensor views, sharded checkpoints through
 * model.safetensors.index.json. Writer: streaming, deterministic, atomic.
 * Does not interpret tensor names (that is model.c / merge). */
#ifndef MS_ST_H
#define MS_ST_H

#include <stddef.h>
#include <stdint.h>

#include "medserve.h"

#define ST_MAX_HEADER 100000000ull /* bytes, as the reference reader */
#define ST_MAX_TENSORS 65536
#define ST_MAX_DIMS 8

typedef enum st_dtype {
    ST_BOOL, ST_U8, ST_I8, ST_F8_E5M2, ST_F8_E4M3, ST_I16, ST_U16, ST_F16, ST_BF16,
    ST_I32, ST_U32, ST_F32, ST_I64, ST_U64, ST_F64,
    ST_DTYPE_COUNT
} st_dtype;

/* "F32" -> ST_F32; returns -1 for an unknown name. */
int st_dtype_parse(const char *name);
const char *st_dtype_name(st_dtype t);
size_t st_dtype_size(st_dtype t); /* bytes per element */

typedef struct st_tensor {
    const char *name;       /* owned by the st_file */
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    uint64_t numel;
    const void *data;       /* into the mmap; only element-aligned */
    uint64_t nbytes;
    const char *path;       /* file it lives in */
} st_tensor;

typedef struct st_file st_file;

/* Opens and validates one .safetensors file (refuses pickle .bin/.pt by name
 * and by magic). Errors name the path and the check. */
ms_status st_file_open(const char *path, st_file **out, ms_error *err);
void st_file_close(st_file *f);
size_t st_file_count(const st_file *f);
const st_tensor *st_file_get(const st_file *f, size_t i);
const st_tensor *st_file_find(const st_file *f, const char *name);
/* __metadata__ value for key, or NULL. */
const char *st_file_meta(const st_file *f, const char *key);

/* A model directory: model.safetensors, or model.safetensors.index.json and
 * its shards (plain basenames, each tensor in exactly the shard the map says). */
typedef struct st_set st_set;

ms_status st_set_open(const char *dir, st_set **out, ms_error *err);
void st_set_close(st_set *s);
size_t st_set_count(const st_set *s);
const st_tensor *st_set_get(const st_set *s, size_t i);
const st_tensor *st_set_find(const st_set *s, const char *name);

/* ---- writer --------------------------------------------------------- */

typedef struct st_wtensor {
    const char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
} st_wtensor;

typedef struct st_writer st_writer;

/* Plans a file: the header (sorted as reference.md §5.3, padded to 8 bytes,
 * __metadata__ {"format":"pt"} plus meta_kv pairs) is fixed up front. Data is
 * then streamed with st_writer_write in the writer's tensor order
 * (st_writer_order). Writes to a temp file beside path. */
ms_status st_writer_open(const char *path, const st_wtensor *tensors, size_t n,
                         const char *const *meta_kv, size_t n_meta, st_writer **out,
                         ms_error *err);
/* Index into the tensors array given to open, in file order: the i-th tensor
 * whose bytes must be written next. */
size_t st_writer_order(const st_writer *w, size_t i);
/* Appends bytes of the current tensor; tensors must be completed in order. */
ms_status st_writer_write(st_writer *w, const void *data, size_t nbytes, ms_error *err);
/* Checks every byte was written, fsyncs, renames into place, fsyncs the dir. */
ms_status st_writer_finish(st_writer *w, ms_error *err);
/* Abandons the file (removes the temp file). NULL-safe; no-op after finish. */
void st_writer_abort(st_writer *w);

/* Total bytes the file will have (header + data); valid after open. */
uint64_t st_writer_size(const st_writer *w);

#endif
