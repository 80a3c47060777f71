/* test_st.c: safetensors reader, writer and sharded sets: writer -> reader
 * round trips (all dtypes, zero-size and scalar tensors, metadata),
 * deterministic bytes, the reference header layout, element alignment,
 * streaming-order errors, abort and fault-injected failures leaving no temp
 * file, the tensor-count cap, shard planning and index files, and the dtype
 * table. Malformed files are covered by test_badfiles.c; the float
 * conversions by test_half.c. */
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/err.h"
#include "io/st.h"
#include "io/st_shard.h"
#include "util.h"

static char g_tmp[256];

/* Makes a fresh temp directory for one case (in g_tmp). */
static const char *tmpdir(void)
{
    return ut_tmpdir(g_tmp, sizeof g_tmp, "st");
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


/* Deterministic filler: byte j of tensor i. */
static uint8_t fill_byte(size_t i, uint64_t j)
{
    return (uint8_t)(i * 31 + j * 7 + (j >> 8));
}

/* Writes tensors t[0..n) with fill_byte data, streaming in small pieces. */
static ms_status write_st(const char *path, const st_wtensor *t, size_t n, const char *const *meta, size_t n_meta,
                          size_t piece, ms_error *e)
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
        {"w.f32", ST_F32, 2, {3, 5}}, {"w.bf16", ST_BF16, 1, {7}}, {"w.f16", ST_F16, 3, {1, 2, 3}},
        {"i8", ST_I8, 1, {5}},        {"u8", ST_U8, 1, {3}},       {"i64", ST_I64, 0, {0}},
        {"empty", ST_F32, 2, {0, 4}}, {"i32", ST_I32, 1, {2}},     {"f64", ST_F64, 1, {1}},
        {"f4", ST_F4, 1, {4}},        {"b", ST_BOOL, 1, {2}},      {"a\"q\\\n", ST_U8, 1, {1}},
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
    const char *expect[] = {"f64", "i64", "w.f32",    "i32", "w.bf16", "w.f16",
                            "i8",  "u8",  "a\"q\\\n", "b",   "f4",     "empty"};
    (void)expect;
    const st_tensor *prev = NULL;
    for (size_t i = 0; i < st_file_count(f); i++) {
        const st_tensor *x = st_file_get(f, i);
        if (prev) CHECK((const uint8_t *)prev->data + prev->nbytes == x->data, "tiling at %zu", i);
        prev = x;
    }
    CHECK(strcmp(st_file_get(f, 0)->name, "f64") == 0 || strcmp(st_file_get(f, 0)->name, "i64") == 0, "first is %s",
          st_file_get(f, 0)->name);
    CHECK(st_file_recheck(f, &e) == MS_OK, "recheck: %s", e.message);
    const st_tensor *f64 = st_file_find(f, "f64");
    CHECK(f64 && st_tensor_require_dtype(f64, &e) == MS_ERR_UNSUPPORTED && strstr(e.message, "unsupported dtype F64") &&
              strstr(e.message, path),
          "F64 must be refused where used: %s", e.message);
    /* replaced by rename under the open file: recheck notices */
    char other[300];
    snprintf(other, sizeof other, "%s/b.safetensors", dir);
    CHECK(write_st(other, t, 2, NULL, 0, 64, &e) == MS_OK && rename(other, path) == 0, "replace");
    CHECK(st_file_recheck(f, &e) != MS_OK && strstr(e.message, "no longer names"), "recheck after rename: %s",
          e.message);
    st_file_close(f);
    /* truncated after open: recheck notices (reading the tail would SIGBUS) */
    CHECK(st_file_open(path, &f, &e) == MS_OK, "%s", e.message);
    CHECK(truncate(path, 100) == 0, "truncate");
    CHECK(f && st_file_recheck(f, &e) != MS_OK && strstr(e.message, "size changed"), "recheck after truncate: %s",
          e.message);
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
    uint8_t *b = (uint8_t *)ut_read_file(path, &n);
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
        uint64_t nb = (uint64_t)st_dtype_size(u[i].dtype) * (uint64_t)u[i].shape[0] *
                      (u[i].ndim > 1 ? (uint64_t)u[i].shape[1] : 1);
        for (uint64_t j = 0; j < nb; j++) {
            uint8_t c = fill_byte(orig, j);
            CHECK(st_writer_write(w, &c, 1, &e) == MS_OK, "%s", e.message);
        }
    }
    CHECK(st_writer_finish(w, &e) == MS_OK, "%s", e.message);
    st_writer_abort(w);
    size_t n1, n2;
    uint8_t *b1 = (uint8_t *)ut_read_file(p1, &n1), *b2 = (uint8_t *)ut_read_file(p2, &n2);
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
    uint8_t *old = (uint8_t *)ut_read_file(path, &n_old);
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
        uint8_t *cur = (uint8_t *)ut_read_file(path, &n);
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
        len += (size_t)snprintf(h + len, cap - len,
                                "%s\"t%zu\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}", i ? "," : "", i);
    len += (size_t)snprintf(h + len, cap - len, "}");
    for (int i = 0; i < 8; i++) fputc((int)(((uint64_t)len >> (8 * i)) & 0xff), f);
    fwrite(h, 1, len, f);
    fclose(f);
    free(h);
    double t0 = ut_cpu_now(); /* CPU time: other processes on the machine do not count */
    st_file *sf = NULL;
    ms_error e = {0};
    ms_status s = st_file_open(path, &sf, &e);
    double dt = ut_cpu_now() - t0;
    CHECK(s != MS_OK && strstr(e.message, "more than 65536 tensors"), "%s", e.message);
    CHECK(dt < (getenv("MEDSERVE_SANITIZED") ? 5.0 : 1.0), "took %.2f s of CPU time", dt);
    st_file_close(sf);
    rmdir_flat(dir);
}

