#!/usr/bin/env python3
"""make_seeds.py: writes the seed corpora under tests/fuzz/seeds/ from the
committed test data (tests/data) and a few hand-made inputs. Run from the
repository root: python3 tests/fuzz/make_seeds.py. Needs only the standard
library. Seeds are kept small (the trimmed tokenizer is a few KB); run.sh
also feeds the bad-file corpus (tests/data/bad) to the file targets."""
import json
import os
import shutil
import struct

ROOT = "tests/fuzz/seeds"


def out(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def safetensors(tensors, meta=None):
    """tensors: list of (name, dtype, shape, nbytes); zero-filled data."""
    h, off = {}, 0
    if meta is not None:
        h["__metadata__"] = meta
    for name, dt, shape, nb in tensors:
        h[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + nb]}
        off += nb
    hj = json.dumps(h, separators=(",", ":")).encode()
    hj += b" " * ((8 - len(hj) % 8) % 8)
    return struct.pack("<Q", len(hj)) + hj + bytes(range(256)) * (off // 256) + bytes(off % 256)


def st_header():
    out("st_header", "f32.safetensors", safetensors([("w", "F32", [2, 3], 24)], {"format": "pt"}))
    out("st_header", "mixed.safetensors", safetensors([
        ("a.weight", "BF16", [4, 2], 16), ("b.bias", "F16", [3], 6), ("c", "I64", [1], 8),
        ("d", "U8", [5], 5), ("e", "I8", [0, 4], 0), ("f", "I32", [], 4), ("g", "BOOL", [2], 2),
        ("h", "F8_E4M3", [3], 3), ("i", "F4", [4], 2), ("j", "F64", [1], 8)], {"format": "pt", "k": "v"}))
    out("st_header", "empty_header.safetensors", safetensors([]))
    out("st_header", "eight_dims.safetensors", safetensors([("x", "F32", [1] * 8, 4)]))
    # Header mode (input starts with '{'): the harness adds the length prefix and the data.
    for name in sorted(os.listdir(os.path.join(ROOT, "st_header"))):
        b = open(os.path.join(ROOT, "st_header", name), "rb").read()
        n = struct.unpack("<Q", b[:8])[0]
        out("st_header", "hdr_" + name.replace(".safetensors", ".json"), b[8:8 + n].rstrip(b" "))


SHARD1, SHARD2 = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"


def st_index():
    ok = {"metadata": {"total_size": 32}, "weight_map": {"a": SHARD1, "b": SHARD1, "c": SHARD2}}
    out("st_index", "ok.json", json.dumps(ok, indent=2, sort_keys=True) + "\n")
    out("st_index", "one_shard.json", json.dumps({"weight_map": {"a": SHARD1, "b": SHARD1}}))
    out("st_index", "missing_tensor.json", json.dumps({"weight_map": {"a": SHARD1, "c": SHARD2}}))
    out("st_index", "wrong_shard.json", json.dumps({"weight_map": {"a": SHARD2, "b": SHARD1, "c": SHARD2}}))
    out("st_index", "meta_null.json", json.dumps({"metadata": None, "weight_map": {"a": SHARD1, "b": SHARD1, "c": SHARD2}}))
    for d in sorted(os.listdir("tests/data/bad/sets")):
        p = os.path.join("tests/data/bad/sets", d, "model.safetensors.index.json")
        if os.path.isfile(p):
            shutil.copy(p, os.path.join(ROOT, "st_index", "bad_" + d + ".json"))


def config():
    base = {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": 64,
            "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 1000, "max_position_embeddings": 4096,
            "rms_norm_eps": 1e-6, "rope_theta": 1000000, "tie_word_embeddings": True,
            "attention_bias": False, "torch_dtype": "bfloat16", "bos_token_id": None, "eos_token_id": 151645,
            "use_sliding_window": False, "sliding_window": None, "hidden_act": "silu"}
    out("config", "qwen3_4x.json", json.dumps(base, indent=2))
    v5 = dict(base)
    del v5["torch_dtype"], v5["rope_theta"]
    v5.update(dtype="float32", rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
                                                "original_max_position_embeddings": 1024},
              layer_types=["full_attention"] * 2, eos_token_id=[151645, 151643])
    out("config", "qwen3_5x_yarn.json", json.dumps(v5, indent=2))
    out("config", "gen.json", json.dumps({"do_sample": True, "temperature": 0.6, "top_k": 20, "top_p": 0.95,
                                           "min_p": 0, "repetition_penalty": 1.05, "eos_token_id": [151645, 151643],
                                           "max_new_tokens": 512, "pad_token_id": 151643}))
    out("config", "gen_topk_null.json", json.dumps({"top_k": None, "eos_token_id": 151645}))


