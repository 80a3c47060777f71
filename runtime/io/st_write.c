/* st_write.c: the streaming safetensors writer. The header is planned up
 * front exactly as the reference writer lays it out (docs/numerics.md §5.3):
 * tensors sorted by dtype (the safetensors Dtype order, widest first) then
 * by name, compact JSON with __metadata__ first ({"format":"pt"} then the
 * caller's pairs in their order), padded with spaces to a multiple of 8.
 * With only {"format":"pt"} the bytes equal safetensors' save_file output.
 * Data is then streamed tensor by tensor; nothing but a 1 MiB buffer is
 * held. The file is atomic: a temp file in the target directory, fsync,
 * rename, fsync of the directory; any failure removes the temp file and a
 * failed fsync is never retried.
 *
 * Does not: shard or write index files (st_shard.c). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/err.h"
#include "base/fsutil.h"
#include "base/strbuf.h"
#include "io/st.h"

#define WBUF_CAP (1u << 20)

struct st_writer {
    char *path, *tmp;
    int fd;
    size_t n;
    size_t *order;    /* file position -> caller index */
    uint64_t *nbytes; /* per caller index */
    char **names;     /* per caller index (copies, for messages) */
    size_t cur;       /* file position of the tensor being written */
    uint64_t cur_done;
    uint64_t total; /* file size */
    uint8_t *buf;
    size_t buf_len;
    int failed, finished;
};

static st_fault_fn g_fault_fn;
static void *g_fault_user;

void st_set_fault_hook(st_fault_fn fn, void *user)
{
    g_fault_fn = fn;
    g_fault_user = user;
}

/* Nonzero when the test hook asks the operation op to fail. */
static int fault(const char *op)
{
    if (g_fault_fn && g_fault_fn(op, g_fault_user)) {
        errno = EIO;
        return 1;
    }
    return 0;
}

/* Position of each dtype in the safetensors Dtype enum; the reference
 * writer orders tensors by it, largest first. */
static int dtype_rank(st_dtype t)
{
    static const st_dtype order[] = {ST_BOOL,    ST_F4,      ST_F6_E2M3, ST_F6_E3M2,     ST_U8,          ST_I8,
                                     ST_F8_E5M2, ST_F8_E4M3, ST_F8_E8M0, ST_F8_E4M3FNUZ, ST_F8_E5M2FNUZ, ST_I16,
                                     ST_U16,     ST_F16,     ST_BF16,    ST_I32,         ST_U32,         ST_F32,
                                     ST_C64,     ST_F64,     ST_I64,     ST_U64};
    for (int i = 0; i < (int)(sizeof order / sizeof *order); i++)
        if (order[i] == t) return i;
    return -1;
}

typedef struct sort_ctx {
    const st_wtensor *t;
} sort_ctx;

static int cmp_plan(const void *a, const void *b, void *ctx)
{
    const st_wtensor *t = ((const sort_ctx *)ctx)->t;
    const st_wtensor *x = &t[*(const size_t *)a], *y = &t[*(const size_t *)b];
    int rx = dtype_rank(x->dtype), ry = dtype_rank(y->dtype);
    if (rx != ry) return ry - rx;
    return strcmp(x->name, y->name);
}

static void sb_u64(strbuf *b, uint64_t v)
{
    char tmp[24];
    int k = snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)v);
    sb_append(b, tmp, (size_t)k);
}

/* 1 if s is valid UTF-8 (no overlongs, surrogates or values above U+10FFFF). */
static int utf8_ok(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned c = *p, k, min;
        if (c < 0x80) {
            p++;
            continue;
        }
        if ((c & 0xE0) == 0xC0) {
            k = 1;
            min = 0x80;
            c &= 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            k = 2;
            min = 0x800;
            c &= 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            k = 3;
            min = 0x10000;
            c &= 0x07;
        } else return 0;
        for (unsigned i = 1; i <= k; i++) {
            if ((p[i] & 0xC0) != 0x80) return 0;
            c = (c << 6) | (p[i] & 0x3F);
        }
        if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return 0;
        p += k + 1;
    }
    return 1;
}

