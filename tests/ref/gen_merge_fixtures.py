#!/usr/bin/env python3
"""gen_merge_fixtures.py: reference fixtures for lora-merge, made with torch +
transformers + peft (the definition of a correct merge).

For each case it writes, under tests/data/merge/:
  bases/<name>/                 a small Qwen3 base written by build/tools/synth
  cases/<case>/adapters/<i>/    PEFT adapters (random non-zero A and B, saved by
                                PeftModel.save_pretrained, some post-edited into
                                bf16/f16 or the adapter-name key variant)
  cases/<case>/expected.safetensors
                                every tensor of PEFT's merged model that differs
                                from the base (LLaMA-Factory flow:
                                PeftModel.from_pretrained + merge_and_unload per
                                adapter, then cast to the output dtype)
  cases/<case>/case.json        how to run the case, what the reference says
                                (tie flag, unchanged tensors, shard layout) and
                                what this script checked on build/lora-merge's
                                output: transformers loads it, its tensors are
                                bit-identical to PEFT's, and for tied bases its
                                logits match the unmerged PEFT model.

Tied bases: PEFT's in-place merge adds a head delta to the shared matrix (the
input embedding changes too). lora-merge unties instead (docs/numerics.md §4.4);
its expected tensors come from PEFT merging into a base whose lm_head was
first untied (a separate copy of the embedding), and the script records the
logits of the unmerged PEFT model, of our export and of PEFT's in-place
merge, all in float32.

Run from the repository root after `make`:  python3 tests/ref/gen_merge_fixtures.py
Needs torch, transformers, peft, safetensors (CPU). Takes about a minute.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import warnings

if os.environ.get("PYTHONHASHSEED") != "0":  # PEFT saves target_modules from a set: fix its order
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable] + sys.argv)

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

warnings.simplefilter("ignore")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import peft  # noqa: E402
import transformers  # noqa: E402
from peft import LoraConfig, PeftModel, get_peft_model  # noqa: E402
from peft.tuners.lora import LoraLayer  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

transformers.logging.set_verbosity_error()
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(ROOT, "tests", "data", "merge")
SYNTH = os.path.join(ROOT, "build", "tools", "synth")
MERGE = os.path.join(ROOT, "build", "lora-merge")
DT = {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32}

# Small Qwen3 shape: q_proj [128, 64] is not square, like the 0.6B/4B models.
SHAPE = ["--hidden", "64", "--layers", "2", "--heads", "4", "--kv-heads", "2", "--head-dim", "32",
         "--intermediate", "128", "--vocab", "256", "--max-pos", "512"]
BASES = {
    "untied": ["--tied", "0", "--dtype", "bf16", "--seed", "11"],
    "tied": ["--tied", "1", "--dtype", "bf16", "--seed", "12"],
    "f32": ["--tied", "0", "--dtype", "f32", "--seed", "13"],
    "bias": ["--tied", "0", "--dtype", "bf16", "--seed", "14", "--attention-bias", "1"],
    "sharded": ["--tied", "0", "--dtype", "bf16", "--seed", "11", "--max-shard-size", "60KB"],
}
ALL7 = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"failed: {' '.join(cmd)}\n{r.stdout}\n{r.stderr}")
    return r


def make_bases():
    for name, args in BASES.items():
        d = os.path.join(DATA, "bases", name)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(os.path.dirname(d), exist_ok=True)
        run([SYNTH, "--out", d, "--tokenizer", "none", "--quiet"] + SHAPE + args)


def load_base(name, dtype=None):
    d = os.path.join(DATA, "bases", name)
    cfg = json.load(open(os.path.join(d, "config.json")))
    dt = dtype or DT[{"bfloat16": "bf16", "float16": "f16", "float32": "f32"}[cfg.get("torch_dtype") or cfg["dtype"]]]
    return AutoModelForCausalLM.from_pretrained(d, dtype=dt)


def randomize(pm, seed, std=0.05, dora_scale=True):
    """Random non-zero LoRA factors (PEFT's init leaves B = 0, a no-op)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "lora_magnitude_vector" in n:
                p.mul_(0.5 + torch.rand(p.shape, generator=g))  # away from ||W||
            elif "lora_" in n:
                p.copy_(torch.randn(p.shape, generator=g) * std)
            elif "trainable_tokens_delta" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)
            elif "modules_to_save" in n:
                p.add_(torch.randn(p.shape, generator=g).to(p.dtype) * 0.01)


