/* sampler.h: logits -> token in HF's order and semantics (docs/numerics.md §7):
 * repetition penalty, OpenAI presence/frequency penalties, logit bias,
 * temperature, top-k (ties kept), top-p, min-p, greedy; a seeded RNG per
 * request; log-probabilities of the chosen token and the top N.
 *
 * Order applied by sampler_sample:
 *   1. repetition_penalty over every distinct id of prompt + output (once each),
 *      then presence/frequency penalties over generated ids (additive),
 *      then logit bias (additive);
 *   2. greedy: argmax over ids < n_valid, lowest id on ties; otherwise
 *      temperature, top-k, top-p, min-p, softmax and one draw.
 * Ids >= n_valid (the tokenizer's ids without text, e.g. 151669..151935 of
 * the 151936 logits rows) are never sampled.
 *
 * Log-probabilities are log-softmax of the RAW logits (as the backend returned
 * them, before penalties, bias, temperature or filters), normalised over the
 * whole logits row; the top-N list only contains ids < n_valid.
 *
 * Not thread-safe: one sampler per request, used by the engine thread. */
#ifndef MS_SAMPLER_H
#define MS_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

#include "medserve.h"

#define SAMPLER_MAX_TEMPERATURE 100.0f
#define SAMPLER_MAX_REP_PENALTY 10.0f
#define SAMPLER_MAX_PENALTY 2.0f /* |presence|, |frequency| (OpenAI range) */
#define SAMPLER_MAX_BIAS 100.0f  /* |logit bias| (OpenAI range) */
#define SAMPLER_MAX_N_BIAS 1024  /* logit_bias entries */

typedef struct sampler sampler;

/* Checks every field of p against its range (temperature >= 0, top_p in (0,1],
 * top_k >= 0, min_p in [0,1], penalties, top_logprobs <= 20, bias ids in
 * [0, vocab)); the message names the field. Allocates nothing. */
ms_status sampler_validate(const ms_sampling *p, int vocab, ms_error *err);

/* Validates p and copies what it needs (logit bias included). vocab is the
 * length of a logits row; ids >= n_valid are never sampled (n_valid <= vocab).
 * prompt seeds the repetition penalty's id set. Scratch buffers for a whole
 * vocab are allocated here, so sampling itself never allocates. */
ms_status sampler_create(const ms_sampling *p, int vocab, int n_valid, const int32_t *prompt, size_t n_prompt,
                         sampler **out, ms_error *err);
void sampler_free(sampler *s);

/* Picks the next token from logits[vocab] (modified in place). logprob (may be
 * NULL) gets log softmax of the unprocessed logits at the chosen id;
 * top_ids/top_lps (n_top entries, may be 0) the n_top most likely ids under
 * the same, best first, lowest id first on ties. Returns -1 (and picks
 * nothing) if a logit of an id < n_valid is NaN or +inf, or no id can be
 * sampled. */
int32_t sampler_sample(sampler *s, float *logits, float *logprob, int n_top, int32_t *top_ids, float *top_lps);
/* For tests: applies everything sampler_sample does before the final draw
 * (logits modified in place as sampling would) and writes the surviving ids to
 * ids[n_valid]; returns their count (-1 on NaN/+inf). Consumes no randomness. */
int sampler_candidates(sampler *s, float *logits, int32_t *ids);
/* Records a generated token (penalty counts). Ids out of range are ignored. */
void sampler_accept(sampler *s, int32_t token);

/* The per-request RNG (xoshiro256** seeded through splitmix64): exposed for tests. */
typedef struct sampler_rng {
    uint64_t s[4];
} sampler_rng;
void sampler_rng_seed(sampler_rng *r, uint64_t seed);
uint64_t sampler_rng_next(sampler_rng *r);
/* Uniform double in [0, 1) with 53 random bits. */
double sampler_rng_uniform(sampler_rng *r);

#endif
