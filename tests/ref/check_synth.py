#!/usr/bin/env python3
"""check_synth.py: checks build/tools/synth against the reference stack.

For each variant (tiny tied/untied, bf16/f16/f32, sharded, 4.x and 5.x
config spellings, attention bias, YaRN, GQA 4:1 with nh*d != H) it
  1. runs synth twice and requires identical bytes (sha256 of every file);
  2. loads the directory with transformers Qwen3ForCausalLM.from_pretrained
     (no missing / unexpected keys) and checks the parsed config fields;
  3. requires every tensor in the safetensors files to equal the model's
     state_dict (tied models: lm_head is the embedding);
  4. runs a forward pass (finite logits of shape [1, T, V]);
  5. re-saves the model with save_pretrained(max_shard_size=same) and
     requires the weights files and the index to be byte-identical to ours
     (shard policy, tensor order, header layout, index JSON);
  6. checks the weight statistics (std of matrices, norms near 1).
It also records what transformers does with a config without head_dim.

Needs torch, transformers, safetensors (not needed at test time).
Run from the repository root after `make`: python3 tests/ref/check_synth.py
Exit status 0 when every check passes; prints one line per check.
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

import torch
from safetensors import safe_open
import transformers
from transformers import AutoConfig, Qwen3ForCausalLM

SYNTH = os.environ.get("SYNTH", "build/tools/synth")
TORCH_DTYPE = {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32}

VARIANTS = [
    # name, synth args, dtype
    ("tiny-tied-bf16-v4", ["--shape", "tiny"], "bf16"),
    ("tiny-untied-f32-v5", ["--shape", "tiny", "--tied", "0", "--config-style", "5"], "f32"),
    ("tiny-f16-gqa4-v4", ["--shape", "tiny", "--heads", "8", "--kv-heads", "2", "--head-dim", "16",
                          "--hidden", "96", "--intermediate", "80"], "f16"),
    ("bias-yarn-f32-v5", ["--shape", "tiny", "--attention-bias", "1", "--yarn", "4:32768",
                          "--config-style", "5", "--vocab", "1000"], "f32"),
    ("bias-yarn-bf16-v4", ["--shape", "tiny", "--attention-bias", "1", "--yarn", "2.5:8192",
                           "--rope-theta", "500000", "--vocab", "1000"], "bf16"),
    ("sharded-bf16-v4", ["--shape", "tiny", "--layers", "3", "--tied", "0",
                         "--max-shard-size", "5MB"], "bf16"),
    ("sharded-f32-v5", ["--shape", "tiny", "--vocab", "5000", "--max-shard-size", "300KB",
                        "--config-style", "5", "--std", "0.5"], "f32"),
    ("sharded-12layers-untied-v5", ["--shape", "tiny", "--layers", "12", "--vocab", "3000", "--tied", "0",
                                    "--max-shard-size", "400KB", "--config-style", "5"], "bf16"),
    ("sharded-12layers-module-order", ["--shape", "tiny", "--layers", "12", "--vocab", "3000", "--tied", "0",
                                       "--max-shard-size", "400KB", "--config-style", "5", "--hf-order", "4"],
     "f32"),
]

failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if not ok:
        failures.append(what)


def sha_dir(d):
    out = {}
    for f in sorted(os.listdir(d)):
        with open(os.path.join(d, f), "rb") as fh:
            out[f] = hashlib.sha256(fh.read()).hexdigest()
    return out


def weight_files(d):
    return sorted(f for f in os.listdir(d) if f.endswith(".safetensors") or f.endswith(".index.json"))


def run_variant(tmp, name, args, dt):
    d1, d2 = os.path.join(tmp, name), os.path.join(tmp, name + "-again")
    cmd = [SYNTH, "--quiet", "--dtype", dt, "--seed", "7"] + args
    subprocess.run(cmd + ["--out", d1], check=True)
    subprocess.run(cmd + ["--out", d2], check=True)
    check(sha_dir(d1) == sha_dir(d2), f"{name}: two synth runs give identical files")
    shutil.rmtree(d2)

    raw = json.load(open(os.path.join(d1, "config.json")))
    cfg = AutoConfig.from_pretrained(d1)
    check(cfg.model_type == "qwen3", f"{name}: model_type")
    check(cfg.head_dim == raw["head_dim"], f"{name}: head_dim {cfg.head_dim}")
    rp = cfg.rope_parameters
    want_theta = raw.get("rope_theta", (raw.get("rope_parameters") or {}).get("rope_theta"))
    check(float(rp["rope_theta"]) == float(want_theta), f"{name}: rope_theta {rp['rope_theta']}")
    if "--yarn" in args:
        f, orig = args[args.index("--yarn") + 1].split(":")
        check(rp["rope_type"] == "yarn" and float(rp["factor"]) == float(f)
              and int(rp["original_max_position_embeddings"]) == int(orig),
              f"{name}: yarn parameters {rp}")
    else:
        check(rp["rope_type"] == "default", f"{name}: default rope")

    model, info = Qwen3ForCausalLM.from_pretrained(d1, dtype=TORCH_DTYPE[dt], output_loading_info=True)
    check(not info["missing_keys"] and not info["unexpected_keys"] and not info.get("mismatched_keys"),
          f"{name}: loads with no missing/unexpected/mismatched keys {info}")
    sd = model.state_dict()
    files = [f for f in os.listdir(d1) if f.endswith(".safetensors")]
    seen = set()
    all_equal = True
    stats = {"mat": [], "norm": []}
    for f in files:
        with safe_open(os.path.join(d1, f), "pt") as fh:
            check(fh.metadata() == {"format": "pt"}, f"{name}: {f} metadata {fh.metadata()}")
            for k in fh.keys():
                t = fh.get_tensor(k)
                seen.add(k)
                if k not in sd or not torch.equal(sd[k], t):
                    all_equal = False
                    print("   differs:", k)
                if k.endswith("norm.weight"):
                    stats["norm"].append(t.float().flatten())
                elif t.dim() == 2:
                    stats["mat"].append(t.float().flatten())
    check(all_equal, f"{name}: every file tensor equals the loaded state_dict")
    expected = set(sd.keys()) - ({"lm_head.weight"} if cfg.tie_word_embeddings else set())
    check(seen == expected, f"{name}: file tensors == model parameters (missing {expected - seen}, extra {seen - expected})")
    if cfg.tie_word_embeddings:
        check(torch.equal(model.lm_head.weight, model.model.embed_tokens.weight), f"{name}: tied lm_head")
    std = float(args[args.index("--std") + 1]) if "--std" in args else 0.02
    m = torch.cat(stats["mat"])
    n = torch.cat(stats["norm"])
    check(abs(m.mean().item()) < 0.01 * std + 1e-4 and abs(m.std().item() / std - 1) < 0.02,
          f"{name}: matrices mean {m.mean().item():.2e} std {m.std().item():.5f} (want {std})")
    check(abs(n.mean().item() - 1) < 0.01 and abs(n.std().item() - 0.1) < 0.01,
          f"{name}: norms mean {n.mean().item():.4f} std {n.std().item():.4f}")

    ids = torch.tensor([[9707, 11, 1879, 0, 42, 7, 13]]) % cfg.vocab_size
    with torch.no_grad():
        logits = model(ids).logits
    check(logits.shape == (1, ids.shape[1], cfg.vocab_size) and torch.isfinite(logits).all().item(),
          f"{name}: forward pass, logits {tuple(logits.shape)} finite")

    # transformers' own save of the same weights must give the same bytes.
    # Module order (--hf-order 4, default for 4.x configs) is what 4.x saves
    # and what 5.x saves with save_original_format=False; natural order
    # (--hf-order 5, default for 5.x configs) is 5.x's default save of a
    # from_pretrained model (see runtime/io/st_shard.h).
    resave = os.path.join(tmp, name + "-hf")
    mss = args[args.index("--max-shard-size") + 1] if "--max-shard-size" in args else "50GB"
    order = args[args.index("--hf-order") + 1] if "--hf-order" in args else (
        args[args.index("--config-style") + 1] if "--config-style" in args else "4")
    model.save_pretrained(resave, max_shard_size=mss, save_original_format=(order == "5"))
    ours, theirs = weight_files(d1), weight_files(resave)
    check(ours == theirs, f"{name}: same weight file names {ours} vs {theirs}")
    same = all(open(os.path.join(d1, f), "rb").read() == open(os.path.join(resave, f), "rb").read()
               for f in ours if f in theirs)
    check(same and ours == theirs, f"{name}: weight files and index byte-identical to save_pretrained")
    shutil.rmtree(resave)


def head_dim_default(tmp):
    """Records what transformers uses when head_dim is absent (hidden/heads = 16)."""
    d = os.path.join(tmp, "nohd")
    subprocess.run([SYNTH, "--quiet", "--shape", "tiny", "--tokenizer", "none", "--out", d], check=True)
    raw = json.load(open(os.path.join(d, "config.json")))
    del raw["head_dim"]
    json.dump(raw, open(os.path.join(d, "config.json"), "w"))
    cfg = AutoConfig.from_pretrained(d)
    print(f"info transformers {transformers.__version__}: config without head_dim, hidden {raw['hidden_size']} "
          f"/ heads {raw['num_attention_heads']} = {raw['hidden_size'] // raw['num_attention_heads']}: "
          f"head_dim -> {cfg.head_dim}")
    check(cfg.head_dim == 128, "transformers uses head_dim 128 when absent (config.c refuses unless H/nh = 128)")


def main():
    if not os.path.exists(SYNTH):
        sys.exit(f"{SYNTH} not found: run make first")
    torch.manual_seed(0)
    print(f"transformers {transformers.__version__}, torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, args, dt in VARIANTS:
            run_variant(tmp, name, args, dt)
        head_dim_default(tmp)
    print(f"{len(failures)} failed" if failures else "all checks passed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
