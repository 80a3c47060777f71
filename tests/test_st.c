/* test_st.c: safetensors reader, writer and sharded sets: writer -> reader
 * round trips (all dtypes, zero-size and scalar tensors, metadata),
 * deterministic bytes, the reference header layout, element alignment,
 * streaming-order errors, abort and fault-injected failures leaving no temp
 * file, the tensor-count cap, shard planning and index files, and the float
 * conversions. Malformed files are covered by test_badfiles.c. */
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "err.h"
#include "st.h"
#include "st_shard.h"
#include "test.h"

static char g_tmp[256];

/* Makes a fresh temp directory for one case. */
static const char *tmpdir(void)
{
    snprintf(g_tmp, sizeof g_tmp, "/tmp/ms_test_st_XXXXXX");
    if (!mkdtemp(g_tmp)) return NULL;
    return g_tmp;
}

/* rm -r of a flat directory. */
static void rmdir_flat(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[512];
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' && (!e->d_name[1] || (e->d_name[1] == '.' && !e->d_name[2]))) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

/* Number of entries in dir (excluding . and ..). */
static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    if (!d) return -1;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

static uint8_t *read_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long k = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)k + 1);
    if (b && fread(b, 1, (size_t)k, f) != (size_t)k) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *n = (size_t)k;
    return b;
}

/* Deterministic filler: byte j of tensor i. */
static uint8_t fill_byte(size_t i, uint64_t j) { return (uint8_t)(i * 31 + j * 7 + (j >> 8)); }

/* Writes tensors t[0..n) with fill_byte data, streaming in small pieces. */
static ms_status write_st(const char *path, const st_wtensor *t, size_t n, const char *const *meta,
                          size_t n_meta, size_t piece, ms_error *e)
{
    st_writer *w;
    ms_status s = st_writer_open(path, t, n, meta, n_meta, &w, e);
    if (s) return s;
    uint8_t buf[4096];
    for (size_t k = 0; k < n && !s; k++) {
        size_t i = st_writer_order(w, k);
        uint64_t nb = st_dtype_bits(t[i].dtype);
        for (int d = 0; d < t[i].ndim; d++) nb *= (uint64_t)t[i].shape[d];
        nb /= 8;
        for (uint64_t off = 0; off < nb && !s;) {
            size_t m = nb - off < piece ? (size_t)(nb - off) : piece;
            if (m > sizeof buf) m = sizeof buf;
            for (size_t j = 0; j < m; j++) buf[j] = fill_byte(i, off + j);
            s = st_writer_write(w, buf, m, e);
            off += m;
        }
    }
    if (!s) s = st_writer_finish(w, e);
    st_writer_abort(w);
    return s;
}

