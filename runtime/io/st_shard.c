/* st_shard.c: shard planning, the index file, HF state-dict ordering and the
 * whole-directory weights writer (see st_shard.h). Byte compatibility with
 * transformers 5.x save_pretrained is checked by tests/ref/check_synth.py.
 *
 * Does not: write config or tokenizer files, or stage a whole output
 * directory atomically (lora-merge does that around this). */
#include "io/st_shard.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/err.h"
#include "base/strbuf.h"

ms_status st_shard_plan_make(const st_wtensor *t, size_t n, uint64_t max_shard_size, st_shard_plan *p, ms_error *err)
{
    memset(p, 0, sizeof *p);
    if (max_shard_size == 0) max_shard_size = UINT64_MAX;
    p->n = n;
    p->shard_of = calloc(n ? n : 1, sizeof *p->shard_of);
    /* shard ids are assigned in creation order, then renumbered in list order */
    size_t *list_pos = calloc(n + 1, sizeof *list_pos);
    size_t *group = calloc(n ? n : 1, sizeof *group);
    if (!p->shard_of || !list_pos || !group) {
        free(list_pos);
        free(group);
        st_shard_plan_free(p);
        return ms_seterr(err, MS_ERR_NOMEM, "shard plan: out of memory");
    }
    size_t n_list = 0;   /* shards appended to the list so far */
    size_t n_groups = 0; /* groups created (open one included) */
    size_t open = (size_t)-1;
    uint64_t open_size = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t numel = 1, bits;
        for (int d = 0; d < t[i].ndim; d++)
            if (t[i].shape[d] < 0 || __builtin_mul_overflow(numel, (uint64_t)t[i].shape[d], &numel)) goto overflow;
        if (__builtin_mul_overflow(numel, (uint64_t)st_dtype_bits(t[i].dtype), &bits)) goto overflow;
        uint64_t size = bits / 8;
        if (__builtin_add_overflow(p->total_size, size, &p->total_size) ||
            __builtin_add_overflow(p->total_params, numel, &p->total_params))
            goto overflow;
        if (size > max_shard_size) { /* own shard, appended now */
            group[i] = n_groups;
            list_pos[n_groups++] = n_list++;
            continue;
        }
        if (open != (size_t)-1 && open_size + size > max_shard_size) {
            list_pos[open] = n_list++;
            open = (size_t)-1;
        }
        if (open == (size_t)-1) {
            open = n_groups++;
            open_size = 0;
        }
        group[i] = open;
        open_size += size;
    }
    if (open != (size_t)-1) list_pos[open] = n_list++;
    for (size_t i = 0; i < n; i++) p->shard_of[i] = list_pos[group[i]];
    p->n_shards = n_list ? n_list : 1;
    free(list_pos);
    free(group);
    return MS_OK;
overflow:
    free(list_pos);
    free(group);
    st_shard_plan_free(p);
    return ms_seterr(err, MS_ERR_INVALID, "shard plan: tensor sizes overflow 64 bits");
}

void st_shard_plan_free(st_shard_plan *p)
{
    if (!p) return;
    free(p->shard_of);
    p->shard_of = NULL;
    p->n = p->n_shards = 0;
}

void st_shard_filename(size_t k, size_t n_shards, char out[ST_SHARD_NAME_MAX])
{
    if (n_shards <= 1) snprintf(out, ST_SHARD_NAME_MAX, "%s", ST_SINGLE_FILE);
    else snprintf(out, ST_SHARD_NAME_MAX, "model-%05zu-of-%05zu.safetensors", k + 1, n_shards);
}

/* ---- index JSON (Python json.dumps, ensure_ascii, indent 2) ----------- */

