/* verify.c: reading a written export back before it is renamed into
 * place: the strict loader re-opens it (header, offsets, index), every
 * tensor's bytes are compared with the checksum computed while writing, each
 * weights file is SHA-256 hashed in the same single read, the other files are
 * hashed, and the written config.json must load. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/err.h"
#include "base/json.h"
#include "base/sha256.h"
#include "fhash.h"
#include "io/st_shard.h"
#include "run.h"

/* Compares tensor data addresses (file order). */
static int cmp_data(const void *a, const void *b)
{
    const char *x = (*(const st_tensor *const *)a)->data, *y = (*(const st_tensor *const *)b)->data;
    return x < y ? -1 : x > y;
}

/* Reads one written weights file sequentially: SHA-256 of the whole file
 * (recorded for the manifest) and, by offset, the checksum of each tensor,
 * compared with the one computed while writing. The reads go through a
 * small buffer, so memory stays flat for any tensor size. */
static ms_status verify_file(run *R, const st_file *f, ms_error *err)
{
    enum { BLOCK = 4 << 20 };
    const char *path = st_file_path(f);
    size_t nt = st_file_count(f);
    const st_tensor **ts = calloc(nt ? nt : 1, sizeof *ts);
    unsigned char *buf = malloc(BLOCK);
    long *idx = calloc(nt ? nt : 1, sizeof *idx);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ms_status st = MS_OK;
    if (!ts || !buf || !idx || fd < 0) {
        st = fd < 0 ? ms_seterr(err, MS_ERR_IO, "%s: open: %s", path, strerror(errno))
                    : ms_seterr(err, MS_ERR_NOMEM, "verify: out of memory");
        goto out;
    }
    uint64_t data_bytes = 0, size = rn_file_size(path);
    for (size_t i = 0; i < nt; i++) ts[i] = st_file_get(f, i), data_bytes += ts[i]->nbytes;
    qsort(ts, nt, sizeof *ts, cmp_data);
    for (size_t i = 0; i < nt; i++) {
        idx[i] = -1;
        for (size_t j = 0; j < R->plan.n; j++)
            if (!strcmp(R->plan.t[j].name, ts[i]->name)) idx[i] = (long)j;
        if (idx[i] < 0) {
            st = ms_seterr(err, MS_ERR_INTERNAL, "verify %s: unexpected tensor \"%s\"", path, ts[i]->name);
            goto out;
        }
    }
    const uint64_t data0 = size - data_bytes; /* tensors tile the end of the file */
    sha256_ctx sc;
    sha256_init(&sc);
    mg_fhash h;
    mg_fhash_init(&h);
    size_t ti = 0;
    uint64_t pos = 0;
    for (;;) {
        if (R->o->cancel && *R->o->cancel) {
            st = ms_seterr(err, MS_ERR_CANCELLED, "interrupted");
            goto out;
        }
        ssize_t r = read(fd, buf, BLOCK);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            st = ms_seterr(err, MS_ERR_IO, "%s: read: %s", path, strerror(errno));
            goto out;
        }
        if (r == 0) break;
        sha256_update(&sc, buf, (size_t)r);
        uint64_t end = pos + (uint64_t)r;
        while (ti < nt) {
            uint64_t ts0 = data0 + (uint64_t)((const char *)ts[ti]->data - (const char *)ts[0]->data);
            uint64_t ts1 = ts0 + ts[ti]->nbytes;
            if (ts0 >= end) break;
            uint64_t a = ts0 > pos ? ts0 : pos, b = ts1 < end ? ts1 : end;
            if (b > a) mg_fhash_update(&h, buf + (a - pos), (size_t)(b - a));
            if (ts1 > end) break;
            if (mg_fhash_final(&h) != R->sums[idx[ti]]) {
                st =
                    ms_seterr(err, MS_ERR_IO, "verify %s: the bytes of tensor \"%s\" on disk differ from those written",
                              path, ts[ti]->name);
                goto out;
            }
            mg_fhash_init(&h);
            ti++;
        }
        pos = end;
        rn_hash_tick(R, (uint64_t)r);
    }
    if (ti != nt || pos != size) {
        st = ms_seterr(err, MS_ERR_IO, "verify %s: %zu of %zu tensors read back (%llu of %llu bytes)", path, ti, nt,
                       (unsigned long long)pos, (unsigned long long)size);
        goto out;
    }
    uint8_t d[32];
    char hex[65];
    sha256_final(&sc, d);
    sha256_hex(d, hex);
    const char *slash = strrchr(path, '/');
    st = mg_filelist_add_known(&R->out_files, slash ? slash + 1 : path, hex, size, err);
