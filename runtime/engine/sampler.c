/* sampler.c: one request's logits -> token step (see sampler.h for the order
 * and the exact HF semantics followed). Candidate sets are index lists into
 * the logits row; top-k and top-p use partial selection (quickselect under a
 * strict total order: higher logit first, then lower id), so a 151,936-entry
 * row is never fully sorted (top-p alone uses a mass-weighted quickselect). Every
 * buffer is allocated in sampler_create; sampler_sample never allocates.
 * Does not know about tokens' text, stop conditions or batching (engine.c). */
#include "engine/sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"

#define SAMPLER_HEAP_TOP_K 1024 /* top_k up to this uses the one-pass heap */

struct sampler {
    int vocab, n_valid;
    int greedy, top_k;
    float temperature, top_p, min_p, rep, presence, frequency;
    int n_bias;
    int32_t *bias_ids;
    float *bias_vals;
    sampler_rng rng;
    uint8_t *seen;      /* bitmap [vocab]: ids of prompt + output (rep != 1 only) */
    int32_t *seen_list; /* the distinct ids set in seen, n_seen of them */
    int n_seen;
    uint32_t *count;   /* [vocab] generated count (presence/frequency only) */
    int32_t *gen_list; /* distinct generated ids, n_gen of them */
    int n_gen;
    int32_t *cand; /* [n_valid] candidate ids */
    float *w;      /* [n_valid] unnormalised probabilities (by position or by id) */
    float *raw;    /* [vocab] copy of the raw logits for logprobs */
};

/* ---- RNG ------------------------------------------------------------- */