/* ---- raw I/O ---------------------------------------------------------- */

/* Asks the fault hook ("write"), then writes all of data (fs_write_all). */
static int write_all(int fd, const void *data, size_t n)
{
    if (fault("write")) return -1;
    return fs_write_all(fd, data, n);
}

static ms_status flush_buf(st_writer *w, ms_error *err)
{
    if (w->buf_len && write_all(w->fd, w->buf, w->buf_len) != 0) {
        w->failed = 1;
        return ms_seterr(err, MS_ERR_IO, "%s: write failed: %s", w->tmp, strerror(errno));
    }
    w->buf_len = 0;
    return MS_OK;
}

/* Appends to the output through the buffer (large writes go straight through). */
static ms_status out_bytes(st_writer *w, const void *data, size_t n, ms_error *err)
{
    if (w->buf_len + n <= WBUF_CAP) {
        memcpy(w->buf + w->buf_len, data, n);
        w->buf_len += n;
        return MS_OK;
    }
    ms_status s = flush_buf(w, err);
    if (s) return s;
    if (n >= WBUF_CAP) {
        if (write_all(w->fd, data, n) != 0) {
            w->failed = 1;
            return ms_seterr(err, MS_ERR_IO, "%s: write failed: %s", w->tmp, strerror(errno));
        }
        return MS_OK;
    }
    memcpy(w->buf, data, n);
    w->buf_len = n;
    return MS_OK;
}

/* Splits path into a malloc'd directory ("." when none) and base name. */
static int split_path(const char *path, char **dir, const char **base)
{
    const char *slash = strrchr(path, '/');
    if (!slash) {
        *dir = strdup(".");
        *base = path;
    } else {
        size_t k = (size_t)(slash - path);
        *dir = malloc(k + 2);
        if (*dir) {
            if (k == 0) strcpy(*dir, "/");
            else {
                memcpy(*dir, path, k);
                (*dir)[k] = 0;
            }
        }
        *base = slash + 1;
    }
    return *dir != NULL;
}

/* Asks the fault hook ("fsyncdir"), then fsyncs the directory (fs_fsync_dir). */
ms_status st_fsync_dir(const char *dir, ms_error *err)
{
    if (fault("fsyncdir"))
        return ms_seterr(err, MS_ERR_IO, "%s: fsync of the directory failed: %s", dir, strerror(errno));
    return fs_fsync_dir(dir, err);
}

/* ---- planning --------------------------------------------------------- */

/* Builds the padded header (length prefix included) for the planned order. */
static ms_status build_header(st_writer *w, const st_wtensor *t, const char *const *meta_kv, size_t n_meta, strbuf *hb,
                              ms_error *err)
{
    sb_append(hb, "\0\0\0\0\0\0\0\0", 8);
    sb_puts(hb, "{\"__metadata__\":{\"format\":\"pt\"");
    for (size_t i = 0; i < n_meta; i++) {
        sb_append(hb, ",", 1);
        sb_json_string(hb, meta_kv[2 * i]);
        sb_append(hb, ":", 1);
        sb_json_string(hb, meta_kv[2 * i + 1]);
    }
    sb_append(hb, "}", 1);
    uint64_t off = 0;
    for (size_t k = 0; k < w->n; k++) {
        const st_wtensor *x = &t[w->order[k]];
        sb_append(hb, ",", 1);
        sb_json_string(hb, x->name);
        sb_puts(hb, ":{\"dtype\":\"");
        sb_puts(hb, st_dtype_name(x->dtype));
        sb_puts(hb, "\",\"shape\":[");
        for (int d = 0; d < x->ndim; d++) {
            if (d) sb_append(hb, ",", 1);
            sb_u64(hb, (uint64_t)x->shape[d]);
        }
        sb_puts(hb, "],\"data_offsets\":[");
        sb_u64(hb, off);
        sb_append(hb, ",", 1);
        off += w->nbytes[w->order[k]];
        sb_u64(hb, off);
        sb_puts(hb, "]}");
    }
    sb_append(hb, "}", 1);
    while ((hb->n - 8) % 8) sb_append(hb, " ", 1);
    if (hb->oom) return ms_seterr(err, MS_ERR_NOMEM, "%s: out of memory building the header", w->path);
    uint64_t hlen = hb->n - 8;
    if (hlen > ST_MAX_HEADER)
        return ms_seterr(err, MS_ERR_INVALID, "%s: header would be %llu bytes, over the %llu-byte limit", w->path,
                         (unsigned long long)hlen, ST_MAX_HEADER);
    for (int i = 0; i < 8; i++) hb->p[i] = (char)((hlen >> (8 * i)) & 0xff);
    if (__builtin_add_overflow((uint64_t)hb->n, off, &w->total))
        return ms_seterr(err, MS_ERR_INVALID, "%s: file size overflows", w->path);
    return MS_OK;
}

