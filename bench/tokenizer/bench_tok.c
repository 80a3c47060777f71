/* bench_tok.c: encode throughput of medserve's tokenizer on a JSONL corpus
 * (one JSON string per line), one thread. Prints one JSON line: bytes,
 * tokens, encode seconds (parsing excluded), MB/s and an FNV-1a hash of all
 * ids, which bench_hf.py computes the same way to prove equal output.
 * Usage: bench_tok TOKENIZER_DIR CORPUS.jsonl */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "base/json.h"
#include "text/tokenizer.h"

/* Monotonic time in seconds. */
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Loads, parses the corpus, then times tok_encode over every document. */
int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: bench_tok TOKENIZER_DIR CORPUS.jsonl\n");
        return 2;
    }
    ms_error e = {0};
    tokenizer *t = NULL;
    if (tok_load(argv[1], &t, &e)) {
        fprintf(stderr, "bench_tok: %s\n", e.message);
        return 2;
    }
    char *buf;
    size_t len;
    if (file_read_all(argv[2], (size_t)1 << 32, &buf, &len, &e)) {
        fprintf(stderr, "bench_tok: %s\n", e.message);
        return 2;
    }
    /* parse every document first, so only encoding is timed */
    size_t n_docs = 0, cap = 1024;
    char **docs = malloc(cap * sizeof *docs);
    size_t *lens = malloc(cap * sizeof *lens);
    for (char *p = buf; p < buf + len;) {
        char *nl = memchr(p, '\n', (size_t)(buf + len - p));
        size_t l = nl ? (size_t)(nl - p) : (size_t)(buf + len - p);
        cJSON *j = l ? cJSON_ParseWithLength(p, l) : NULL;
        if (cJSON_IsString(j)) {
            if (n_docs == cap) {
                cap *= 2;
                docs = realloc(docs, cap * sizeof *docs);
                lens = realloc(lens, cap * sizeof *lens);
            }
            lens[n_docs] = strlen(j->valuestring);
            docs[n_docs++] = strdup(j->valuestring);
        }
        cJSON_Delete(j);
        p += l + 1;
    }
    size_t bytes = 0, tokens = 0;
    uint64_t h = 0xcbf29ce484222325ull;
    double enc = 0;
    for (size_t d = 0; d < n_docs; d++) {
        int32_t *ids = NULL;
        size_t n = 0;
        double a = now_s();
        if (tok_encode(t, docs[d], lens[d], &ids, &n, &e)) {
            fprintf(stderr, "bench_tok: document %zu: %s\n", d, e.message);
            return 1;
        }
        enc += now_s() - a;
        for (size_t i = 0; i < n; i++) h = (h ^ (uint64_t)(uint32_t)ids[i]) * 0x100000001b3ull;
        bytes += lens[d];
        tokens += n;
        free(ids);
    }
    printf("{\"impl\": \"medserve\", \"docs\": %zu, \"bytes\": %zu, \"tokens\": %zu, \"seconds\": %.4f, "
           "\"mbps\": %.2f, \"ids_fnv\": \"%016llx\"}\n",
           n_docs, bytes, tokens, enc, (double)bytes / enc / 1e6, (unsigned long long)h);
    for (size_t d = 0; d < n_docs; d++) free(docs[d]);
    free(docs);
    free(lens);
    free(buf);
    tok_free(t);
    return 0;
}