/* The dtype table: names parse back, unknown spellings fail, sizes. */
static void t_dtypes(void)
{
    for (int i = 0; i < ST_DTYPE_COUNT; i++) CHECK(st_dtype_parse(st_dtype_name((st_dtype)i)) == i, "dtype name %d", i);
    CHECK(st_dtype_parse("F33") == -1 && st_dtype_parse("f32") == -1, "unknown dtype names");
    CHECK(st_dtype_size(ST_BF16) == 2 && st_dtype_size(ST_F4) == 0 && st_dtype_bits(ST_F6_E2M3) == 6, "sizes");
}


/* huggingface_hub's policy on a hand-computed example: sizes in order
 * [6, 6, 2, 6, 2, 2] with limit 10 give [6], [6+2], [6+2+2]; a tensor over
 * the limit gets its own shard, listed before the open one. */
static void t_shard_plan(void)
{
    st_wtensor t[8];
    int64_t sizes[] = {6, 6, 2, 6, 2, 2};
    for (int i = 0; i < 6; i++) t[i] = (st_wtensor){"x", ST_U8, 1, {sizes[i]}};
    st_shard_plan p;
    ms_error e = {0};
    CHECK(st_shard_plan_make(t, 6, 10, &p, &e) == MS_OK, "%s", e.message);
    size_t want[] = {0, 1, 1, 2, 2, 2};
    for (int i = 0; i < 6; i++) CHECK(p.shard_of[i] == want[i], "tensor %d in shard %zu", i, p.shard_of[i]);
    CHECK(p.n_shards == 3 && p.total_size == 24 && p.total_params == 24, "n_shards %zu total %llu", p.n_shards,
          (unsigned long long)p.total_size);
    st_shard_plan_free(&p);
    /* [4, 30(own), 4, 2] limit 10: the big one is appended first, then the open [4,4,2] */
    int64_t s2[] = {4, 30, 4, 2};
    for (int i = 0; i < 4; i++) t[i] = (st_wtensor){"x", ST_U8, 1, {s2[i]}};
    CHECK(st_shard_plan_make(t, 4, 10, &p, &e) == MS_OK, "%s", e.message);
    CHECK(p.n_shards == 2 && p.shard_of[0] == 1 && p.shard_of[1] == 0 && p.shard_of[2] == 1 && p.shard_of[3] == 1,
          "oversized placement %zu %zu %zu %zu", p.shard_of[0], p.shard_of[1], p.shard_of[2], p.shard_of[3]);
    char fn[ST_SHARD_NAME_MAX];
    st_shard_filename(1, p.n_shards, fn);
    CHECK(strcmp(fn, "model-00002-of-00002.safetensors") == 0, "%s", fn);
    st_shard_plan_free(&p);
    CHECK(st_shard_plan_make(t, 4, 0, &p, &e) == MS_OK && p.n_shards == 1, "no limit: one shard");
    st_shard_filename(0, p.n_shards, fn);
    CHECK(strcmp(fn, "model.safetensors") == 0, "%s", fn);
    st_shard_plan_free(&p);
    st_wtensor big = {"x", ST_F32, 2, {INT64_MAX / 2, 4}};
    CHECK(st_shard_plan_make(&big, 1, 10, &p, &e) != MS_OK, "overflow accepted");
    uint64_t v = 0;
    CHECK(st_parse_size("5GB", &v, &e) == MS_OK && v == 5000000000ull, "5GB -> %llu", (unsigned long long)v);
    CHECK(st_parse_size("1.5MB", &v, &e) == MS_OK && v == 1500000ull, "1.5MB");
    CHECK(st_parse_size("300kb", &v, &e) == MS_OK && v == 300000ull, "300kb");
    CHECK(st_parse_size("123", &v, &e) == MS_OK && v == 123, "bytes");
    CHECK(st_parse_size("5GiB", &v, &e) != MS_OK && st_parse_size("GB", &v, &e) != MS_OK &&
              st_parse_size("99999999999999999999", &v, &e) != MS_OK && st_parse_size("1.5", &v, &e) != MS_OK,
          "bad sizes accepted");
}

