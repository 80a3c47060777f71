/* st.c: one safetensors file. Maps it read-only, validates the header with
 * the checks of docs/numerics.md §5.2 (overflow-checked, stricter than the
 * reference reader: duplicate names, float-spelled integers and unknown
 * entry keys are refused), and hands out zero-copy tensor views. Also the
 * pickle refusal.
 *
 * Does not: read directories or index files (st_set.c), write files
 * (st_write.c), hold the dtype table (st_dtype.c) or the float conversions
 * (base/half.h), interpret tensor names, or check values (NaN/Inf).
 *
 * SIGBUS: the data is mmapped. The size is checked at open and the fd is
 * kept, but a file truncated by another process after open makes later reads
 * fault (SIGBUS), and a file rewritten in place gives other bytes. Never
 * modify a model while it is loaded: replace it by rename and restart.
 * st_file_recheck detects both cases cheaply. */
#include "io/st.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/err.h"
#include "base/half.h"
#include "base/json.h"

/* ---- reader ---------------------------------------------------------- */

struct st_file {
    char *path;
    int fd;
    uint8_t *map;
    uint64_t size;
    struct stat st; /* at open, for st_file_recheck */
    st_tensor *t;   /* n tensors in data order */
    size_t n;
    size_t *by_name; /* indices into t sorted by name */
    char **meta;     /* n_meta key, value pairs */
    size_t n_meta;
};

#define PICKLE_HELP                                                                    \
    "medserve loads safetensors only, because pickle files can run code when loaded. " \
    "Convert it once in Python: AutoModelForCausalLM.from_pretrained(DIR)"             \
    ".save_pretrained(OUT, safe_serialization=True) (or safetensors.torch.save_file("  \
    "torch.load(FILE, weights_only=True), \"model.safetensors\", metadata={\"format\":\"pt\"}))"

int st_is_pickle_name(const char *path)
{
    static const char *const sfx[] = {".bin", ".pt", ".pth", ".pkl", ".ckpt"};
    size_t n = strlen(path);
    for (size_t i = 0; i < sizeof sfx / sizeof *sfx; i++) {
        size_t k = strlen(sfx[i]);
        if (n >= k && strcmp(path + n - k, sfx[i]) == 0) return 1;
    }
    return 0;
}

ms_status st_refuse_pickle(const char *path, const char *why, ms_error *err)
{
    return ms_seterr(err, MS_ERR_UNSUPPORTED, "%s: %s (pickle / PyTorch format): %s", path, why, PICKLE_HELP);
}

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* Strictly positive 2^53: the largest integer a JSON double carries exactly. */
#define ST_MAX_JSON_INT 9007199254740992.0

/* Reads a JSON number that must be a non-negative integer. */
static ms_status get_uint(const cJSON *v, uint64_t *out, const char *path, const char *tname, const char *field,
                          size_t idx, ms_error *err)
{
    if (!cJSON_IsNumber(v))
        return ms_seterr(err, MS_ERR_FORMAT,
                         "%s: tensor \"%.200s\": %s entry %zu is not a non-negative integer (not a number)", path,
                         tname, field, idx);
    double d = v->valuedouble;
    if (d < 0)
        return ms_seterr(err, MS_ERR_FORMAT,
                         "%s: tensor \"%.200s\": %s entry %zu is not a non-negative integer (negative: %.17g)", path,
                         tname, field, idx, d);
    if (d > ST_MAX_JSON_INT)
        return ms_seterr(err, MS_ERR_FORMAT, "%s: tensor \"%.200s\": %s entry %zu is too large (%.17g is above 2^53)",
                         path, tname, field, idx, d);
    if (d != (double)(uint64_t)d)
        return ms_seterr(err, MS_ERR_FORMAT,
                         "%s: tensor \"%.200s\": %s entry %zu is not a non-negative integer (fractional: %.17g)", path,
                         tname, field, idx, d);
    *out = (uint64_t)d;
    return MS_OK;
}

/* Integer literals only: "1.0", "1e3", "-0" are refused even where cJSON
 * would read an integral double. Scans number tokens outside strings. */