def json_seeds():
    for i, s in enumerate([
            '{"a": [1, -0, 1.0, 1e400, -1e-7, 12345678901234567890], "b": {"c": null, "d": true}}',
            '[[[[[]]]]]', '"\\ud83d\\ude00 \\u00e9 \\n\\t\\"\\\\"', '{"x": "é€😀", "y": [false, 0.5e-3]}',
            '  123  ', '{"dup": 1, "dup": 2}', '{"k": "\\u0000"}', '[1.]', '[01]', '[-.5]']):
        out("json", "s%02d.json" % i, s)


def tok_load():
    t = json.load(open("tests/data/qwen3-tokenizer/tokenizer.json", encoding="utf-8"))
    keep = 600
    vocab = {k: v for k, v in t["model"]["vocab"].items() if v < keep}
    merges = [m for m in t["model"]["merges"] if m[0] in vocab and m[1] in vocab and m[0] + m[1] in vocab]
    t["model"]["vocab"] = vocab
    t["model"]["merges"] = merges
    remap = {}
    for i, a in enumerate(t["added_tokens"]):
        remap[a["id"]] = keep + i
        a["id"] = keep + i
    text = json.dumps(t, ensure_ascii=False, separators=(",", ":"))
    out("tok_load", "trimmed.json", text)
    c = json.load(open("tests/data/qwen3-tokenizer/tokenizer_config.json", encoding="utf-8"))
    c["added_tokens_decoder"] = {str(remap[int(k)]): v for k, v in c["added_tokens_decoder"].items()}
    out("tok_load", "trimmed_with_config.json", text + "\n#tokenizer_config.json\n" + json.dumps(c, ensure_ascii=False))
    c.pop("chat_template")
    out("tok_load", "trimmed_config_no_template.json", text + "\n#tokenizer_config.json\n" + json.dumps(c, ensure_ascii=False))


def tok_encode():
    with open("tests/data/qwen3-tokenizer-cases.jsonl", encoding="utf-8") as f:
        for i, line in enumerate(f):
            out("tok_encode", "case%02d.txt" % i, json.loads(line)["text"])
    out("tok_encode", "special.txt", "<|im_start|>system\nx<|im_end|>\n<think>\n\n</think>\n\n<tool_call>\n{}\n</tool_call><|endoftext|>")
    out("tok_encode", "spaces.txt", "a  \n\n\t  b\r\n   \u00a0\u3000 123456 it's we'LL")


def chat():
    with open("tests/data/chat-cases.jsonl", encoding="utf-8") as f:
        for i, line in enumerate(f):
            c = json.loads(line)
            c.pop("text", None)
            out("chat", "case%03d.json" % i, json.dumps(c, ensure_ascii=False))


def chat_parse():
    seeds = [
        "\x00<think>\nplan\n\n</think>\n\nThe answer.\n",
        "\x01reasoning only\n</think>\n\nanswer",
        "\x02plain answer\n\n",
        "\x00<think>\n\n</think>\n\nLet me call.\n<tool_call>\n{\"name\": \"get\", \"arguments\": {\"x\": 1, \"y\": [1.50, \"a\"]}}\n</tool_call>\n<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call>",
        "\x02<tool_call>\n{\"arguments\": {\"q\": \"\\u00e9\"}, \"name\": \"s\"}\n</tool_call>\n",
        "\x02<tool_call>\n{\"name\": \"s\"}\n</tool_call>",
    ]
    for i, s in enumerate(seeds):
        out("chat_parse", "s%d.txt" % i, s)


def oai_req():
    reqs = [
        {"model": "m", "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
         "max_tokens": 16, "temperature": 0.7, "top_p": 0.9, "stop": ["\n\n", "END"], "seed": 42, "stream": True,
         "stream_options": {"include_usage": True}, "logprobs": True, "top_logprobs": 3, "n": 2},
        {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                                    {"role": "assistant", "content": None, "reasoning_content": "think",
                                     "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"x\": 1}"}}]},
                                    {"role": "tool", "tool_call_id": "c1", "content": "42"}],
         "chat_template_kwargs": {"enable_thinking": False}, "logit_bias": {"100": -100, "7": 5}, "top_k": 20, "min_p": 0.05},
        {"model": "m", "prompt": "Once upon", "max_tokens": 8, "echo": True, "logprobs": 2, "stop": "x"},
        {"model": "m", "prompt": [[1, 2, 3], "text", [151935]], "frequency_penalty": 0.5, "presence_penalty": -0.5},
        {"prompt": "hello"},
        {"messages": [{"role": "user", "content": "x"}], "add_generation_prompt": True},
        {"tokens": [1, 2, 151643], "model": "m"},
        {"model": "m", "messages": [], "response_format": {"type": "json_object"}},
    ]
    for i, r in enumerate(reqs):
        out("oai_req", "r%d.json" % i, json.dumps(r))


if __name__ == "__main__":
    if os.path.isdir(ROOT):
        shutil.rmtree(ROOT)
    st_header(); st_index(); config(); json_seeds(); tok_load(); tok_encode(); chat(); chat_parse(); oai_req()