static void t_hf_order(void)
{
    const char *mod[] = {"model.embed_tokens.weight",
                         "model.layers.2.self_attn.q_proj.weight",
                         "model.layers.2.self_attn.q_proj.bias",
                         "model.layers.2.self_attn.k_proj.weight",
                         "model.layers.2.self_attn.o_proj.weight",
                         "model.layers.2.self_attn.k_norm.weight",
                         "model.layers.2.mlp.down_proj.weight",
                         "model.layers.2.post_attention_layernorm.weight",
                         "model.layers.10.self_attn.q_proj.weight",
                         "model.norm.weight",
                         "lm_head.weight",
                         "zzz.other"};
    for (size_t i = 1; i < sizeof mod / sizeof *mod; i++)
        CHECK(st_hf_order_cmp(mod[i - 1], mod[i]) < 0 && st_hf_order_cmp(mod[i], mod[i - 1]) > 0,
              "module order %s < %s", mod[i - 1], mod[i]);
    /* transformers 5.x dot_natural_key (order checked against Python by hand) */
    const char *nat[] = {"lm_head.weight",
                         "model.embed_tokens.weight",
                         "model.layers.2.input_layernorm.weight",
                         "model.layers.2.mlp.down_proj.weight",
                         "model.layers.2.self_attn.q_proj.weight",
                         "model.layers.10.input_layernorm.weight",
                         "model.norm.weight"};
    for (size_t i = 1; i < sizeof nat / sizeof *nat; i++)
        CHECK(st_hf5_order_cmp(nat[i - 1], nat[i]) < 0 && st_hf5_order_cmp(nat[i], nat[i - 1]) > 0,
              "natural order %s < %s", nat[i - 1], nat[i]);
    CHECK(st_hf5_order_cmp("a", "a.1") < 0 && st_hf5_order_cmp("a.1", "a.0x") < 0 &&
              st_hf5_order_cmp("a.b", "a.b1") < 0 && st_hf5_order_cmp("a.b2", "a.b10") < 0 &&
              st_hf5_order_cmp("a.B", "a.b") < 0 && st_hf5_order_cmp("a.b", "a.b") == 0,
          "natural key details");
}

