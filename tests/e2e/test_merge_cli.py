"""test_merge_cli.py: the lora-merge program as a user runs it (real processes,
committed fixtures from tests/data/merge, no torch at test time).

Covers: a full export (files, tokenizer copied byte for byte, manifest hashes
recomputed here with hashlib), determinism across runs, exit code 2 for every
refused input and argument, --force replacing an export atomically, injected
I/O failures and kill -9 at random moments (out/ is then absent or a complete
verified export), SIGINT cleanup, the free-space check on a tiny tmpfs, the
adapter weight syntax, untying of tied embeddings, and a quiet stderr (no
progress bar) when not on a terminal.
"""
import hashlib
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("MEDSERVE_BUILD", "build")
MERGE = os.path.join(ROOT, BUILD, "lora-merge")
SYNTH = os.path.join(ROOT, BUILD, "tools", "synth")
SYNTH_LORA = os.path.join(ROOT, BUILD, "tools", "synth_lora")
DATA = os.path.join(ROOT, "tests", "data", "merge")
TOK = os.path.join(ROOT, "tests", "data", "qwen3-tokenizer")


def run(*args, env=None, check=None):
    e = dict(os.environ)
    e.update(env or {})
    r = subprocess.run([MERGE, *map(str, args)], capture_output=True, text=True, env=e, timeout=120)
    if check is not None:
        assert r.returncode == check, (r.returncode, r.stderr)
    return r


def sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def base_with_tokenizer(tmp_path, name="untied"):
    d = tmp_path / f"base_{name}"
    shutil.copytree(os.path.join(DATA, "bases", name), d)
    for f in os.listdir(TOK):
        shutil.copy(os.path.join(TOK, f), d / f)
    return d


def adapter(case, i=1):
    return os.path.join(DATA, "cases", case, "adapters", str(i))


def leftovers(parent):
    return [n for n in os.listdir(parent) if ".tmp-" in n]


def check_export(out):
    """A complete export: the manifest lists every other file with its hash."""
    m = json.load(open(os.path.join(out, "medserve-manifest.json")))
    files = {f["name"]: f for f in m["output"]["files"]}
    on_disk = sorted(n for n in os.listdir(out) if n != "medserve-manifest.json")
    assert sorted(files) == on_disk
    for n, f in files.items():
        p = os.path.join(out, n)
        assert f["sha256"] == sha(p) and f["bytes"] == os.path.getsize(p), n
    return m


def test_full_export(tmp_path):
    base = base_with_tokenizer(tmp_path)
    out = tmp_path / "out"
    r = run("--base", base, "--adapter", adapter("lora_all7"), "--out", out, check=0)
    assert "\r" not in r.stderr and "\033" not in r.stderr  # no progress bar when piped
    assert "wrote" in r.stderr
    m = check_export(out)
    for f in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
              "model.safetensors", "medserve-manifest.json"):
        assert (out / f).exists(), f
    for f in os.listdir(TOK):
        assert sha(out / f) == sha(os.path.join(TOK, f)), f
    cfg = json.load(open(out / "config.json"))
    assert cfg["torch_dtype"] == "bfloat16" and cfg["model_type"] == "qwen3"
    # inputs hashed correctly
    for f in m["base"]["files"]:
        assert f["sha256"] == sha(base / f["name"]), f["name"]
    a = m["adapters"][0]
    for f in a["files"]:
        assert f["sha256"] == sha(os.path.join(adapter("lora_all7"), f["name"])), f["name"]
    assert a["adapter_config"]["r"] == 8 and a["weight"] == 1
    assert a["tensors_used"] == 28 and a["tensors_changed"] == 14 and a["elements_changed"] > 0
    assert m["tool"] == "lora-merge" and m["output"]["dtype"] == "bfloat16"
    assert not leftovers(tmp_path)
    # the expected tensors from PEFT are in the file, bit for bit
    assert read_tensor(out / "model.safetensors", "model.layers.1.mlp.down_proj.weight") == \
        read_tensor(os.path.join(DATA, "cases", "lora_all7", "expected.safetensors"), "model.layers.1.mlp.down_proj.weight")


def read_tensor(path, name):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
        b, e = hdr[name]["data_offsets"]
        f.seek(8 + n + b)
        return f.read(e - b)