/* Appends s (UTF-8) as Python's json.dumps writes it with ensure_ascii. */
static void sb_pystr(strbuf *b, const char *s)
{
    char e[16];
    sb_append(b, "\"", 1);
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned c = *p;
        size_t k = 1;
        if (c >= 0x80) { /* decode (input validated UTF-8 by the caller) */
            if ((c & 0xE0) == 0xC0) {
                c &= 0x1F;
                k = 2;
            } else if ((c & 0xF0) == 0xE0) {
                c &= 0x0F;
                k = 3;
            } else {
                c &= 0x07;
                k = 4;
            }
            for (size_t i = 1; i < k && p[i]; i++) c = (c << 6) | (p[i] & 0x3F);
        }
        p += k;
        if (c == '"') sb_append(b, "\\\"", 2);
        else if (c == '\\') sb_append(b, "\\\\", 2);
        else if (c == '\n') sb_append(b, "\\n", 2);
        else if (c == '\r') sb_append(b, "\\r", 2);
        else if (c == '\t') sb_append(b, "\\t", 2);
        else if (c == '\b') sb_append(b, "\\b", 2);
        else if (c == '\f') sb_append(b, "\\f", 2);
        else if (c >= 0x20 && c < 0x7f) {
            char ch = (char)c;
            sb_append(b, &ch, 1);
        } else if (c < 0x10000) {
            snprintf(e, sizeof e, "\\u%04x", c);
            sb_append(b, e, 6);
        } else {
            c -= 0x10000;
            snprintf(e, sizeof e, "\\u%04x\\u%04x", 0xD800 + (c >> 10), 0xDC00 + (c & 0x3FF));
            sb_append(b, e, 12);
        }
    }
    sb_append(b, "\"", 1);
}

static int cmp_idx_name(const void *a, const void *b, void *ctx)
{
    const st_wtensor *t = ctx;
    return strcmp(t[*(const size_t *)a].name, t[*(const size_t *)b].name);
}

ms_status st_shard_index_json(const st_wtensor *t, const st_shard_plan *p, char **out, size_t *len, ms_error *err)
{
    *out = NULL;
    size_t *idx = malloc((p->n ? p->n : 1) * sizeof *idx);
    if (!idx) return ms_seterr(err, MS_ERR_NOMEM, "index: out of memory");
    for (size_t i = 0; i < p->n; i++) idx[i] = i;
    qsort_r(idx, p->n, sizeof *idx, cmp_idx_name, (void *)t);
    strbuf b = {0};
    char num[64], fn[ST_SHARD_NAME_MAX];
    sb_puts(&b, "{\n  \"metadata\": {\n    \"total_parameters\": ");
    snprintf(num, sizeof num, "%llu", (unsigned long long)p->total_params);
    sb_puts(&b, num);
    sb_puts(&b, ",\n    \"total_size\": ");
    snprintf(num, sizeof num, "%llu", (unsigned long long)p->total_size);
    sb_puts(&b, num);
    sb_puts(&b, "\n  },\n  \"weight_map\": {");
    for (size_t k = 0; k < p->n; k++) {
        size_t i = idx[k];
        sb_puts(&b, k ? ",\n    " : "\n    ");
        sb_pystr(&b, t[i].name);
        sb_puts(&b, ": ");
        st_shard_filename(p->shard_of[i], p->n_shards, fn);
        sb_pystr(&b, fn);
    }
    sb_puts(&b, p->n ? "\n  }\n}\n" : "}\n}\n");
    free(idx);
    if (b.oom) {
        free(b.p);
        return ms_seterr(err, MS_ERR_NOMEM, "index: out of memory");
    }
    *out = b.p;
    if (len) *len = b.n;
    return MS_OK;
}

/* ---- atomic small files ----------------------------------------------- */