/* splitmix64 step: used to expand a 64-bit seed into the xoshiro state. */
static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Seeds the xoshiro256** state from one 64-bit seed. */
void sampler_rng_seed(sampler_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

/* Rotates x left by k bits. */
static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

/* Next 64 random bits (xoshiro256**). */
uint64_t sampler_rng_next(sampler_rng *r)
{
    uint64_t *s = r->s;
    uint64_t out = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

/* Uniform double in [0, 1) from the top 53 bits. */
double sampler_rng_uniform(sampler_rng *r)
{
    return (double)(sampler_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

/* ---- validation and lifetime ------------------------------------------ */

ms_status sampler_validate(const ms_sampling *p, int vocab, ms_error *err)
{
    if (!p) return ms_seterr(err, MS_ERR_INVALID, "sampling: parameters missing");
    if (!(p->temperature >= 0.0f && p->temperature <= SAMPLER_MAX_TEMPERATURE))
        return ms_seterr(err, MS_ERR_INVALID, "sampling: temperature must be in [0, %g], got %g",
                         (double)SAMPLER_MAX_TEMPERATURE, (double)p->temperature);
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f))
        return ms_seterr(err, MS_ERR_INVALID, "sampling: top_p must be in (0, 1], got %g", (double)p->top_p);
    if (p->top_k < 0) return ms_seterr(err, MS_ERR_INVALID, "sampling: top_k must be >= 0, got %d", p->top_k);
    if (!(p->min_p >= 0.0f && p->min_p <= 1.0f))
        return ms_seterr(err, MS_ERR_INVALID, "sampling: min_p must be in [0, 1], got %g", (double)p->min_p);
    if (!(p->repetition_penalty > 0.0f && p->repetition_penalty <= SAMPLER_MAX_REP_PENALTY))
        return ms_seterr(err, MS_ERR_INVALID, "sampling: repetition_penalty must be in (0, %g], got %g",
                         (double)SAMPLER_MAX_REP_PENALTY, (double)p->repetition_penalty);
    if (!(fabsf(p->presence_penalty) <= SAMPLER_MAX_PENALTY))
        return ms_seterr(err, MS_ERR_INVALID, "sampling: presence_penalty must be in [-%g, %g], got %g",
                         (double)SAMPLER_MAX_PENALTY, (double)SAMPLER_MAX_PENALTY, (double)p->presence_penalty);
    if (!(fabsf(p->frequency_penalty) <= SAMPLER_MAX_PENALTY))
        return ms_seterr(err, MS_ERR_INVALID, "sampling: frequency_penalty must be in [-%g, %g], got %g",
                         (double)SAMPLER_MAX_PENALTY, (double)SAMPLER_MAX_PENALTY, (double)p->frequency_penalty);
    if (p->top_logprobs < 0 || p->top_logprobs > MS_MAX_TOP_LOGPROBS)
        return ms_seterr(err, MS_ERR_INVALID, "sampling: top_logprobs must be in [0, %d], got %d", MS_MAX_TOP_LOGPROBS,
                         p->top_logprobs);
    if (p->n_logit_bias < 0 || p->n_logit_bias > SAMPLER_MAX_N_BIAS)
        return ms_seterr(err, MS_ERR_INVALID, "sampling: logit_bias has %d entries (limit %d)", p->n_logit_bias,
                         SAMPLER_MAX_N_BIAS);
    if (p->n_logit_bias > 0 && (!p->logit_bias_ids || !p->logit_bias_values))
        return ms_seterr(err, MS_ERR_INVALID, "sampling: logit_bias arrays missing");
    for (int i = 0; i < p->n_logit_bias; i++) {
        int32_t id = p->logit_bias_ids[i];
        float v = p->logit_bias_values[i];
        if (id < 0 || id >= vocab)
            return ms_seterr(err, MS_ERR_INVALID, "sampling: logit_bias token id %d out of range [0, %d)", (int)id,
                             vocab);
        if (!(fabsf(v) <= SAMPLER_MAX_BIAS))
            return ms_seterr(err, MS_ERR_INVALID,
                             "sampling: logit_bias value for token %d must be in [-%g, %g], got %g", (int)id,
                             (double)SAMPLER_MAX_BIAS, (double)SAMPLER_MAX_BIAS, (double)v);
    }
    return MS_OK;
}

/* Frees s and its buffers; NULL-safe. */
void sampler_free(sampler *s)
{
    if (!s) return;
    free(s->bias_ids);
    free(s->bias_vals);
    free(s->seen);
    free(s->seen_list);
    free(s->count);
    free(s->gen_list);
    free(s->cand);
    free(s->w);
    free(s->raw);
    free(s);
}

/* Adds id to the repetition-penalty set (once). */
static void seen_add(sampler *s, int32_t id)
{
    if (s->seen[id >> 3] & (1u << (id & 7))) return;
    s->seen[id >> 3] |= (uint8_t)(1u << (id & 7));
    s->seen_list[s->n_seen++] = id;
}

/* Validates p, copies the bias, seeds the RNG and allocates every buffer. */
ms_status sampler_create(const ms_sampling *p, int vocab, int n_valid, const int32_t *prompt, size_t n_prompt,
                         sampler **out, ms_error *err)
{
    *out = NULL;
    if (vocab <= 0 || n_valid <= 0 || n_valid > vocab)
        return ms_seterr(err, MS_ERR_INVALID, "sampler: bad vocab %d / n_valid %d", vocab, n_valid);
    ms_status st = sampler_validate(p, vocab, err);
    if (st != MS_OK) return st;
    sampler *s = calloc(1, sizeof *s);
    if (!s) return ms_seterr(err, MS_ERR_NOMEM, "sampler: out of memory");
    s->vocab = vocab;
    s->n_valid = n_valid;
    s->greedy = p->greedy || p->temperature == 0.0f;
    s->temperature = p->temperature;
    s->top_k = p->top_k;
    s->top_p = p->top_p;
    s->min_p = p->min_p;
    s->rep = p->repetition_penalty;
    s->presence = p->presence_penalty;
    s->frequency = p->frequency_penalty;
    sampler_rng_seed(&s->rng, p->seed);
    size_t v = (size_t)vocab, nv = (size_t)n_valid;
    s->cand = malloc(nv * sizeof *s->cand);
    s->w = malloc(nv * sizeof *s->w);
    s->raw = malloc(v * sizeof *s->raw);
    if (!s->cand || !s->w || !s->raw) goto nomem;
    if (p->n_logit_bias > 0) {
        size_t nb = (size_t)p->n_logit_bias;
        s->bias_ids = malloc(nb * sizeof *s->bias_ids);
        s->bias_vals = malloc(nb * sizeof *s->bias_vals);
        if (!s->bias_ids || !s->bias_vals) goto nomem;
        memcpy(s->bias_ids, p->logit_bias_ids, nb * sizeof *s->bias_ids);
        memcpy(s->bias_vals, p->logit_bias_values, nb * sizeof *s->bias_vals);
        s->n_bias = p->n_logit_bias;
    }
    if (s->rep != 1.0f) {
        s->seen = calloc(v / 8 + 1, 1);
        s->seen_list = malloc(v * sizeof *s->seen_list);
        if (!s->seen || !s->seen_list) goto nomem;
        for (size_t i = 0; i < n_prompt; i++) {
            int32_t id = prompt[i];
            if (id < 0 || id >= vocab) {
                sampler_free(s);
                return ms_seterr(err, MS_ERR_INVALID, "sampler: prompt token %zu is %d, outside [0, %d)", i, (int)id,
                                 vocab);
            }
            seen_add(s, id);
        }
    }
    if (s->presence != 0.0f || s->frequency != 0.0f) {
        s->count = calloc(v, sizeof *s->count);
        s->gen_list = malloc(v * sizeof *s->gen_list);
        if (!s->count || !s->gen_list) goto nomem;
    }
    *out = s;
    return MS_OK;
nomem:
    sampler_free(s);
    return ms_seterr(err, MS_ERR_NOMEM, "sampler: out of memory for vocab %d", vocab);
}

/* Counts a generated token for the penalties. */
void sampler_accept(sampler *s, int32_t token)
{
    if (!s || token < 0 || token >= s->vocab) return;
    if (s->seen) seen_add(s, token);
    if (s->count && s->count[token]++ == 0) s->gen_list[s->n_gen++] = token;
}

/* ---- selection helpers ------------------------------------------------- */

/* Strict total order: a ranks before b (higher logit, then lower id). */
static inline int ranks_before(const float *l, int32_t a, int32_t b)
{
    return l[a] > l[b] || (l[a] == l[b] && a < b);
}

/* Swaps two ids. */
static inline void swap_i32(int32_t *a, int32_t *b)
{
    int32_t t = *a;
    *a = *b;
    *b = t;
}

/* Rearranges c[0..n) so that c[0..k) are the k best ids (unordered), 0<k<n.
 * Quickselect with a pivot from a fixed xorshift (not the request RNG). */
static void select_top(int32_t *c, int n, int k, const float *l)
{
    uint32_t x = 2463534242u;
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        int p = lo + (int)(x % (uint32_t)(hi - lo + 1));
        swap_i32(&c[p], &c[hi]);
        int32_t pv = c[hi];
        int store = lo;
        for (int i = lo; i < hi; i++)
            if (ranks_before(l, c[i], pv)) swap_i32(&c[i], &c[store++]);
        swap_i32(&c[store], &c[hi]);
        if (store == k - 1) return;
        if (store > k - 1) hi = store - 1;
        else lo = store + 1;
    }
}

/* Restores the heap property below node i of the heap c[0..n) (worst at the top). */
static void sift_down(int32_t *c, int n, int i, const float *l)
{
    for (;;) {
        int m = i, a = 2 * i + 1, b = a + 1;
        if (a < n && ranks_before(l, c[m], c[a])) m = a;
        if (b < n && ranks_before(l, c[m], c[b])) m = b;
        if (m == i) return;
        swap_i32(&c[i], &c[m]);
        i = m;
    }
}

/* Sorts c[0..n) best first; insertion sort when short, else heapsort
 * (in place, no allocation, O(n log n)). */
static void sort_best_first(int32_t *c, int n, const float *l)
{
    if (n <= 32) {
        for (int i = 1; i < n; i++) {
            int32_t v = c[i];
            int j = i;
            while (j > 0 && ranks_before(l, v, c[j - 1])) {
                c[j] = c[j - 1];
                j--;
            }
            c[j] = v;
        }
        return;
    }
    for (int i = n / 2 - 1; i >= 0; i--) sift_down(c, n, i, l);
    for (int end = n - 1; end > 0; end--) {
        swap_i32(&c[0], &c[end]); /* the worst goes last */
        sift_down(c, end, 0, l);
    }
}

/* Max logit over the candidates. */
static float cand_max(const int32_t *c, int n, const float *l)
{
    float m = -INFINITY;
    for (int i = 0; i < n; i++)
        if (l[c[i]] > m) m = l[c[i]];
    return m;
}

/* ---- the filters -------------------------------------------------------- */

/* top-k in one pass over the row for small k: a bounded heap (worst kept id
 * at the root) collects the k best finite ids < nv into c, then the ids tied
 * with the k-th logit are appended (they all have higher ids than the tied
 * ones kept). Leaves c sorted best first; returns the count, or -1 if there
 * are at most k finite ids (nothing to filter). */
static int top_k_scan(const float *l, int nv, int k, int32_t *c)
{
    int h = 0, finite = 0;
    for (int32_t i = 0; i < nv; i++) {
        if (!(l[i] > -INFINITY)) continue;
        finite++;
        if (h < k) {
            c[h++] = i;
            if (h == k)
                for (int j = k / 2 - 1; j >= 0; j--) sift_down(c, k, j, l);
        } else if (ranks_before(l, i, c[0])) {
            c[0] = i;
            sift_down(c, k, 0, l);
        }
    }
    if (finite <= k) return -1;
    float thr = l[c[0]];
    int32_t last = c[0];
    sort_best_first(c, k, l);
    int m = k;
    for (int32_t i = last + 1; i < nv; i++)
        if (l[i] == thr) c[m++] = i;
    return m;
}

/* top-k: keeps every candidate >= the k-th best logit (ties kept); leaves the
 * kept candidates sorted best first. Returns the new count. */
static int apply_top_k(int32_t *c, int n, int k, const float *l)
{
    select_top(c, n, k, l);
    sort_best_first(c, k, l);
    float thr = l[c[k - 1]];
    int m = k;
    for (int j = k; j < n; j++)
        if (l[c[j]] == thr) swap_i32(&c[m++], &c[j]);
    sort_best_first(c + k, m - k, l); /* tied ids: all rank after c[0..k) */
    return m;
}

/* Weighted quickselect: rearranges c[0..n) so that the kept prefix (the best
 * candidates up to and including the one whose cumulative mass first reaches
 * target) comes first, unordered; returns its length. w is indexed by id. */
static int top_p_select(int32_t *c, int n, const float *l, const float *w, double target)
{
    uint32_t x = 2463534242u;
    int lo = 0, hi = n;
    double acc = 0.0; /* mass of c[0..lo), all ranking before c[lo..hi) */
    while (lo < hi) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        int p = lo + (int)(x % (uint32_t)(hi - lo));
        swap_i32(&c[p], &c[hi - 1]);
        int32_t pv = c[hi - 1];
        int store = lo;
        double mass = 0.0;
        for (int i = lo; i < hi - 1; i++)
            if (ranks_before(l, c[i], pv)) {
                mass += w[c[i]];
                swap_i32(&c[i], &c[store++]);
            }
        swap_i32(&c[store], &c[hi - 1]);
        if (store > lo && acc + mass >= target) {
            hi = store; /* the crossing token ranks before the pivot */
            continue;
        }
        acc += mass;
        if (acc + w[pv] >= target) return store + 1; /* the pivot crosses */
        acc += w[pv];
        lo = store + 1;
    }
    return n;
}

