/* sampler.h: logits -> token in HF's order and semantics (reference.md §7):
 * repetition penalty, OpenAI presence/frequency penalties, logit bias,
 * temperature, top-k (ties kept), top-p, min-p, greedy; a seeded RNG per
 * request; log-probabilities of the chosen token and the top N. */
#ifndef MS_SAMPLER_H
#define MS_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

#include "medserve.h"

typedef struct sampler sampler;

/* Validates p (ranges) and copies what it needs; prompt seeds the repetition
 * penalty's id set. */
ms_status sampler_create(const ms_sampling *p, int vocab, const int32_t *prompt, size_t n_prompt,
                         sampler **out, ms_error *err);
void sampler_free(sampler *s);

/* Picks the next token from logits[vocab] (modified in place). logprob gets
 * log softmax of the unprocessed logits at the chosen id; top_ids/top_lps
 * (n_top entries, may be 0) the n_top most likely ids under the same. */
int32_t sampler_sample(sampler *s, float *logits, float *logprob, int n_top, int32_t *top_ids,
                       float *top_lps);
/* Records a generated token (penalty counts). */
void sampler_accept(sampler *s, int32_t token);

#endif