/* Deterministic data for st_write_weights: byte j of tensor i. */
static ms_status fill_cb(void *user, size_t i, st_writer *w, ms_error *err)
{
    const st_wtensor *t = user;
    uint64_t n = st_dtype_size(t[i].dtype);
    for (int d = 0; d < t[i].ndim; d++) n *= (uint64_t)t[i].shape[d];
    uint8_t buf[1000];
    for (uint64_t off = 0; off < n;) {
        size_t m = n - off < sizeof buf ? (size_t)(n - off) : sizeof buf;
        for (size_t j = 0; j < m; j++) buf[j] = fill_byte(i, off + j);
        ms_status s = st_writer_write(w, buf, m, err);
        if (s) return s;
        off += m;
    }
    return MS_OK;
}

/* Sharded write -> st_set_open: every tensor found with its bytes; the
 * index has the transformers layout; a single file beside it wins with a note. */
static void t_sharded_set(void)
{
    const char *dir = tmpdir();
    if (!dir) return;
    st_wtensor t[] = {{"model.embed_tokens.weight", ST_BF16, 2, {50, 8}},
                      {"model.layers.0.self_attn.q_proj.weight", ST_BF16, 2, {8, 8}},
                      {"model.layers.0.self_attn.q_norm.weight", ST_BF16, 1, {8}},
                      {"model.layers.0.mlp.down_proj.weight", ST_BF16, 2, {8, 16}},
                      {"model.layers.1.self_attn.q_proj.weight", ST_BF16, 2, {8, 8}},
                      {"model.norm.weight", ST_BF16, 1, {8}},
                      {"lm_head.weight", ST_BF16, 2, {50, 8}},
                      {"zero", ST_F32, 1, {0}}};
    size_t n = sizeof t / sizeof *t;
    ms_error e = {0};
    CHECK(st_write_weights(dir, t, n, 400, NULL, 0, fill_cb, t, &e) == MS_OK, "%s", e.message);
    st_set *s = NULL;
    CHECK(st_set_open(dir, &s, &e) == MS_OK, "%s", e.message);
    if (s) {
        CHECK(st_set_count(s) == n, "count %zu", st_set_count(s));
        CHECK(st_set_nfiles(s) == 4, "files %zu", st_set_nfiles(s));
        CHECK(st_set_note(s) == NULL, "note");
        for (size_t i = 0; i < n; i++) {
            const st_tensor *x = st_set_find(s, t[i].name);
            CHECK(x != NULL, "missing %s", t[i].name);
            int same = x != NULL;
            for (uint64_t j = 0; x && j < x->nbytes; j++) same &= ((const uint8_t *)x->data)[j] == fill_byte(i, j);
            CHECK(same, "data of %s", t[i].name);
        }
        for (size_t i = 1; i < st_set_count(s); i++)
            CHECK(strcmp(st_set_get(s, i - 1)->name, st_set_get(s, i)->name) < 0, "sorted");
        st_set_close(s);
    }
    char path[400];
    snprintf(path, sizeof path, "%s/%s", dir, ST_INDEX_FILE);
    size_t len;
    char *idx = (char *)(uint8_t *)ut_read_file(path, &len);
    CHECK(idx && len > 2 && idx[len - 1] == '\n' &&
              !strncmp(idx, "{\n  \"metadata\": {\n    \"total_parameters\": 1072,\n", 48),
          "index layout: %.60s", idx ? idx : "");
    CHECK(idx && strstr(idx, "\"total_size\": 2144\n  },\n  \"weight_map\": {\n    \"lm_head.weight\": ") &&
              strstr(idx, "\"zero\": \"model-00004-of-00004.safetensors\"\n  }\n}\n"),
          "index content: %s", idx ? idx : "");
    free(idx);
    /* a single model.safetensors beside the index is used, with a note */
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    st_wtensor one[] = {{"only", ST_U8, 1, {3}}};
    CHECK(write_st(path, one, 1, NULL, 0, 3, &e) == MS_OK, "%s", e.message);
    CHECK(st_set_open(dir, &s, &e) == MS_OK, "%s", e.message);
    if (s) {
        CHECK(st_set_count(s) == 1 && st_set_find(s, "only") && st_set_note(s) &&
                  strstr(st_set_note(s), "using model.safetensors"),
              "single file preferred with a note");
        st_set_close(s);
    }
    /* a path to a file is a set of one */
    CHECK(st_set_open(path, &s, &e) == MS_OK && st_set_count(s) == 1, "file as a set: %s", e.message);
    st_set_close(s);
    rmdir_flat(dir);
}

