"""test_demo.py: `make demo` in one-shot mode (DEMO_ONESHOT=1): synthetic
base -> synthetic LoRA -> lora-merge -> medserve on 127.0.0.1, the printed
curl request answered, the server drained and stopped, exit 0."""
import json
import os
import re
import subprocess

from srvutil import ROOT, tmpdir


def test_make_demo_oneshot():
    d = os.path.join(tmpdir(), "demo")
    env = dict(os.environ, DEMO_ONESHOT="1", DEMO_PORT="0", DEMO_DIR=d)
    env.setdefault("OMP_WAIT_POLICY", "passive")
    p = subprocess.run(["make", "--no-print-directory", "demo"], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    out = p.stdout
    assert "demo: ok" in out
    m = re.search(r"curl -s (http://127\.0\.0\.1:\d+)/v1/chat/completions", out)
    assert m, out
    reply = json.loads(next(l for l in out.splitlines() if l.startswith('{"id":"chatcmpl-')))
    assert reply["model"] == "demo" and reply["choices"][0]["finish_reason"] in ("stop", "length")
    # the merged export carries a manifest, whose hash is in the fingerprint
    assert os.path.exists(os.path.join(d, "merged", "medserve-manifest.json"))
    assert not reply["system_fingerprint"].endswith("nomanifest")
    log = [json.loads(l) for l in open(os.path.join(d, "requests.jsonl"))]
    assert [r["status"] for r in log if r["route"] == "/v1/chat/completions"] == [200]
    assert "medserve: stopped" in open(os.path.join(d, "medserve.stderr")).read()
