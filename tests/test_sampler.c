/* test_sampler.c: the sampler against HF transformers' logits processors
 * (fixture tests/data/sampler_hf_cases.json from tests/ref/gen_sampler_cases.py):
 * exact kept sets and processed values on small rows (ties, the top-p
 * crossing token, penalties on negative logits) and on full 151,936-entry
 * rows; chi-square tests (10^5 seeded draws, p = 0.001) that the draws follow
 * softmax of HF's processed scores; seeds, validation, ids without text,
 * log-probabilities and speed. */
#include <math.h>
#include <stdlib.h>
#include <time.h>

#include "base/json.h"
#include "engine/sampler.h"
#include "util.h"

#define FIXTURE "tests/data/sampler_hf_cases.json"

static cJSON *fixture(void)
{
    static cJSON *j;
    if (!j) {
        ms_error e = {0};
        j = json_load_file(FIXTURE, 1 << 24, &e);
        CHECK(j != NULL, "cannot load %s: %s", FIXTURE, e.message);
    }
    return j;
}

static double num(const cJSON *o, const char *k)
{
    return cJSON_GetNumberValue(json_get(o, k));
}

/* Reads a fixture "params" object into an ms_sampling (bias arrays in the statics given). */
static ms_sampling params_of(const cJSON *p, int32_t *bias_ids, float *bias_vals)
{
    ms_sampling s = {0};
    s.greedy = (int)num(p, "greedy");
    s.temperature = (float)num(p, "temperature");
    s.top_k = (int)num(p, "top_k");
    s.top_p = (float)num(p, "top_p");
    s.min_p = (float)num(p, "min_p");
    s.repetition_penalty = (float)num(p, "repetition_penalty");
    s.presence_penalty = (float)num(p, "presence_penalty");
    s.frequency_penalty = (float)num(p, "frequency_penalty");
    const cJSON *b = json_get(p, "bias"), *it;
    int n = 0;
    cJSON_ArrayForEach(it, b)
    {
        bias_ids[n] = (int32_t)cJSON_GetNumberValue(cJSON_GetArrayItem(it, 0));
        bias_vals[n] = (float)cJSON_GetNumberValue(cJSON_GetArrayItem(it, 1));
        n++;
    }
    s.n_logit_bias = n;
    s.logit_bias_ids = bias_ids;
    s.logit_bias_values = bias_vals;
    return s;
}

/* Copies a JSON number array into a new malloc'd float/int array. */
static float *floats_of(const cJSON *a, int *n)
{
    *n = cJSON_GetArraySize(a);
    float *v = malloc(((size_t)*n + 1) * sizeof *v);
    int i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, a) v[i++] = (float)cJSON_GetNumberValue(it);
    return v;
}

static int32_t *ints_of(const cJSON *a, int *n)
{
    *n = cJSON_GetArraySize(a);
    int32_t *v = malloc(((size_t)*n + 1) * sizeof *v);
    int i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, a) v[i++] = (int32_t)cJSON_GetNumberValue(it);
    return v;
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* A small fixture case, ready to build samplers from. */
typedef struct small_case {
    const char *name;
    int vocab, n_valid, n_prompt, n_gen, n_kept;
    float *logits, *processed, *penalised;
    int32_t *prompt, *gen, *kept;
    ms_sampling p;
    int32_t bias_ids[16];
    float bias_vals[16];
} small_case;

static void small_load(const cJSON *c, small_case *sc)
{
    int n;
    sc->name = cJSON_GetStringValue(json_get(c, "name"));
    sc->vocab = (int)num(c, "vocab");
    sc->n_valid = (int)num(c, "n_valid");
    sc->logits = floats_of(json_get(c, "logits"), &n);
    sc->processed = floats_of(json_get(c, "processed"), &n);
    sc->penalised = floats_of(json_get(c, "penalised"), &n);
    sc->prompt = ints_of(json_get(c, "prompt"), &sc->n_prompt);
    sc->gen = ints_of(json_get(c, "generated"), &sc->n_gen);
    sc->kept = ints_of(json_get(c, "kept"), &sc->n_kept);
    sc->p = params_of(json_get(c, "params"), sc->bias_ids, sc->bias_vals);
}

