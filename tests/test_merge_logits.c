/* test_merge_logits.c: a tied-embedding merge judged by what the model
 * computes. tests/data/merge/logits (tests/ref/gen_merge_fixtures.py) holds an
 * adapter with LoRA on lm_head, embed_tokens and q_proj for a tied Qwen3 base
 * with the real vocabulary, and the float32 logits of the UNMERGED PEFT model
 * on a set of columns. Here the base is regenerated with build/tools/synth
 * (its SHA-256 must equal the fixture's), merged with mg_run (which unties:
 * docs/numerics.md §4.4), loaded with model_load and run on the CPU backend.
 * Pass: every compared logit within 2e-2 of the unmerged model (the merged
 * weights are rounded to bf16 once; the fixture records 0.008 for the same
 * export in transformers), the argmax equal wherever the unmerged model's
 * top-2 margin exceeds that tolerance, and the error far below that of PEFT's
 * own in-place merge (which applies the head delta to the input embedding). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/json.h"
#include "base/sha256.h"
#include "engine/backend.h"
#include "engine/kv.h"
#include "fsio.h"
#include "mg.h"
#include "model/model.h"
#include "util.h"

#define FX "tests/data/merge/logits"
#define TOL 2e-2

static void t_logits(void)
{
    ms_error e = {0};
    cJSON *fx = json_load_file(FX "/logits.json", 1 << 22, &e);
    REQUIRE(fx != NULL, "fixture: %s", e.message);
    char tmp[64], base[128], out[128], cmd[2048];
    snprintf(tmp, sizeof tmp, "/tmp/ms_merge_logits_XXXXXX");
    if (!mkdtemp(tmp)) return;
    snprintf(base, sizeof base, "%s/base", tmp);
    snprintf(out, sizeof out, "%s/out", tmp);
    size_t len = (size_t)snprintf(cmd, sizeof cmd, "build/tools/synth --quiet --out %s", base);
    const cJSON *a;
    cJSON_ArrayForEach(a, json_get(fx, "synth_args"))
    {
        CHECK(strspn(a->valuestring, "abcdefghijklmnopqrstuvwxyz0123456789.-") == strlen(a->valuestring), "arg");
        len += (size_t)snprintf(cmd + len, sizeof cmd - len, " %s", a->valuestring);
    }
    model *m = NULL;
    const backend_ops *ops = NULL;
    backend *b = NULL;
    kv_pool *kv = NULL;
    float *lg = NULL;
    CHECK(system(cmd) == 0, "synth failed: %s", cmd);
    char st_path[160], digest[65];
    snprintf(st_path, sizeof st_path, "%s/model.safetensors", base);
    CHECK(sha256_file(st_path, digest, &e) == MS_OK && !strcmp(digest, json_get(fx, "safetensors_sha256")->valuestring),
          "synth wrote other weights than the fixture was made from");
    mg_opts o;
    memset(&o, 0, sizeof o);
    o.base_dir = base, o.out_dir = out, o.out_dtype = -1, o.n_adapters = 1;
    o.adapters[0].dir = FX "/adapter", o.adapters[0].weight = 1;
    mg_result res;
    CHECK(mg_run(&o, &res, &e) == MS_OK, "merge: %s", e.message);
    CHECK(res.untied, "the tied base must be untied");
    if (model_load(out, &m, &e) != MS_OK) {
        CHECK(0, "model_load: %s", e.message);
        goto done;
    }
    CHECK(!m->cfg.tie_word_embeddings, "export config still tied");
    int V = m->cfg.vocab_size, n = cJSON_GetArraySize(json_get(fx, "ids"));
    CHECK(V == json_get(fx, "vocab")->valueint, "vocab %d", V);
    backend_params bp = {.n_threads = 2, .max_seqs = 1, .max_tokens = 64, .n_blocks = 8, .block_size = 16};
    if (!(ops = backend_select(MS_BACKEND_CPU, m, 0, &e)) || ops->create(m, &bp, &b, &e) != MS_OK ||
        kv_pool_create(8, 16, 1, 4, &kv, &e) != MS_OK || kv_reserve(kv, 0, n, &e) != MS_OK) {
        CHECK(0, "backend: %s", e.message);
        goto done;
    }
    int32_t ids[64];
    int i = 0;
    cJSON_ArrayForEach(a, json_get(fx, "ids")) ids[i++] = (int32_t)a->valuedouble;
    lg = malloc(sizeof(float) * (size_t)n * (size_t)V);
    fwd_seq s = {ids, n, 0, kv_blocks(kv, 0), 2, lg};
    if (!lg || ops->forward(b, &s, 1, &e) != MS_OK) {
        CHECK(0, "forward: %s", e.message);
        goto done;
    }
    const cJSON *cols = json_get(fx, "cols"), *ref = json_get(fx, "logits_unmerged_peft"),
                *inpl = json_get(fx, "logits_peft_inplace_merge"), *am = json_get(fx, "argmax_unmerged_peft");
    double worst = 0, worst_inpl = 0;
    int wt = -1, wc = -1;
    for (int t = 0; t < n; t++) {
        const cJSON *rr = cJSON_GetArrayItem(ref, t), *ri = cJSON_GetArrayItem(inpl, t);
        int k = 0;
        double top1 = -1e30, top2 = -1e30;
        const cJSON *c;
        cJSON_ArrayForEach(c, cols)
        {
            int col = (int)c->valuedouble;
            double want = cJSON_GetArrayItem(rr, k)->valuedouble, other = cJSON_GetArrayItem(ri, k)->valuedouble;
            double d = fabs(lg[(size_t)t * V + col] - want);
            if (d > worst) worst = d, wt = t, wc = col;
            if (fabs(other - want) > worst_inpl) worst_inpl = fabs(other - want);
            if (want > top1) top2 = top1, top1 = want;
            else if (want > top2) top2 = want;
            k++;
        }
        int best = 0;
        for (int v = 1; v < V; v++)
            if (lg[(size_t)t * V + v] > lg[(size_t)t * V + best]) best = v;
        int want_am = cJSON_GetArrayItem(am, t)->valueint;
        CHECK(best == want_am || top1 - top2 <= TOL, "position %d: argmax %d, unmerged PEFT %d", t, best, want_am);
    }
    printf("  logits vs unmerged PEFT: max |diff| %.5f (position %d, id %d); PEFT's in-place merge: %.4f\n", worst, wt,
           wc, worst_inpl);
    CHECK(worst <= TOL, "max |diff| %.5f over %.3f", worst, TOL);
    CHECK(worst * 10 < worst_inpl,
          "the untied export should be far closer to the unmerged model than an in-place merge");
done:
    free(lg);
    kv_pool_free(kv);
    if (b) ops->free(b);
    model_free(m);
    cJSON_Delete(fx);
    mg_rmtree(tmp);
}

int main(int argc, char **argv)
{
    static const test_case cases[] = {
        {"merge_tied_logits_vs_unmerged_peft", t_logits},
    };
    return test_main(argc, argv, cases, 1);
}
