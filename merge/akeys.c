/* akeys.c: adapter tensor names -> module slots (see akeys.h). Works on dot
 * segments: the first segment that is a PEFT marker (lora_A, lora_B,
 * lora_embedding_A/B, lora_magnitude_vector, base_layer, modules_to_save,
 * token_adapter) splits the name into the module before it and a tail that
 * must have one of the forms PEFT writes, optionally with one adapter name.
 * Also refuses tensor dtypes other than F32/BF16/F16. */
#include "akeys.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"

#define MG_MAX_SEGS 64
#define MG_MAX_NAME 1024

typedef struct entry {
    char *module;
    mg_slot slot;
    const st_tensor *t;
} entry;

/* The PEFT key fragment (or a description) of a slot, for messages. */
const char *mg_slot_name(mg_slot s)
{
    static const char *const names[MG_SLOT_COUNT] = {
        "lora_A",     "lora_B",      "lora_embedding_A",       "lora_embedding_B",     "lora_magnitude_vector",
        "base_layer", "full weight", "trainable_tokens_delta", "modules_to_save copy", "original_module copy",
    };
    return (unsigned)s < MG_SLOT_COUNT ? names[s] : "?";
}

/* Frees the classification; NULL-safe. */
void mg_akeys_free(mg_akeys *k)
{
    if (!k) return;
    for (size_t i = 0; i < k->n; i++) free(k->mods[i].module);
    free(k->mods);
    k->mods = NULL;
    k->n = 0;
}

/* Orders entries by module name. */
static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const entry *)a)->module, ((const entry *)b)->module);
}

/* Records the adapter name found in a key; all keys must agree. */
static ms_status note_name(char *seen, const char *name, const char *path, const char *key, ms_error *err)
{
    if (!seen[0]) {
        snprintf(seen, 128, "%s", name);
        return MS_OK;
    }
    if (strcmp(seen, name))
        return ms_seterr(err, MS_ERR_FORMAT,
                         "%s: tensor \"%s\" carries adapter name \"%s\" but others carry \"%s\"; one adapter per "
                         "file",
                         path, key, name, seen);
    return MS_OK;
}

/* Classifies one stripped name given as segments; sets *slot and *mod_end
 * (number of segments forming the module); *aname gets an adapter name or "". */
static ms_status classify(char **seg, int ns, const char *path, const char *key, mg_slot *slot, int *mod_end,
                          const char **aname, ms_error *err)
{
    *aname = "";
    for (int i = 1; i < ns; i++) {
        const char *s = seg[i];
        int tail = ns - i - 1; /* segments after the marker */
        const char *t1 = tail >= 1 ? seg[i + 1] : NULL, *t2 = tail >= 2 ? seg[i + 2] : NULL;
        *mod_end = i;
        if (!strcmp(s, "lora_A") || !strcmp(s, "lora_B")) {
            int isA = s[5] == 'A';
            const char *last = seg[ns - 1];
            if (!strcmp(last, "bias"))
                return ms_seterr(err, MS_ERR_UNSUPPORTED,
                                 "%s: tensor \"%s\" is a LoRA bias (lora_bias); Qwen3 Linears have no bias to merge "
                                 "it into",
                                 path, key);
            if (tail == 1 && !strcmp(t1, "weight")) {
                *slot = isA ? MG_SLOT_A : MG_SLOT_B;
                return MS_OK;
            }
            if (tail == 2 && !strcmp(t2, "weight")) {
                *aname = t1;
                *slot = isA ? MG_SLOT_A : MG_SLOT_B;
                return MS_OK;
            }
            break;
        }
        if (!strcmp(s, "lora_embedding_A") || !strcmp(s, "lora_embedding_B")) {
            if (tail > 1) break;
            if (tail == 1) *aname = t1;
            *slot = s[15] == 'A' ? MG_SLOT_EA : MG_SLOT_EB;
            return MS_OK;
        }
        if (!strcmp(s, "lora_magnitude_vector")) {
            *slot = MG_SLOT_MAG;
            if (tail == 0 || (tail == 1 && !strcmp(t1, "weight"))) return MS_OK;
            if (tail == 1 || (tail == 2 && !strcmp(t2, "weight"))) {
                *aname = t1;
                return MS_OK;
            }
            break;
        }
        if (!strcmp(s, "base_layer")) {
            if (tail == 1 && !strcmp(t1, "weight")) {
                *slot = MG_SLOT_BASE;
                return MS_OK;
            }
            break;
        }
        if (!strcmp(s, "modules_to_save") || !strcmp(s, "original_module")) {
            *slot = s[0] == 'm' ? MG_SLOT_MTS : MG_SLOT_ORIG;
            if (tail == 1 && !strcmp(t1, "weight")) return MS_OK;
            if (tail == 2 && !strcmp(t2, "weight")) {
                *aname = t1;
                return MS_OK;
            }
            break;
        }
        if (!strcmp(s, "token_adapter")) {
            if (tail >= 1 && !strcmp(t1, "trainable_tokens_delta") && tail <= 2) {
                if (tail == 2) *aname = t2;
                *slot = MG_SLOT_TOKENS;
                return MS_OK;
            }
            break;
        }
    }
    /* No marker: a plain parameter name is a full replacement of that weight. */
    if (ns >= 2 && !strcmp(seg[ns - 1], "weight")) {
        int ok = 1;
        for (int i = 0; i < ns - 1; i++)
            if (!strncmp(seg[i], "lora_", 5)) ok = 0;
        if (ok) {
            *mod_end = ns - 1;
            *slot = MG_SLOT_FULL;
            return MS_OK;
        }
    }
    return ms_seterr(err, MS_ERR_FORMAT,
                     "%s: tensor \"%s\" is not a PEFT LoRA key this tool understands (expected lora_A/lora_B "
                     "weights, lora_embedding_A/B, lora_magnitude_vector, base_layer, token_adapter or a full "
                     "modules_to_save weight)",
                     path, key);
}