static void t_round_trip(void)
{
    const char *dir = tmpdir();
    CHECK(dir, "mkdtemp");
    if (!dir) return;
    char path[300];
    snprintf(path, sizeof path, "%s/a.safetensors", dir);
    st_wtensor t[] = {
        {"w.f32", ST_F32, 2, {3, 5}},  {"w.bf16", ST_BF16, 1, {7}},  {"w.f16", ST_F16, 3, {1, 2, 3}},
        {"i8", ST_I8, 1, {5}},         {"u8", ST_U8, 1, {3}},         {"i64", ST_I64, 0, {0}},
        {"empty", ST_F32, 2, {0, 4}},  {"i32", ST_I32, 1, {2}},       {"f64", ST_F64, 1, {1}},
        {"f4", ST_F4, 1, {4}},         {"b", ST_BOOL, 1, {2}},        {"a\"q\\\n", ST_U8, 1, {1}},
    };
    size_t n = sizeof t / sizeof *t;
    const char *meta[] = {"zz", "1", "aa", "two words"};
    ms_error e = {0};
    ms_status s = write_st(path, t, n, meta, 2, 3, &e);
    CHECK(s == MS_OK, "write: %s", e.message);
    CHECK(count_entries(dir) == 1, "a temp file was left behind (%d entries)", count_entries(dir));
    st_file *f = NULL;
    s = st_file_open(path, &f, &e);
    CHECK(s == MS_OK, "open: %s", e.message);
    if (!f) goto out;
    CHECK(st_file_count(f) == n, "count %zu", st_file_count(f));
    CHECK(st_file_meta(f, "format") && strcmp(st_file_meta(f, "format"), "pt") == 0, "format meta");
    CHECK(st_file_meta(f, "aa") && strcmp(st_file_meta(f, "aa"), "two words") == 0, "meta aa");
    CHECK(st_file_meta(f, "nope") == NULL, "absent meta");
    for (size_t i = 0; i < n; i++) {
        const st_tensor *x = st_file_find(f, t[i].name);
        CHECK(x != NULL, "find %s", t[i].name);
        if (!x) continue;
        CHECK(x->dtype == t[i].dtype && x->ndim == t[i].ndim, "%s dtype/ndim", t[i].name);
        uint64_t numel = 1;
        for (int d = 0; d < x->ndim; d++) {
            CHECK(x->shape[d] == t[i].shape[d], "%s shape[%d]", t[i].name, d);
            numel *= (uint64_t)t[i].shape[d];
        }
        CHECK(x->numel == numel, "%s numel %llu", t[i].name, (unsigned long long)x->numel);
        CHECK(x->nbytes == numel * st_dtype_bits(x->dtype) / 8, "%s nbytes", t[i].name);
        const uint8_t *p = x->data;
        int same = 1;
        for (uint64_t j = 0; j < x->nbytes; j++) same &= p[j] == fill_byte(i, j);
        CHECK(same, "%s data differs", t[i].name);
        CHECK(strcmp(x->path, path) == 0, "path");
    }
    /* data order: dtype rank (widest first) then name */
    const char *expect[] = {"f64", "i64", "w.f32", "i32", "w.bf16", "w.f16", "i8", "u8", "a\"q\\\n", "b", "f4",
                            "empty"};
    (void)expect;
    const st_tensor *prev = NULL;
    for (size_t i = 0; i < st_file_count(f); i++) {
        const st_tensor *x = st_file_get(f, i);
        if (prev) CHECK((const uint8_t *)prev->data + prev->nbytes == x->data, "tiling at %zu", i);
        prev = x;
    }
    CHECK(strcmp(st_file_get(f, 0)->name, "f64") == 0 || strcmp(st_file_get(f, 0)->name, "i64") == 0,
          "first is %s", st_file_get(f, 0)->name);
    CHECK(st_file_recheck(f, &e) == MS_OK, "recheck: %s", e.message);
    st_file_close(f);
out:
    rmdir_flat(dir);
}

/* With only {"format":"pt"} metadata the layout is byte-for-byte that of
 * the reference writer (safetensors 0.8 save_file, bytes checked by
 * tests/ref/check_synth.py); here the fixed parts are checked directly. */
static void t_header_layout(void)
{
    const char *dir = tmpdir();
    if (!dir) return;
    char path[300];
    snprintf(path, sizeof path, "%s/h.safetensors", dir);
    st_wtensor t[] = {{"b", ST_F16, 1, {2}}, {"a", ST_BF16, 1, {2}}, {"u", ST_U8, 1, {1}}, {"i", ST_I8, 1, {1}}};
    ms_error e = {0};
    CHECK(write_st(path, t, 4, NULL, 0, 100, &e) == MS_OK, "write: %s", e.message);
    size_t n;
    uint8_t *b = read_file(path, &n);
    CHECK(b != NULL, "read");
    if (b) {
        uint64_t hl = 0;
        for (int i = 7; i >= 0; i--) hl = hl << 8 | b[i];
        const char *want = "{\"__metadata__\":{\"format\":\"pt\"},\"a\":{\"dtype\":\"BF16\",\"shape\":[2],"
                           "\"data_offsets\":[0,4]},\"b\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[4,8]},"
                           "\"i\":{\"dtype\":\"I8\",\"shape\":[1],\"data_offsets\":[8,9]},\"u\":{\"dtype\":\"U8\","
                           "\"shape\":[1],\"data_offsets\":[9,10]}}";
        size_t wl = strlen(want);
        CHECK(hl % 8 == 0 && hl >= wl && hl < wl + 8, "header length %llu for %zu bytes of JSON",
              (unsigned long long)hl, wl);
        CHECK(n >= 8 + wl && memcmp(b + 8, want, wl) == 0, "header JSON differs: %.*s", (int)(n > 300 ? 300 : n - 8),
              (const char *)b + 8);
        int spaces = 1;
        for (size_t i = 8 + wl; i < 8 + hl && i < n; i++) spaces &= b[i] == ' ';
        CHECK(spaces, "padding must be spaces");
        CHECK(n == 8 + hl + 10, "file size %zu", n);
        free(b);
    }
    rmdir_flat(dir);
}