static ms_status check_number_spelling(const char *h, size_t n, const char *path, ms_error *err)
{
    int in_str = 0, esc = 0;
    for (size_t i = 0; i < n; i++) {
        char c = h[i];
        if (in_str) {
            if (esc) esc = 0;
            else if (c == '\\') esc = 1;
            else if (c == '"') in_str = 0;
            continue;
        }
        if (c == '"') {
            in_str = 1;
            continue;
        }
        if (c == '-' || (c >= '0' && c <= '9')) {
            size_t j = i;
            int bad = (c == '-');
            while (j < n && (h[j] == '-' || h[j] == '+' || h[j] == '.' || h[j] == 'e' || h[j] == 'E' ||
                             (h[j] >= '0' && h[j] <= '9'))) {
                if (h[j] == '.' || h[j] == 'e' || h[j] == 'E' || h[j] == '+') bad = 1;
                j++;
            }
            if (j - i > 1 && h[i] == '0') bad = 1; /* leading zero */
            if (bad)
                return ms_seterr(err, MS_ERR_FORMAT,
                                 "%s: header: number \"%.*s\" at offset %zu is not a plain non-negative integer", path,
                                 (int)(j - i > 40 ? 40 : j - i), h + i, i);
            i = j - 1;
        }
    }
    return MS_OK;
}

static int cmp_by_name(const void *a, const void *b, void *ctx)
{
    const st_tensor *t = ctx;
    return strcmp(t[*(const size_t *)a].name, t[*(const size_t *)b].name);
}

