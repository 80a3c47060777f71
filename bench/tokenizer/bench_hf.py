#!/usr/bin/env python3
"""bench_hf.py: HF `tokenizers` encode throughput on the same corpus as bench_tok.

Usage: bench_hf.py TOKENIZER_DIR CORPUS.jsonl {encode|batch}
  encode  Tokenizer.encode per document, in a loop (one thread)
  batch   Tokenizer.encode_batch over all documents (threads: RAYON_NUM_THREADS)
Prints one JSON line like bench_tok, with the same FNV-1a hash of all ids.
"""
import json
import os
import sys
import time

from tokenizers import Tokenizer


def main():
    tok_dir, corpus, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    tok = Tokenizer.from_file(os.path.join(tok_dir, "tokenizer.json"))
    with open(corpus, encoding="utf-8") as f:
        docs = [json.loads(l) for l in f if l.strip()]
    tok.encode("warm up", add_special_tokens=False)
    t0 = time.perf_counter()
    if mode == "encode":
        encs = [tok.encode(d, add_special_tokens=False) for d in docs]
    else:
        encs = tok.encode_batch(docs, add_special_tokens=False)
    secs = time.perf_counter() - t0
    h, tokens = 0xcbf29ce484222325, 0
    for e in encs:
        for i in e.ids:
            h = ((h ^ i) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
        tokens += len(e.ids)
    nbytes = sum(len(d.encode()) for d in docs)
    print(json.dumps({"impl": "hf-" + mode, "docs": len(docs), "bytes": nbytes, "tokens": tokens,
                      "seconds": round(secs, 4), "mbps": round(nbytes / secs / 1e6, 2), "ids_fnv": f"{h:016x}"}))


if __name__ == "__main__":
    main()