/* top-p over the candidates: keeps the best ones until their mass first
 * reaches top_p, the crossing token included (HF: a token is kept iff the
 * mass strictly above it is < top_p). Sorted input: one walk; otherwise a
 * weighted quickselect, leaving the kept ones unordered. */
static int apply_top_p(int32_t *c, int n, const float *l, float *w, float top_p, int sorted)
{
    float mx = cand_max(c, n, l);
    double z = 0.0;
    for (int i = 0; i < n; i++) {
        w[c[i]] = (float)exp((double)(l[c[i]] - mx));
        z += w[c[i]];
    }
    if (!sorted) return top_p_select(c, n, l, w, (double)top_p * z);
    double acc = 0.0, target = (double)top_p * z;
    for (int i = 0; i < n; i++) {
        if (i > 0 && acc >= target) return i;
        acc += w[c[i]];
    }
    return n;
}

/* min-p: drops candidates whose probability is < min_p * the best one's. */
static int apply_min_p(int32_t *c, int n, const float *l, float min_p)
{
    float mx = cand_max(c, n, l);
    double z = 0.0;
    for (int i = 0; i < n; i++) z += exp((double)(l[c[i]] - mx));
    float thr = (float)(min_p * (1.0 / z));
    int m = 0;
    for (int i = 0; i < n; i++)
        if (!((float)(exp((double)(l[c[i]] - mx)) / z) < thr)) c[m++] = c[i];
    return m;
}

