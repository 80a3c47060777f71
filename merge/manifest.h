/* manifest.h: medserve-manifest.json, the provenance record of an export:
 * tool and version, output dtype/tie/shards, SHA-256 and size of every output
 * file and of every input file read (base and adapters), each adapter's
 * config as given, its weight, how many tensors it supplied and how many
 * elements it changed, and notes (e.g. untied embeddings). Deterministic: no
 * times, no absolute paths, lists in fixed order. */
#ifndef MG_MANIFEST_H
#define MG_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "mg.h"

typedef struct mg_filerec {
    char name[256]; /* relative to its directory */
    char sha256[65];
    uint64_t bytes;
} mg_filerec;

typedef struct mg_filelist {
    mg_filerec *v;
    size_t n, cap;
} mg_filelist;

/* How a long hash reports progress and stops early (all fields may be NULL). */
typedef struct mg_hashing {
    const volatile int *cancel;               /* nonzero: stop with MS_ERR_CANCELLED */
    void (*tick)(void *user, uint64_t bytes); /* called after each block read */
    void *user;
} mg_hashing;

/* Hashes dir/name (streaming reads, cancellable) and appends it. */
ms_status mg_filelist_add(mg_filelist *l, const char *dir, const char *name, const mg_hashing *h, ms_error *err);
/* Appends a record whose hash is already known. */
ms_status mg_filelist_add_known(mg_filelist *l, const char *name, const char *sha256, uint64_t bytes, ms_error *err);
/* Sorts by name. */
void mg_filelist_sort(mg_filelist *l);
void mg_filelist_free(mg_filelist *l);

typedef struct mg_manifest_adapter {
    const char *name; /* directory basename */
    double weight;
    const cJSON *config; /* adapter_config.json as parsed */
    const mg_filelist *files;
    size_t tensors_used;
    size_t tensors_changed;
    uint64_t elements_changed;
} mg_manifest_adapter;

typedef struct mg_manifest {
    const char *base_name;
    const mg_filelist *base_files;
    const mg_manifest_adapter *adapters;
    int n_adapters;
    const char *dtype; /* "bfloat16" ... */
    int tie_word_embeddings, untied;
    int n_shards;
    uint64_t total_size, total_parameters;
    size_t tensors_written, tensors_changed;
    const mg_filelist *out_files;
    const char *const *notes;
    size_t n_notes;
} mg_manifest;

/* The manifest text (indent-2 JSON, trailing newline); malloc'd or NULL. */
char *mg_manifest_text(const mg_manifest *m);

#endif