static void t_determinism(void)
{
    const char *dir = tmpdir();
    if (!dir) return;
    char p1[300], p2[300];
    snprintf(p1, sizeof p1, "%s/x.safetensors", dir);
    snprintf(p2, sizeof p2, "%s/y.safetensors", dir);
    st_wtensor t[] = {{"layer.1", ST_BF16, 2, {33, 17}}, {"layer.0", ST_BF16, 2, {17, 33}}, {"n", ST_F32, 1, {9}}};
    const char *meta[] = {"k", "v"};
    ms_error e = {0};
    CHECK(write_st(p1, t, 3, meta, 1, 7, &e) == MS_OK, "%s", e.message);
    /* other piece size, other input order: same bytes */
    st_wtensor u[] = {t[2], t[0], t[1]};
    st_writer *w;
    CHECK(st_writer_open(p2, u, 3, meta, 1, &w, &e) == MS_OK, "%s", e.message);
    for (size_t k = 0; k < 3; k++) {
        size_t i = st_writer_order(w, k);
        size_t orig = i == 0 ? 2 : i - 1;
        uint64_t nb = (uint64_t)st_dtype_size(u[i].dtype) * (uint64_t)u[i].shape[0] * (u[i].ndim > 1 ? (uint64_t)u[i].shape[1] : 1);
        for (uint64_t j = 0; j < nb; j++) {
            uint8_t c = fill_byte(orig, j);
            CHECK(st_writer_write(w, &c, 1, &e) == MS_OK, "%s", e.message);
        }
    }
    CHECK(st_writer_finish(w, &e) == MS_OK, "%s", e.message);
    st_writer_abort(w);
    size_t n1, n2;
    uint8_t *b1 = read_file(p1, &n1), *b2 = read_file(p2, &n2);
    CHECK(b1 && b2 && n1 == n2 && memcmp(b1, b2, n1) == 0, "two writes differ");
    free(b1);
    free(b2);
    rmdir_flat(dir);
}

/* Data offsets are only element-aligned: an F32 tensor after one byte is
 * misaligned in memory and must be read with memcpy (UBSan would flag a cast). */
static void t_alignment(void)
{
    const char *dir = tmpdir();
    if (!dir) return;
    char path[300];
    snprintf(path, sizeof path, "%s/m.safetensors", dir);
    /* hand-made file: U8[1] at 0, F32[2] at 1..9 (as some writers do) */
    const char *h = "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                    "\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[1,9]}}";
    uint64_t hl = strlen(h);
    FILE *f = fopen(path, "wb");
    for (int i = 0; i < 8; i++) fputc((int)((hl >> (8 * i)) & 0xff), f);
    fwrite(h, 1, hl, f);
    float v[2] = {1.5f, -2.25f};
    fputc(7, f);
    fwrite(v, 4, 2, f);
    fclose(f);
    st_file *sf;
    ms_error e = {0};
    CHECK(st_file_open(path, &sf, &e) == MS_OK, "%s", e.message);
    if (sf) {
        const st_tensor *x = st_file_find(sf, "x");
        CHECK(x && ((uintptr_t)x->data & 3) != 0, "expected a misaligned pointer");
        CHECK(x && st_tensor_getf(x, 0) == 1.5f && st_tensor_getf(x, 1) == -2.25f, "values");
        CHECK(x && st_tensor_require_dtype(x, &e) == MS_OK, "F32 supported");
        st_tensor_release(x);
        CHECK(x && st_tensor_getf(x, 1) == -2.25f, "values after release");
        st_file_close(sf);
    }
    rmdir_flat(dir);
}