/* Checks the caller's tensors and metadata; fills w->nbytes. */
static ms_status check_input(st_writer *w, const st_wtensor *t, const char *const *meta_kv, size_t n_meta,
                             ms_error *err)
{
    const char *p = w->path;
    if (w->n > ST_MAX_TENSORS)
        return ms_seterr(err, MS_ERR_INVALID, "%s: %zu tensors, more than %d", p, w->n, ST_MAX_TENSORS);
    for (size_t i = 0; i < n_meta; i++) {
        const char *k = meta_kv[2 * i], *v = meta_kv[2 * i + 1];
        if (!k || !v || !utf8_ok(k) || !utf8_ok(v))
            return ms_seterr(err, MS_ERR_INVALID, "%s: metadata pair %zu is NULL or not UTF-8", p, i);
        if (strcmp(k, "format") == 0)
            return ms_seterr(err, MS_ERR_INVALID, "%s: metadata key \"format\" is written by the writer", p);
        for (size_t j = 0; j < i; j++)
            if (strcmp(meta_kv[2 * j], k) == 0)
                return ms_seterr(err, MS_ERR_INVALID, "%s: duplicate metadata key \"%.100s\"", p, k);
    }
    for (size_t i = 0; i < w->n; i++) {
        const st_wtensor *x = &t[i];
        if (!x->name || !utf8_ok(x->name) || strcmp(x->name, "__metadata__") == 0)
            return ms_seterr(err, MS_ERR_INVALID, "%s: tensor %zu has no valid name", p, i);
        if ((unsigned)x->dtype >= ST_DTYPE_COUNT)
            return ms_seterr(err, MS_ERR_INVALID, "%s: tensor \"%.200s\": bad dtype %d", p, x->name, (int)x->dtype);
        if (x->ndim < 0 || x->ndim > ST_MAX_DIMS)
            return ms_seterr(err, MS_ERR_INVALID, "%s: tensor \"%.200s\": ndim %d", p, x->name, x->ndim);
        uint64_t numel = 1, bits;
        for (int d = 0; d < x->ndim; d++) {
            if (x->shape[d] < 0 || __builtin_mul_overflow(numel, (uint64_t)x->shape[d], &numel))
                return ms_seterr(err, MS_ERR_INVALID, "%s: tensor \"%.200s\": bad or overflowing shape", p, x->name);
        }
        if (__builtin_mul_overflow(numel, (uint64_t)st_dtype_bits(x->dtype), &bits) || bits % 8)
            return ms_seterr(err, MS_ERR_INVALID, "%s: tensor \"%.200s\": size overflows or is not whole bytes", p,
                             x->name);
        w->nbytes[i] = bits / 8;
        if (!(w->names[i] = strdup(x->name))) return ms_seterr(err, MS_ERR_NOMEM, "%s: out of memory", p);
    }
    return MS_OK;
}