ms_status st_write_file_atomic(const char *path, const void *data, size_t len, ms_error *err)
{
    /* a writer-less copy of the st writer's temp/fsync/rename sequence */
    const char *slash = strrchr(path, '/');
    char dir[4096], tmp[4200];
    if (slash) {
        size_t k = (size_t)(slash - path);
        if (k >= sizeof dir) return ms_seterr(err, MS_ERR_INVALID, "%s: path too long", path);
        memcpy(dir, path, k);
        dir[k] = 0;
        if (k == 0) strcpy(dir, "/");
    } else {
        strcpy(dir, ".");
    }
    if (snprintf(tmp, sizeof tmp, "%s/.%s.tmp-XXXXXX", dir, slash ? slash + 1 : path) >= (int)sizeof tmp)
        return ms_seterr(err, MS_ERR_INVALID, "%s: path too long", path);
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) return ms_seterr(err, MS_ERR_IO, "%s: cannot create a temp file: %s", path, strerror(errno));
    const char *p = data;
    size_t left = len;
    ms_status s = MS_OK;
    if (fchmod(fd, 0644) != 0) s = ms_seterr(err, MS_ERR_IO, "%s: fchmod: %s", tmp, strerror(errno));
    while (!s && left) {
        ssize_t k = write(fd, p, left);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) s = ms_seterr(err, MS_ERR_IO, "%s: write failed: %s", tmp, k ? strerror(errno) : "no progress");
        else {
            p += k;
            left -= (size_t)k;
        }
    }
    if (!s && fsync(fd) != 0) s = ms_seterr(err, MS_ERR_IO, "%s: fsync failed: %s", tmp, strerror(errno));
    if (close(fd) != 0 && !s) s = ms_seterr(err, MS_ERR_IO, "%s: close failed: %s", tmp, strerror(errno));
    if (!s && rename(tmp, path) != 0) s = ms_seterr(err, MS_ERR_IO, "%s: rename failed: %s", path, strerror(errno));
    if (s) {
        unlink(tmp);
        return s;
    }
    return st_fsync_dir(dir, err);
}

ms_status st_parse_size(const char *s, uint64_t *out, ms_error *err)
{
    const char *p = s;
    uint64_t ip = 0, frac = 0, fscale = 1;
    int digits = 0;
    while (*p == ' ') p++;
    for (; *p >= '0' && *p <= '9'; p++, digits++)
        if (__builtin_mul_overflow(ip, 10, &ip) || __builtin_add_overflow(ip, (uint64_t)(*p - '0'), &ip))
            return ms_seterr(err, MS_ERR_INVALID, "size \"%.40s\": too large", s);
    if (*p == '.') {
        for (p++; *p >= '0' && *p <= '9'; p++, digits++)
            if (fscale < 1000000000000ull) {
                frac = frac * 10 + (uint64_t)(*p - '0');
                fscale *= 10;
            }
    }
    while (*p == ' ') p++;
    uint64_t mul = 1;
    if (*p) {
        char u0 = (char)(p[0] & ~0x20), u1 = (char)(p[1] & ~0x20);
        if (u1 != 'B' || p[2])
            return ms_seterr(err, MS_ERR_INVALID, "size \"%.40s\": unit must be KB, MB, GB or TB", s);
        mul = u0 == 'K'   ? 1000ull
              : u0 == 'M' ? 1000000ull
              : u0 == 'G' ? 1000000000ull
              : u0 == 'T' ? 1000000000000ull
                          : 0;
        if (!mul) return ms_seterr(err, MS_ERR_INVALID, "size \"%.40s\": unit must be KB, MB, GB or TB", s);
    } else if (fscale > 1) {
        return ms_seterr(err, MS_ERR_INVALID, "size \"%.40s\": a byte count must be an integer", s);
    }
    if (!digits) return ms_seterr(err, MS_ERR_INVALID, "size \"%.40s\": no number", s);
    uint64_t v;
    if (__builtin_mul_overflow(ip, mul, &v)) return ms_seterr(err, MS_ERR_INVALID, "size \"%.40s\": too large", s);
    /* mul and fscale are powers of ten: scale the fraction without overflow
     * (truncating, as Python's int(value * unit)) */
    v += mul >= fscale ? frac * (mul / fscale) : frac / (fscale / mul);
    *out = v;
    return MS_OK;
}

/* ---- HF state-dict order ---------------------------------------------- */

