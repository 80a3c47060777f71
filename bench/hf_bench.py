#!/usr/bin/env python3
"""hf_bench.py: transformers (torch CPU) as a third column of the bench, with
llama-bench semantics: pp = one forward over P random tokens keeping only the
last logits; tg = N one-token forwards with the KV cache, random next token.
One warm-up, then the median of 2 runs; prints one JSON line per case.

    python3 bench/hf_bench.py MODEL_DIR [--threads T] [--p 512] [--n 32]
"""
import argparse
import json
import statistics
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--p", type=int, default=512)
    ap.add_argument("--n", type=int, default=32)
    a = ap.parse_args()
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(a.threads)
    t0 = time.monotonic()
    m = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.bfloat16)
    m.eval()
    load = time.monotonic() - t0
    g = torch.Generator().manual_seed(1)
    with torch.inference_mode():
        pp = []
        for r in range(3):
            ids = torch.randint(0, 151643, (1, a.p), generator=g)
            t0 = time.monotonic()
            m(ids, logits_to_keep=1, use_cache=False)
            if r:
                pp.append(a.p / (time.monotonic() - t0))
        print(json.dumps({"runtime": "transformers", "case": "pp%d" % a.p, "ts": statistics.median(pp),
                          "load_s": load, "torch": torch.__version__}), flush=True)
        tg = []
        for r in range(3):
            out = m(torch.randint(0, 151643, (1, 1), generator=g), use_cache=True)
            past = out.past_key_values
            t0 = time.monotonic()
            for i in range(a.n):
                out = m(torch.randint(0, 151643, (1, 1), generator=g), past_key_values=past, use_cache=True)
                past = out.past_key_values
            if r:
                tg.append(a.n / (time.monotonic() - t0))
        print(json.dumps({"runtime": "transformers", "case": "tg%d@0" % a.n, "ts": statistics.median(tg)}),
              flush=True)


if __name__ == "__main__":
    main()
