"""test_library.py: the library surface. libmedserve.so and libmedserve.a
export exactly the MS_API functions of include/medserve.h, nothing else; a
program that defines its own json_get, sha256, model_load or sb_append links
against either library without a clash and runs."""
import os
import re
import subprocess

import pytest

from srvutil import BUILD, ROOT

LIBS = ["-lcjson", "-lpcre2-8", "-lutf8proc", "-lm", "-lpthread", "-fopenmp"]
# Symbols the linker itself defines in every shared object.
LINKER_SYMBOLS = {"_init", "_fini", "_edata", "_end", "__bss_start"}


def public_api():
    """The names declared with MS_API in include/medserve.h."""
    text = open(os.path.join(ROOT, "include", "medserve.h"), encoding="utf-8").read()
    names = set(re.findall(r"^MS_API\b[^(]*?\b(\w+)\(", text, flags=re.M))
    assert len(names) >= 10, names
    return names


def defined_globals(args):
    """Global defined symbol names that nm reports for args."""
    out = subprocess.run(["nm", "--defined-only"] + args, check=True, capture_output=True, text=True).stdout
    names = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1].isupper() and parts[1] not in "UW":
            names.add(parts[2])
    return names


def test_shared_library_exports_only_the_public_api():
    exported = defined_globals(["-D", os.path.join(BUILD, "libmedserve.so")]) - LINKER_SYMBOLS
    assert exported == public_api(), (
        f"exported but not MS_API: {sorted(exported - public_api())}; "
        f"MS_API but not exported: {sorted(public_api() - exported)}")


def test_static_library_globals_are_only_the_public_api():
    globals_ = defined_globals(["-g", os.path.join(BUILD, "libmedserve.a")])
    assert globals_ == public_api(), (
        f"global but not MS_API: {sorted(globals_ - public_api())[:20]}; "
        f"MS_API but not global: {sorted(public_api() - globals_)}")


APP = r"""
#include <stdio.h>
#include <string.h>
#include "medserve.h"
/* Names the library uses internally; an application may have its own. */
int json_get(int x) { return x + 1; }
int sha256(int x) { return x + 2; }
int model_load(int x) { return x + 3; }
int sb_append(int x) { return x + 4; }
int main(void) {
    ms_load_params p = ms_load_params_default();
    printf("%s %s %d %d\n", ms_version(), ms_status_name(MS_ERR_IO),
           json_get(1) + sha256(1) + model_load(1) + sb_append(1), p.n_threads);
    return 0;
}
"""


@pytest.mark.parametrize("kind", ["static", "shared"])
def test_application_with_clashing_names_links_and_runs(tmp_path, kind):
    src = tmp_path / "app.c"
    src.write_text(APP)
    exe = tmp_path / "app"
    lib = ([os.path.join(BUILD, "libmedserve.a")] if kind == "static"
           else ["-L" + BUILD, "-lmedserve", "-Wl,-rpath," + BUILD])
    cc = subprocess.run(["cc", "-std=c11", "-I" + os.path.join(ROOT, "include"), str(src), "-o", str(exe)]
                        + lib + LIBS, capture_output=True, text=True)
    assert cc.returncode == 0, cc.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    version, status, sums, threads = run.stdout.split()
    assert version.startswith("0.") and status and sums == "14" and threads == "0", run.stdout
