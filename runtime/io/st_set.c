/* st_set.c: the weights of a model directory as one set of tensors:
 * model.safetensors, or model.safetensors.index.json and the shards it names
 * (docs/numerics.md §5.4). Checks that shard names are plain basenames, that each
 * listed shard exists and validates, and that every tensor lives exactly in
 * the shard the map says and in no other. Refuses pickle checkpoints.
 *
 * Choice when both model.safetensors and the index exist: model.safetensors
 * is used, because transformers' from_pretrained loads that one first, and
 * the runtime must serve the weights the reference would; st_set_note says
 * so. Shard files that the index does not name are ignored, as HF does.
 *
 * Does not: validate tensor names against a model layout (model.c). */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/err.h"
#include "base/json.h"
#include "io/st.h"

#define ST_INDEX_NAME "model.safetensors.index.json"
#define ST_SINGLE_NAME "model.safetensors"
#define ST_MAX_INDEX_BYTES (64u << 20)
#define ST_MAX_SET_TENSORS (1u << 20)
#define ST_MAX_SHARDS 65536

struct st_set {
    char *dir;
    st_file **files;
    size_t nfiles;
    const st_tensor **by_name; /* n, sorted by name */
    size_t n;
    char *note;
};

typedef struct map_entry {
    const char *tensor;
    size_t file; /* index into the shard list */
} map_entry;

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const map_entry *)a)->tensor, ((const map_entry *)b)->tensor);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int cmp_tensor_ptr(const void *a, const void *b)
{
    return strcmp((*(const st_tensor *const *)a)->name, (*(const st_tensor *const *)b)->name);
}

/* Joins dir and name into a malloc'd path. */
static char *join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    size_t k = a;
    if (a && dir[a - 1] != '/') p[k++] = '/';
    memcpy(p + k, name, b + 1);
    return p;
}

static int is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* A shard name must be a plain file name in the same directory. */
static int plain_basename(const char *s)
{
    if (!*s || strcmp(s, ".") == 0 || strcmp(s, "..") == 0) return 0;
    if (strlen(s) > 255) return 0;
    return strchr(s, '/') == NULL && strchr(s, '\\') == NULL;
}

/* Sorts the set's tensors by name; names are unique by construction. */
static ms_status build_index(st_set *s, ms_error *err)
{
    size_t n = 0;
    for (size_t i = 0; i < s->nfiles; i++) n += st_file_count(s->files[i]);
    s->by_name = malloc((n ? n : 1) * sizeof *s->by_name);
    if (!s->by_name) return ms_seterr(err, MS_ERR_NOMEM, "%s: out of memory", s->dir);
    for (size_t i = 0; i < s->nfiles; i++)
        for (size_t j = 0; j < st_file_count(s->files[i]); j++) s->by_name[s->n++] = st_file_get(s->files[i], j);
    qsort(s->by_name, s->n, sizeof *s->by_name, cmp_tensor_ptr);
    for (size_t i = 1; i < s->n; i++)
        if (strcmp(s->by_name[i - 1]->name, s->by_name[i]->name) == 0)
            return ms_seterr(err, MS_ERR_FORMAT, "%s: tensor \"%.200s\" appears in both %s and %s", s->dir,
                             s->by_name[i]->name, s->by_name[i - 1]->path, s->by_name[i]->path);
    return MS_OK;
}

/* Refuses a directory holding pickle checkpoints (and no safetensors). */
static ms_status no_weights(const char *dir, ms_error *err)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        char found[300] = "";
        while ((e = readdir(d))) {
            const char *nm = e->d_name;
            if (st_is_pickle_name(nm) || strstr(nm, ".bin.index.json")) {
                if (!found[0] || strcmp(nm, found) < 0) snprintf(found, sizeof found, "%s", nm);
            }
        }
        closedir(d);
        if (found[0]) {
            char *p = join(dir, found);
            ms_status s = st_refuse_pickle(p ? p : dir, "the directory has only pickle weights", err);
            free(p);
            return s;
        }
    }
    return ms_seterr(err, MS_ERR_NOTFOUND, "%s: no %s or %s in the directory", dir, ST_SINGLE_NAME, ST_INDEX_NAME);
}