static void small_free(small_case *sc)
{
    free(sc->logits);
    free(sc->processed);
    free(sc->penalised);
    free(sc->prompt);
    free(sc->gen);
    free(sc->kept);
}

/* A sampler for the case with its generated tokens already accepted. */
static sampler *small_sampler(small_case *sc, uint64_t seed)
{
    sampler *s = NULL;
    ms_error e = {0};
    sc->p.seed = seed;
    ms_status st = sampler_create(&sc->p, sc->vocab, sc->n_valid, sc->prompt, (size_t)sc->n_prompt, &s, &e);
    CHECK(st == MS_OK, "%s: sampler_create: %s", sc->name, e.message);
    for (int i = 0; s && i < sc->n_gen; i++) sampler_accept(s, sc->gen[i]);
    return s;
}

static const cJSON *find_case(const char *name)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, json_get(fixture(), "small"))
    {
        if (!strcmp(cJSON_GetStringValue(json_get(it, "name")), name)) return it;
    }
    CHECK(0, "fixture case %s missing", name);
    return NULL;
}

/* Kept set and processed values equal HF's for every small case. */
static void t_hf_small(void)
{
    const cJSON *it;
    int n_cases = 0;
    cJSON_ArrayForEach(it, json_get(fixture(), "small"))
    {
        small_case sc = {0};
        small_load(it, &sc);
        sampler *s = small_sampler(&sc, 1);
        float *l = malloc((size_t)sc.vocab * sizeof *l);
        int32_t *ids = malloc((size_t)sc.vocab * sizeof *ids);
        memcpy(l, sc.logits, (size_t)sc.vocab * sizeof *l);
        int n = s ? sampler_candidates(s, l, ids) : -1;
        qsort(ids, n > 0 ? (size_t)n : 0, sizeof *ids, cmp_i32);
        int same = n == sc.n_kept;
        for (int i = 0; same && i < n; i++) same = ids[i] == sc.kept[i];
        CHECK(same, "%s: kept %d ids, HF keeps %d (first ours %d, HF %d)", sc.name, n, sc.n_kept, n > 0 ? ids[0] : -1,
              sc.kept[0]);
        for (int i = 0; same && i < n; i++) {
            float want = sc.processed[i], got = l[ids[i]];
            CHECK(fabsf(got - want) <= 1e-5f * fmaxf(1.0f, fabsf(want)), "%s: id %d processed %.9g, HF %.9g", sc.name,
                  ids[i], (double)got, (double)want);
        }
        if (sc.p.greedy || sc.p.temperature == 1.0f) {
            /* in-place row after penalties equals HF's penalised row (valid ids) */
            for (int i = 0; i < sc.n_valid; i++) {
                float want = sc.penalised[i], got = l[i];
                CHECK(fabsf(got - want) <= 1e-5f * fmaxf(1.0f, fabsf(want)), "%s: penalised[%d] %.9g, HF %.9g", sc.name,
                      i, (double)got, (double)want);
            }
        }
        free(l);
        free(ids);
        sampler_free(s);
        small_free(&sc);
        n_cases++;
    }
    CHECK(n_cases >= 50, "only %d small cases", n_cases);
}

/* The fixture's full-vocab row: ((i * 2654435761) mod M) / scale - 5 in float32. */
static void big_row(float *l, int vocab, int64_t modulus, float scale)
{
    for (int64_t i = 0; i < vocab; i++) l[i] = (float)((i * 2654435761ll) % modulus) / scale - 5.0f;
}

