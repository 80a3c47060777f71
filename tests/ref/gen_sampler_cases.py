#!/usr/bin/env python3
"""gen_sampler_cases.py: writes tests/data/sampler_hf_cases.json, the expected
output of HF transformers' logits processors (RepetitionPenalty, Temperature,
TopK, TopP, MinP) on small and full-size logit rows, for tests/test_sampler.c.

OpenAI presence/frequency penalties and logit bias are not HF processors; they
are applied here by their formula (logit -= presence*[count>0] + frequency*count
over generated ids; logit += bias) after the repetition penalty, the order
medserve uses. Ids >= n_valid are set to -inf first (medserve never samples
them). Greedy cases record HF's argmax of the penalised scores. "penalised" is the
row after the penalties and bias (ids >= n_valid written as -1e30).

Run: python3 tests/ref/gen_sampler_cases.py  (CPU torch + transformers)."""
import json
import math
import os

import numpy as np
import torch
from transformers.generation.logits_process import (
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

OUT = os.path.join(os.path.dirname(__file__), "..", "data", "sampler_hf_cases.json")


def process(logits, n_valid, prompt, generated, p):
    """HF order: repetition penalty (+ presence/frequency + bias), then warpers."""
    scores = torch.tensor([logits], dtype=torch.float32)
    scores[0, n_valid:] = -math.inf
    ids = torch.tensor([prompt + generated], dtype=torch.long)
    if p["repetition_penalty"] != 1.0 and ids.shape[1] > 0:
        scores = RepetitionPenaltyLogitsProcessor(p["repetition_penalty"])(ids, scores)
    counts = {}
    for t in generated:
        counts[t] = counts.get(t, 0) + 1
    for t, c in counts.items():
        scores[0, t] -= np.float32(p["presence_penalty"] + p["frequency_penalty"] * c)
    for t, v in p["bias"]:
        scores[0, t] += np.float32(v)
    penalised = scores.clone()
    if p["greedy"]:
        return penalised, penalised, [int(torch.argmax(penalised[0]))]
    if p["temperature"] != 1.0:
        scores = TemperatureLogitsWarper(p["temperature"])(ids, scores)
    if p["top_k"]:
        scores = TopKLogitsWarper(p["top_k"])(ids, scores)
    if p["top_p"] < 1.0:
        scores = TopPLogitsWarper(p["top_p"])(ids, scores)
    if p["min_p"] > 0.0:
        scores = MinPLogitsWarper(p["min_p"])(ids, scores)
    kept = [int(i) for i in torch.nonzero(scores[0] > -math.inf).flatten()]
    return penalised, scores, kept


def params(**kw):
    p = dict(greedy=0, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, repetition_penalty=1.0,
             presence_penalty=0.0, frequency_penalty=0.0, bias=[])
    p.update(kw)
    return p


def f32(xs):
    return [float(np.float32(x)) for x in xs]


def small_case(name, logits, p, prompt=(), generated=(), n_valid=None):
    logits = f32(logits)
    n_valid = len(logits) if n_valid is None else n_valid
    pen, scores, kept = process(logits, n_valid, list(prompt), list(generated), p)
    s = scores[0].tolist()
    pen = [x if x > -math.inf else -1e30 for x in pen[0].tolist()]
    return dict(name=name, vocab=len(logits), n_valid=n_valid, logits=logits, prompt=list(prompt),
                generated=list(generated), params=p, kept=kept,
                processed=[s[i] for i in kept], penalised=pen)


def big_logits(modulus, scale, vocab=151936):
    i = np.arange(vocab, dtype=np.int64)
    v = ((i * 2654435761) % modulus).astype(np.float32) / np.float32(scale) - np.float32(5.0)
    return v


def big_case(name, modulus, scale, p, n_valid=151669):
    logits = big_logits(modulus, scale).tolist()
    _, scores, kept = process(logits, n_valid, [], [], p)
    s = scores[0]
    order = sorted(kept, key=lambda i: (-float(s[i]), i))
    return dict(name=name, vocab=151936, n_valid=n_valid, modulus=modulus, scale=scale, params=p,
                n_kept=len(kept), sum_ids=int(sum(kept)), sum_sq_ids=int(sum(k * k for k in kept)),
                best=order[:10])


M64 = (1 << 64) - 1


def xoshiro_outputs(seed, n):
    """xoshiro256** seeded by four splitmix64 steps (portable integer RNG)."""
    x = seed
    st = []
    for _ in range(4):
        x = (x + 0x9E3779B97F4A7C15) & M64
        z = x
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        st.append(z ^ (z >> 31))
    rotl = lambda v, k: ((v << k) | (v >> (64 - k))) & M64
    out = []
    for _ in range(n):
        out.append(str((rotl((st[1] * 5) & M64, 7) * 9) & M64))
        t = (st[1] << 17) & M64
        st[2] ^= st[0]
        st[3] ^= st[1]
        st[1] ^= st[2]
        st[0] ^= st[3]
        st[2] ^= t
        st[3] = rotl(st[3], 45)
    return out


def main():
    cases = []
    ln = math.log
    # repetition penalty: negative logits are multiplied, others divided; each id once
    cases.append(small_case("rep_penalty_negative", [1.0, -1.0, 2.0, 0.0, -0.5, 3.0],
                            params(greedy=1, repetition_penalty=1.3), prompt=[0, 1, 1, 4],
                            generated=[5, 5]))
    cases.append(small_case("rep_penalty_flips_argmax", [2.0, 1.9, -3.0, 1.0],
                            params(greedy=1, repetition_penalty=1.1), prompt=[0]))
    cases.append(small_case("greedy_tie_lowest_id", [1.0, 4.0, 2.0, 4.0], params(greedy=1)))
    cases.append(small_case("presence_frequency", [1.0, -1.0, 2.0, 0.5, 0.25, 0.0],
                            params(greedy=1, presence_penalty=0.5, frequency_penalty=0.25),
                            prompt=[0, 1], generated=[2, 2, 3, 2]))
    cases.append(small_case("logit_bias", [1.0, 0.0, 2.0, 0.5],
                            params(greedy=1, bias=[[1, 5.0], [2, -100.0]])))
    # top-k keeps ties at the threshold
    cases.append(small_case("top_k_ties_2", [1.0, 3.0, 2.0, 3.0, 2.0, 0.0], params(top_k=2)))
    cases.append(small_case("top_k_ties_3", [1.0, 3.0, 2.0, 3.0, 2.0, 0.0], params(top_k=3)))
    cases.append(small_case("top_k_1", [1.0, 3.0, 2.0, 0.5], params(top_k=1)))
    # top-p keeps the token that crosses p, always the best one
    probs = [ln(x) for x in (0.5, 0.3, 0.15, 0.05)]
    cases.append(small_case("top_p_0.7", probs, params(top_p=0.7)))
    cases.append(small_case("top_p_0.85", probs, params(top_p=0.85)))
    cases.append(small_case("top_p_0.1", probs, params(top_p=0.1)))
    cases.append(small_case("top_p_0.99", probs, params(top_p=0.99)))
    cases.append(small_case("min_p_0.15", [ln(x) for x in (0.5, 0.3, 0.1, 0.06, 0.04)],
                            params(min_p=0.15)))
    cases.append(small_case("temperature_0.5", [1.0, 0.0, -1.0], params(temperature=0.5)))
    cases.append(small_case("chain", [2.0, 1.5, -0.5, 1.0, 0.2, -2.0, 3.0, 0.9],
                            params(temperature=0.7, top_k=5, top_p=0.9, min_p=0.05,
                                   repetition_penalty=1.2, presence_penalty=0.3,
                                   frequency_penalty=0.1, bias=[[4, 1.5]]),
                            prompt=[0, 6], generated=[1, 6, 6]))
    cases.append(small_case("masked_ids", [1.0, 0.5, 0.0, 9.0, 8.0],
                            params(top_k=3), n_valid=3))
    rng = np.random.default_rng(1234)
    for k in range(40):
        v = 40
        logits = (rng.standard_normal(v) * 3.0).tolist()
        p = params(temperature=float(np.float32(rng.choice([0.3, 0.7, 1.0, 1.5]))),
                   top_k=int(rng.choice([0, 0, 5, 12])),
                   top_p=float(np.float32(rng.choice([1.0, 0.95, 0.8, 0.5]))),
                   min_p=float(np.float32(rng.choice([0.0, 0.0, 0.05, 0.2]))),
                   repetition_penalty=float(np.float32(rng.choice([1.0, 1.1, 1.5]))),
                   presence_penalty=float(np.float32(rng.choice([0.0, 0.4]))),
                   frequency_penalty=float(np.float32(rng.choice([0.0, -0.3, 0.2]))),
                   greedy=int(k % 5 == 4))
        prompt = rng.integers(0, v, 6).tolist()
        gen = rng.integers(0, v, 5).tolist()
        cases.append(small_case(f"random_{k}", logits, p, prompt=prompt, generated=gen))
    big = [
        big_case("big_top_p", 1000003, 100000.0, params(temperature=0.3, top_p=0.9)),
        big_case("big_top_p_wide", 1000003, 100000.0, params(top_p=0.5)),
        big_case("big_top_k_ties", 1009, 100.0, params(top_k=20)),
        big_case("big_top_k_2000_ties", 1009, 100.0, params(top_k=2000, temperature=0.5)),
        big_case("big_qwen_defaults", 1000003, 100000.0,
                 params(temperature=0.6, top_k=20, top_p=0.95)),
        big_case("big_min_p", 1000003, 100000.0, params(min_p=0.9)),
    ]
    with open(OUT, "w") as f:
        json.dump({"generator": "tests/ref/gen_sampler_cases.py", "small": cases, "big": big,
                   "rng": {"seed": 42, "outputs": xoshiro_outputs(42, 8)}}, f)
        f.write("\n")
    print(f"wrote {OUT}: {len(cases)} small, {len(big)} big cases")
    for b in big:
        print(b["name"], b["n_kept"])


if __name__ == "__main__":
    main()