/* Loads the index and its shards into s. */
static ms_status open_sharded(st_set *s, const char *index_path, ms_error *err)
{
    ms_status st = MS_OK;
    map_entry *map = NULL;
    char **shard_names = NULL;
    size_t nmap = 0, nshards = 0;
    cJSON *root = json_load_file(index_path, ST_MAX_INDEX_BYTES, err);
    if (!root) return err ? err->status : MS_ERR_FORMAT;
    if (!cJSON_IsObject(root)) {
        st = ms_seterr(err, MS_ERR_FORMAT, "%s: index is not a JSON object", index_path);
        goto out;
    }
    const cJSON *meta = json_get(root, "metadata");
    if (meta && !cJSON_IsNull(meta)) {
        if (!cJSON_IsObject(meta)) {
            st = ms_seterr(err, MS_ERR_FORMAT, "%s: field \"metadata\" is not an object", index_path);
            goto out;
        }
        int64_t total;
        char what[600];
        snprintf(what, sizeof what, "%s: metadata", index_path);
        st = json_get_int(meta, "total_size", 0, 0, INT64_MAX, &total, what, err);
        if (st) goto out;
    }
    const cJSON *wm = json_get(root, "weight_map");
    if (!cJSON_IsObject(wm)) {
        st = ms_seterr(err, MS_ERR_FORMAT, "%s: field \"weight_map\" is missing or not an object", index_path);
        goto out;
    }
    for (const cJSON *c = wm->child; c; c = c->next) nmap++;
    if (nmap == 0) {
        st = ms_seterr(err, MS_ERR_FORMAT, "%s: weight_map is empty", index_path);
        goto out;
    }
    if (nmap > ST_MAX_SET_TENSORS) {
        st = ms_seterr(err, MS_ERR_FORMAT, "%s: weight_map has %zu entries, more than %u", index_path, nmap,
                       ST_MAX_SET_TENSORS);
        goto out;
    }
    map = calloc(nmap, sizeof *map);
    shard_names = calloc(nmap, sizeof *shard_names);
    if (!map || !shard_names) {
        st = ms_seterr(err, MS_ERR_NOMEM, "%s: out of memory", index_path);
        goto out;
    }
    size_t i = 0;
    for (const cJSON *c = wm->child; c; c = c->next, i++) {
        if (!cJSON_IsString(c)) {
            st = ms_seterr(err, MS_ERR_FORMAT, "%s: weight_map value for \"%.200s\" is not a string", index_path,
                           c->string);
            goto out;
        }
        const char *fn = c->valuestring;
        if (!plain_basename(fn)) {
            st = ms_seterr(err, MS_ERR_FORMAT,
                           "%s: weight_map: shard name \"%.200s\" for \"%.200s\" is not a plain file name "
                           "(no '/', '\\\\', '..' or absolute paths)",
                           index_path, fn, c->string);
            goto out;
        }
        shard_names[i] = (char *)fn;
        map[i].tensor = c->string;
    }
    /* Distinct shard names, sorted (model-00001-of-... first). */
    qsort(shard_names, nmap, sizeof *shard_names, cmp_str);
    for (i = 0; i < nmap; i++)
        if (nshards == 0 || strcmp(shard_names[nshards - 1], shard_names[i]) != 0)
            shard_names[nshards++] = shard_names[i];
    if (nshards > ST_MAX_SHARDS) {
        st = ms_seterr(err, MS_ERR_FORMAT, "%s: %zu shard files, more than %d", index_path, nshards, ST_MAX_SHARDS);
        goto out;
    }
    i = 0;
    for (const cJSON *c = wm->child; c; c = c->next, i++) {
        const char *fn = c->valuestring;
        char **hit = bsearch(&fn, shard_names, nshards, sizeof *shard_names, cmp_str);
        map[i].file = (size_t)(hit - shard_names);
    }
    qsort(map, nmap, sizeof *map, cmp_entry);
    s->files = calloc(nshards, sizeof *s->files);
    if (!s->files) {
        st = ms_seterr(err, MS_ERR_NOMEM, "%s: out of memory", index_path);
        goto out;
    }
    for (size_t k = 0; k < nshards; k++) {
        char *p = join(s->dir, shard_names[k]);
        if (!p) {
            st = ms_seterr(err, MS_ERR_NOMEM, "%s: out of memory", index_path);
            goto out;
        }
        if (!st_is_pickle_name(p) && !is_file(p)) {
            st = ms_seterr(err, MS_ERR_NOTFOUND, "%s: index lists shard \"%.200s\" but %s does not exist", index_path,
                           shard_names[k], p);
            free(p);
            goto out;
        }
        st = st_file_open(p, &s->files[k], err);
        free(p);
        if (st) goto out;
        s->nfiles++;
    }
    /* Every mapped tensor is in its shard ... */
    for (i = 0; i < nmap; i++) {
        if (!st_file_find(s->files[map[i].file], map[i].tensor)) {
            st = ms_seterr(err, MS_ERR_FORMAT, "%s: tensor \"%.200s\" is mapped to %s, which does not contain it",
                           index_path, map[i].tensor, shard_names[map[i].file]);
            goto out;
        }
    }
    /* ... and every shard tensor is mapped to that shard. */
    for (size_t k = 0; k < nshards; k++) {
        for (size_t j = 0; j < st_file_count(s->files[k]); j++) {
            map_entry key = {st_file_get(s->files[k], j)->name, 0};
            const map_entry *m = bsearch(&key, map, nmap, sizeof *map, cmp_entry);
            if (!m) {
                st = ms_seterr(err, MS_ERR_FORMAT, "%s: tensor \"%.200s\" in shard %s is not listed in the index",
                               index_path, key.tensor, shard_names[k]);
                goto out;
            }
            if (m->file != k) {
                st = ms_seterr(err, MS_ERR_FORMAT,
                               "%s: tensor \"%.200s\" is in shard %s but the index maps it to %s (a tensor must "
                               "live in exactly one shard)",
                               index_path, key.tensor, shard_names[k], shard_names[m->file]);
                goto out;
            }
        }
    }
    st = build_index(s, err);
out:
    free(map);
    free(shard_names);
    cJSON_Delete(root);
    return st;
}