def make_adapter(base, out, cfg, seed, post=None, resize=None):
    m = load_base(base)
    if resize:
        m.resize_token_embeddings(resize)
    pm = get_peft_model(m, cfg)
    randomize(pm, seed)
    pm.save_pretrained(out)
    if os.path.exists(os.path.join(out, "README.md")):
        os.remove(os.path.join(out, "README.md"))
    if post:
        post(out)


def cast_adapter(dtype):
    def post(d):
        p = os.path.join(d, "adapter_model.safetensors")
        t = load_file(p)
        save_file({k: v.to(dtype) if v.is_floating_point() else v for k, v in t.items()}, p, metadata={"format": "pt"})
    return post


def named_variant(d):
    """Rewrites keys into the variant that keeps the adapter name."""
    p = os.path.join(d, "adapter_model.safetensors")
    t = load_file(p)
    out = {}
    for k, v in t.items():
        for tag in (".lora_A", ".lora_B"):
            k = k.replace(tag + ".weight", tag + ".default.weight")
        for tag in (".lora_embedding_A", ".lora_embedding_B", ".lora_magnitude_vector"):
            if k.endswith(tag):
                k = k + ".default"
        out[k] = v
    save_file(out, p, metadata={"format": "pt"})


def scale_adapter(pm, w):
    for mod in pm.modules():
        if isinstance(mod, LoraLayer):
            for k in mod.scaling:
                mod.scaling[k] *= w


def untie(m):
    m.lm_head.weight = torch.nn.Parameter(m.model.embed_tokens.weight.detach().clone())
    m.config.tie_word_embeddings = False
    if hasattr(m, "_tied_weights_keys"):
        m._tied_weights_keys = None


def reference_merge(base, adapters, out_dtype, untie_first, load_dtype=None, resize=None):
    """LLaMA-Factory's export: per adapter from_pretrained + merge_and_unload
    (after resize_token_embeddings when the adapter was trained with a resized
    vocabulary, as LLaMA-Factory's resize_vocab does)."""
    m = load_base(base, load_dtype)
    if resize:
        m.resize_token_embeddings(resize)
    if untie_first:
        untie(m)
    for d, w in adapters:
        pm = PeftModel.from_pretrained(m, d)
        if w != 1.0:
            scale_adapter(pm, w)
        m = pm.merge_and_unload()
    return m.to(DT[out_dtype])


def state(m):
    sd = {k: v.detach().clone().contiguous() for k, v in m.state_dict().items()}
    if m.config.tie_word_embeddings:
        sd.pop("lm_head.weight", None)
    return sd


def ulps(a, b):
    """Largest difference in units in the last place (same dtype tensors)."""
    if a.dtype == torch.float32:
        ia, ib = a.view(torch.int32).long(), b.view(torch.int32).long()
    else:
        ia, ib = a.view(torch.int16).long(), b.view(torch.int16).long()
    return int((ia - ib).abs().max().item()) if a.numel() else 0


def logits_of(m, ids):
    with torch.no_grad():
        return m(input_ids=ids).logits.float()


def check_export(case_dir, out, expected_sd, base_sd, tied_out):
    """Loads our export with transformers and compares it with the reference."""
    m = AutoModelForCausalLM.from_pretrained(out, dtype="auto")
    ours = state(m)
    res = {"transformers_version": transformers.__version__, "loads": True,
           "tie_word_embeddings": bool(m.config.tie_word_embeddings)}
    assert bool(m.config.tie_word_embeddings) == tied_out, (case_dir, "tie flag")
    names = sorted(expected_sd)
    assert sorted(ours) == names, (case_dir, sorted(set(ours) ^ set(names)))
    worst = 0
    nbad = 0
    for k in names:
        a, b = ours[k], expected_sd[k]
        assert a.dtype == b.dtype and a.shape == b.shape, (case_dir, k)
        u = ulps(a, b)
        worst = max(worst, u)
        nbad += int(u != 0)
    res["tensors_compared"] = len(names)
    res["tensors_not_bit_identical"] = nbad
    res["max_ulp"] = worst
    return res, m


def fake_tokenizer(d, n):
    """A tokenizer.json whose largest id is n - 1 (lora-merge checks ids after a resize)."""
    json.dump({"model": {"type": "BPE", "vocab": {f"t{i}": i for i in range(n - 8)}, "merges": []},
               "added_tokens": [{"id": i, "content": f"<new{i}>", "special": True} for i in range(n - 8, n)]},
              open(os.path.join(d, "tokenizer.json"), "w"))


