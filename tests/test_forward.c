/* test_forward.c: the CPU forward pass against transformers.
 *
 * For each fixture in tests/data/infer/ (written by tests/ref/gen_infer_fixtures.py from HF
 * Qwen3ForCausalLM), the model is regenerated with build/tools/synth into a temporary
 * directory (its safetensors SHA-256 must equal the fixture's, so the weights are the ones HF
 * saw), loaded with model_load and run on the CPU backend backend_select picks (cpu-fast for
 * the bf16 fixtures, cpu-reference for f32 and f16). Checks:
 *   - per-position logits on the fixture's vocabulary columns and at HF's top-5 ids: max abs
 *     difference within the fixture's tolerance (1e-3 f32, 2e-2 bf16, 5e-3 f16); the worst
 *     are printed; bf16 fixtures are checked on the reference backend as well;
 *   - per-position argmax equal to HF's (where HF's own top-2 margin is within the tolerance,
 *     i.e. a bf16 near tie, our choice must be within the tolerance of HF's choice);
 *   - greedy continuations (64 tokens, all prompts decoded together) identical to HF's;
 *   - batch invariance: all prompts prefilled in one call give bitwise the logits of each
 *     alone, and a batched decode step gives bitwise the logits of the same step alone;
 *   - chunked prefill (1, 3, 7, rest) gives bitwise the logits of a prefill at once.
 * Under MEDSERVE_SANITIZED=1 less is compared (see run_fixture) to stay quick. The backend
 * runs on one thread (a shared 2-core machine makes OpenMP barriers slow); a second backend
 * with two threads must give bitwise the same logits. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/json.h"
#include "base/sha256.h"
#include "engine/backend.h"
#include "engine/kv.h"
#include "model/model.h"
#include "util.h"

#define FIXTURE_DIR "tests/data/infer"
#define SYNTH "build/tools/synth"
#define MAX_PROMPTS 8
#define BLOCK 16
#define MAX_CTX 256

static const char *const FIXTURES[] = {
    "a_tied_gqa2_f32", "b_untied_gqa4_bf16", "c_bias_yarn_f32", "d_tied_bf16_v5config", "e_untied_mha_f16",
};

typedef struct prompt {
    int32_t *ids;
    int n;
    int32_t *greedy;
    int n_greedy;
} prompt;

typedef struct run {
    model *m;
    const backend_ops *ops; /* backend_select's choice */
    backend *b;
    kv_pool *kv;
    int V;
    char tmp[64];
} run;

/* Reads an int array member into a malloc'd buffer. */
static int32_t *json_ints(const cJSON *arr, int *n)
{
    *n = cJSON_GetArraySize(arr);
    int32_t *v = malloc(sizeof(int32_t) * (size_t)(*n ? *n : 1));
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, arr) v[i++] = (int32_t)e->valuedouble;
    return v;
}