def test_deterministic(tmp_path):
    base = base_with_tokenizer(tmp_path)
    for o in ("o1", "o2"):
        run("--base", base, "--adapter", adapter("multi", 1), "--adapter", adapter("multi", 2) + ":0.5",
            "--adapter", adapter("multi", 3), "--out", tmp_path / o, check=0)
    names = sorted(os.listdir(tmp_path / "o1"))
    assert names == sorted(os.listdir(tmp_path / "o2"))
    for n in names:
        assert sha(tmp_path / "o1" / n) == sha(tmp_path / "o2" / n), n
    m = json.load(open(tmp_path / "o1" / "medserve-manifest.json"))
    assert [a["weight"] for a in m["adapters"]] == [1, 0.5, 1]
    # the multi fixture merged with weights 1, 0.5, 1 is what PEFT produced
    exp = os.path.join(DATA, "cases", "multi", "expected.safetensors")
    assert read_tensor(tmp_path / "o1" / "model.safetensors", "model.embed_tokens.weight") == \
        read_tensor(exp, "model.embed_tokens.weight")


@pytest.mark.parametrize("args,msg", [
    (["--adapter", "@A", "--out", "@O"], "required"),
    (["--base", "@B", "--adapter", "@A", "--out", "@O", "--dtype", "int8"], "--dtype"),
    (["--base", "@B", "--adapter", "@A", "--out", "@O", "--max-shard-size", "5XB"], "--max-shard-size"),
    (["--base", "@B", "--adapter", "@A", "--out", "@O", "--bogus"], "unknown argument"),
    (["--base", "@B", "--adapter", "@A", "--out", "@B", "--force"], "inputs are never modified"),
    (["--base", "@B", "--adapter", "@A", "--out", "@B/sub"], "inputs are never modified"),
    (["--base", "/nonexistent/base", "--adapter", "@A", "--out", "@O"], "base /nonexistent/base"),
    (["--base", "@B", "--adapter", "/nonexistent/adapter", "--out", "@O"], "adapter /nonexistent/adapter"),
    (["--base", "@B", "--adapter", "@A", "--out", "/nonexistent/dir/out"], "--out parent directory"),
])
def test_argument_refusals(tmp_path, args, msg):
    base = base_with_tokenizer(tmp_path)
    sub = {"@B": str(base), "@A": adapter("lora_all7"), "@O": str(tmp_path / "out")}
    argv = []
    for a in args:
        for k, v in sub.items():
            a = a.replace(k, v)
        argv.append(a)
    r = run(*argv)
    assert r.returncode == 2, r.stderr
    assert msg in r.stderr
    assert not (tmp_path / "out").exists() and not (base / "sub").exists()
    assert not leftovers(tmp_path)


def test_refused_adapters(tmp_path):
    base = base_with_tokenizer(tmp_path)
    # pickle weights
    a = tmp_path / "pickled"
    shutil.copytree(adapter("lora_all7"), a)
    os.rename(a / "adapter_model.safetensors", a / "adapter_model.bin")
    r = run("--base", base, "--adapter", a, "--out", tmp_path / "out")
    assert r.returncode == 2 and "adapter_model.bin" in r.stderr and "pickle" in r.stderr
    # PiSSA init
    b = tmp_path / "pissa"
    shutil.copytree(adapter("lora_all7"), b)
    cfg = json.load(open(b / "adapter_config.json"))
    cfg["init_lora_weights"] = "pissa"
    json.dump(cfg, open(b / "adapter_config.json", "w"))
    r = run("--base", base, "--adapter", b, "--out", tmp_path / "out")
    assert r.returncode == 2 and "pissa" in r.stderr
    # adapter for another model shape (the bias base's adapter has the same
    # shapes; use the tied base's lm_head adapter on... a q_proj renamed)
    assert not (tmp_path / "out").exists()
    assert not leftovers(tmp_path)


def test_existing_out_and_force(tmp_path):
    base = base_with_tokenizer(tmp_path)
    out = tmp_path / "out"
    run("--base", base, "--adapter", adapter("lora_all7"), "--out", out, check=0)
    first = sha(out / "medserve-manifest.json")
    r = run("--base", base, "--adapter", adapter("rslora"), "--out", out)
    assert r.returncode == 2 and "--force" in r.stderr
    assert sha(out / "medserve-manifest.json") == first
    run("--base", base, "--adapter", adapter("rslora"), "--out", out, "--force", check=0)
    second = check_export(out)
    assert second["adapters"][0]["adapter_config"]["use_rslora"] is True
    assert not leftovers(tmp_path)
    # a file in the way is never replaced, even with --force
    (tmp_path / "afile").write_text("x")
    r = run("--base", base, "--adapter", adapter("rslora"), "--out", tmp_path / "afile", "--force")
    assert r.returncode == 2 and (tmp_path / "afile").read_text() == "x"


