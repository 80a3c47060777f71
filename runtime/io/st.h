/* st.h: safetensors files and directories. Reader: mmap, strict validation
 * (docs/numerics.md §5.2), zero-copy tensor views, sharded checkpoints through
 * model.safetensors.index.json. Writer: streaming, deterministic, atomic.
 * Does not interpret tensor names (that is model.c / merge).
 * Implemented in st.c (one file), st_set.c (directories), st_write.c
 * (writer); the dtype enum and table are st_dtype.h / st_dtype.c (included
 * here), bf16/f16 value conversions base/half.h; shard planning and index
 * files are in st_shard.h.
 *
 * Lifetimes: tensor views (names, data) live until their st_file / st_set
 * is closed. The data is mmapped: a file truncated after open makes reads
 * fault with SIGBUS and a file rewritten in place changes the bytes, so
 * replace models by rename and restart; st_file_recheck detects both. */
#ifndef MS_ST_H
#define MS_ST_H

#include <stddef.h>
#include <stdint.h>

#include "io/st_dtype.h"
#include "medserve.h"

#define ST_MAX_HEADER 100000000ull /* bytes, as the reference reader */
#define ST_MAX_TENSORS 65536
#define ST_MAX_DIMS 8

typedef struct st_tensor {
    const char *name; /* owned by the st_file */
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    uint64_t numel;
    const void *data; /* into the mmap; only element-aligned */
    uint64_t nbytes;
    const char *path; /* file it lives in */
} st_tensor;

typedef struct st_file st_file;

/* 1 if path ends in a pickle weights suffix (.bin .pt .pth .pkl .ckpt). */
int st_is_pickle_name(const char *path);
/* Fills err with the refusal of a pickle file (why + how to convert to
 * safetensors) and returns MS_ERR_UNSUPPORTED. */
ms_status st_refuse_pickle(const char *path, const char *why, ms_error *err);

/* Opens and validates one .safetensors file (refuses pickle .bin/.pt by name
 * and by magic). Errors name the path and the check. */
ms_status st_file_open(const char *path, st_file **out, ms_error *err);
void st_file_close(st_file *f);
size_t st_file_count(const st_file *f);
const st_tensor *st_file_get(const st_file *f, size_t i);
const st_tensor *st_file_find(const st_file *f, const char *name);
/* __metadata__ value for key, or NULL. */
const char *st_file_meta(const st_file *f, const char *key);
const char *st_file_path(const st_file *f);
/* Re-checks the open file against its state at open (size, inode, mtime):
 * a file truncated or replaced under the mmap would raise SIGBUS or give
 * other bytes on access, so long-running callers check before trusting it. */
ms_status st_file_recheck(const st_file *f, ms_error *err);

/* Errors "FILE: tensor NAME: unsupported dtype X (...)" unless
 * st_dtype_supported. */
ms_status st_tensor_require_dtype(const st_tensor *t, ms_error *err);
/* Element i (< numel) as float for F32/F16/BF16/I8/U8/I32/I64, loaded with
 * memcpy (data is only element-aligned); 0 for other dtypes. */
float st_tensor_getf(const st_tensor *t, uint64_t i);
/* Tells the kernel the tensor's pages are no longer needed (MADV_DONTNEED on
 * the whole pages it covers); later reads fault them in again from the file. */
void st_tensor_release(const st_tensor *t);

/* A model directory: model.safetensors, or model.safetensors.index.json and
 * its shards (plain basenames, each tensor in exactly the shard the map says).
 * When both exist, model.safetensors is used, as transformers does, and
 * st_set_note says so. A path to a single .safetensors file also works. */
typedef struct st_set st_set;

ms_status st_set_open(const char *dir, st_set **out, ms_error *err);
void st_set_close(st_set *s);
size_t st_set_count(const st_set *s);
/* Tensors sorted by name (byte order). */
const st_tensor *st_set_get(const st_set *s, size_t i);
const st_tensor *st_set_find(const st_set *s, const char *name);
/* Files of the set: 1 for a single file, else the shards sorted by name. */
size_t st_set_nfiles(const st_set *s);
const st_file *st_set_file(const st_set *s, size_t i);
/* A warning for the caller to show (e.g. which weights file was chosen when
 * both kinds exist), or NULL. */
const char *st_set_note(const st_set *s);

/* ---- writer --------------------------------------------------------- */

typedef struct st_wtensor {
    const char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
} st_wtensor;

typedef struct st_writer st_writer;

/* Plans a file: the header (sorted as docs/numerics.md §5.3, padded to 8 bytes,
 * __metadata__ {"format":"pt"} plus meta_kv pairs) is fixed up front. Data is
 * then streamed with st_writer_write in the writer's tensor order
 * (st_writer_order). Writes to a temp file beside path.
 * meta_kv holds n_meta pairs: meta_kv[2i] key, meta_kv[2i+1] value ("format"
 * is reserved). Lifecycle: open, write..., finish, then always
 * st_writer_abort, which frees the writer (and removes the temp file unless
 * finish succeeded). Names are copied; tensors need not outlive open. */
ms_status st_writer_open(const char *path, const st_wtensor *tensors, size_t n, const char *const *meta_kv,
                         size_t n_meta, st_writer **out, ms_error *err);
/* Index into the tensors array given to open, in file order: the i-th tensor
 * whose bytes must be written next. */
size_t st_writer_order(const st_writer *w, size_t i);
/* Caller index of the tensor whose bytes are expected next ((size_t)-1 when
 * all are written). Zero-size tensors never need a write. */
size_t st_writer_current(const st_writer *w);
/* Appends bytes of the current tensor; a write may not run past the end of
 * the current tensor (tensors are completed one at a time, in order). */
ms_status st_writer_write(st_writer *w, const void *data, size_t nbytes, ms_error *err);
/* Checks every byte was written, fsyncs, renames into place, fsyncs the dir.
 * On failure the temp file is removed (a failed fsync is never retried). */
ms_status st_writer_finish(st_writer *w, ms_error *err);
/* Frees the writer; before a successful finish it also removes the temp
 * file, so the target keeps its previous content. NULL-safe. */
void st_writer_abort(st_writer *w);

/* fsyncs a directory (after a rename into it). */
ms_status st_fsync_dir(const char *dir, ms_error *err);

/* Test hook for fault injection: when set, fn is asked before each I/O step
 * of the writers ("open", "write", "fsync", "rename", "fsyncdir") and a
 * nonzero return makes that step fail with EIO. Process-wide; tests only. */
typedef int (*st_fault_fn)(const char *op, void *user);
void st_set_fault_hook(st_fault_fn fn, void *user);

/* Total bytes the file will have (header + data); valid after open. */
uint64_t st_writer_size(const st_writer *w);

#endif