static void t_writer_errors(void)
{
    const char *dir = tmpdir();
    if (!dir) return;
    char path[300];
    snprintf(path, sizeof path, "%s/e.safetensors", dir);
    ms_error e = {0};
    st_writer *w = NULL;
    st_wtensor dup[] = {{"a", ST_F32, 1, {1}}, {"a", ST_F16, 1, {1}}};
    CHECK(st_writer_open(path, dup, 2, NULL, 0, &w, &e) != MS_OK && strstr(e.message, "duplicate"),
          "duplicate names: %s", e.message);
    const char *bad_meta[] = {"format", "np"};
    CHECK(st_writer_open(path, dup, 1, bad_meta, 1, &w, &e) != MS_OK && strstr(e.message, "format"),
          "reserved format key: %s", e.message);
    st_wtensor neg[] = {{"a", ST_F32, 1, {-1}}};
    CHECK(st_writer_open(path, neg, 1, NULL, 0, &w, &e) != MS_OK, "negative dim accepted");
    st_wtensor huge[] = {{"a", ST_F32, 2, {INT64_MAX, 4}}};
    CHECK(st_writer_open(path, huge, 1, NULL, 0, &w, &e) != MS_OK, "overflowing shape accepted");
    /* write past the current tensor */
    st_wtensor two[] = {{"a", ST_U8, 1, {2}}, {"b", ST_U8, 1, {2}}};
    CHECK(st_writer_open(path, two, 2, NULL, 0, &w, &e) == MS_OK, "%s", e.message);
    uint8_t b3[3] = {1, 2, 3};
    CHECK(st_writer_write(w, b3, 3, &e) != MS_OK && strstr(e.message, "exceeds"), "overrun: %s", e.message);
    st_writer_abort(w);
    CHECK(count_entries(dir) == 0, "abort must remove the temp file");
    /* finish before all bytes */
    CHECK(st_writer_open(path, two, 2, NULL, 0, &w, &e) == MS_OK, "%s", e.message);
    CHECK(st_writer_write(w, b3, 2, &e) == MS_OK, "%s", e.message);
    CHECK(st_writer_current(w) == 1, "current after a");
    CHECK(st_writer_finish(w, &e) != MS_OK && strstr(e.message, "incomplete"), "incomplete: %s", e.message);
    st_writer_abort(w);
    CHECK(count_entries(dir) == 0, "failed finish must remove the temp file");
    rmdir_flat(dir);
}

static int g_fail_at, g_ops;
static int fault_nth(const char *op, void *user)
{
    (void)op;
    (void)user;
    return ++g_ops == g_fail_at;
}

/* Every I/O step failing in turn leaves either the old file or nothing, and no temp. */
static void t_faults(void)
{
    const char *dir = tmpdir();
    if (!dir) return;
    char path[300];
    snprintf(path, sizeof path, "%s/f.safetensors", dir);
    st_wtensor t[] = {{"a", ST_F32, 1, {300000}}, {"b", ST_U8, 1, {5}}};
    ms_error e = {0};
    CHECK(write_st(path, t, 1, NULL, 0, 4096, &e) == MS_OK, "%s", e.message); /* previous content */
    size_t n_old;
    uint8_t *old = read_file(path, &n_old);
    int failures = 0;
    for (g_fail_at = 1; g_fail_at < 400; g_fail_at++) {
        g_ops = 0;
        st_set_fault_hook(fault_nth, NULL);
        ms_status s = write_st(path, t, 2, NULL, 0, 4096, &e);
        st_set_fault_hook(NULL, NULL);
        if (s == MS_OK) break;
        failures++;
        CHECK(count_entries(dir) == 1, "fault %d left %d entries", g_fail_at, count_entries(dir));
        size_t n;
        uint8_t *cur = read_file(path, &n);
        int kept = cur && n == n_old && memcmp(cur, old, n) == 0;
        /* only a failed fsync of the directory happens after the rename */
        CHECK(kept || strstr(e.message, "directory"), "fault %d: target changed: %s", g_fail_at, e.message);
        free(cur);
    }
    CHECK(failures >= 5, "only %d fault points", failures);
    free(old);
    rmdir_flat(dir);
}

