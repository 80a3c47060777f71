/* manifest.c: building medserve-manifest.json (see manifest.h) and the
 * file lists it records. */
#include "manifest.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/err.h"
#include "base/sha256.h"
#include "jsonw.h"

/* Grows the list by one record. */
static mg_filerec *grow(mg_filelist *l)
{
    if (l->n == l->cap) {
        size_t c = l->cap ? l->cap * 2 : 16;
        mg_filerec *v = realloc(l->v, c * sizeof *v);
        if (!v) return NULL;
        l->v = v;
        l->cap = c;
    }
    mg_filerec *r = &l->v[l->n++];
    memset(r, 0, sizeof *r);
    return r;
}

/* Appends a record whose hash is known. */
ms_status mg_filelist_add_known(mg_filelist *l, const char *name, const char *sha256, uint64_t bytes, ms_error *err)
{
    mg_filerec *r = grow(l);
    if (!r) return ms_seterr(err, MS_ERR_NOMEM, "manifest: out of memory");
    snprintf(r->name, sizeof r->name, "%s", name);
    snprintf(r->sha256, sizeof r->sha256, "%s", sha256);
    r->bytes = bytes;
    return MS_OK;
}

/* Hashes dir/name and appends it. The file is mapped and hashed in 4 MiB
 * steps, each step's pages dropped from this process afterwards (no copy
 * into a buffer, flat RSS); the cancel flag is checked between steps. */
ms_status mg_filelist_add(mg_filelist *l, const char *dir, const char *name, const mg_hashing *h, ms_error *err)
{
    enum { STEP = 4 << 20 };
    char path[4352];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ms_seterr(err, MS_ERR_IO, "%s: open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) || !S_ISREG(sb.st_mode)) {
        close(fd);
        return ms_seterr(err, MS_ERR_IO, "%s: not a regular file", path);
    }
    uint64_t size = (uint64_t)sb.st_size;
    const unsigned char *map = size ? mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0) : NULL;
    close(fd);
    if (size && map == MAP_FAILED) return ms_seterr(err, MS_ERR_IO, "%s: mmap: %s", path, strerror(errno));
    if (size) madvise((void *)map, (size_t)size, MADV_SEQUENTIAL);
    sha256_ctx c;
    sha256_init(&c);
    ms_status st = MS_OK;
    for (uint64_t off = 0; off < size; off += STEP) {
        if (h && h->cancel && *h->cancel) {
            st = ms_seterr(err, MS_ERR_CANCELLED, "interrupted");
            break;
        }
        size_t n = size - off < STEP ? (size_t)(size - off) : STEP;
        sha256_update(&c, map + off, n);
        madvise((void *)(map + off), n, MADV_DONTNEED); /* off is page aligned: STEP is */
        if (h && h->tick) h->tick(h->user, n);
    }
    if (size) munmap((void *)map, (size_t)size);
    if (st) return st;
    uint8_t d[32];
    char hex[65];
    sha256_final(&c, d);
    sha256_hex(d, hex);
    return mg_filelist_add_known(l, name, hex, size, err);
}

/* Orders records by name. */
static int cmp_rec(const void *a, const void *b)
{
    return strcmp(((const mg_filerec *)a)->name, ((const mg_filerec *)b)->name);
}

/* Sorts the records by file name, so the manifest does not depend on directory order. */
void mg_filelist_sort(mg_filelist *l)
{
    if (l->n > 1) qsort(l->v, l->n, sizeof *l->v, cmp_rec);
}

/* Frees the records; NULL-safe. */
void mg_filelist_free(mg_filelist *l)
{
    if (!l) return;
    free(l->v);
    memset(l, 0, sizeof *l);
}

/* A JSON array of {"name","sha256","bytes"}. */
static cJSON *files_json(const mg_filelist *l)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a && l && i < l->n; i++) {
        cJSON *o = cJSON_CreateObject();
        if (!o) break;
        cJSON_AddStringToObject(o, "name", l->v[i].name);
        cJSON_AddStringToObject(o, "sha256", l->v[i].sha256);
        cJSON_AddNumberToObject(o, "bytes", (double)l->v[i].bytes);
        cJSON_AddItemToArray(a, o);
    }
    return a;
}

/* The manifest as JSON text in json.dumps(indent=2) layout; the caller frees it. */
char *mg_manifest_text(const mg_manifest *m)
{
    cJSON *j = cJSON_CreateObject();
    if (!j) return NULL;
    cJSON_AddStringToObject(j, "format", "medserve-manifest");
    cJSON_AddNumberToObject(j, "format_version", 1);
    cJSON_AddStringToObject(j, "tool", MG_TOOL_NAME);
    cJSON_AddStringToObject(j, "tool_version", MS_VERSION_STRING);
    cJSON *out = cJSON_AddObjectToObject(j, "output");
    if (out) {
        cJSON_AddStringToObject(out, "dtype", m->dtype);
        cJSON_AddBoolToObject(out, "tie_word_embeddings", m->tie_word_embeddings);
        cJSON_AddBoolToObject(out, "untied_by_merge", m->untied);
        cJSON_AddNumberToObject(out, "shards", m->n_shards);
        cJSON_AddNumberToObject(out, "total_size", (double)m->total_size);
        cJSON_AddNumberToObject(out, "total_parameters", (double)m->total_parameters);
        cJSON_AddNumberToObject(out, "tensors_written", (double)m->tensors_written);
        cJSON_AddNumberToObject(out, "tensors_changed", (double)m->tensors_changed);
        cJSON_AddItemToObject(out, "files", files_json(m->out_files));
    }
    cJSON *base = cJSON_AddObjectToObject(j, "base");
    if (base) {
        cJSON_AddStringToObject(base, "name", m->base_name);
        cJSON_AddItemToObject(base, "files", files_json(m->base_files));
    }
    cJSON *ads = cJSON_AddArrayToObject(j, "adapters");
    for (int i = 0; ads && i < m->n_adapters; i++) {
        const mg_manifest_adapter *a = &m->adapters[i];
        cJSON *o = cJSON_CreateObject();
        if (!o) break;
        cJSON_AddNumberToObject(o, "order", i + 1);
        cJSON_AddStringToObject(o, "name", a->name);
        cJSON_AddNumberToObject(o, "weight", a->weight);
        cJSON_AddNumberToObject(o, "tensors_used", (double)a->tensors_used);
        cJSON_AddNumberToObject(o, "tensors_changed", (double)a->tensors_changed);
        cJSON_AddNumberToObject(o, "elements_changed", (double)a->elements_changed);
        cJSON_AddItemToObject(o, "files", files_json(a->files));
        cJSON_AddItemToObject(o, "adapter_config", a->config ? cJSON_Duplicate(a->config, 1) : cJSON_CreateNull());
        cJSON_AddItemToArray(ads, o);
    }
    cJSON *notes = cJSON_AddArrayToObject(j, "notes");
    for (size_t i = 0; notes && i < m->n_notes; i++) cJSON_AddItemToArray(notes, cJSON_CreateString(m->notes[i]));
    char *s = mg_json_pretty(j);
    cJSON_Delete(j);
    return s;
}
