#!/usr/bin/env python3
"""peft_merge.py BASE ADAPTER OUT: the reference export path the benchmark
compares against (what LLaMA-Factory's export does for one adapter):
AutoModelForCausalLM.from_pretrained(BASE, dtype=bfloat16) ->
PeftModel.from_pretrained -> merge_and_unload -> save_pretrained(OUT,
max_shard_size="5GB"). Prints one JSON line with the seconds at which the
save finished and at which every written file had been fsynced (lora-merge
always fsyncs, so the second number is the like-for-like one)."""
import json
import os
import sys
import time
import warnings

t0 = time.time()
warnings.simplefilter("ignore")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
import torch  # noqa: E402
from peft import PeftModel  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

base, adapter, out = sys.argv[1:4]
torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
t_import = time.time() - t0
m = AutoModelForCausalLM.from_pretrained(base, dtype=torch.bfloat16)
t_load = time.time() - t0
m = PeftModel.from_pretrained(m, adapter).merge_and_unload()
t_merge = time.time() - t0
m.save_pretrained(out, max_shard_size="5GB")
t_save = time.time() - t0
for f in sorted(os.listdir(out)):
    fd = os.open(os.path.join(out, f), os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
fd = os.open(out, os.O_RDONLY)
os.fsync(fd)
os.close(fd)
t_sync = time.time() - t0
print(json.dumps({"import_s": t_import, "load_s": t_load, "merge_s": t_merge, "save_s": t_save,
                  "fsync_s": t_sync}))