/* Fills top_ids/top_lps with the n_top best raw logits among ids < n_valid. */
static void top_logprobs(const float *raw, int n_valid, float lse, int n_top, int32_t *top_ids, float *top_lps)
{
    int cnt = 0;
    for (int32_t i = 0; i < n_valid; i++) {
        if (cnt == n_top && !ranks_before(raw, i, top_ids[cnt - 1])) continue;
        int j = cnt < n_top ? cnt++ : cnt - 1;
        while (j > 0 && ranks_before(raw, i, top_ids[j - 1])) {
            top_ids[j] = top_ids[j - 1];
            j--;
        }
        top_ids[j] = i;
    }
    for (int j = 0; j < cnt; j++) top_lps[j] = raw[top_ids[j]] - lse;
    for (int j = cnt; j < n_top; j++) {
        top_ids[j] = -1;
        top_lps[j] = -INFINITY;
    }
}

/* log-sum-exp over the finite-or--inf entries of the whole row (NaN skipped). */
static float row_lse(const float *l, int n)
{
    float mx = -INFINITY;
    for (int i = 0; i < n; i++)
        if (l[i] > mx) mx = l[i];
    if (mx == -INFINITY) return -INFINITY;
    double z = 0.0;
    for (int i = 0; i < n; i++)
        if (l[i] > -INFINITY) z += exp((double)(l[i] - mx));
    return (float)((double)mx + log(z));
}