def case(name, base, adapters, out_dtype="bf16", args=None, untie_first=False, load_dtype=None,
         logits=False, shard=None, resize=None):
    """adapters: list of (LoraConfig | callable, seed, post, weight)."""
    cdir = os.path.join(DATA, "cases", name)
    shutil.rmtree(cdir, ignore_errors=True)
    os.makedirs(cdir)
    ad = []
    for i, (cfg, seed, post, w) in enumerate(adapters):
        d = os.path.join(cdir, "adapters", str(i + 1))
        make_adapter(base, d, cfg, seed, post, resize)
        if resize:
            fake_tokenizer(d, resize)
        ad.append((d, w))
    ref = reference_merge(base, ad, out_dtype, untie_first, load_dtype, resize)
    sd = state(ref)
    base_sd = state(load_base(base))
    changed = {}
    for k, v in sd.items():
        b = base_sd.get(k)
        if k == "lm_head.weight" and b is None:
            b = base_sd["model.embed_tokens.weight"]
        if b is None or b.dtype != v.dtype or b.shape != v.shape or not torch.equal(b, v):
            changed[k] = v
    save_file(changed, os.path.join(cdir, "expected.safetensors"), metadata={"format": "pt"})
    info = {
        "base": base,
        "adapters": [{"dir": f"adapters/{i + 1}", "weight": w} for i, (_, w) in enumerate(ad)],
        "dtype": out_dtype,
        "args": args or [],
        "tie_word_embeddings": bool(ref.config.tie_word_embeddings),
        "tensors": sorted(sd),
        "changed": sorted(changed),
        "reference": {"torch": torch.__version__, "transformers": transformers.__version__,
                      "peft": peft.__version__,
                      "flow": "PeftModel.from_pretrained + merge_and_unload per adapter, then .to(dtype)"
                              + ("; lm_head untied before merging" if untie_first else "")},
    }
    if shard:
        with tempfile.TemporaryDirectory() as t:
            ref.save_pretrained(t, max_shard_size=shard)
            idx = os.path.join(t, "model.safetensors.index.json")
            info["hf_files"] = sorted(f for f in os.listdir(t) if f.endswith(".safetensors"))
            info["hf_index"] = json.load(open(idx)) if os.path.exists(idx) else None
    # Our export, loaded by transformers.
    with tempfile.TemporaryDirectory() as t:
        out = os.path.join(t, "out")
        cmd = [MERGE, "--base", os.path.join(DATA, "bases", base), "--out", out, "--quiet"]
        for d, w in ad:
            cmd += ["--adapter", d if w == 1.0 else f"{d}:{w}"]
        cmd += ["--dtype", out_dtype] + (args or [])
        run(cmd)
        res, ours = check_export(cdir, out, sd, base_sd, info["tie_word_embeddings"])
        if shard:
            idx = os.path.join(out, "model.safetensors.index.json")
            res["same_shard_files_as_hf"] = sorted(f for f in os.listdir(out) if f.endswith(".safetensors")) == info["hf_files"]
            if info["hf_index"]:
                ours_idx = json.load(open(idx))
                res["same_weight_map_as_hf"] = ours_idx["weight_map"] == info["hf_index"]["weight_map"]
                res["same_index_metadata_as_hf"] = ours_idx["metadata"] == info["hf_index"]["metadata"]
        if logits:
            ids = torch.tensor([[1, 5, 9, 17, 33, 65, 129, 200, 255, 3, 100, 250]])
            unm = load_base(base, torch.float32)
            assert len(ad) == 1, "logits cases use one adapter"
            unm = PeftModel.from_pretrained(unm, ad[0][0])
            lu = logits_of(unm, ids)
            lo = logits_of(AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32), ids)
            inpl = load_base(base, torch.float32)
            for d, w in ad:
                inpl = PeftModel.from_pretrained(inpl, d).merge_and_unload()
            li = logits_of(inpl, ids)
            res["logits_max_abs_diff_export_vs_unmerged_peft"] = float((lo - lu).abs().max())
            if untie_first:
                # The untied merge without bf16 rounding: equal to the unmerged model up to f32 noise.
                l32 = logits_of(reference_merge(base, ad, "f32", True, torch.float32), ids)
                res["logits_max_abs_diff_f32_untied_merge_vs_unmerged_peft"] = float((l32 - lu).abs().max())
            res["logits_max_abs_diff_peft_inplace_merge_vs_unmerged_peft"] = float((li - lu).abs().max())
            res["logits_scale_max_abs"] = float(lu.abs().max())
            res["logits_ids"] = ids[0].tolist()
            res["logits_unmerged_peft_first_row"] = [round(x, 6) for x in lu[0, 0, :8].tolist()]
        info["checked_export"] = res
    json.dump(info, open(os.path.join(cdir, "case.json"), "w"), indent=2, sort_keys=True)
    print(f"{name}: {len(changed)} changed tensors, export check {info['checked_export']}")