static const char *const LAYER_ORDER[] = {
    "self_attn.q_proj.weight", "self_attn.q_proj.bias",   "self_attn.k_proj.weight",
    "self_attn.k_proj.bias",   "self_attn.v_proj.weight", "self_attn.v_proj.bias",
    "self_attn.o_proj.weight", "self_attn.o_proj.bias",   "self_attn.q_norm.weight",
    "self_attn.k_norm.weight", "mlp.gate_proj.weight",    "mlp.up_proj.weight",
    "mlp.down_proj.weight",    "input_layernorm.weight",  "post_attention_layernorm.weight",
};

/* Sort key of a name: group, layer, position within the layer. */
static void hf_key(const char *s, int *group, unsigned long *layer, int *pos)
{
    *layer = 0;
    *pos = 0;
    if (strcmp(s, "model.embed_tokens.weight") == 0) {
        *group = 0;
        return;
    }
    if (strncmp(s, "model.layers.", 13) == 0 && s[13] >= '0' && s[13] <= '9') {
        const char *p = s + 13;
        unsigned long v = 0;
        while (*p >= '0' && *p <= '9' && v < 100000000ul) v = v * 10 + (unsigned long)(*p++ - '0');
        if (*p == '.') {
            *group = 1;
            *layer = v;
            *pos = (int)(sizeof LAYER_ORDER / sizeof *LAYER_ORDER);
            for (int i = 0; i < (int)(sizeof LAYER_ORDER / sizeof *LAYER_ORDER); i++)
                if (strcmp(p + 1, LAYER_ORDER[i]) == 0) *pos = i;
            return;
        }
    }
    if (strcmp(s, "model.norm.weight") == 0) {
        *group = 2;
        return;
    }
    if (strcmp(s, "lm_head.weight") == 0) {
        *group = 3;
        return;
    }
    *group = 4;
}

int st_hf_order_cmp(const char *a, const char *b)
{
    int ga, gb, pa, pb;
    unsigned long la, lb;
    hf_key(a, &ga, &la, &pa);
    hf_key(b, &gb, &lb, &pb);
    if (ga != gb) return ga < gb ? -1 : 1;
    if (la != lb) return la < lb ? -1 : 1;
    if (pa != pb) return pa < pb ? -1 : 1;
    return strcmp(a, b);
}

/* Compares digit runs a[0..na) and b[0..nb) as unbounded integers. */
static int cmp_digits(const char *a, size_t na, const char *b, size_t nb)
{
    while (na > 1 && *a == '0') {
        a++;
        na--;
    }
    while (nb > 1 && *b == '0') {
        b++;
        nb--;
    }
    if (na != nb) return na < nb ? -1 : 1;
    int c = memcmp(a, b, na);
    return c < 0 ? -1 : c > 0;
}

/* transformers 5.x dot_natural_key: per "."-part, all-digit parts sort first
 * and numerically; other parts by text without trailing digits, then by the
 * trailing number (absent first); a prefix sorts first. */
int st_hf5_order_cmp(const char *a, const char *b)
{
    for (;;) {
        size_t la = strcspn(a, "."), lb = strcspn(b, ".");
        size_t da = 0, db = 0; /* trailing digits of the part */
        while (da < la && a[la - 1 - da] >= '0' && a[la - 1 - da] <= '9') da++;
        while (db < lb && b[lb - 1 - db] >= '0' && b[lb - 1 - db] <= '9') db++;
        int na = la && da == la, nb = lb && db == lb; /* all digits: (0, int) sorts first */
        int c;
        if (na != nb) return na ? -1 : 1;
        if (na) {
            c = cmp_digits(a, la, b, lb);
        } else {
            size_t ta = la - da, tb = lb - db, m = ta < tb ? ta : tb;
            c = memcmp(a, b, m);
            c = c < 0 ? -1 : c > 0;
            if (!c && ta != tb) c = ta < tb ? -1 : 1;
            if (!c && (da != 0) != (db != 0)) c = da ? 1 : -1; /* (1, t) < (1, t, n) */
            if (!c && da) c = cmp_digits(a + ta, da, b + tb, db);
        }
        if (c) return c;
        int more_a = a[la] == '.', more_b = b[lb] == '.';
        if (!more_a || !more_b) return more_a - more_b; /* fewer parts first */
        a += la + 1;
        b += lb + 1;
    }
}