static int cmp_name_ptr(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Skips finished (and empty) tensors at the write position. */
static void advance(st_writer *w)
{
    while (w->cur < w->n && w->cur_done == w->nbytes[w->order[w->cur]]) {
        w->cur++;
        w->cur_done = 0;
    }
}

ms_status st_writer_open(const char *path, const st_wtensor *tensors, size_t n, const char *const *meta_kv,
                         size_t n_meta, st_writer **out, ms_error *err)
{
    *out = NULL;
    if (!path || (n && !tensors) || (n_meta && !meta_kv))
        return ms_seterr(err, MS_ERR_INVALID, "st_writer_open: NULL argument");
    st_writer *w = calloc(1, sizeof *w);
    if (!w) return ms_seterr(err, MS_ERR_NOMEM, "%s: out of memory", path);
    w->fd = -1;
    w->n = n;
    strbuf hb = {0};
    char *dir = NULL, **sorted = NULL;
    ms_status s;
    w->path = strdup(path);
    w->order = calloc(n ? n : 1, sizeof *w->order);
    w->nbytes = calloc(n ? n : 1, sizeof *w->nbytes);
    w->names = calloc(n ? n : 1, sizeof *w->names);
    w->buf = malloc(WBUF_CAP);
    sorted = calloc(n ? n : 1, sizeof *sorted);
    if (!w->path || !w->order || !w->nbytes || !w->names || !w->buf || !sorted) {
        s = ms_seterr(err, MS_ERR_NOMEM, "%s: out of memory", path);
        goto fail;
    }
    s = check_input(w, tensors, meta_kv, n_meta, err);
    if (s) goto fail;
    memcpy(sorted, w->names, n * sizeof *sorted);
    qsort(sorted, n, sizeof *sorted, cmp_name_ptr);
    for (size_t i = 1; i < n; i++)
        if (strcmp(sorted[i - 1], sorted[i]) == 0) {
            s = ms_seterr(err, MS_ERR_INVALID, "%s: duplicate tensor name \"%.200s\"", path, sorted[i]);
            goto fail;
        }
    for (size_t i = 0; i < n; i++) w->order[i] = i;
    sort_ctx ctx = {tensors};
    qsort_r(w->order, n, sizeof *w->order, cmp_plan, &ctx);
    s = build_header(w, tensors, meta_kv, n_meta, &hb, err);
    if (s) goto fail;
    const char *base;
    if (!split_path(path, &dir, &base)) {
        s = ms_seterr(err, MS_ERR_NOMEM, "%s: out of memory", path);
        goto fail;
    }
    size_t tl = strlen(dir) + strlen(base) + 32;
    w->tmp = malloc(tl);
    if (!w->tmp) {
        s = ms_seterr(err, MS_ERR_NOMEM, "%s: out of memory", path);
        goto fail;
    }
    snprintf(w->tmp, tl, "%s/.%s.tmp-XXXXXX", dir, base);
    if (fault("open") || (w->fd = mkostemp(w->tmp, O_CLOEXEC)) < 0) {
        s = ms_seterr(err, MS_ERR_IO, "%s: cannot create a temp file in %s: %s", path, dir, strerror(errno));
        free(w->tmp);
        w->tmp = NULL;
        goto fail;
    }
    if (fchmod(w->fd, 0644) != 0) {
        s = ms_seterr(err, MS_ERR_IO, "%s: fchmod failed: %s", w->tmp, strerror(errno));
        goto fail;
    }
    s = out_bytes(w, hb.p, hb.n, err);
    if (s) goto fail;
    advance(w);
    free(hb.p);
    free(dir);
    free(sorted);
    *out = w;
    return MS_OK;
fail:
    free(hb.p);
    free(dir);
    free(sorted);
    st_writer_abort(w);
    return s;
}

size_t st_writer_order(const st_writer *w, size_t i)
{
    return w && i < w->n ? w->order[i] : (size_t)-1;
}

uint64_t st_writer_size(const st_writer *w)
{
    return w ? w->total : 0;
}

size_t st_writer_current(const st_writer *w)
{
    return w && w->cur < w->n ? w->order[w->cur] : (size_t)-1;
}

ms_status st_writer_write(st_writer *w, const void *data, size_t nbytes, ms_error *err)
{
    if (!w) return ms_seterr(err, MS_ERR_INVALID, "st_writer_write: NULL writer");
    if (w->failed) return ms_seterr(err, MS_ERR_IO, "%s: writer already failed", w->path);
    if (!nbytes) return MS_OK;
    if (w->cur >= w->n) {
        w->failed = 1;
        return ms_seterr(err, MS_ERR_INVALID, "%s: %zu bytes written after the last tensor", w->path, nbytes);
    }
    size_t ci = w->order[w->cur];
    uint64_t left = w->nbytes[ci] - w->cur_done;
    if (nbytes > left) {
        w->failed = 1;
        return ms_seterr(err, MS_ERR_INVALID,
                         "%s: write of %zu bytes exceeds the %llu bytes left of tensor \"%.200s\" (tensors must be "
                         "written one at a time in st_writer_order)",
                         w->path, nbytes, (unsigned long long)left, w->names[ci]);
    }
    ms_status s = out_bytes(w, data, nbytes, err);
    if (s) return s;
    w->cur_done += nbytes;
    advance(w);
    return MS_OK;
}

ms_status st_writer_finish(st_writer *w, ms_error *err)
{
    if (!w) return ms_seterr(err, MS_ERR_INVALID, "st_writer_finish: NULL writer");
    ms_status s;
    char *dir = NULL;
    const char *base;
    if (w->failed || w->finished) {
        s = ms_seterr(err, MS_ERR_IO, "%s: writer already %s", w->path, w->finished ? "finished" : "failed");
        if (w->finished) return s;
        goto fail;
    }
    if (w->cur < w->n) {
        size_t ci = w->order[w->cur];
        s = ms_seterr(err, MS_ERR_INVALID, "%s: incomplete: tensor \"%.200s\" has %llu of %llu bytes", w->path,
                      w->names[ci], (unsigned long long)w->cur_done, (unsigned long long)w->nbytes[ci]);
        goto fail;
    }
    s = flush_buf(w, err);
    if (s) goto fail;
    if (fault("fsync") || fsync(w->fd) != 0) {
        s = ms_seterr(err, MS_ERR_IO, "%s: fsync failed: %s", w->tmp, strerror(errno));
        goto fail;
    }
    int fd = w->fd;
    w->fd = -1;
    if (close(fd) != 0) {
        s = ms_seterr(err, MS_ERR_IO, "%s: close failed: %s", w->tmp, strerror(errno));
        goto fail;
    }
    if (fault("rename") || rename(w->tmp, w->path) != 0) {
        s = ms_seterr(err, MS_ERR_IO, "%s: rename from %s failed: %s", w->path, w->tmp, strerror(errno));
        goto fail;
    }
    free(w->tmp);
    w->tmp = NULL; /* in place: nothing to remove any more */
    if (!split_path(w->path, &dir, &base)) {
        s = ms_seterr(err, MS_ERR_NOMEM, "%s: out of memory", w->path);
        goto fail;
    }
    s = st_fsync_dir(dir, err);
    free(dir);
    if (s) goto fail;
    w->finished = 1;
    return MS_OK;
fail:
    /* no retry (a failed fsync may have dropped the data): remove the temp */
    if (w->fd >= 0) close(w->fd);
    w->fd = -1;
    if (w->tmp) unlink(w->tmp);
    free(w->tmp);
    w->tmp = NULL;
    w->failed = 1;
    return s;
}

void st_writer_abort(st_writer *w)
{
    if (!w) return;
    if (w->fd >= 0) close(w->fd);
    if (w->tmp) unlink(w->tmp);
    for (size_t i = 0; i < w->n && w->names; i++) free(w->names[i]);
    free(w->names);
    free(w->tmp);
    free(w->path);
    free(w->order);
    free(w->nbytes);
    free(w->buf);
    free(w);
}