LOGITS_SYNTH = ["--hidden", "64", "--layers", "2", "--heads", "4", "--kv-heads", "2", "--head-dim", "32",
                "--intermediate", "128", "--tied", "1", "--dtype", "bf16", "--seed", "21", "--std", "0.05"]


def logits_fixture():
    """A tied base with the real Qwen3 vocabulary (regenerated by synth in the C
    test, checked by hash), an adapter with LoRA on lm_head, embed_tokens and
    q_proj (bf16, base_layer copies dropped: they equal the base), and the
    unmerged PEFT model's float32 logits on a set of columns: what
    tests/test_merge_logits.c compares medserve's forward pass of the merged
    export with. PEFT's in-place merge logits are stored too, for contrast."""
    cdir = os.path.join(DATA, "logits")
    shutil.rmtree(cdir, ignore_errors=True)
    os.makedirs(cdir)
    with tempfile.TemporaryDirectory() as t:
        base = os.path.join(t, "base")
        run([SYNTH, "--out", base, "--quiet", "--tokenizer", os.path.join(ROOT, "tests", "data", "qwen3-tokenizer")]
            + LOGITS_SYNTH)
        h = __import__("hashlib").sha256(open(os.path.join(base, "model.safetensors"), "rb").read()).hexdigest()
        ad = os.path.join(cdir, "adapter")
        m = AutoModelForCausalLM.from_pretrained(base, dtype=torch.bfloat16)
        pm = get_peft_model(m, L(r=2, lora_alpha=4, target_modules=["lm_head", "embed_tokens", "q_proj"]))
        randomize(pm, 131)
        pm.save_pretrained(ad)
        os.remove(os.path.join(ad, "README.md"))
        p = os.path.join(ad, "adapter_model.safetensors")
        sd = {k: v.to(torch.bfloat16) for k, v in load_file(p).items() if ".base_layer." not in k}
        save_file(sd, p, metadata={"format": "pt"})
        ids = torch.tensor([[9707, 11, 1879, 0, 151643, 42, 7, 100000, 151644, 872]])
        unm = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32), ad)
        lu = logits_of(unm, ids)[0]
        inpl = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32),
                                         ad).merge_and_unload()
        li = logits_of(inpl, ids)[0]
        g = torch.Generator().manual_seed(5)
        cols = set(torch.randint(0, lu.shape[1], (400,), generator=g).tolist())
        for row in lu:
            cols.update(torch.topk(row, 10).indices.tolist())
        cols = sorted(cols)
        out = os.path.join(t, "out")
        run([MERGE, "--base", base, "--adapter", ad, "--out", out, "--quiet"])
        lo = logits_of(AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32), ids)[0]
        info = {
            "synth_args": LOGITS_SYNTH, "safetensors_sha256": h, "ids": ids[0].tolist(), "cols": cols,
            "vocab": int(lu.shape[1]),
            "logits_unmerged_peft": [[round(float(row[c]), 6) for c in cols] for row in lu],
            "logits_peft_inplace_merge": [[round(float(row[c]), 6) for c in cols] for row in li],
            "argmax_unmerged_peft": lu.argmax(-1).tolist(),
            "transformers_on_lora_merge_export_max_abs_diff": float((lo - lu).abs().max()),
            "peft_inplace_merge_max_abs_diff": float((li - lu).abs().max()),
            "reference": {"torch": torch.__version__, "transformers": transformers.__version__,
                          "peft": peft.__version__},
        }
        json.dump(info, open(os.path.join(cdir, "logits.json"), "w"), indent=1)
        print("logits fixture:", info["transformers_on_lora_merge_export_max_abs_diff"],
              info["peft_inplace_merge_max_abs_diff"])


def L(**kw):
    kw.setdefault("r", 8)
    kw.setdefault("lora_alpha", 16)
    return LoraConfig(**kw)


