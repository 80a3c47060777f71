#!/usr/bin/env python3
"""gen_bad_files.py: writes the bad-file corpus tests/data/bad/ and its
manifest tests/data/bad/cases.json (docs/threats.md A1-A8, A10, C1 config side).

Every case is a small malformed safetensors file, model directory (index +
shards), config.json or generation_config.json, plus a few valid controls
that must load. cases.json lists, per case: "path" (relative to
tests/data/bad), "loader" (st_file | st_set | config | gen_config),
"expect" (a substring of the error message; "" for controls that must
load) and "what" (what it exercises). tests/test_badfiles.c runs them all.

Standard library only; deterministic (same bytes on every run). Run from
the repository root: python3 tools/gen_bad_files.py
"""
import json
import os
import shutil
import struct

ROOT = os.path.join("tests", "data", "bad")
CASES = []


def case(path, loader, expect, what):
    CASES.append({"path": path, "loader": loader, "expect": expect, "what": what})


def write(rel, data):
    p = os.path.join(ROOT, rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def compact(obj):
    return json.dumps(obj, separators=(",", ":"))


def st_raw(header, data=b"", hlen=None, pad=True):
    """A safetensors file from a header (dict, str or bytes) and data bytes."""
    if isinstance(header, dict):
        header = compact(header)
    if isinstance(header, str):
        header = header.encode()
    if pad:
        header += b" " * (-len(header) % 8)
    n = len(header) if hlen is None else hlen
    return struct.pack("<Q", n) + header + data


SIZES = {"F32": 4, "F16": 2, "BF16": 2, "U8": 1, "I8": 1, "I64": 8}


def st_valid(tensors, meta=None):
    """A valid file: tensors = [(name, dtype, shape)], data filled with a pattern."""
    h = {}
    if meta is not None:
        h["__metadata__"] = meta
    off = 0
    for name, dt, shape in tensors:
        n = SIZES[dt]
        for d in shape:
            n *= d
        h[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + n]}
        off += n
    return st_raw(h, bytes((i * 7 + 3) & 0xFF for i in range(off)))


def entry(dt, shape, b, e):
    return {"dtype": dt, "shape": shape, "data_offsets": [b, e]}


