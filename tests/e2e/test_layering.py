"""test_layering.py: the Makefile states the dependency graph runtime <- merge,
runtime <- server <- cli. Each layer's objects are compiled with only the include
paths of the layers below it, so an include the wrong way (runtime/ including a
server/ or merge/ header, merge/ including a server/ header) fails to build."""
import os
import re
import shlex
import subprocess

import pytest

from srvutil import ROOT

# One source per layer, and the include directories its compile line may name.
LAYERS = {
    "runtime/base/err.c": {"include", "runtime"},
    "runtime/engine/engine.c": {"include", "runtime"},
    "merge/plan.c": {"include", "runtime", "merge"},
    "server/http.c": {"include", "runtime", "server"},
    "cli/main.c": {"include", "runtime", "server"},
}


def compile_lines(tmp_path):
    """The compile command make would run for each LAYERS source, by source."""
    build = str(tmp_path / "b")
    objs = [os.path.join(build, src[:-2] + ".o") for src in LAYERS]
    out = subprocess.run(["make", "-n", "-B", "BUILD=" + build] + objs, cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    lines = {}
    for line in out.splitlines():
        for src in LAYERS:
            if re.search(r"-c " + re.escape(src) + r"\b", line):
                lines[src] = line
    assert set(lines) == set(LAYERS), out
    return lines


def include_dirs(line):
    """The -I directories of one compile command."""
    return {w[2:] for w in shlex.split(line) if w.startswith("-I")}


def test_each_layer_sees_only_the_layers_below(tmp_path):
    for src, line in compile_lines(tmp_path).items():
        assert include_dirs(line) == LAYERS[src], f"{src}: {line}"


@pytest.mark.parametrize("src,header", [
    ("runtime/base/err.c", "http.h"),      # runtime must not see the server
    ("runtime/engine/engine.c", "mg.h"),   # nor the merge tool
    ("merge/plan.c", "routes.h"),          # the merge tool must not see the server
])
def test_a_wrong_way_include_fails_to_build(tmp_path, src, header):
    line = compile_lines(tmp_path)[src]
    probe = tmp_path / ("probe_" + os.path.basename(src))
    with open(os.path.join(ROOT, src), encoding="utf-8") as f:
        probe.write_text(f'#include "{header}"\n' + f.read())
    words = shlex.split(line)
    # Same flags, the probe instead of the source, syntax only, no dependency file.
    cmd = [w for w in words if w not in ("-MMD", "-MP")]
    cmd[cmd.index("-c") + 1] = str(probe)
    cmd = cmd[:cmd.index("-o")] + ["-fsyntax-only"]
    # A probe outside the tree must still find same-directory headers of src.
    cmd.append("-iquote" + os.path.join(ROOT, os.path.dirname(src)))
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert r.returncode != 0 and f"{header}: No such file" in r.stderr, r.stderr[-2000:]
    # The same file without the wrong-way include compiles with those flags.
    probe.write_text(open(os.path.join(ROOT, src), encoding="utf-8").read())
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