def main():
    if not (os.access(SYNTH, os.X_OK) and os.access(MERGE, os.X_OK)):
        sys.exit("build first: make")
    torch.manual_seed(0)
    make_bases()
    if len(sys.argv) > 1 and sys.argv[1] == "--logits-only":
        return logits_fixture()
    N = (None, 1.0)  # (post, weight)
    case("lora_all7", "untied", [(L(target_modules=ALL7), 101, *N)])
    case("lora_bf16_adapter", "untied", [(L(target_modules=ALL7), 102, cast_adapter(torch.bfloat16), 1.0)])
    case("lora_f16_adapter", "untied", [(L(target_modules=["q_proj", "down_proj"]), 103, cast_adapter(torch.float16), 1.0)])
    case("rslora", "untied", [(L(r=16, lora_alpha=8, use_rslora=True, target_modules=ALL7), 104, *N)])
    case("patterns", "untied", [(L(r=8, lora_alpha=16, target_modules=ALL7,
                                   # PEFT saves the config with sorted keys, so the
                                   # first-match order is the sorted order.
                                   rank_pattern={"layers.1.mlp.down_proj": 2, "mlp.down_proj": 6, "q_proj": 4},
                                   alpha_pattern={r"layers\.0\.self_attn\.v_proj": 3.5, "v_proj": 32}), 105, *N)])
    case("all_linear", "untied", [(L(r=4, lora_alpha=4, target_modules="all-linear"), 106, *N)])
    case("regex_layers", "untied", [(L(target_modules=r".*\.(q|v)_proj", r=4, lora_alpha=8), 107, *N)])
    case("layers_to_transform", "untied", [(L(target_modules=["q_proj", "up_proj"], layers_to_transform=[1]), 108, *N)])
    case("dora", "untied", [(L(target_modules=["q_proj", "v_proj", "o_proj", "down_proj"], use_dora=True), 109, *N)])
    case("embedding", "untied", [(L(target_modules=["embed_tokens", "q_proj"]), 110, *N)])
    case("modules_to_save", "untied", [(L(target_modules=["q_proj"], modules_to_save=["lm_head"]), 111, *N)])
    case("trainable_tokens", "untied", [(L(target_modules=["v_proj"], trainable_token_indices=[3, 17, 100]), 112, *N)])
    case("named_keys", "untied", [(L(target_modules=["q_proj", "v_proj", "embed_tokens"]), 113, named_variant, 1.0)])
    case("tied_head_embed", "tied", [(L(target_modules=["q_proj", "embed_tokens", "lm_head"]), 114, *N)],
         untie_first=True, logits=True)
    case("tied_head_only", "tied", [(L(target_modules=["lm_head"], r=4), 115, *N)], untie_first=True, logits=True)
    case("tied_modules_to_save", "tied", [(L(target_modules=["k_proj"], modules_to_save=["lm_head"]), 116, *N)],
         untie_first=True, logits=True)
    case("tied_tokens", "tied", [(L(target_modules=["q_proj"], trainable_token_indices=[7, 42]), 117, *N)],
         logits=True)
    case("tied_untouched", "tied", [(L(target_modules=ALL7), 118, *N)])
    case("multi", "untied", [(L(target_modules=ALL7), 119, *N),
                             (L(target_modules=["q_proj", "v_proj", "embed_tokens"], r=4, lora_alpha=4), 120, None, 0.5),
                             (L(target_modules=["down_proj"], use_dora=True), 121, None, 1.0)])
    case("f32_base", "f32", [(L(target_modules=ALL7), 122, *N)], out_dtype="bf16", load_dtype=torch.float32)
    case("f32_keep", "f32", [(L(target_modules=["q_proj", "o_proj"]), 123, *N)], out_dtype="f32")
    case("to_f16", "untied", [(L(target_modules=ALL7), 124, *N)], out_dtype="f16", load_dtype=torch.float32)
    case("bias_base", "bias", [(L(target_modules=["q_proj", "k_proj"]), 125, *N)])
    case("resized_vocab", "untied", [(L(target_modules=["q_proj"], modules_to_save=["embed_tokens", "lm_head"]), 127, *N)],
         resize=264)
    case("sharded", "sharded", [(L(target_modules=ALL7), 126, *N)], args=["--max-shard-size", "60KB"],
         shard="60KB")
    logits_fixture()


if __name__ == "__main__":
    main()
