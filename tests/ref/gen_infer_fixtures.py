#!/usr/bin/env python3
"""gen_infer_fixtures.py: parity fixtures for the CPU forward pass (tests/test_forward.c).

For each of the five small synthetic Qwen3 models below (f32, bf16 and f16; tied and untied;
GQA 2:1, 4:1 and none; nh*d != H; attention bias with YaRN; a 5.x-style config), this script
runs `build/tools/synth` to write the model (the real Qwen3 tokenizer, vocab 151936), loads it with transformers `Qwen3ForCausalLM` in
the model's own dtype with eager attention, and records for three prompts of different lengths
(token ids from the real tokenizer):
  - per-position logits for a fixed subset of 256 vocabulary columns,
  - the full-vocabulary top-5 (ids and logits) and argmax per position,
  - a greedy continuation of 64 tokens (HF's KV-cache loop, no eos stop),
  - the top1-top2 margin of every greedy step (to show the fixture is not decided by ties),
and the SHA-256 of the model's safetensors so the C test can confirm synth regenerated the same
bits. Output: tests/data/infer/<name>.json (committed, small). The C test regenerates each model
with the same synth arguments into a temporary directory.

Run from the repository root after `make`:  python3 tests/ref/gen_infer_fixtures.py
Needs torch, transformers, tokenizers, numpy (fixture time only, never at test time).
"""
import hashlib
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
from tokenizers import Tokenizer
from transformers import Qwen3ForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SYNTH = os.environ.get("MEDSERVE_SYNTH", os.path.join(ROOT, "build", "tools", "synth"))
TOKENIZER = os.path.join(ROOT, "tests", "data", "qwen3-tokenizer", "tokenizer.json")
OUT_DIR = os.path.join(ROOT, "tests", "data", "infer")
VOCAB = 151936
N_GREEDY = 64
N_COLUMNS = 256

# Small models covering the shapes and options the forward pass must handle. `std` is the
# weight standard deviation given to synth. f32 models use 0.6: logits are peaked enough that
# every greedy step's top1-top2 margin is far above f32 rounding (printed below; >= ~3e-3
# against differences of ~1e-5). bf16 models use 0.05 so that |logits| < 4, where one bf16 ulp
# (<= 0.0156) is below the 2e-2 tolerance; the f16 model likewise (one f16 ulp <= 0.002 < 5e-3). Their HF logits are themselves bf16, so exact ties
# between the top two do occur (margin 0, printed): there, greedy parity holds because the C
# forward reproduces HF's bf16 rounding points and breaks ties by the lowest id as torch.argmax.
MODELS = [
    {   # (a) tied embeddings, nh*d != H (4*32 = 128 vs 64), GQA 2:1, f32
        "name": "a_tied_gqa2_f32",
        "synth": ["--hidden", "64", "--layers", "2", "--heads", "4", "--kv-heads", "2",
                  "--head-dim", "32", "--intermediate", "128", "--tied", "1", "--dtype", "f32",
                  "--seed", "11", "--std", "0.6"],
        "tol": 1e-3,
    },
    {   # (b) untied, GQA 4:1, bf16, three layers
        "name": "b_untied_gqa4_bf16",
        "synth": ["--hidden", "96", "--layers", "3", "--heads", "8", "--kv-heads", "2",
                  "--head-dim", "16", "--intermediate", "160", "--tied", "0", "--dtype", "bf16",
                  "--seed", "22", "--std", "0.05"],
        "tol": 2e-2,
    },
    {   # (c) attention_bias and YaRN (factor 4, original max 32768), f32
        "name": "c_bias_yarn_f32",
        "synth": ["--hidden", "64", "--layers", "2", "--heads", "4", "--kv-heads", "2",
                  "--head-dim", "32", "--intermediate", "128", "--tied", "1",
                  "--attention-bias", "1", "--yarn", "4:32768", "--dtype", "f32",
                  "--seed", "33", "--std", "0.6"],
        "tol": 1e-3,
    },
    {   # (d) bf16, tied, config.json in the transformers 5.x spelling, MQA-like 4:1
        "name": "d_tied_bf16_v5config",
        "synth": ["--hidden", "128", "--layers", "2", "--heads", "4", "--kv-heads", "1",
                  "--head-dim", "64", "--intermediate", "192", "--tied", "1", "--dtype", "bf16",
                  "--config-style", "5", "--seed", "44", "--std", "0.05"],
        "tol": 2e-2,
    },
    {   # (e) f16, untied, plain multi-head attention (nkv = nh), nh*d = H
        "name": "e_untied_mha_f16",
        "synth": ["--hidden", "64", "--layers", "2", "--heads", "4", "--kv-heads", "4",
                  "--head-dim", "16", "--intermediate", "128", "--tied", "0", "--dtype", "f16",
                  "--rope-theta", "10000", "--seed", "55", "--std", "0.05"],
        "tol": 5e-3,
    },
]