/* Kept sets on 151,936-entry rows equal HF's (count, checksums, best 10 in order). */
static void t_hf_big(void)
{
    const cJSON *it;
    int n_cases = 0;
    cJSON_ArrayForEach(it, json_get(fixture(), "big"))
    {
        const char *name = cJSON_GetStringValue(json_get(it, "name"));
        int vocab = (int)num(it, "vocab"), n_valid = (int)num(it, "n_valid");
        int32_t bi[4];
        float bv[4];
        ms_sampling p = params_of(json_get(it, "params"), bi, bv);
        float *l = malloc((size_t)vocab * sizeof *l);
        int32_t *ids = malloc((size_t)vocab * sizeof *ids);
        big_row(l, vocab, (int64_t)num(it, "modulus"), (float)num(it, "scale"));
        sampler *s = NULL;
        ms_error e = {0};
        CHECK(sampler_create(&p, vocab, n_valid, NULL, 0, &s, &e) == MS_OK, "%s", e.message);
        int n = s ? sampler_candidates(s, l, ids) : 0;
        long long sum = 0, sum_sq = 0;
        for (int i = 0; i < n; i++) {
            sum += ids[i];
            sum_sq += (long long)ids[i] * ids[i];
        }
        CHECK(n == (int)num(it, "n_kept"), "%s: kept %d, HF %d", name, n, (int)num(it, "n_kept"));
        CHECK(sum == (long long)num(it, "sum_ids") && sum_sq == (long long)num(it, "sum_sq_ids"),
              "%s: kept set differs from HF's (id sums %lld / %lld)", name, sum, sum_sq);
        /* best 10: order our candidates best first by processed logit, lowest id on ties */
        int nb = 0;
        int32_t *best = ints_of(json_get(it, "best"), &nb);
        for (int k = 0; k < nb && k < n; k++) {
            int m = k;
            for (int i = k + 1; i < n; i++)
                if (l[ids[i]] > l[ids[m]] || (l[ids[i]] == l[ids[m]] && ids[i] < ids[m])) m = i;
            int32_t t = ids[k];
            ids[k] = ids[m];
            ids[m] = t;
            CHECK(ids[k] == best[k], "%s: rank %d is id %d, HF %d", name, k, ids[k], best[k]);
        }
        free(best);
        sampler_free(s);
        free(l);
        free(ids);
        n_cases++;
    }
    CHECK(n_cases == 6, "%d big cases", n_cases);
}

/* Chi-square critical values at p = 0.001 for df = 1..12. */
static const double chi2_crit[] = {0,      10.828, 13.816, 16.266, 18.467, 20.515, 22.458,
                                   24.322, 26.124, 27.877, 29.588, 31.264, 32.909};

/* Draws 10^5 tokens for a fixture case and compares the counts with softmax
 * of HF's processed scores; ids HF removed must never be drawn. */
static void chi_square_case(const char *name, double wrong_temperature)
{
    const cJSON *c = find_case(name);
    if (!c) return;
    small_case sc = {0};
    small_load(c, &sc);
    sampler *s = small_sampler(&sc, 20260101);
    const int draws = 100000;
    long *count = calloc((size_t)sc.vocab, sizeof *count);
    float *l = malloc((size_t)sc.vocab * sizeof *l);
    for (int d = 0; s && d < draws; d++) {
        memcpy(l, sc.logits, (size_t)sc.vocab * sizeof *l);
        int32_t t = sampler_sample(s, l, NULL, 0, NULL, NULL);
        if (t >= 0 && t < sc.vocab) count[t]++;
    }
    double mx = -INFINITY, z = 0.0, chi2 = 0.0;
    for (int i = 0; i < sc.n_kept; i++) mx = fmax(mx, sc.processed[i]);
    for (int i = 0; i < sc.n_kept; i++) z += exp(sc.processed[i] - mx);
    long in_kept = 0;
    for (int i = 0; i < sc.n_kept; i++) {
        double expect = draws * exp(sc.processed[i] - mx) / z;
        double d = (double)count[sc.kept[i]] - expect;
        chi2 += d * d / expect;
        in_kept += count[sc.kept[i]];
    }
    int df = sc.n_kept - 1;
    CHECK(in_kept == draws, "%s: %ld of %d draws outside HF's kept set", name, draws - in_kept, draws);
    CHECK(df >= 1 && df <= 12, "%s: df %d", name, df);
    if (df >= 1 && df <= 12)
        CHECK(chi2 < chi2_crit[df], "%s: chi2 %.2f >= %.3f (df %d, p = 0.001)", name, chi2, chi2_crit[df], df);
    printf("  %s: chi2 %.2f (df %d, critical %.3f)\n", name, chi2, df, df <= 12 ? chi2_crit[df] : 0);
    if (wrong_temperature > 0 && df >= 1 && df <= 12) {
        /* negative control: the same draws against a wrong temperature must fail */
        double zw = 0.0, chi2w = 0.0;
        for (int i = 0; i < sc.n_kept; i++) zw += exp((sc.processed[i] - mx) * wrong_temperature);
        for (int i = 0; i < sc.n_kept; i++) {
            double expect = draws * exp((sc.processed[i] - mx) * wrong_temperature) / zw;
            double d = (double)count[sc.kept[i]] - expect;
            chi2w += d * d / expect;
        }
        CHECK(chi2w > chi2_crit[df], "%s: draws also fit temperature x%g (chi2 %.2f)", name, wrong_temperature, chi2w);
    }
    free(count);
    free(l);
    sampler_free(s);
    small_free(&sc);
}