static int cmp_wt(const void *a, const void *b)
{
    return st_hf_order_cmp(((const st_wtensor *)a)->name, ((const st_wtensor *)b)->name);
}

static int cmp_wt5(const void *a, const void *b)
{
    int c = st_hf5_order_cmp(((const st_wtensor *)a)->name, ((const st_wtensor *)b)->name);
    return c ? c : strcmp(((const st_wtensor *)a)->name, ((const st_wtensor *)b)->name);
}

void st_hf_sort(st_wtensor *t, size_t n)
{
    qsort(t, n, sizeof *t, cmp_wt);
}

void st_hf5_sort(st_wtensor *t, size_t n)
{
    qsort(t, n, sizeof *t, cmp_wt5);
}

/* ---- whole weights directory ------------------------------------------ */

/* Removes the first n shard files of plan p from dir (cleanup after failure). */
static void remove_shards(const char *dir, const st_shard_plan *p, size_t n)
{
    char fn[ST_SHARD_NAME_MAX], path[4200];
    for (size_t k = 0; k < n; k++) {
        st_shard_filename(k, p->n_shards, fn);
        snprintf(path, sizeof path, "%s/%s", dir, fn);
        unlink(path);
    }
}

ms_status st_write_weights(const char *dir, const st_wtensor *t, size_t n, uint64_t max_shard_size,
                           const char *const *meta_kv, size_t n_meta, st_fill_fn fill, void *user, ms_error *err)
{
    st_shard_plan p;
    ms_status s = st_shard_plan_make(t, n, max_shard_size, &p, err);
    if (s) return s;
    st_wtensor *sub = malloc((n ? n : 1) * sizeof *sub);
    size_t *map = malloc((n ? n : 1) * sizeof *map);
    char fn[ST_SHARD_NAME_MAX], path[4200];
    size_t done = 0;
    if (!sub || !map) {
        s = ms_seterr(err, MS_ERR_NOMEM, "%s: out of memory", dir);
        goto out;
    }
    for (size_t k = 0; k < p.n_shards; k++) {
        size_t m = 0;
        for (size_t i = 0; i < n; i++)
            if (p.shard_of[i] == k) {
                sub[m] = t[i];
                map[m++] = i;
            }
        st_shard_filename(k, p.n_shards, fn);
        if (snprintf(path, sizeof path, "%s/%s", dir, fn) >= (int)sizeof path) {
            s = ms_seterr(err, MS_ERR_INVALID, "%s: path too long", dir);
            goto out;
        }
        st_writer *w;
        s = st_writer_open(path, sub, m, meta_kv, n_meta, &w, err);
        if (s) goto out;
        for (size_t j = 0; j < m && !s; j++) {
            size_t li = st_writer_order(w, j);
            s = fill(user, map[li], w, err);
            if (!s && st_writer_current(w) == li) /* zero-size tensors are never current */
                s = ms_seterr(err, MS_ERR_INTERNAL, "%s: fill wrote too few bytes of \"%.200s\"", path, sub[li].name);
        }
        if (!s) s = st_writer_finish(w, err);
        st_writer_abort(w);
        if (s) goto out;
        done = k + 1;
    }
    if (p.n_shards > 1) {
        char *json;
        size_t len;
        s = st_shard_index_json(t, &p, &json, &len, err);
        if (s) goto out;
        snprintf(path, sizeof path, "%s/%s", dir, ST_INDEX_FILE);
        s = st_write_file_atomic(path, json, len, err);
        free(json);
    }
out:
    if (s) remove_shards(dir, &p, done);
    free(sub);
    free(map);
    st_shard_plan_free(&p);
    return s;
}