static const char *g_argv0;

/* synth twice with the same arguments -> identical bytes; another seed differs. */
static void t_synth_determinism(void)
{
    char synth[300];
    const char *slash = strrchr(g_argv0, '/');
    /* build/tests/test_st -> build/tools/synth */
    snprintf(synth, sizeof synth, "%.*s/../tools/synth", slash ? (int)(slash - g_argv0) : 1, slash ? g_argv0 : ".");
    if (access(synth, X_OK) != 0) {
        CHECK(0, "%s not built", synth);
        return;
    }
    const char *dir = tmpdir();
    if (!dir) return;
    char cmd[1200], a[400], b[400];
    const char *args = "--quiet --tokenizer none --shape tiny --vocab 3000 --layers 3 --tied 0 --attention-bias 1 "
                       "--max-shard-size 200KB --config-style 5";
    const char *runs[3] = {"--seed 5", "--seed 5", "--seed 6"};
    const char *sub[3] = {"a", "b", "c"};
    for (int r = 0; r < 3; r++) {
        snprintf(cmd, sizeof cmd, "%s %s %s --out %s/%s", synth, args, runs[r], dir, sub[r]);
        CHECK(system(cmd) == 0, "%s failed", cmd);
    }
    const char *files[] = {"config.json", "generation_config.json", ST_INDEX_FILE, "model-00001-of-00004.safetensors",
                           "model-00004-of-00004.safetensors"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(a, sizeof a, "%s/a/%s", dir, files[i]);
        snprintf(b, sizeof b, "%s/b/%s", dir, files[i]);
        size_t na, nb;
        uint8_t *x = (uint8_t *)ut_read_file(a, &na), *y = (uint8_t *)ut_read_file(b, &nb);
        CHECK(x && y && na == nb && memcmp(x, y, na) == 0, "%s differs between identical runs", files[i]);
        free(x);
        free(y);
    }
    snprintf(a, sizeof a, "%s/a/model-00004-of-00004.safetensors", dir);
    snprintf(b, sizeof b, "%s/c/model-00004-of-00004.safetensors", dir);
    size_t na, nb;
    uint8_t *x = (uint8_t *)ut_read_file(a, &na), *y = (uint8_t *)ut_read_file(b, &nb);
    CHECK(x && y && (na != nb || memcmp(x, y, na) != 0), "another seed must give other weights");
    free(x);
    free(y);
    /* the result loads with our own reader and config loader */
    snprintf(a, sizeof a, "%s/a", dir);
    st_set *s = NULL;
    ms_error e = {0};
    CHECK(st_set_open(a, &s, &e) == MS_OK && st_set_count(s) == 1 + 3 * 15 + 2, "set: %s (%zu)", e.message,
          st_set_count(s));
    const st_tensor *nw = st_set_find(s, "model.norm.weight");
    CHECK(nw && fabsf(st_tensor_getf(nw, 0) - 1.0f) < 0.5f, "norm near 1");
    st_set_close(s);
    for (int r = 0; r < 3; r++) {
        snprintf(cmd, sizeof cmd, "rm -rf %s/%s", dir, sub[r]);
        CHECK(system(cmd) == 0, "rm");
    }
    rmdir(dir);
}

int main(int argc, char **argv)
{
    g_argv0 = argv[0];
    static const test_case cases[] = {
        {"st_round_trip", t_round_trip},       {"st_header_layout", t_header_layout},
        {"st_determinism", t_determinism},     {"st_alignment", t_alignment},
        {"st_writer_errors", t_writer_errors}, {"st_faults", t_faults},
        {"st_too_many", t_too_many},           {"st_dtypes", t_dtypes},
        {"st_shard_plan", t_shard_plan},       {"st_hf_order", t_hf_order},
        {"st_sharded_set", t_sharded_set},     {"st_synth_determinism", t_synth_determinism},
    };
    return test_main(argc, argv, cases, (int)(sizeof cases / sizeof *cases));
}