static void t_chi_square(void)
{
    chi_square_case("temperature_0.5", 0.9); /* temperature (control: T 0.5 vs 0.45) */
    chi_square_case("top_k_ties_3", 1.1);    /* top-k with ties */
    chi_square_case("top_p_0.85", 1.1);      /* top-p */
    chi_square_case("min_p_0.15", 0.0);      /* min-p */
    chi_square_case("chain", 1.1);           /* all together with penalties and bias */
}

/* Same seed -> same tokens; another seed -> other tokens; RNG matches the
 * fixture's independent implementation. */
static void t_seed(void)
{
    const cJSON *rng = json_get(fixture(), "rng"), *it;
    sampler_rng r;
    sampler_rng_seed(&r, (uint64_t)num(rng, "seed"));
    int i = 0;
    cJSON_ArrayForEach(it, json_get(rng, "outputs"))
    {
        uint64_t want = strtoull(cJSON_GetStringValue(it), NULL, 10);
        uint64_t got = sampler_rng_next(&r);
        CHECK(got == want, "rng output %d: %llu, want %llu", i, (unsigned long long)got, (unsigned long long)want);
        i++;
    }
    CHECK(i == 8, "rng outputs %d", i);

    float base[8] = {0.1f, 0.2f, 0.0f, -0.1f, 0.3f, 0.05f, 0.15f, -0.2f};
    ms_sampling p = {.temperature = 1.0f, .top_p = 1.0f, .repetition_penalty = 1.0f};
    int32_t seq[3][500];
    uint64_t seeds[3] = {7, 7, 8};
    for (int k = 0; k < 3; k++) {
        sampler *s = NULL;
        p.seed = seeds[k];
        CHECK(sampler_create(&p, 8, 8, NULL, 0, &s, NULL) == MS_OK, "create");
        for (int t = 0; s && t < 500; t++) {
            float l[8];
            memcpy(l, base, sizeof l);
            seq[k][t] = sampler_sample(s, l, NULL, 0, NULL, NULL);
            sampler_accept(s, seq[k][t]);
        }
        sampler_free(s);
    }
    CHECK(!memcmp(seq[0], seq[1], sizeof seq[0]), "same seed gave different tokens");
    CHECK(memcmp(seq[0], seq[2], sizeof seq[0]) != 0, "different seeds gave the same 500 tokens");
}