out:
    if (fd >= 0) close(fd);
    free(ts);
    free(buf);
    free(idx);
    return st;
}

/* Step 6: re-opens the export strictly and checks every tensor's bytes;
 * hashes every file for the manifest. */
ms_status rn_verify(run *R, ms_error *err)
{
    mg_plan *p = &R->plan;
    st_set *s = NULL;
    ms_status st;
    R->prog.bytes_done = 0;
    R->prog.bytes_total = 0;
    {
        DIR *d = opendir(R->tmp);
        struct dirent *de;
        while (d && (de = readdir(d))) {
            char fp[MG_PATH * 2];
            rn_path_join(fp, sizeof fp, R->tmp, de->d_name);
            if (de->d_name[0] != '.') R->prog.bytes_total += rn_file_size(fp);
        }
        if (d) closedir(d);
    }
    rn_progress(R, "verify");
    if ((st = st_set_open(R->tmp, &s, err))) return st;
    if (st_set_count(s) != p->n) {
        st = ms_seterr(err, MS_ERR_INTERNAL, "verify %s: %zu tensors read back, %zu written", R->tmp, st_set_count(s),
                       p->n);
        goto out;
    }
    for (size_t i = 0; i < p->n; i++) {
        const mg_otensor *o = &p->t[i];
        const st_tensor *t = st_set_find(s, o->name);
        if (R->o->cancel && *R->o->cancel) {
            st = ms_seterr(err, MS_ERR_CANCELLED, "interrupted");
            goto out;
        }
        char name[ST_SHARD_NAME_MAX];
        st_shard_filename((size_t)o->shard, (size_t)p->n_shards, name);
        const char *base = t && t->path ? strrchr(t->path, '/') : NULL;
        if (!t || t->dtype != p->dtype || t->ndim != o->ndim || t->shape[0] != o->shape[0] ||
            (o->ndim == 2 && t->shape[1] != o->shape[1]) || !base || strcmp(base + 1, name)) {
            st = ms_seterr(err, MS_ERR_INTERNAL, "verify %s: tensor \"%s\" does not read back as written", R->tmp,
                           o->name);
            goto out;
        }
    }
    /* One sequential read per weights file: its SHA-256 for the manifest and
     * each tensor's checksum against what was written. */
    for (size_t i = 0; i < st_set_nfiles(s); i++)
        if ((st = verify_file(R, st_set_file(s, i), err))) goto out;
    static const char *const more[] = {"config.json", "generation_config.json", "model.safetensors.index.json"};
    for (size_t i = 0; i < 3; i++) {
        char pth[MG_PATH * 2];
        rn_path_join(pth, sizeof pth, R->tmp, more[i]);
        if (mg_exists(pth) && (st = mg_filelist_add(&R->out_files, R->tmp, more[i], &R->hashing, err))) goto out;
    }
    for (size_t i = 0; i < MG_N_COPY_FILES; i++) {
        char pth[MG_PATH * 2];
        rn_path_join(pth, sizeof pth, R->tmp, mg_copy_files[i]);
        if (mg_exists(pth) && (st = mg_filelist_add(&R->out_files, R->tmp, mg_copy_files[i], &R->hashing, err)))
            goto out;
    }
    mg_filelist_sort(&R->out_files);
    /* The written config must load. */
    char cp[MG_PATH * 2];
    qwen3_config chk;
    rn_path_join(cp, sizeof cp, R->tmp, "config.json");
    if ((st = config_load(cp, &chk, err))) goto out;
    if (chk.tie_word_embeddings != p->tied_out) {
        st = ms_seterr(err, MS_ERR_INTERNAL, "verify %s: tie_word_embeddings reads back wrong", cp);
        goto out;
    }
out:
    st_set_close(s);
    return st;
}