static int cmp_by_offset(const void *a, const void *b)
{
    const st_tensor *x = a, *y = b;
    const uint8_t *xa = x->data, *ya = y->data;
    if (xa != ya) return xa < ya ? -1 : 1;
    if (x->nbytes != y->nbytes) return x->nbytes < y->nbytes ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* Parses one header entry into t (name already set); begin/end returned. */
static ms_status parse_entry(const cJSON *e, st_tensor *t, uint64_t *begin, uint64_t *end, const char *path,
                             ms_error *err)
{
    const char *nm = t->name;
    if (!cJSON_IsObject(e))
        return ms_seterr(err, MS_ERR_FORMAT, "%s: tensor \"%.200s\": entry is not an object", path, nm);
    for (const cJSON *k = e->child; k; k = k->next)
        if (strcmp(k->string, "dtype") && strcmp(k->string, "shape") && strcmp(k->string, "data_offsets"))
            return ms_seterr(err, MS_ERR_FORMAT, "%s: tensor \"%.200s\": unexpected key \"%.100s\"", path, nm,
                             k->string);
    const cJSON *dt = json_get(e, "dtype"), *sh = json_get(e, "shape"), *of = json_get(e, "data_offsets");
    if (!cJSON_IsString(dt))
        return ms_seterr(err, MS_ERR_FORMAT, "%s: tensor \"%.200s\": dtype missing or not a string", path, nm);
    int d = st_dtype_parse(dt->valuestring);
    if (d < 0)
        return ms_seterr(err, MS_ERR_FORMAT, "%s: tensor \"%.200s\": unknown dtype \"%.40s\"", path, nm,
                         dt->valuestring);
    t->dtype = (st_dtype)d;
    if (!cJSON_IsArray(sh))
        return ms_seterr(err, MS_ERR_FORMAT, "%s: tensor \"%.200s\": shape missing or not an array", path, nm);
    int nd = cJSON_GetArraySize(sh);
    if (nd > ST_MAX_DIMS)
        return ms_seterr(err, MS_ERR_FORMAT, "%s: tensor \"%.200s\": shape has %d dimensions, more than %d", path, nm,
                         nd, ST_MAX_DIMS);
    t->ndim = nd;
    uint64_t numel = 1;
    int i = 0;
    for (const cJSON *v = sh->child; v; v = v->next, i++) {
        uint64_t dim;
        ms_status s = get_uint(v, &dim, path, nm, "shape", (size_t)i, err);
        if (s) return s;
        t->shape[i] = (int64_t)dim;
        if (__builtin_mul_overflow(numel, dim, &numel))
            return ms_seterr(err, MS_ERR_FORMAT, "%s: tensor \"%.200s\": shape x dtype size overflows 64 bits", path,
                             nm);
    }
    t->numel = numel;
    uint64_t nbits;
    if (__builtin_mul_overflow(numel, (uint64_t)st_dtype_bits(t->dtype), &nbits))
        return ms_seterr(err, MS_ERR_FORMAT, "%s: tensor \"%.200s\": shape x dtype size overflows 64 bits", path, nm);
    if (nbits % 8)
        return ms_seterr(err, MS_ERR_FORMAT,
                         "%s: tensor \"%.200s\": %llu elements of %s are not a whole number of bytes", path, nm,
                         (unsigned long long)numel, st_dtype_name(t->dtype));
    t->nbytes = nbits / 8;
    if (!cJSON_IsArray(of) || cJSON_GetArraySize(of) != 2)
        return ms_seterr(err, MS_ERR_FORMAT,
                         "%s: tensor \"%.200s\": data_offsets missing or not an array of 2 integers", path, nm);
    ms_status s = get_uint(of->child, begin, path, nm, "data_offsets", 0, err);
    if (!s) s = get_uint(of->child->next, end, path, nm, "data_offsets", 1, err);
    if (s) return s;
    if (*begin > *end)
        return ms_seterr(err, MS_ERR_FORMAT, "%s: tensor \"%.200s\": data_offsets reversed: begin %llu > end %llu",
                         path, nm, (unsigned long long)*begin, (unsigned long long)*end);
    if (*end - *begin != t->nbytes)
        return ms_seterr(err, MS_ERR_FORMAT,
                         "%s: tensor \"%.200s\": byte size mismatch: shape x dtype gives %llu bytes but "
                         "data_offsets span %llu (end - begin)",
                         path, nm, (unsigned long long)t->nbytes, (unsigned long long)(*end - *begin));
    return MS_OK;
}

/* Parses and validates the header of f (mapped); fills f->t, f->meta. */
static ms_status parse_header(st_file *f, uint64_t hlen, ms_error *err)
{
    const char *path = f->path;
    const char *h = (const char *)f->map + 8;
    char what[600];
    snprintf(what, sizeof what, "%s: header", path);
    cJSON *root = json_parse_strict(h, (size_t)hlen, what, err);
    if (!root) return err ? err->status : MS_ERR_FORMAT;
    ms_status s = MS_OK;
    uint64_t data_size = f->size - 8 - hlen;
    if (!cJSON_IsObject(root)) {
        s = ms_seterr(err, MS_ERR_FORMAT, "%s: header is not a JSON object", path);
        goto out;
    }
    size_t n = 0;
    for (const cJSON *c = root->child; c; c = c->next) {
        if (strcmp(c->string, "__metadata__") == 0) {
            if (!cJSON_IsObject(c)) {
                s = ms_seterr(err, MS_ERR_FORMAT, "%s: __metadata__ is not an object", path);
                goto out;
            }
            for (const cJSON *m = c->child; m; m = m->next) {
                if (!cJSON_IsString(m)) {
                    s = ms_seterr(err, MS_ERR_FORMAT, "%s: __metadata__ value for \"%.100s\" is not a string", path,
                                  m->string);
                    goto out;
                }
                f->n_meta++;
            }
        } else if (++n > ST_MAX_TENSORS) {
            s = ms_seterr(err, MS_ERR_FORMAT, "%s: more than %d tensors in the header", path, ST_MAX_TENSORS);
            goto out;
        }
    }
    f->t = calloc(n ? n : 1, sizeof *f->t);
    f->meta = calloc(f->n_meta ? 2 * f->n_meta : 1, sizeof *f->meta);
    f->by_name = calloc(n ? n : 1, sizeof *f->by_name);
    if (!f->t || !f->meta || !f->by_name) {
        s = ms_seterr(err, MS_ERR_NOMEM, "%s: out of memory for %zu tensors", path, n);
        goto out;
    }
    size_t im = 0;
    for (const cJSON *c = root->child; c; c = c->next) {
        if (strcmp(c->string, "__metadata__") == 0) {
            for (const cJSON *m = c->child; m; m = m->next) {
                f->meta[2 * im] = strdup(m->string);
                f->meta[2 * im + 1] = strdup(m->valuestring);
                if (!f->meta[2 * im] || !f->meta[2 * im + 1]) {
                    s = ms_seterr(err, MS_ERR_NOMEM, "%s: out of memory", path);
                    goto out;
                }
                im++;
            }
            continue;
        }
        st_tensor *t = &f->t[f->n];
        t->name = strdup(c->string);
        t->path = f->path;
        if (!t->name) {
            s = ms_seterr(err, MS_ERR_NOMEM, "%s: out of memory", path);
            goto out;
        }
        f->n++;
        uint64_t b, e;
        s = parse_entry(c, t, &b, &e, path, err);
        if (s) goto out;
        if (e > data_size) {
            s = ms_seterr(err, MS_ERR_FORMAT,
                          "%s: tensor \"%.200s\": data_offsets [%llu, %llu] out of bounds: the data section "
                          "has %llu bytes",
                          path, t->name, (unsigned long long)b, (unsigned long long)e, (unsigned long long)data_size);
            goto out;
        }
        t->data = f->map + 8 + hlen + b; /* in bounds: e <= data_size */
    }
    s = check_number_spelling(h, (size_t)hlen, path, err);
    if (s) goto out;
    /* Exact tiling of the data section: sort by (begin, end). */
    qsort(f->t, f->n, sizeof *f->t, cmp_by_offset);
    const uint8_t *base = f->map + 8 + hlen;
    uint64_t pos = 0;
    for (size_t i = 0; i < f->n; i++) {
        uint64_t b = (uint64_t)((const uint8_t *)f->t[i].data - base);
        if (b < pos) {
            s = ms_seterr(err, MS_ERR_FORMAT,
                          "%s: tensor \"%.200s\": data_offsets overlap: begins at %llu before the previous "
                          "tensor \"%.200s\" ends at %llu",
                          path, f->t[i].name, (unsigned long long)b, f->t[i - 1].name, (unsigned long long)pos);
            goto out;
        }
        if (b > pos) {
            if (i == 0)
                s = ms_seterr(err, MS_ERR_FORMAT,
                              "%s: first tensor \"%.200s\" starts at data offset %llu, not 0 (hole at the start)", path,
                              f->t[i].name, (unsigned long long)b);
            else
                s = ms_seterr(err, MS_ERR_FORMAT,
                              "%s: hole in the data section: %llu unused bytes before tensor \"%.200s\"", path,
                              (unsigned long long)(b - pos), f->t[i].name);
            goto out;
        }
        pos = b + f->t[i].nbytes;
    }
    if (pos != data_size) {
        s = ms_seterr(err, MS_ERR_FORMAT,
                      "%s: trailing bytes: tensors end at data offset %llu but the file has %llu data bytes", path,
                      (unsigned long long)pos, (unsigned long long)data_size);
        goto out;
    }
    for (size_t i = 0; i < f->n; i++) f->by_name[i] = i;
    qsort_r(f->by_name, f->n, sizeof *f->by_name, cmp_by_name, f->t);
out:
    cJSON_Delete(root);
    return s;
}

ms_status st_file_open(const char *path, st_file **out, ms_error *err)
{
    *out = NULL;
    if (!path) return ms_seterr(err, MS_ERR_INVALID, "st_file_open: NULL path");
    if (st_is_pickle_name(path)) return st_refuse_pickle(path, "refusing a pickle weights file by its name", err);
    st_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        free(f);
        return ms_seterr(err, MS_ERR_NOMEM, "%s: out of memory", path);
    }
    f->fd = -1;
    ms_status s;
    f->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (f->fd < 0) {
        s = ms_seterr(err, errno == ENOENT ? MS_ERR_NOTFOUND : MS_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        goto fail;
    }
    if (fstat(f->fd, &f->st) != 0 || !S_ISREG(f->st.st_mode)) {
        s = ms_seterr(err, MS_ERR_IO, "%s: not a regular file", path);
        goto fail;
    }
    f->size = (uint64_t)f->st.st_size;
    if (f->size < 8) {
        s = ms_seterr(err, MS_ERR_FORMAT,
                      "%s: header length: file is %llu bytes, shorter than the 8-byte header length", path,
                      (unsigned long long)f->size);
        goto fail;
    }
    f->map = mmap(NULL, (size_t)f->size, PROT_READ, MAP_SHARED, f->fd, 0);
    if (f->map == MAP_FAILED) {
        f->map = NULL;
        s = ms_seterr(err, MS_ERR_IO, "%s: mmap of %llu bytes failed: %s", path, (unsigned long long)f->size,
                      strerror(errno));
        goto fail;
    }
    const uint8_t *b = f->map;
    uint64_t hlen = le64(b);
    int plausible = f->size > 8 && hlen >= 2 && hlen <= ST_MAX_HEADER && hlen <= f->size - 8 && b[8] == '{';
    int zip = b[0] == 'P' && b[1] == 'K' && b[2] == 3 && b[3] == 4;
    int pickle = b[0] == 0x80 && b[1] >= 2 && b[1] <= 5;
    if (!plausible && (zip || pickle)) {
        s = st_refuse_pickle(path,
                             zip ? "this is a zip archive (torch.save format), not safetensors"
                                 : "this is a Python pickle, not safetensors",
                             err);
        goto fail;
    }
    if (hlen < 2) {
        s = ms_seterr(err, MS_ERR_FORMAT, "%s: header length %llu is below the minimum of 2 bytes", path,
                      (unsigned long long)hlen);
        goto fail;
    }
    if (hlen > ST_MAX_HEADER) {
        s = ms_seterr(err, MS_ERR_FORMAT, "%s: header length %llu exceeds the limit of %llu bytes", path,
                      (unsigned long long)hlen, ST_MAX_HEADER);
        goto fail;
    }
    if (hlen > f->size - 8) {
        s = ms_seterr(err, MS_ERR_FORMAT,
                      "%s: header length %llu runs past the end of the file (%llu bytes after the length)", path,
                      (unsigned long long)hlen, (unsigned long long)(f->size - 8));
        goto fail;
    }
    if (b[8] != '{') {
        s = ms_seterr(err, MS_ERR_FORMAT, "%s: header does not start with '{'", path);
        goto fail;
    }
    s = parse_header(f, hlen, err);
    if (s) goto fail;
    *out = f;
    return MS_OK;
fail:
    st_file_close(f);
    return s;
}

void st_file_close(st_file *f)
{
    if (!f) return;
    for (size_t i = 0; i < f->n; i++) free((char *)f->t[i].name);
    for (size_t i = 0; i < 2 * f->n_meta && f->meta; i++) free(f->meta[i]);
    free(f->meta);
    free(f->t);
    free(f->by_name);
    if (f->map) munmap(f->map, (size_t)f->size);
    if (f->fd >= 0) close(f->fd);
    free(f->path);
    free(f);
}

size_t st_file_count(const st_file *f)
{
    return f ? f->n : 0;
}

const st_tensor *st_file_get(const st_file *f, size_t i)
{
    return f && i < f->n ? &f->t[i] : NULL;
}

const st_tensor *st_file_find(const st_file *f, const char *name)
{
    if (!f || !name) return NULL;
    size_t lo = 0, hi = f->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(f->t[f->by_name[mid]].name, name);
        if (c == 0) return &f->t[f->by_name[mid]];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

const char *st_file_meta(const st_file *f, const char *key)
{
    if (!f || !key) return NULL;
    for (size_t i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta[2 * i], key) == 0) return f->meta[2 * i + 1];
    return NULL;
}

const char *st_file_path(const st_file *f)
{
    return f ? f->path : NULL;
}

ms_status st_file_recheck(const st_file *f, ms_error *err)
{
    struct stat now;
    if (fstat(f->fd, &now) != 0) return ms_seterr(err, MS_ERR_IO, "%s: fstat failed: %s", f->path, strerror(errno));
    if ((uint64_t)now.st_size != f->size)
        return ms_seterr(err, MS_ERR_IO, "%s: file size changed from %llu to %llu bytes since it was opened", f->path,
                         (unsigned long long)f->size, (unsigned long long)now.st_size);
    if (now.st_mtim.tv_sec != f->st.st_mtim.tv_sec || now.st_mtim.tv_nsec != f->st.st_mtim.tv_nsec)
        return ms_seterr(err, MS_ERR_IO, "%s: file was modified since it was opened", f->path);
    struct stat by_path;
    if (stat(f->path, &by_path) != 0 || by_path.st_ino != f->st.st_ino || by_path.st_dev != f->st.st_dev)
        return ms_seterr(err, MS_ERR_IO, "%s: the path no longer names the file that was opened", f->path);
    return MS_OK;
}

ms_status st_tensor_require_dtype(const st_tensor *t, ms_error *err)
{
    if (st_dtype_supported(t->dtype)) return MS_OK;
    return ms_seterr(err, MS_ERR_UNSUPPORTED,
                     "%s: tensor \"%.200s\": unsupported dtype %s (medserve handles F32, F16, BF16, I8, U8, I32, I64)",
                     t->path ? t->path : "?", t->name, st_dtype_name(t->dtype));
}

float st_tensor_getf(const st_tensor *t, uint64_t i)
{
    const uint8_t *p = t->data;
    if (i >= t->numel) return 0.0f;
    switch (t->dtype) {
    case ST_F32: {
        float v;
        memcpy(&v, p + 4 * i, 4);
        return v;
    }
    case ST_BF16: {
        uint16_t v;
        memcpy(&v, p + 2 * i, 2);
        return half_bf16_to_f32(v);
    }
    case ST_F16: {
        uint16_t v;
        memcpy(&v, p + 2 * i, 2);
        return half_f16_to_f32(v);
    }
    case ST_I8: return (float)(int8_t)p[i];
    case ST_U8: return (float)p[i];
    case ST_I32: {
        int32_t v;
        memcpy(&v, p + 4 * i, 4);
        return (float)v;
    }
    case ST_I64: {
        int64_t v;
        memcpy(&v, p + 8 * i, 8);
        return (float)v;
    }
    default: return 0.0f;
    }
}

void st_tensor_release(const st_tensor *t)
{
    if (!t || !t->nbytes) return;
    long pg = sysconf(_SC_PAGESIZE);
    uintptr_t a = (uintptr_t)t->data, e = a + (uintptr_t)t->nbytes;
    a &= ~(uintptr_t)(pg - 1);
    e = (e + (uintptr_t)pg - 1) & ~(uintptr_t)(pg - 1);
    madvise((void *)a, e - a, MADV_DONTNEED);
}