def test_injected_failures(tmp_path):
    """Every step is covered by tests/test_merge.c; here a sample through the CLI."""
    out = tmp_path / "out"
    failed = 0
    for n in range(1, 400, 6):
        r = run("--base", os.path.join(DATA, "bases", "untied"), "--adapter", adapter("lora_all7"), "--out", out,
                env={"MEDSERVE_MERGE_FAIL_AT": str(n)})
        assert not leftovers(tmp_path), n
        if r.returncode == 0:
            break
        failed += 1
        assert r.returncode == 1 and "injected failure" in r.stderr, (n, r.stderr)
        assert not out.exists(), n
    assert failed >= 5
    check_export(out)


def test_kill9_leaves_absent_or_complete(tmp_path):
    """kill -9 at random moments: out/ is absent or a complete export."""
    base = tmp_path / "tiny"
    subprocess.run([SYNTH, "--out", base, "--shape", "tiny", "--tokenizer", "none", "--quiet"], check=True)
    ad = tmp_path / "lora"
    subprocess.run([SYNTH_LORA, "--base", base, "--out", ad, "--r", "8", "--quiet"], check=True)
    t0 = time.time()
    run("--base", base, "--adapter", ad, "--out", tmp_path / "ref", check=0)
    full = max(time.time() - t0, 0.05)
    ref = check_export(tmp_path / "ref")
    rng = random.Random(7)
    complete = absent = 0
    for i in range(6):
        out = tmp_path / f"k{i}"
        p = subprocess.Popen([MERGE, "--base", base, "--adapter", ad, "--out", out],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0, full * 1.2))
        p.send_signal(signal.SIGKILL)
        p.wait()
        if out.exists():
            m = check_export(out)
            assert m["output"]["files"] == ref["output"]["files"]
            complete += 1
        else:
            absent += 1
        for n in leftovers(tmp_path):  # kill -9 may leave a temp dir: never named like an export
            assert n.startswith(f".k{i}.tmp-")
            shutil.rmtree(tmp_path / n)
    assert complete + absent == 6


def test_sigint_cleans_up(tmp_path):
    base = tmp_path / "tiny"
    subprocess.run([SYNTH, "--out", base, "--shape", "tiny", "--tokenizer", "none", "--quiet"], check=True)
    ad = tmp_path / "lora"
    subprocess.run([SYNTH_LORA, "--base", base, "--out", ad, "--r", "8", "--quiet"], check=True)
    out = tmp_path / "out"
    p = subprocess.Popen([MERGE, "--base", base, "--adapter", ad, "--out", out], stderr=subprocess.PIPE, text=True)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    if p.returncode == 0:  # finished before the signal was seen
        check_export(out)
    else:
        assert p.returncode in (130, -signal.SIGINT), (p.returncode, err)
        assert not out.exists()
        assert not leftovers(tmp_path)


def test_tied_untied(tmp_path):
    out = tmp_path / "out"
    r = run("--base", os.path.join(DATA, "bases", "tied"), "--adapter", adapter("tied_head_only"), "--out", out,
            check=0)
    assert "untied" in r.stderr
    cfg = json.load(open(out / "config.json"))
    assert cfg["tie_word_embeddings"] is False
    m = check_export(out)
    assert m["output"]["untied_by_merge"] is True and any("untied" in n for n in m["notes"])
    out2 = tmp_path / "out2"
    run("--base", os.path.join(DATA, "bases", "tied"), "--adapter", adapter("tied_untouched"), "--out", out2, check=0)
    assert json.load(open(out2 / "config.json"))["tie_word_embeddings"] is True


def test_no_space(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=128k", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        r = run("--base", os.path.join(DATA, "bases", "untied"), "--adapter", adapter("lora_all7"),
                "--out", mnt / "out")
        assert r.returncode == 1 and "not enough free space" in r.stderr
        assert os.listdir(mnt) == []
    finally:
        subprocess.run(["umount", str(mnt)])