/* Bad values are refused with a message naming the field. */
static void t_validation(void)
{
    ms_sampling ok = {.temperature = 0.7f, .top_p = 0.9f, .repetition_penalty = 1.0f};
    int32_t bid[1] = {5};
    float bval[1] = {1.0f};
    struct {
        const char *field;
        ms_sampling p;
    } bad[] = {
        {"temperature", ok},
        {"temperature", ok},
        {"top_p", ok},
        {"top_p", ok},
        {"top_p", ok},
        {"top_k", ok},
        {"min_p", ok},
        {"min_p", ok},
        {"repetition_penalty", ok},
        {"repetition_penalty", ok},
        {"presence_penalty", ok},
        {"frequency_penalty", ok},
        {"top_logprobs", ok},
        {"logit_bias", ok},
        {"logit_bias", ok},
        {"logit_bias", ok},
    };
    bad[0].p.temperature = -0.1f;
    bad[1].p.temperature = NAN;
    bad[2].p.top_p = 0.0f;
    bad[3].p.top_p = 1.5f;
    bad[4].p.top_p = NAN;
    bad[5].p.top_k = -1;
    bad[6].p.min_p = -0.1f;
    bad[7].p.min_p = 1.1f;
    bad[8].p.repetition_penalty = 0.0f;
    bad[9].p.repetition_penalty = INFINITY;
    bad[10].p.presence_penalty = 2.5f;
    bad[11].p.frequency_penalty = -3.0f;
    bad[12].p.top_logprobs = 21;
    bad[13].p.n_logit_bias = 1; /* arrays missing */
    bad[14].p.n_logit_bias = 1;
    bad[14].p.logit_bias_ids = (int32_t[]){100};
    bad[14].p.logit_bias_values = bval;
    bad[15].p.n_logit_bias = 1;
    bad[15].p.logit_bias_ids = bid;
    bad[15].p.logit_bias_values = (float[]){101.0f};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ms_error e = {0};
        sampler *s = NULL;
        ms_status st = sampler_create(&bad[i].p, 100, 100, NULL, 0, &s, &e);
        CHECK(st == MS_ERR_INVALID && s == NULL, "case %zu (%s) accepted", i, bad[i].field);
        CHECK(strstr(e.message, bad[i].field) != NULL, "case %zu: message '%s' lacks '%s'", i, e.message, bad[i].field);
    }
    ms_error e = {0};
    sampler *s = NULL;
    CHECK(sampler_create(&ok, 100, 100, (int32_t[]){1, 100}, 2, &s, &e) == MS_OK,
          "penalty off: prompt ids are not inspected: %s", e.message);
    sampler_free(s);
    s = NULL;
    ok.repetition_penalty = 1.1f;
    CHECK(sampler_create(&ok, 100, 100, (int32_t[]){1, 100}, 2, &s, &e) == MS_ERR_INVALID,
          "prompt id out of range accepted");
    CHECK(sampler_create(&ok, 100, 101, NULL, 0, &s, &e) == MS_ERR_INVALID, "n_valid > vocab");
    ok.temperature = 0.0f; /* temperature 0 is greedy, valid */
    CHECK(sampler_create(&ok, 100, 100, NULL, 0, &s, &e) == MS_OK, "T=0: %s", e.message);
    sampler_free(s);
    sampler_free(NULL);
}

/* Ids >= n_valid are never chosen nor listed; NaN/+inf logits are refused. */
static void t_n_valid(void)
{
    const float base[10] = {0.5f, 0.0f, 1.0f, 0.2f, -1.0f, 0.1f, 0.0f, 0.0f, 9.0f, 8.0f};
    for (int greedy = 0; greedy < 2; greedy++) {
        ms_sampling p = {.greedy = greedy, .temperature = 2.0f, .top_p = 1.0f, .repetition_penalty = 1.0f, .seed = 3};
        sampler *s = NULL;
        CHECK(sampler_create(&p, 10, 6, NULL, 0, &s, NULL) == MS_OK, "create");
        int bad = 0;
        for (int d = 0; s && d < 20000; d++) {
            float l[10], lp = 0;
            int32_t ti[4];
            float tl[4];
            memcpy(l, base, sizeof l);
            int32_t t = sampler_sample(s, l, &lp, 4, ti, tl);
            if (t < 0 || t >= 6) bad++;
            for (int k = 0; k < 4; k++)
                if (ti[k] >= 6) bad++;
            if (greedy && t != 2) bad++;
        }
        CHECK(bad == 0, "greedy=%d: %d draws or listed ids outside [0, 6)", greedy, bad);
        float l[10];
        memcpy(l, base, sizeof l);
        l[3] = NAN;
        CHECK(s && sampler_sample(s, l, NULL, 0, NULL, NULL) == -1, "NaN accepted");
        memcpy(l, base, sizeof l);
        l[1] = INFINITY;
        CHECK(s && sampler_sample(s, l, NULL, 0, NULL, NULL) == -1, "+inf accepted");
        memcpy(l, base, sizeof l);
        for (int i = 0; i < 6; i++) l[i] = -INFINITY;
        CHECK(s && sampler_sample(s, l, NULL, 0, NULL, NULL) == -1, "nothing sampleable");
        sampler_free(s);
    }
}