/* Classifies every tensor of f into module slots. */
ms_status mg_akeys_classify(const st_file *f, const char *path, mg_akeys *out, const mg_log *lg, ms_error *err)
{
    memset(out, 0, sizeof *out);
    size_t n = st_file_count(f);
    entry *es = calloc(n ? n : 1, sizeof *es);
    if (!es) return ms_seterr(err, MS_ERR_NOMEM, "%s: out of memory", path);
    size_t ne = 0;
    ms_status st = MS_OK;
    char seen_name[128] = "";
    const size_t plen = strlen(MG_PEFT_PREFIX);
    if (n == 0) {
        st = ms_seterr(err, MS_ERR_FORMAT, "%s: the adapter holds no tensors", path);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const st_tensor *t = st_file_get(f, i);
        const char *key = t->name;
        if (strncmp(key, MG_PEFT_PREFIX, plen)) {
            st = ms_seterr(err, MS_ERR_FORMAT,
                           "%s: tensor \"%s\" does not start with \"%s\" as PEFT writes adapter keys", path, key,
                           MG_PEFT_PREFIX);
            goto out;
        }
        if (t->dtype != ST_F32 && t->dtype != ST_BF16 && t->dtype != ST_F16) {
            st = ms_seterr(err, MS_ERR_UNSUPPORTED,
                           "%s: tensor \"%s\" has dtype %s; only F32, BF16 and F16 adapters are supported", path, key,
                           st_dtype_name(t->dtype));
            goto out;
        }
        char buf[MG_MAX_NAME];
        if (strlen(key + plen) >= sizeof buf) {
            st = ms_seterr(err, MS_ERR_FORMAT, "%s: tensor name \"%.64s...\" is too long", path, key);
            goto out;
        }
        strcpy(buf, key + plen);
        char *seg[MG_MAX_SEGS];
        int ns = 0;
        for (char *p = buf, *save = NULL, *tok; (tok = strtok_r(p, ".", &save)); p = NULL) {
            if (ns == MG_MAX_SEGS) break;
            seg[ns++] = tok;
        }
        /* strtok_r skips empty segments: refuse names with "..", a leading or trailing dot. */
        size_t rest = strlen(key + plen);
        if (ns == 0 || ns == MG_MAX_SEGS || key[plen] == '.' || key[plen + rest - 1] == '.' ||
            strstr(key + plen, "..")) {
            st = ms_seterr(err, MS_ERR_FORMAT, "%s: tensor \"%s\" has a malformed name", path, key);
            goto out;
        }
        mg_slot slot = MG_SLOT_FULL;
        int mod_end = 0;
        const char *aname;
        if ((st = classify(seg, ns, path, key, &slot, &mod_end, &aname, err))) goto out;
        if (aname[0] && (st = note_name(seen_name, aname, path, key, err))) goto out;
        /* Rebuild the module name from its segments. */
        size_t mlen = 0;
        for (int s = 0; s < mod_end; s++) mlen += strlen(seg[s]) + 1;
        char *mod = malloc(mlen ? mlen : 1);
        if (!mod) {
            st = ms_seterr(err, MS_ERR_NOMEM, "%s: out of memory", path);
            goto out;
        }
        mod[0] = '\0';
        for (int s = 0; s < mod_end; s++) {
            if (s) strcat(mod, ".");
            strcat(mod, seg[s]);
        }
        es[ne].module = mod;
        es[ne].slot = slot;
        es[ne].t = t;
        ne++;
    }
    if (seen_name[0])
        mg_logf(lg, MG_LOG_WARN,
                "%s: tensor names still carry the adapter name \"%s\" (PEFT removes it when saving); accepted "
                "because it is used consistently",
                path, seen_name);
    qsort(es, ne, sizeof *es, cmp_entry);
    out->mods = calloc(ne, sizeof *out->mods);
    if (!out->mods) {
        st = ms_seterr(err, MS_ERR_NOMEM, "%s: out of memory", path);
        goto out;
    }
    for (size_t i = 0; i < ne; i++) {
        mg_amod *m;
        if (out->n && !strcmp(out->mods[out->n - 1].module, es[i].module)) {
            m = &out->mods[out->n - 1];
            free(es[i].module);
        } else {
            m = &out->mods[out->n++];
            m->module = es[i].module;
        }
        es[i].module = NULL;
        if (m->t[es[i].slot]) {
            st = ms_seterr(err, MS_ERR_FORMAT, "%s: tensors \"%s\" and \"%s\" are both the %s of module \"%s\"", path,
                           m->key[es[i].slot], es[i].t->name, mg_slot_name(es[i].slot), m->module);
            goto out;
        }
        m->t[es[i].slot] = es[i].t;
        m->key[es[i].slot] = es[i].t->name;
    }
    out->n_tensors = ne;
out:
    for (size_t i = 0; i < ne; i++) free(es[i].module);
    free(es);
    if (st) mg_akeys_free(out);
    return st;
}

/* Binary search by module name. */
const mg_amod *mg_akeys_find(const mg_akeys *k, const char *name)
{
    size_t lo = 0, hi = k->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(k->mods[mid].module, name);
        if (!c) return &k->mods[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}