/* Applies penalties and bias to logits, then (when sampling) temperature,
 * top-k, top-p and min-p; leaves the surviving ids in s->cand (best first when
 * a filter sorted them) and returns their count. Greedy leaves the argmax. */
static int prepare(sampler *s, float *logits)
{
    const int nv = s->n_valid;
    if (s->seen) {
        for (int j = 0; j < s->n_seen; j++) {
            float *x = &logits[s->seen_list[j]];
            *x = *x < 0.0f ? *x * s->rep : *x / s->rep;
        }
    }
    if (s->count) {
        for (int j = 0; j < s->n_gen; j++) {
            int32_t id = s->gen_list[j];
            logits[id] -= s->presence + s->frequency * (float)s->count[id];
        }
    }
    for (int j = 0; j < s->n_bias; j++) logits[s->bias_ids[j]] += s->bias_vals[j];

    if (s->greedy) {
        float best = -INFINITY;
        int32_t arg = -1;
        for (int i = 0; i < nv; i++)
            if (logits[i] > best) {
                best = logits[i];
                arg = i;
            }
        if (arg < 0) return 0;
        s->cand[0] = arg;
        return 1;
    }
    /* top-k first: dividing by T > 0 keeps the order, so the kept set is the
     * same as HF's (temperature, then top-k; up to two logits 1 ulp apart
     * that the division would round to a tie) and only kept ids are divided. */
    int n = -1, sorted = 0;
    if (s->top_k > 0 && s->top_k <= SAMPLER_HEAP_TOP_K) {
        n = top_k_scan(logits, nv, s->top_k, s->cand);
        sorted = n >= 0;
    }
    if (n < 0) {
        n = 0;
        for (int i = 0; i < nv; i++)
            if (logits[i] > -INFINITY) s->cand[n++] = i;
        if (s->top_k > SAMPLER_HEAP_TOP_K && s->top_k < n) {
            n = apply_top_k(s->cand, n, s->top_k, logits);
            sorted = 1;
        }
    }
    if (n == 0) return 0;
    if (s->temperature != 1.0f)
        for (int i = 0; i < n; i++) logits[s->cand[i]] /= s->temperature;
    if (s->top_p < 1.0f) n = apply_top_p(s->cand, n, logits, s->w, s->top_p, sorted);
    if (s->min_p > 0.0f) n = apply_min_p(s->cand, n, logits, s->min_p);
    return n;
}

