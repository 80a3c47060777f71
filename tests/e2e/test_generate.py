"""test_generate.py: `medserve generate DIR` as a real process, on a small
synthetic Qwen3 written by build/tools/synth (real Qwen3 tokenizer).

Checks: text on stdout and one summary line on stderr (token counts,
prefill/decode tok/s); greedy and seeded runs are reproducible and seeds
matter; --messages renders like --system/--prompt; --no-think adds the empty
think block (4 tokens); --raw accepts control tokens; --max-tokens bounds the
output; Ctrl-C cancels and still prints the summary; bad input exits 2 with a
message. Needs no transformers."""
import json
import os
import re
import select
import signal
import subprocess
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(ROOT, os.environ.get("MEDSERVE_BUILD", "build"))
BIN = os.path.join(BUILD, "medserve")
SYNTH = os.path.join(BUILD, "tools", "synth")
SUMMARY = re.compile(r"^\[medserve\] prompt (\d+) tokens, generated (\d+) tokens \(finish: (\w+)\), "
                     r"prefill ([\d.]+) tok/s \([\d.]+ s\), decode ([\d.]+) tok/s \([\d.]+ s\), "
                     r"(greedy|seed \d+)$")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("gen") / "model")
    subprocess.run([SYNTH, "--hidden", "64", "--layers", "2", "--heads", "4", "--kv-heads", "2",
                    "--head-dim", "32", "--intermediate", "128", "--dtype", "bf16", "--seed", "3",
                    "--std", "0.08", "--out", d, "--quiet"], check=True, cwd=ROOT)
    return d


def gen(model, *args, timeout=120):
    p = subprocess.run([BIN, "generate", model, "--threads", "1", *args], capture_output=True,
                       timeout=timeout)
    return p.returncode, p.stdout, p.stderr.decode("utf-8", "replace")


def summary(err):
    lines = [l for l in err.splitlines() if l.startswith("[medserve]")]
    assert len(lines) == 1, err
    m = SUMMARY.match(lines[0])
    assert m, lines[0]
    return int(m.group(1)), int(m.group(2)), m.group(3), float(m.group(4)), float(m.group(5)), m.group(6)


def test_greedy_reproducible(model):
    rc, out, err = gen(model, "--prompt", "What is sepsis?", "--temperature", "0", "--max-tokens", "24")
    assert rc == 0, err
    n_prompt, n_gen, finish, prefill, decode, seed = summary(err)
    assert n_prompt > 5 and 1 <= n_gen <= 24 and seed == "greedy"
    assert finish in ("stop", "length") and (finish == "stop" or n_gen == 24)
    assert prefill > 0 and (decode > 0 or n_gen == 1)
    rc2, out2, err2 = gen(model, "--prompt", "What is sepsis?", "--temperature", "0", "--max-tokens", "24")
    assert rc2 == 0 and out2 == out, "greedy output changed between runs"
    out.decode("utf-8")  # streamed text is whole UTF-8


def test_seeds(model):
    base = ["--prompt", "Tell me a story", "--temperature", "1.5", "--top-k", "0", "--top-p", "1",
            "--max-tokens", "24"]
    rc, a, err = gen(model, *base, "--seed", "11")
    assert rc == 0, err
    assert summary(err)[5] == "seed 11"
    _, b, _ = gen(model, *base, "--seed", "11")
    _, c, _ = gen(model, *base, "--seed", "12")
    assert a == b, "same seed, different text"
    assert a != c, "different seeds gave the same 24 sampled tokens"


def test_messages_file_and_no_think(model, tmp_path):
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]
    f = tmp_path / "m.json"
    f.write_text(json.dumps(msgs))
    common = ["--temperature", "0", "--max-tokens", "12"]
    rc, a, err_a = gen(model, "--messages", str(f), *common)
    assert rc == 0, err_a
    rc, b, err_b = gen(model, "--system", "Be brief.", "--prompt", "Hello", *common)
    assert rc == 0, err_b
    assert a == b and summary(err_a)[0] == summary(err_b)[0]
    rc, _, err_c = gen(model, "--system", "Be brief.", "--prompt", "Hello", "--no-think", *common)
    assert rc == 0, err_c
    assert summary(err_c)[0] == summary(err_b)[0] + 4, "empty think block is 4 tokens"


def test_raw_and_max_tokens(model):
    rc, _, err = gen(model, "--raw", "--prompt", "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
                     "--temperature", "0", "--max-tokens", "7")
    assert rc == 0, err
    n_prompt, n_gen, _, _, _, _ = summary(err)
    assert n_prompt == 9 and 1 <= n_gen <= 7  # 3 control tokens + user, \n, Hi, \n, assistant, \n


def test_ctrl_c_cancels(model):
    p = subprocess.Popen([BIN, "generate", model, "--threads", "1", "--prompt", "Go on", "--max-tokens",
                          "20000", "--temperature", "0.8"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # wait until text streams (the model is loaded and generating), then Ctrl-C
    deadline = time.time() + 60
    first = b""
    while not first and time.time() < deadline:
        r, _, _ = select.select([p.stdout], [], [], 1.0)
        if r:
            first = os.read(p.stdout.fileno(), 4096)
    assert first, "no streamed text within 60 s"
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    err = err.decode()
    assert p.returncode == 130, err
    _, n_gen, finish, _, _, seed = summary(err)
    assert finish == "cancelled" and 0 < n_gen < 20000
    assert seed.startswith("seed "), "the random seed is reported"


@pytest.mark.parametrize("args,needle", [
    (["--prompt"], "needs a value"),
    (["--prompt", "x", "--bogus"], "unknown option"),
    (["--prompt", "x", "--temperature", "abc"], "bad value for --temperature"),
    (["--prompt", "x", "--max-tokens", "0"], "bad value for --max-tokens"),
    (["--prompt", "x", "--top-p", "1.5"], "top_p"),
    (["--prompt", "x", "--min-p", "-1"], "min_p"),
    (["--prompt", "x", "--repetition-penalty", "0"], "repetition_penalty"),
    (["--prompt", "x", "--ctx", "8", "--max-tokens", "50"], "exceeds the context"),
    (["--prompt", "x", "--ctx", "999999999"], "max_position_embeddings"),
    (["--raw", "--prompt", "x", "--system", "y"], "--raw"),
    ([], "exactly one of --prompt and --messages"),
    (["--prompt", "x", "--messages", "m.json"], "exactly one"),
])
def test_bad_input_exit_2(model, args, needle):
    rc, out, err = gen(model, *args)
    assert rc == 2, (args, err)
    assert needle in err, (needle, err)
    assert out == b""


@pytest.mark.parametrize("content,needle", [
    ("{\"role\": \"user\"}", "array"),
    ("[{\"role\": \"user\", \"content\": \"a\", \"content\": \"b\"}]", "duplicate"),
    ("[{\"content\": \"hi\"}]", "role"),
    ("[1, 2", "JSON"),
])
def test_bad_messages_file(model, tmp_path, content, needle):
    f = tmp_path / "bad.json"
    f.write_text(content)
    rc, out, err = gen(model, "--messages", str(f))
    assert rc == 2, err
    assert needle in err, err


def test_system_twice(model, tmp_path):
    f = tmp_path / "m.json"
    f.write_text(json.dumps([{"role": "system", "content": "a"}, {"role": "user", "content": "b"}]))
    rc, _, err = gen(model, "--messages", str(f), "--system", "c")
    assert rc == 2 and "system message" in err, err


def test_bad_model_dir(tmp_path):
    rc, _, err = gen(str(tmp_path / "nope"), "--prompt", "x")
    assert rc == 2 and "nope" in err, err