/* logprob and top-N are log-softmax of the raw logits over the whole row. */
static void t_logprobs(void)
{
    const float raw[7] = {1.0f, 3.0f, 2.0f, 3.0f, -1.0f, 0.5f, 7.0f};
    double mx = 7.0, z = 0.0;
    for (int i = 0; i < 7; i++) z += exp(raw[i] - mx);
    double lse = mx + log(z);
    ms_sampling p = {.temperature = 0.5f, .top_k = 2, .top_p = 1.0f, .repetition_penalty = 1.5f, .seed = 11};
    sampler *s = NULL;
    CHECK(sampler_create(&p, 7, 6, (int32_t[]){1}, 1, &s, NULL) == MS_OK, "create");
    for (int d = 0; s && d < 200; d++) {
        float l[7], lp = 0, tl[5];
        int32_t ti[5];
        memcpy(l, raw, sizeof l);
        int32_t t = sampler_sample(s, l, &lp, 5, ti, tl);
        CHECK(t >= 0 && fabs(lp - (raw[t] - lse)) < 1e-5, "token %d logprob %g, want %g", t, lp,
              t >= 0 ? raw[t] - lse : 0);
        /* raw order among ids < 6: 1 and 3 tie at 3.0 (lower id first), 2, 0, 5 */
        const int32_t want[5] = {1, 3, 2, 0, 5};
        for (int k = 0; k < 5; k++) {
            CHECK(ti[k] == want[k], "top %d is %d, want %d", k, ti[k], want[k]);
            CHECK(fabs(tl[k] - (raw[want[k]] - lse)) < 1e-5, "top %d logprob %g", k, tl[k]);
        }
        /* penalty: id 1 3.0 -> 2.0; /T: 3 -> 6, 1 and 2 tie at 4: top-2 keeps {3, 1, 2} */
        CHECK(t == 3 || t == 2 || t == 1, "token %d outside top-k", t);
    }
    sampler_free(s);
}

/* Sampling a 151,936-entry row stays cheap (partial selection, no full sort). */
static void t_speed(void)
{
    const int vocab = 151936, n_valid = 151669;
    float *row = malloc((size_t)vocab * sizeof *row), *l = malloc((size_t)vocab * sizeof *l);
    big_row(row, vocab, 1000003, 100000.0f);
    struct {
        const char *what;
        ms_sampling p;
    } cfg[] = {
        {"qwen defaults T0.6 k20 p0.95",
         {.temperature = 0.6f, .top_k = 20, .top_p = 0.95f, .repetition_penalty = 1.0f}},
        {"top_p 0.9 alone", {.temperature = 1.0f, .top_p = 0.9f, .repetition_penalty = 1.0f}},
        {"temperature alone", {.temperature = 0.8f, .top_p = 1.0f, .repetition_penalty = 1.0f}},
        {"greedy + rep penalty", {.greedy = 1, .top_p = 1.0f, .repetition_penalty = 1.1f}},
    };
    int reps = getenv("MEDSERVE_SANITIZED") ? 5 : 50;
    for (size_t c = 0; c < sizeof cfg / sizeof *cfg; c++) {
        sampler *s = NULL;
        CHECK(sampler_create(&cfg[c].p, vocab, n_valid, NULL, 0, &s, NULL) == MS_OK, "create");
        double t0 = ut_cpu_now(); /* CPU time: other processes on the machine do not count */
        for (int r = 0; s && r < reps; r++) {
            memcpy(l, row, (size_t)vocab * sizeof *l);
            int32_t t = sampler_sample(s, l, NULL, 0, NULL, NULL);
            CHECK(t >= 0 && t < n_valid, "token %d", t);
            sampler_accept(s, t);
        }
        double ms = (ut_cpu_now() - t0) * 1e3 / reps;
        printf("  %s: %.3f ms of CPU time per token (151,936 logits)\n", cfg[c].what, ms);
        if (!getenv("MEDSERVE_SANITIZED")) CHECK(ms < 25.0, "%s: %.2f ms per token", cfg[c].what, ms);
        sampler_free(s);
    }
    free(row);
    free(l);
}

int main(int argc, char **argv)
{
    static const test_case cases[] = {
        {"sampler_hf_small", t_hf_small}, {"sampler_hf_big", t_hf_big},         {"sampler_chi_square", t_chi_square},
        {"sampler_seed", t_seed},         {"sampler_validation", t_validation}, {"sampler_n_valid", t_n_valid},
        {"sampler_logprobs", t_logprobs}, {"sampler_speed", t_speed},
    };
    int rc = test_main(argc, argv, cases, sizeof cases / sizeof *cases);
    cJSON_Delete(fixture());
    return rc;
}