def st_cases():
    L = "st_file"
    write("st/empty.safetensors", b"")
    case("st/empty.safetensors", L, "shorter than the 8-byte header length", "A1: empty file")
    write("st/five_bytes.safetensors", b"\x02\x00\x00\x00\x00")
    case("st/five_bytes.safetensors", L, "shorter than the 8-byte header length", "A1: file < 8 bytes")
    write("st/hlen_zero.safetensors", struct.pack("<Q", 0) + b"{}")
    case("st/hlen_zero.safetensors", L, "header length 0 is below the minimum", "A1: header length 0")
    write("st/hlen_one.safetensors", struct.pack("<Q", 1) + b"{}")
    case("st/hlen_one.safetensors", L, "header length 1 is below the minimum", "A1: header length 1 (< 2)")
    write("st/hlen_past_eof.safetensors", struct.pack("<Q", 1000) + b"{\"a\":1}")
    case("st/hlen_past_eof.safetensors", L, "runs past the end of the file", "A1: header length > file")
    write("st/hlen_over_100mb.safetensors", struct.pack("<Q", 100_000_001) + b"{}")
    case("st/hlen_over_100mb.safetensors", L, "exceeds the limit of 100000000", "A1: header length > 100 MB")
    write("st/hlen_u64max.safetensors", struct.pack("<Q", 2**64 - 1) + b"{}")
    case("st/hlen_u64max.safetensors", L, "exceeds the limit", "A1: header length 2^64-1")

    write("st/leading_space.safetensors", st_raw(" {}"))
    case("st/leading_space.safetensors", L, "does not start with '{'", "A5: header not starting with {")
    write("st/header_array.safetensors", st_raw("[]"))
    case("st/header_array.safetensors", L, "does not start with '{'", "A5: header is a JSON array")
    write("st/header_truncated_json.safetensors", st_raw("{\"a\":"))
    case("st/header_truncated_json.safetensors", L, "invalid JSON", "A5: header not valid JSON")
    write("st/header_bad_utf8.safetensors", st_raw(b"{\"a\xff\":{}}"))
    case("st/header_bad_utf8.safetensors", L, "invalid UTF-8", "A5: header not UTF-8")
    write("st/header_nul_padding.safetensors", st_raw(b"{}\x00\x00\x00\x00\x00\x00", pad=False))
    case("st/header_nul_padding.safetensors", L, "NUL byte", "A5: NUL bytes instead of space padding")
    write("st/header_trailing_garbage.safetensors", st_raw("{} x"))
    case("st/header_trailing_garbage.safetensors", L, "trailing data", "A5: bytes after the JSON object")
    write("st/header_u0000_name.safetensors", st_raw("{\"a\\u0000b\":" + compact(entry("U8", [1], 0, 1)) + "}", b"\x01"))
    case("st/header_u0000_name.safetensors", L, "\\u0000", "A5: \\u0000 in a tensor name (cJSON would truncate)")
    write("st/header_deep_nesting.safetensors", st_raw("{\"__metadata__\":" + "[" * 200 + "]" * 200 + "}"))
    case("st/header_deep_nesting.safetensors", L, "nesting deeper", "A5: deep nesting")
    write("st/meta_not_string.safetensors", st_raw({"__metadata__": {"format": 1}}))
    case("st/meta_not_string.safetensors", L, "__metadata__ value for \"format\" is not a string",
         "A5: non-string metadata value")
    write("st/meta_not_object.safetensors", st_raw({"__metadata__": ["pt"]}))
    case("st/meta_not_object.safetensors", L, "__metadata__ is not an object", "A5: metadata not an object")
    write("st/entry_not_object.safetensors", st_raw({"a": [1, 2]}))
    case("st/entry_not_object.safetensors", L, "entry is not an object", "A5: tensor entry not an object")
    write("st/entry_unexpected_key.safetensors",
          st_raw({"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1], "extra": 1}}, b"\x01"))
    case("st/entry_unexpected_key.safetensors", L, "unexpected key \"extra\"", "A5: unknown key in an entry")

    write("st/dtype_unknown.safetensors", st_raw({"a": entry("F33", [1], 0, 4)}, b"\0" * 4))
    case("st/dtype_unknown.safetensors", L, "unknown dtype \"F33\"", "A6: unknown dtype")
    write("st/dtype_lowercase.safetensors", st_raw({"a": entry("f32", [1], 0, 4)}, b"\0" * 4))
    case("st/dtype_lowercase.safetensors", L, "unknown dtype \"f32\"", "A6: dtype names are case-sensitive")
    write("st/dtype_not_string.safetensors", st_raw({"a": {"dtype": 7, "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4))
    case("st/dtype_not_string.safetensors", L, "dtype missing or not a string", "A6: dtype not a string")
    write("st/dtype_f4_odd.safetensors", st_raw({"a": entry("F4", [3], 0, 2)}, b"\0" * 2))
    case("st/dtype_f4_odd.safetensors", L, "not a whole number of bytes", "A6: sub-byte dtype, odd element count")

    write("st/shape_negative.safetensors", st_raw({"a": entry("F32", [-1], 0, 4)}, b"\0" * 4))
    case("st/shape_negative.safetensors", L, "negative", "A3: negative dimension")
    write("st/shape_float.safetensors", st_raw({"a": entry("F32", [1.5], 0, 4)}, b"\0" * 4))
    case("st/shape_float.safetensors", L, "fractional", "A3: fractional dimension")
    write("st/shape_string.safetensors", st_raw({"a": entry("F32", ["1"], 0, 4)}, b"\0" * 4))
    case("st/shape_string.safetensors", L, "not a number", "A3: string dimension")
    write("st/shape_float_spelled.safetensors",
          st_raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}", b"\0" * 4))
    case("st/shape_float_spelled.safetensors", L, "number \"1.0\" at offset", "A3: integer spelled as a float")
    write("st/shape_exponent.safetensors",
          st_raw("{\"a\":{\"dtype\":\"U8\",\"shape\":[1e1],\"data_offsets\":[0,10]}}", b"\0" * 10))
    case("st/shape_exponent.safetensors", L, "number \"1e1\" at offset", "A3: integer spelled with an exponent")
    write("st/shape_2p62x4.safetensors", st_raw({"a": entry("F32", [2**62, 4], 0, 4)}, b"\0" * 4))
    case("st/shape_2p62x4.safetensors", L, "too large", "A3: dimension 2^62 (beyond exact JSON integers)")
    write("st/shape_overflow.safetensors", st_raw({"a": entry("F32", [2**32, 2**32], 0, 4)}, b"\0" * 4))
    case("st/shape_overflow.safetensors", L, "overflows 64 bits", "A3: [2^32, 2^32] element count overflows")
    write("st/shape_bytes_overflow.safetensors", st_raw({"a": entry("F64", [2**31, 2**31], 0, 8)}, b"\0" * 8))
    case("st/shape_bytes_overflow.safetensors", L, "overflows 64 bits", "A3: numel fits, numel x bits overflows")
    write("st/shape_nine_dims.safetensors", st_raw({"a": entry("U8", [1] * 9, 0, 1)}, b"\0"))
    case("st/shape_nine_dims.safetensors", L, "more than 8", "A3: too many dimensions")
    write("st/size_mismatch.safetensors", st_raw({"a": entry("F32", [2], 0, 4)}, b"\0" * 4))
    case("st/size_mismatch.safetensors", L, "byte size mismatch", "A3: shape x dtype != end - begin")
    write("st/offsets_three.safetensors", st_raw({"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1, 2]}}, b"\0"))
    case("st/offsets_three.safetensors", L, "not an array of 2 integers", "A2: data_offsets with 3 entries")

    write("st/offsets_reversed.safetensors", st_raw({"a": entry("U8", [0], 8, 0)}, b"\0" * 8))
    case("st/offsets_reversed.safetensors", L, "reversed", "A2: begin > end")
    write("st/offsets_past_eof.safetensors", st_raw({"a": entry("U8", [16], 0, 16)}, b"\0" * 8))
    case("st/offsets_past_eof.safetensors", L, "out of bounds", "A2: end > data size")
    write("st/offsets_short_by_2.safetensors", st_raw({"a": entry("F32", [2], 0, 8)}, b"\0" * 6))
    case("st/offsets_short_by_2.safetensors", L, "out of bounds", "A2: data 2 bytes short")
    write("st/offsets_overlap.safetensors",
          st_raw({"a": entry("U8", [8], 0, 8), "b": entry("U8", [8], 4, 12)}, b"\0" * 12))
    case("st/offsets_overlap.safetensors", L, "overlap", "A2: overlapping ranges")
    write("st/offsets_shared_range.safetensors",
          st_raw({"a": entry("U8", [8], 0, 8), "b": entry("U8", [8], 0, 8)}, b"\0" * 8))
    case("st/offsets_shared_range.safetensors", L, "overlap", "A2: two tensors share one range")
    write("st/offsets_gap.safetensors",
          st_raw({"a": entry("U8", [4], 0, 4), "b": entry("U8", [4], 8, 12)}, b"\0" * 12))
    case("st/offsets_gap.safetensors", L, "hole in the data section", "A2: gap between tensors")
    write("st/offsets_first_not_zero.safetensors", st_raw({"a": entry("U8", [4], 4, 8)}, b"\0" * 8))
    case("st/offsets_first_not_zero.safetensors", L, "not 0", "A2: first tensor does not start at 0")
    write("st/trailing_bytes.safetensors", st_raw({"a": entry("U8", [4], 0, 4)}, b"\0" * 4 + b"EXTRA"))
    case("st/trailing_bytes.safetensors", L, "trailing bytes", "A2: polyglot tail after the last tensor")

    write("st/duplicate_name.safetensors",
          st_raw("{\"a\":" + compact(entry("U8", [4], 0, 4)) + ",\"a\":" + compact(entry("F32", [1], 0, 4)) + "}",
                 b"\0" * 4))
    case("st/duplicate_name.safetensors", L, "duplicate key \"a\"", "A4: same tensor name twice, different dtypes")
    write("st/duplicate_metadata.safetensors",
          st_raw("{\"__metadata__\":{\"format\":\"pt\"},\"__metadata__\":{\"format\":\"np\"}}"))
    case("st/duplicate_metadata.safetensors", L, "duplicate key", "A4: __metadata__ twice")

    write("st/zip_magic.safetensors", b"PK\x03\x04" + b"\x14\x00\x00\x00\x00\x00" + b"\0" * 40)
    case("st/zip_magic.safetensors", L, "zip archive", "A10: torch.save zip by magic")
    write("st/pickle_magic.safetensors", b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.\x80\x02}q\x00." + b"\0" * 8)
    case("st/pickle_magic.safetensors", L, "Python pickle", "A10: legacy pickle by magic")
    write("st/pickle_proto5.safetensors", b"\x80\x05\x95\x10\x00\x00\x00\x00\x00\x00\x00}\x94.")
    case("st/pickle_proto5.safetensors", L, "Python pickle", "A10: pickle protocol 5 by magic")
    write("st/pytorch_model.bin", st_valid([("a", "U8", [1])]))
    case("st/pytorch_model.bin", L, "by its name", "A10: .bin refused by name even with safetensors content")
    write("st/weights.pt", b"PK\x03\x04")
    case("st/weights.pt", L, "by its name", "A10: .pt refused by name")
    write("st/weights.pth", b"\x80\x02")
    case("st/weights.pth", L, "safetensors", "A10: .pth refused, message says safetensors only")

    # valid controls: must load
    write("st/ok_empty.safetensors", st_raw("{}"))
    case("st/ok_empty.safetensors", L, "", "control: no tensors")
    write("st/ok_misaligned_f32.safetensors", st_valid([("a", "U8", [1]), ("x", "F32", [2])]))
    case("st/ok_misaligned_f32.safetensors", L, "", "A7 control: F32 at data offset 1 (only element-aligned) loads")
    write("st/ok_zero_size_and_scalar.safetensors",
          st_valid([("e", "F32", [0, 3]), ("s", "I64", []), ("z", "U8", [0])], meta={"format": "pt"}))
    case("st/ok_zero_size_and_scalar.safetensors", L, "", "control: zero-size and scalar tensors")
    # a header whose length bytes start with 0x80 0x02 (640 + ...) is still safetensors, not pickle
    base = len(compact({"__metadata__": {"k": ""}, "a": entry("U8", [1], 0, 1)}))
    h = compact({"__metadata__": {"k": "v" * (640 - base)}, "a": entry("U8", [1], 0, 1)}).encode()
    assert len(h) == 640
    write("st/ok_len_looks_like_pickle.safetensors", struct.pack("<Q", 640) + h + b"\x01")
    case("st/ok_len_looks_like_pickle.safetensors", L, "", "control: header length 640 = bytes 80 02 loads")


def index(wm, total=None):
    meta = {"total_size": total if total is not None else 0}
    return json.dumps({"metadata": meta, "weight_map": wm}, indent=2, sort_keys=True) + "\n"


def set_cases():
    L = "st_set"
    s1 = st_valid([("a", "F32", [2])])
    s2 = st_valid([("b", "F32", [3])])
    A, B = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"

    def mk(name, files, expect, what):
        d = os.path.join("sets", name)
        for fn, data in files.items():
            write(os.path.join(d, fn), data)
        case(d, L, expect, what)

    mk("ok_sharded", {A: s1, B: s2, "model.safetensors.index.json": index({"a": A, "b": B}, 20)}, "",
       "control: two shards load")
    mk("traversal_dotdot", {A: s1, "model.safetensors.index.json": index({"a": "../" + A})},
       "not a plain file name", "A8: ../ in a shard name")
    mk("traversal_absolute", {A: s1, "model.safetensors.index.json": index({"a": "/etc/passwd"})},
       "not a plain file name", "A8: absolute shard path")
    mk("traversal_subdir", {A: s1, "model.safetensors.index.json": index({"a": "sub/" + A})},
       "not a plain file name", "A8: shard in a subdirectory")
    mk("traversal_backslash", {A: s1, "model.safetensors.index.json": index({"a": "..\\" + A})},
       "not a plain file name", "A8: backslash in a shard name")
    mk("shard_dotdot_name", {"model.safetensors.index.json": index({"a": ".."})},
       "not a plain file name", "A8: shard name ..")
    mk("missing_shard", {A: s1, "model.safetensors.index.json": index({"a": A, "b": B})},
       "does not exist", "A8: listed shard missing")
    both = st_valid([("a", "F32", [2]), ("b", "F32", [3])])
    mk("tensor_in_two_shards", {A: s1, B: both, "model.safetensors.index.json": index({"a": A, "b": B})},
       "but the index maps it to", "A8: tensor present in two shards")
    mk("unlisted_shard_ignored", {A: s1, B: both, "model.safetensors.index.json": index({"a": A})}, "",
       "control: a shard file the index does not name is ignored, as transformers does")
    mk("tensor_not_in_its_shard", {A: s1, B: s2, "model.safetensors.index.json": index({"a": B, "b": B})},
       "which does not contain it", "A8: map points to the wrong shard")
    mk("tensor_not_in_index", {A: both, B: s2, "model.safetensors.index.json": index({"a": A})},
       "is not listed in the index", "A8: shard holds a tensor the index omits")
    mk("weight_map_missing", {A: s1, "model.safetensors.index.json": json.dumps({"metadata": {}})},
       "weight_map\" is missing", "A8: index without weight_map")
    mk("weight_map_value_int", {A: s1, "model.safetensors.index.json": json.dumps({"weight_map": {"a": 1}})},
       "is not a string", "A8: weight_map value not a string")
    mk("weight_map_empty", {"model.safetensors.index.json": json.dumps({"weight_map": {}})},
       "weight_map is empty", "A8: empty weight_map")
    mk("weight_map_duplicate", {A: s1, "model.safetensors.index.json":
                                "{\"weight_map\":{\"a\":\"" + A + "\",\"a\":\"" + B + "\"}}"},
       "duplicate key", "A4/A8: tensor listed twice in the index")
    mk("index_not_object", {"model.safetensors.index.json": "[1,2]"}, "index is not a JSON object",
       "A8: index is an array")
    mk("index_total_size_string", {A: s1, "model.safetensors.index.json":
                                   json.dumps({"metadata": {"total_size": "8"}, "weight_map": {"a": A}})},
       "total_size", "A8: metadata.total_size not an integer")
    mk("bad_shard", {A: st_raw({"a": entry("U8", [4], 0, 4)}, b"\0" * 5),
                     "model.safetensors.index.json": index({"a": A})},
       "trailing bytes", "A8: listed shard fails validation")
    mk("pickle_shard_in_index", {"pytorch_model-00001-of-00001.bin": b"\x80\x02",
                                 "model.safetensors.index.json": index({"a": "pytorch_model-00001-of-00001.bin"})},
       "by its name", "A10: index naming a pickle shard")
    mk("pickle_only", {"pytorch_model.bin": b"\x80\x02\x8a\x0a", "config.json": "{}"}, "only pickle weights",
       "A10: directory with only pytorch_model.bin")
    mk("no_weights", {"config.json": "{}"}, "no model.safetensors", "directory without weights")
    mk("single_corrupt", {"model.safetensors": st_raw({"a": entry("U8", [4], 0, 4)}, b"\0" * 3)},
       "out of bounds", "single model.safetensors fails validation")


QWEN3 = {
    "architectures": ["Qwen3ForCausalLM"], "attention_bias": False, "bos_token_id": 151643,
    "eos_token_id": 151645, "head_dim": 128, "hidden_act": "silu", "hidden_size": 1024,
    "intermediate_size": 3072, "max_position_embeddings": 40960, "model_type": "qwen3",
    "num_attention_heads": 16, "num_hidden_layers": 28, "num_key_value_heads": 8, "rms_norm_eps": 1e-06,
    "rope_scaling": None, "rope_theta": 1000000, "tie_word_embeddings": True, "torch_dtype": "bfloat16",
    "use_sliding_window": False, "vocab_size": 151936,
}


def config_cases():
    L = "config"

    def mk(name, change, expect, what, drop=()):
        c = dict(QWEN3)
        c.update(change)
        for k in drop:
            del c[k]
        write(f"config/{name}.json", json.dumps(c, indent=2, sort_keys=True) + "\n")
        case(f"config/{name}.json", L, expect, what)

    mk("ok_qwen3_0.6b", {}, "", "control: Qwen3-0.6B config loads")
    mk("moe", {"model_type": "qwen3_moe", "num_experts": 128}, "model_type \"qwen3_moe\" is not supported",
       "model_type qwen3_moe refused")
    mk("qwen2", {"model_type": "qwen2"}, "model_type \"qwen2\" is not supported", "model_type qwen2 refused")
    mk("sliding_window", {"use_sliding_window": True, "sliding_window": 4096}, "use_sliding_window",
       "use_sliding_window true refused")
    mk("rope_linear", {"rope_scaling": {"rope_type": "linear", "factor": 2.0}}, "rope_type \"linear\"",
       "rope type linear refused")
    mk("rope_yarn_no_factor", {"rope_scaling": {"rope_type": "yarn"}}, "\"factor\" is missing",
       "yarn without factor")
    mk("no_theta", {}, "no rope_theta", "missing theta refused (HF's 10000 default would be wrong)",
       drop=("rope_theta",))
    mk("quantized", {"quantization_config": {"quant_method": "gptq", "bits": 4}}, "quantization_config",
       "quantized checkpoint refused")
    mk("gqa_not_divisible", {"num_key_value_heads": 6}, "not a multiple", "nh % nkv != 0")
    mk("head_dim_absent", {}, "\"head_dim\" is absent", "head_dim absent with hidden/heads != 128",
       drop=("head_dim",))
    mk("hidden_negative", {"hidden_size": -1024}, "outside", "C1: negative hidden_size")
    mk("vocab_2p40", {"vocab_size": 2**40}, "outside", "C1: vocab 2^40")
    mk("ctx_2p31", {"max_position_embeddings": 2**31}, "outside", "C1: context 2^31 (KV size overflow)")
    mk("layers_float", {"num_hidden_layers": 28.5}, "must be an integer", "C1: fractional layer count")
    mk("layers_string", {"num_hidden_layers": "28"}, "must be an integer", "C1: layer count as a string")
    mk("intermediate_zero", {"intermediate_size": 0}, "outside", "C1: zero intermediate_size")
    mk("eos_string", {"eos_token_id": "151645"}, "eos_token_id", "eos id as a string")
    mk("dtype_float64", {"torch_dtype": "float64"}, "not supported", "unsupported dtype")
    mk("layer_types_sliding", {"layer_types": ["sliding_attention"] * 28}, "layer_types",
       "sliding layer_types refused")
    write("config/not_object.json", "[]\n")
    case("config/not_object.json", L, "not a JSON object", "config is a JSON array")
    write("config/duplicate_key.json", "{\"model_type\":\"qwen3\",\"model_type\":\"qwen3_moe\"}")
    case("config/duplicate_key.json", L, "duplicate key \"model_type\"", "B1: duplicate key (cJSON keeps the first)")
    write("config/case_insensitive_key.json",
          json.dumps({k if k != "model_type" else "Model_Type": v for k, v in QWEN3.items()}))
    case("config/case_insensitive_key.json", L, "\"model_type\" is missing",
         "B1: keys are case-sensitive (Model_Type is not model_type)")


def gen_cases():
    L = "gen_config"
    items = [
        ("ok_qwen3", {"bos_token_id": 151643, "do_sample": True, "eos_token_id": [151645, 151643],
                      "pad_token_id": 151643, "temperature": 0.6, "top_k": 20, "top_p": 0.95}, "",
         "control: Qwen3 generation_config loads"),
        ("temperature_negative", {"temperature": -0.5}, "temperature", "negative temperature"),
        ("top_p_over_1", {"top_p": 1.5}, "top_p", "top_p > 1"),
        ("top_k_negative", {"top_k": -3}, "top_k", "negative top_k"),
        ("eos_list_strings", {"eos_token_id": ["a"]}, "eos_token_id", "eos list of strings"),
        ("rep_penalty_zero", {"repetition_penalty": 0}, "repetition_penalty", "repetition_penalty 0"),
    ]
    for name, obj, expect, what in items:
        write(f"gen/{name}.json", json.dumps(obj, indent=2) + "\n")
        case(f"gen/{name}.json", L, expect, what)
    write("gen/truncated.json", "{\"do_sample\": tru")
    case("gen/truncated.json", L, "invalid JSON", "truncated generation_config")


def main():
    if os.path.isdir(ROOT):
        shutil.rmtree(ROOT)
    os.makedirs(ROOT)
    st_cases()
    set_cases()
    config_cases()
    gen_cases()
    with open(os.path.join(ROOT, "cases.json"), "w") as f:
        json.dump(CASES, f, indent=1)
        f.write("\n")
    bad = sum(1 for c in CASES if c["expect"])
    print(f"wrote {len(CASES)} cases ({bad} malformed, {len(CASES) - bad} controls) to {ROOT}")


if __name__ == "__main__":
    main()