/* More than ST_MAX_TENSORS entries is refused quickly. */
static void t_too_many(void)
{
    const char *dir = tmpdir();
    if (!dir) return;
    char path[300];
    snprintf(path, sizeof path, "%s/many.safetensors", dir);
    size_t n = getenv("MEDSERVE_SANITIZED") ? ST_MAX_TENSORS + 10 : 100000;
    FILE *f = fopen(path, "wb");
    size_t cap = n * 64 + 64, len = 0;
    char *h = malloc(cap);
    len += (size_t)snprintf(h + len, cap - len, "{");
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(h + len, cap - len, "%s\"t%zu\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}",
                                i ? "," : "", i);
    len += (size_t)snprintf(h + len, cap - len, "}");
    for (int i = 0; i < 8; i++) fputc((int)(((uint64_t)len >> (8 * i)) & 0xff), f);
    fwrite(h, 1, len, f);
    fclose(f);
    free(h);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    st_file *sf = NULL;
    ms_error e = {0};
    ms_status s = st_file_open(path, &sf, &e);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double dt = (double)(b.tv_sec - a.tv_sec) + 1e-9 * (double)(b.tv_nsec - a.tv_nsec);
    CHECK(s != MS_OK && strstr(e.message, "more than 65536 tensors"), "%s", e.message);
    CHECK(dt < (getenv("MEDSERVE_SANITIZED") ? 5.0 : 1.0), "took %.2f s", dt);
    st_file_close(sf);
    rmdir_flat(dir);
}

static void t_conversions(void)
{
    CHECK(st_f32_to_bf16(1.0f) == 0x3f80, "bf16 1");
    CHECK(st_f32_to_bf16(st_bf16_to_f32(0x4049)) == 0x4049, "bf16 round trip");
    /* ties to even: 1 + 2^-8 lies halfway between bf16 1 and 1+2^-7 */
    CHECK(st_f32_to_bf16(1.00390625f) == 0x3f80, "bf16 tie to even down");
    CHECK(st_f32_to_bf16(1.01171875f) == 0x3f82, "bf16 tie to even up");
    float nan = __builtin_nanf("");
    CHECK((st_f32_to_bf16(nan) & 0x7fc0) == 0x7fc0, "bf16 nan");
    /* every f16 bit pattern survives f16 -> f32 -> f16 (NaN payloads aside) */
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        uint16_t r = st_f32_to_f16(st_f16_to_f32((uint16_t)h));
        int is_nan = ((h >> 10) & 0x1f) == 0x1f && (h & 0x3ff);
        if (is_nan ? !(((r >> 10) & 0x1f) == 0x1f && (r & 0x3ff)) : r != h) bad++;
    }
    CHECK(bad == 0, "%d f16 patterns do not round-trip", bad);
    CHECK(st_f32_to_f16(65520.0f) == 0x7c00, "f16 overflow to inf");
    CHECK(st_f32_to_f16(65519.0f) == 0x7bff, "f16 max");
    CHECK(st_f32_to_f16(5.9604645e-08f) == 0x0001, "f16 smallest subnormal");
    CHECK(st_f32_to_f16(2.9802322e-08f) == 0x0000, "f16 half of smallest subnormal ties to 0");
    CHECK(st_f32_to_f16(8.940697e-08f) == 0x0002, "f16 1.5 subnormal ties to even 2");
    CHECK(st_f16_to_f32(0x3c00) == 1.0f && st_f16_to_f32(0xc000) == -2.0f, "f16 values");
    for (int i = 0; i < ST_DTYPE_COUNT; i++)
        CHECK(st_dtype_parse(st_dtype_name((st_dtype)i)) == i, "dtype name %d", i);
    CHECK(st_dtype_parse("F33") == -1 && st_dtype_parse("f32") == -1, "unknown dtype names");
    CHECK(st_dtype_size(ST_BF16) == 2 && st_dtype_size(ST_F4) == 0 && st_dtype_bits(ST_F6_E2M3) == 6, "sizes");
}

int main(int argc, char **argv)
{
    static const test_case cases[] = {
        {"st_round_trip", t_round_trip},   {"st_header_layout", t_header_layout},
        {"st_determinism", t_determinism}, {"st_alignment", t_alignment},
        {"st_writer_errors", t_writer_errors}, {"st_faults", t_faults},
        {"st_too_many", t_too_many},       {"st_conversions", t_conversions},
    };
    return test_main(argc, argv, cases, (int)(sizeof cases / sizeof *cases));
}