/* Softmax over the candidates and one draw, walking them in their order. */
static int32_t draw(sampler *s, const float *logits, int n)
{
    float mx = cand_max(s->cand, n, logits);
    double z = 0.0;
    for (int i = 0; i < n; i++) {
        s->w[i] = (float)exp((double)(logits[s->cand[i]] - mx));
        z += s->w[i];
    }
    double u = sampler_rng_uniform(&s->rng) * z, acc = 0.0;
    int32_t chosen = -1;
    for (int i = 0; i < n; i++) {
        if (s->w[i] <= 0.0f) continue;
        chosen = s->cand[i]; /* the last positive one if rounding runs past z */
        acc += s->w[i];
        if (u < acc) break;
    }
    return chosen;
}

/* Checks the row, records logprobs, filters and draws one token. */
int32_t sampler_sample(sampler *s, float *logits, float *logprob, int n_top, int32_t *top_ids, float *top_lps)
{
    for (int i = 0; i < s->n_valid; i++)
        if (isnan(logits[i]) || logits[i] == INFINITY) return -1;
    if (n_top > MS_MAX_TOP_LOGPROBS) n_top = MS_MAX_TOP_LOGPROBS;
    if (n_top < 0) n_top = 0;
    float lse = 0.0f;
    if (logprob || n_top > 0) {
        memcpy(s->raw, logits, (size_t)s->vocab * sizeof *logits);
        lse = row_lse(s->raw, s->vocab);
        if (n_top > 0) top_logprobs(s->raw, s->n_valid, lse, n_top, top_ids, top_lps);
    }
    int n = prepare(s, logits);
    int32_t chosen = n == 0 ? -1 : s->greedy ? s->cand[0] : draw(s, logits, n);
    if (chosen >= 0 && logprob) *logprob = s->raw[chosen] - lse;
    return chosen;
}

/* The candidate set sampler_sample would draw from (tests). */
int sampler_candidates(sampler *s, float *logits, int32_t *ids)
{
    for (int i = 0; i < s->n_valid; i++)
        if (isnan(logits[i]) || logits[i] == INFINITY) return -1;
    int n = prepare(s, logits);
    memcpy(ids, s->cand, (size_t)n * sizeof *ids);
    return n;
}