PROMPTS = [
    "Hello, doctor.",
    "The patient is a 67-year-old man with type 2 diabetes and chest pain.",
    "<|im_start|>user\nSummarise: blood pressure 150/95 mmHg, heart rate 88 bpm, SpO2 97% on "
    "room air. Started on lisinopril 10 mg daily; review in two weeks.<|im_end|>\n"
    "<|im_start|>assistant\n",
]

DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}


def synth_dtype(args):
    return args[args.index("--dtype") + 1]


def f9(v):
    """A float32 value as the shortest JSON number that reads back to the same float32."""
    return float("%.9g" % v)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fixed_columns():
    """256 vocabulary columns: a few special ids plus a seeded random spread."""
    rng = np.random.default_rng(20261128)
    special = [0, 1, 13, 198, 271, 151643, 151644, 151645, 151667, 151668, VOCAB - 1]
    rest = rng.choice(VOCAB, size=N_COLUMNS * 2, replace=False)
    cols = list(dict.fromkeys(special + [int(c) for c in rest]))[:N_COLUMNS]
    return sorted(cols)


def greedy(model, ids, n):
    """HF's greedy loop: prefill, then one token per step through the KV cache; fp32 argmax."""
    out_ids, margins = [], []
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]), use_cache=True)
        cache = out.cache
        for _ in range(n):
            logits = out.logits[0, -1].to(torch.float32)
            top2 = torch.topk(logits, 2).values
            tok = int(torch.argmax(logits))
            out_ids.append(tok)
            margins.append(float(top2[0] - top2[1]))
            out = model(input_ids=torch.tensor([[tok]]), cache=cache, use_cache=True)
            cache = out.cache
    return out_ids, margins


def run_model(spec, tok, cols):
    with tempfile.TemporaryDirectory() as tmp:
        mdir = os.path.join(tmp, spec["name"])
        subprocess.run([SYNTH, *spec["synth"], "--out", mdir], check=True)
        st_path = os.path.join(mdir, "model.safetensors")
        digest = sha256_file(st_path)
        dtype = DTYPES[synth_dtype(spec["synth"])]
        model = Qwen3ForCausalLM.from_pretrained(mdir, dtype=dtype, attn_implementation="eager")
        model.eval()
        prompts = []
        for text in PROMPTS:
            ids = tok.encode(text).ids
            with torch.no_grad():
                logits = model(input_ids=torch.tensor([ids])).logits[0].to(torch.float32)
            top = torch.topk(logits, 5, dim=-1)
            g_ids, g_margins = greedy(model, ids, N_GREEDY)
            prompts.append({
                "text": text,
                "ids": ids,
                "logits": [[f9(v) for v in row] for row in logits[:, cols].numpy()],
                "top5_ids": top.indices.tolist(),
                "top5_logits": [[f9(v) for v in row] for row in top.values.numpy()],
                "argmax": torch.argmax(logits, dim=-1).tolist(),
                "greedy": g_ids,
                "greedy_margins": [round(m, 6) for m in g_margins],
            })
            print(f"{spec['name']}: prompt of {len(ids)} tokens: min greedy margin "
                  f"{min(g_margins):.4g} ({sum(m == 0 for m in g_margins)} exact ties), "
                  f"{len(set(g_ids))} distinct tokens, min prefill top1-top2 margin "
                  f"{float((top.values[:, 0] - top.values[:, 1]).min()):.4g}", file=sys.stderr)
        return {
            "name": spec["name"],
            "synth_args": spec["synth"],
            "dtype": synth_dtype(spec["synth"]),
            "tolerance": spec["tol"],
            "safetensors_sha256": digest,
            "columns": cols,
            "prompts": prompts,
            "generator": "tests/ref/gen_infer_fixtures.py",
            "reference": f"transformers {__import__('transformers').__version__} "
                         f"Qwen3ForCausalLM eager, torch {torch.__version__} CPU",
        }


def main():
    torch.manual_seed(0)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    if not os.access(SYNTH, os.X_OK):
        sys.exit(f"{SYNTH} not found: run make first")
    tok = Tokenizer.from_file(TOKENIZER)
    cols = fixed_columns()
    os.makedirs(OUT_DIR, exist_ok=True)
    only = set(sys.argv[1:])
    for spec in MODELS:
        if only and spec["name"] not in only:
            continue
        fx = run_model(spec, tok, cols)
        path = os.path.join(OUT_DIR, spec["name"] + ".json")
        with open(path, "w") as f:
            json.dump(fx, f, separators=(",", ":"))
            f.write("\n")
        print(f"wrote {path} ({os.path.getsize(path)} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