ms_status st_set_open(const char *dir, st_set **out, ms_error *err)
{
    *out = NULL;
    if (!dir) return ms_seterr(err, MS_ERR_INVALID, "st_set_open: NULL path");
    struct stat sb;
    if (stat(dir, &sb) != 0)
        return ms_seterr(err, errno == ENOENT ? MS_ERR_NOTFOUND : MS_ERR_IO, "%s: cannot open: %s", dir,
                         strerror(errno));
    st_set *s = calloc(1, sizeof *s);
    if (!s || !(s->dir = strdup(dir))) {
        free(s);
        return ms_seterr(err, MS_ERR_NOMEM, "%s: out of memory", dir);
    }
    ms_status st;
    char *single = NULL, *index = NULL;
    if (S_ISREG(sb.st_mode)) {
        s->files = calloc(1, sizeof *s->files);
        if (!s->files) {
            st = ms_seterr(err, MS_ERR_NOMEM, "%s: out of memory", dir);
            goto out;
        }
        st = st_file_open(dir, &s->files[0], err);
        if (st) goto out;
        s->nfiles = 1;
        st = build_index(s, err);
        goto out;
    }
    single = join(dir, ST_SINGLE_NAME);
    index = join(dir, ST_INDEX_NAME);
    if (!single || !index) {
        st = ms_seterr(err, MS_ERR_NOMEM, "%s: out of memory", dir);
        goto out;
    }
    if (is_file(single)) {
        if (is_file(index)) {
            size_t k = strlen(dir) + 200;
            s->note = malloc(k);
            if (s->note)
                snprintf(s->note, k,
                         "%s: both %s and %s exist; using %s, as transformers does (remove the other to "
                         "silence this)",
                         dir, ST_SINGLE_NAME, ST_INDEX_NAME, ST_SINGLE_NAME);
        }
        s->files = calloc(1, sizeof *s->files);
        if (!s->files) {
            st = ms_seterr(err, MS_ERR_NOMEM, "%s: out of memory", dir);
            goto out;
        }
        st = st_file_open(single, &s->files[0], err);
        if (st) goto out;
        s->nfiles = 1;
        st = build_index(s, err);
    } else if (is_file(index)) {
        st = open_sharded(s, index, err);
    } else {
        st = no_weights(dir, err);
    }
out:
    free(single);
    free(index);
    if (st) {
        st_set_close(s);
        return st;
    }
    *out = s;
    return MS_OK;
}

void st_set_close(st_set *s)
{
    if (!s) return;
    for (size_t i = 0; i < s->nfiles; i++) st_file_close(s->files[i]);
    free(s->files);
    free(s->by_name);
    free(s->note);
    free(s->dir);
    free(s);
}

size_t st_set_count(const st_set *s)
{
    return s ? s->n : 0;
}

const st_tensor *st_set_get(const st_set *s, size_t i)
{
    return s && i < s->n ? s->by_name[i] : NULL;
}

const st_tensor *st_set_find(const st_set *s, const char *name)
{
    if (!s || !name) return NULL;
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(s->by_name[mid]->name, name);
        if (c == 0) return s->by_name[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

size_t st_set_nfiles(const st_set *s)
{
    return s ? s->nfiles : 0;
}

const st_file *st_set_file(const st_set *s, size_t i)
{
    return s && i < s->nfiles ? s->files[i] : NULL;
}

const char *st_set_note(const st_set *s)
{
    return s ? s->note : NULL;
}