/* Runs synth with the fixture's arguments into a fresh temp dir; returns 0 on success. */
static int synth_model(const cJSON *args, run *r, char *dir, size_t cap)
{
    snprintf(r->tmp, sizeof r->tmp, "/tmp/ms_test_fwd_XXXXXX");
    if (!mkdtemp(r->tmp)) return -1;
    snprintf(dir, cap, "%s/model", r->tmp);
    char cmd[2048];
    size_t len = (size_t)snprintf(cmd, sizeof cmd, "%s", SYNTH);
    const cJSON *a;
    cJSON_ArrayForEach(a, args)
    {
        /* fixture arguments are plain tokens; refuse anything a shell would interpret */
        if (!cJSON_IsString(a) ||
            strspn(a->valuestring, "abcdefghijklmnopqrstuvwxyz0123456789.:-_") != strlen(a->valuestring))
            return -1;
        len += (size_t)snprintf(cmd + len, sizeof cmd - len, " %s", a->valuestring);
    }
    snprintf(cmd + len, sizeof cmd - len, " --quiet --out %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Index of the largest logit, lowest id on ties (HF argmax). */
static int argmax(const float *x, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* Forward of one sequence (slot's blocks), every position's logits into out [n, V]. */
static int fwd_one(run *r, int slot, const int32_t *ids, int n, int pos0, int mode, float *out)
{
    ms_error e = {0};
    if (kv_reserve(r->kv, slot, pos0 + n, &e) != MS_OK) {
        printf("  kv_reserve: %s\n", e.message);
        return -1;
    }
    fwd_seq s = {ids, n, pos0, kv_blocks(r->kv, slot), mode, out};
    if (r->ops->forward(r->b, &s, 1, &e) != MS_OK) {
        printf("  forward: %s\n", e.message);
        return -1;
    }
    return 0;
}

/* Compares logits of one prompt [n, V] with the fixture; returns the worst abs diff. */
static double check_logits(const cJSON *pj, const float *lg, int t0, int n, int V, const cJSON *cols, double tol,
                           const char *what)
{
    const cJSON *ref = json_get(pj, "logits"), *t5 = json_get(pj, "top5_ids"), *t5v = json_get(pj, "top5_logits"),
                *am = json_get(pj, "argmax");
    double worst = 0;
    int wpos = -1, wcol = -1, bad_argmax = 0;
    double wours = 0, wref = 0;
    for (int t = t0; t < n; t++) {
        const float *row = lg + (size_t)(t - t0) * (size_t)V;
        const cJSON *rr = cJSON_GetArrayItem(ref, t), *c, *v;
        int k = 0;
        cJSON_ArrayForEach(c, cols)
        {
            v = cJSON_GetArrayItem(rr, k++);
            double d = fabs((double)row[c->valueint] - v->valuedouble);
            if (d > worst || d != d) {
                worst = d != d ? INFINITY : d;
                wpos = t, wcol = c->valueint, wours = row[c->valueint], wref = v->valuedouble;
            }
        }
        const cJSON *ti = cJSON_GetArrayItem(t5, t), *tv = cJSON_GetArrayItem(t5v, t);
        for (int j = 0; j < 5; j++) {
            int id = cJSON_GetArrayItem(ti, j)->valueint;
            double rv = cJSON_GetArrayItem(tv, j)->valuedouble, d = fabs((double)row[id] - rv);
            if (d > worst || d != d) {
                worst = d != d ? INFINITY : d;
                wpos = t, wcol = id, wours = row[id], wref = rv;
            }
        }
        int ours = argmax(row, V), hf = cJSON_GetArrayItem(am, t)->valueint;
        if (ours != hf) {
            /* Accepted only where HF itself has a near tie: its top-2 margin and our gap
             * between the two ids are both within the tolerance (one bf16 ulp). */
            double hf_margin = cJSON_GetArrayItem(tv, 0)->valuedouble - cJSON_GetArrayItem(tv, 1)->valuedouble;
            int near_tie = hf_margin <= tol && (double)row[ours] - row[hf] <= tol;
            bad_argmax += !near_tie;
            printf("  %s: position %d argmax %d (%.7g) vs HF %d (%.7g here; HF top-2 margin %.3g)%s\n", what, t, ours,
                   row[ours], hf, row[hf], hf_margin, near_tie ? ": a near tie within tolerance, accepted" : "");
        }
    }
    printf("  %s: %d positions, max |diff| %.3g at position %d id %d (ours %.7g, HF %.7g), tol %g\n", what, n - t0,
           worst, wpos, wcol, wours, wref, tol);
    CHECK(worst <= tol, "%s: logits differ from HF by %g > %g", what, worst, tol);
    CHECK(bad_argmax == 0, "%s: %d positions with another argmax than HF", what, bad_argmax);
    return worst;
}

/* Runs every check on one fixture. */
static void run_fixture(const char *name)
{
    char path[512], dir[256];
    ms_error e = {0};
    snprintf(path, sizeof path, "%s/%s.json", FIXTURE_DIR, name);
    cJSON *fx = json_load_file(path, 64u << 20, &e);
    REQUIRE(fx != NULL, "%s", e.message);
    /* Under the sanitizers (slow) every prefill produces and compares only the last
     * position's logits, greedy runs 6 steps and the weights are not hashed. */
    const int sanitized = getenv("MEDSERVE_SANITIZED") != NULL, mode = sanitized ? 1 : 2;
    run r = {0};
    prompt p[MAX_PROMPTS] = {{0}};
    int np = 0;
    float *alone[MAX_PROMPTS] = {0}, *batched[MAX_PROMPTS] = {0}, *chunk = NULL, *dec = NULL, *dec1 = NULL;
    const double tol = json_get(fx, "tolerance")->valuedouble;
    const cJSON *cols = json_get(fx, "columns"), *prompts = json_get(fx, "prompts");

    if (synth_model(json_get(fx, "synth_args"), &r, dir, sizeof dir) != 0) {
        CHECK(0, "%s: %s failed", name, SYNTH);
        goto out;
    }
    char digest[65], st_path[300];
    snprintf(st_path, sizeof st_path, "%s/model.safetensors", dir);
    if (!sanitized) { /* the plain run checks the bits; hashing is slow under ASan */
        CHECK(sha256_file(st_path, digest, &e) == MS_OK, "%s", e.message);
        CHECK(!strcmp(digest, json_get(fx, "safetensors_sha256")->valuestring),
              "%s: synth wrote other weights than the fixture was made from (%s)", name, digest);
    }
    if (model_load(dir, &r.m, &e) != MS_OK) {
        CHECK(0, "%s: model_load: %s", name, e.message);
        goto out;
    }
    r.V = r.m->cfg.vocab_size;
    backend_params bp = {.n_threads = 1,
                         .max_seqs = MAX_PROMPTS,
                         .max_tokens = 4 * MAX_CTX,
                         .n_blocks = MAX_PROMPTS * 2 * MAX_CTX / BLOCK,
                         .block_size = BLOCK};
    const char *want = strstr(name, "_bf16") ? "cpu-fast" : "cpu-reference";
    r.ops = backend_select(MS_BACKEND_CPU, r.m, 0, &e);
    if (!r.ops || r.ops->create(r.m, &bp, &r.b, &e) != MS_OK) {
        CHECK(0, "%s: backend: %s", name, e.message);
        goto out;
    }
    CHECK(!strcmp(r.ops->name, want), "%s: backend_select chose %s, expected %s", name, r.ops->name, want);
    CHECK(kv_pool_create(bp.n_blocks, BLOCK, 2 * MAX_PROMPTS, MAX_CTX / BLOCK, &r.kv, &e) == MS_OK, "%s", e.message);
    const cJSON *pj;
    cJSON_ArrayForEach(pj, prompts)
    {
        if (np == MAX_PROMPTS) break;
        p[np].ids = json_ints(json_get(pj, "ids"), &p[np].n);
        p[np].greedy = json_ints(json_get(pj, "greedy"), &p[np].n_greedy);
        np++;
    }

    /* 1. each prompt alone (slot i): parity with HF */
    for (int i = 0; i < np; i++) {
        alone[i] = malloc(sizeof(float) * (size_t)p[i].n * (size_t)r.V);
        batched[i] = malloc(sizeof(float) * (size_t)p[i].n * (size_t)r.V);
        int first = mode == 2 ? 0 : p[i].n - 1;
        if (fwd_one(&r, i, p[i].ids, p[i].n, 0, mode, alone[i] + (size_t)first * r.V)) goto fail;
        char what[96];
        snprintf(what, sizeof what, "%s prompt %d", name, i);
        check_logits(cJSON_GetArrayItem(prompts, i), alone[i] + (size_t)first * r.V, first, p[i].n, r.V, cols, tol,
                     what);
    }

    /* 1b. where step 1 ran on the fast backend, the reference backend on the same
     * prompts (its own KV memory, the same block ids): parity with HF too */
    if (r.ops != &cpu_ref_backend_ops) {
        backend *rb = NULL;
        CHECK(cpu_ref_backend_ops.create(r.m, &bp, &rb, &e) == MS_OK, "%s: reference backend: %s", name, e.message);
        for (int i = 0; rb && i < np; i++) {
            int first = mode == 2 ? 0 : p[i].n - 1;
            fwd_seq s = {p[i].ids, p[i].n, 0, kv_blocks(r.kv, i), mode, batched[i]};
            char what[96];
            snprintf(what, sizeof what, "%s prompt %d on cpu-reference", name, i);
            if (cpu_ref_backend_ops.forward(rb, &s, 1, &e) != MS_OK) {
                CHECK(0, "%s: %s", what, e.message);
                break;
            }
            check_logits(cJSON_GetArrayItem(prompts, i), batched[i], first, p[i].n, r.V, cols, tol, what);
        }
        if (rb) cpu_ref_backend_ops.free(rb);
    }

    /* 2. all prompts in one call (other slots): bitwise the same logits */
    fwd_seq seqs[MAX_PROMPTS];
    for (int i = 0; i < np; i++) {
        CHECK(kv_reserve(r.kv, MAX_PROMPTS + i, p[i].n, &e) == MS_OK, "%s", e.message);
        seqs[i] = (fwd_seq){p[i].ids, p[i].n, 0, kv_blocks(r.kv, MAX_PROMPTS + i), mode, batched[i]};
    }
    CHECK(r.ops->forward(r.b, seqs, np, &e) == MS_OK, "%s", e.message);
    for (int i = 0; i < np; i++) {
        size_t rows = mode == 2 ? (size_t)p[i].n : 1, first = (size_t)p[i].n - rows;
        CHECK(!memcmp(alone[i] + first * r.V, batched[i], sizeof(float) * rows * (size_t)r.V),
              "%s prompt %d: batched prefill logits differ from the prompt alone", name, i);
    }

    /* 3. chunked prefill of the longest prompt: 1, 3, 7, rest */
    int li = 0;
    for (int i = 1; i < np; i++)
        if (p[i].n > p[li].n) li = i;
    chunk = malloc(sizeof(float) * (size_t)p[li].n * (size_t)r.V);
    kv_release(r.kv, MAX_PROMPTS + li);
    for (int pos = 0, c = 0; pos < p[li].n; c++) {
        static const int sizes[] = {1, 3, 7, 1 << 20};
        int len = sizes[c < 3 ? c : 3];
        if (len > p[li].n - pos) len = p[li].n - pos;
        size_t out_row = mode == 2 ? (size_t)pos : (size_t)(pos + len - 1);
        if (fwd_one(&r, MAX_PROMPTS + li, p[li].ids + pos, len, pos, mode, chunk + out_row * r.V)) goto fail;
        pos += len;
        size_t rows = mode == 2 ? (size_t)len : 1;
        if (mode == 1 && pos < p[li].n) continue; /* only the last position was made alone */
        CHECK(!memcmp(alone[li] + out_row * r.V, chunk + out_row * r.V, sizeof(float) * rows * (size_t)r.V),
              "%s prompt %d: chunked prefill logits (positions to %d) differ from a prefill at once", name, li,
              pos - 1);
    }

    /* 3b. thread-count invariance: a 2-thread backend gives bitwise the 1-thread logits */
    {
        backend *b2 = NULL;
        backend_params bp2 = bp;
        bp2.n_threads = 2;
        CHECK(r.ops->create(r.m, &bp2, &b2, &e) == MS_OK, "%s", e.message);
        fwd_seq s2 = {p[li].ids, p[li].n, 0, kv_blocks(r.kv, MAX_PROMPTS + li), mode, chunk};
        if (b2 && r.ops->forward(b2, &s2, 1, &e) == MS_OK) {
            size_t rows = mode == 2 ? (size_t)p[li].n : 1, first = (size_t)p[li].n - rows;
            CHECK(!memcmp(alone[li] + first * r.V, chunk, sizeof(float) * rows * (size_t)r.V),
                  "%s prompt %d: 2 threads give other logits than 1 thread", name, li);
        } else {
            CHECK(0, "%s: 2-thread forward: %s", name, e.message);
        }
        if (b2) r.ops->free(b2);
    }

    /* 4. greedy: all prompts decoded together (slots 0..np-1 continue from step 1) */
    int steps = sanitized ? 6 : p[0].n_greedy;
    dec = malloc(sizeof(float) * (size_t)np * (size_t)r.V);
    dec1 = malloc(sizeof(float) * (size_t)r.V);
    int32_t next[MAX_PROMPTS], ours[MAX_PROMPTS][8];
    int mismatch[MAX_PROMPTS] = {0};
    for (int i = 0; i < np; i++) next[i] = argmax(alone[i] + (size_t)(p[i].n - 1) * r.V, r.V);
    for (int s = 0; s < steps; s++) {
        for (int i = 0; i < np; i++) {
            if (!mismatch[i] && s < p[i].n_greedy && next[i] != p[i].greedy[s]) {
                mismatch[i] = 1;
                printf("  %s prompt %d: greedy step %d gives %d, HF %d\n", name, i, s, next[i], p[i].greedy[s]);
            }
            if (s < 8) ours[i][s] = next[i];
            CHECK(kv_reserve(r.kv, i, p[i].n + s + 1, &e) == MS_OK, "%s", e.message);
            seqs[i] = (fwd_seq){&next[i], 1, p[i].n + s, kv_blocks(r.kv, i), 1, dec + (size_t)i * r.V};
        }
        if (s == steps - 1) break;
        CHECK(r.ops->forward(r.b, seqs, np, &e) == MS_OK, "%s", e.message);
        if (s == 2 && np > 1) {
            /* the same decode step of prompt 1 alone (its history prefilled into a fresh
             * slot, then this step's token): bitwise the logits of the batched step */
            int slot = MAX_PROMPTS + 1, n_hist = p[1].n + 3;
            int32_t hist[MAX_CTX];
            kv_release(r.kv, slot);
            memcpy(hist, p[1].ids, sizeof(int32_t) * (size_t)p[1].n);
            for (int k = 0; k < 3; k++) hist[p[1].n + k] = ours[1][k];
            if (!fwd_one(&r, slot, hist, n_hist - 1, 0, 0, NULL) &&
                !fwd_one(&r, slot, hist + n_hist - 1, 1, n_hist - 1, 1, dec1))
                CHECK(!memcmp(dec1, dec + (size_t)1 * r.V, sizeof(float) * (size_t)r.V),
                      "%s: a batched decode step differs from the same step alone", name);
        }
        for (int i = 0; i < np; i++) next[i] = argmax(dec + (size_t)i * r.V, r.V);
    }
    for (int i = 0; i < np; i++) CHECK(!mismatch[i], "%s prompt %d: greedy continuation differs from HF", name, i);
    printf("  %s: greedy %d steps x %d prompts compared\n", name, steps, np);
    goto out;
fail:
    CHECK(0, "%s: forward failed", name);
out:
    for (int i = 0; i < MAX_PROMPTS; i++) {
        free(p[i].ids);
        free(p[i].greedy);
        free(alone[i]);
        free(batched[i]);
    }
    free(chunk);
    free(dec);
    free(dec1);
    kv_pool_free(r.kv);
    if (r.b) r.ops->free(r.b);
    model_free(r.m);
    if (r.tmp[0]) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf %s", r.tmp);
        if (system(cmd) != 0) printf("  could not remove %s\n", r.tmp);
    }
    cJSON_Delete(fx);
}

/* One test case per fixture. */
static void t_a(void)
{
    run_fixture(FIXTURES[0]);
}
static void t_b(void)
{
    run_fixture(FIXTURES[1]);
}
static void t_c(void)
{
    run_fixture(FIXTURES[2]);
}
static void t_d(void)
{
    run_fixture(FIXTURES[3]);
}
static void t_e(void)
{
    run_fixture(FIXTURES[4]);
}

/* fwd_check: the call checks every backend makes, each bad field refused with its status. */
static void t_fwd_check(void)
{
    const fwd_limits lim = {2,  8, 32,
                            16, 2, 100}; /* 2 seqs, 8 tokens, 32 positions, blocks of 16, 2 blocks, vocab 100 */
    int32_t tok[4] = {1, 2, 3, 99}, blocks[2] = {0, 1}, bad_blocks[2] = {0, 2};
    float logits[100];
    ms_error e = {0};
    int T = -1;
    fwd_seq ok = {tok, 4, 28, blocks, 1, logits};
    CHECK(fwd_check(&lim, &ok, 1, &T, &e) == MS_OK && T == 4, "valid call refused: %s", e.message);
    fwd_seq two[2] = {ok, ok};
    two[1].pos0 = 0;
    CHECK(fwd_check(&lim, two, 2, &T, &e) == MS_OK && T == 8, "two sequences, 8 tokens refused: %s", e.message);
    CHECK(fwd_check(&lim, two, 3, &T, &e) == MS_ERR_INVALID, "3 sequences accepted");
    fwd_seq s = ok;
    s.pos0 = 29; /* positions 29..32: one past the cache */
    CHECK(fwd_check(&lim, &s, 1, &T, &e) == MS_ERR_CONTEXT && strstr(e.message, "cached positions"), "past the cache");
    s = ok;
    s.blocks = bad_blocks;
    CHECK(fwd_check(&lim, &s, 1, &T, &e) == MS_ERR_INVALID && strstr(e.message, "block 1 id 2"), "bad block id");
    s = ok;
    tok[3] = 100;
    CHECK(fwd_check(&lim, &s, 1, &T, &e) == MS_ERR_INVALID && strstr(e.message, "token 3 id 100"), "token id = vocab");
    tok[3] = 99;
    s.logits = NULL;
    CHECK(fwd_check(&lim, &s, 1, &T, &e) == MS_ERR_INVALID && strstr(e.message, "without a buffer"),
          "no logits buffer");
    s = ok;
    s.n_tokens = 0;
    CHECK(fwd_check(&lim, &s, 1, &T, &e) == MS_ERR_INVALID && strstr(e.message, "no tokens"), "empty sequence");
    two[0].pos0 = two[1].pos0 = 0;
    two[1].n_tokens = 4;
    int32_t five[5] = {1, 2, 3, 4, 5};
    two[0].tokens = five;
    two[0].n_tokens = 5; /* 9 tokens > 8 */
    CHECK(fwd_check(&lim, two, 2, &T, &e) == MS_ERR_INVALID && strstr(e.message, "more than 8"), "token budget");
}

int main(int argc, char **argv)
{
    unsetenv("MEDSERVE_CPU_REFERENCE"); /* backend_select's default choice is what is checked */
    static const test_case cases[] = {
        {"fwd_check", t_fwd_check},       {"forward_a_tied_gqa2_f32", t_a},      {"forward_b_untied_gqa4_bf16", t_b},
        {"forward_c_bias_yarn_f32", t_c}, {"forward_d_tied_bf16_v5config", t_d}, {"forward_e_untied_mha_f16", t_e},
    };
    return test_main(argc, argv, cases, (int)(sizeof cases / sizeof cases[0]));
}
