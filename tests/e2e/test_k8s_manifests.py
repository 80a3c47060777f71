"""test_k8s_manifests.py: the Kubernetes manifests of deploy/k8s/.

Every file there is validated by kubernetes-validate (PyPI) in strict mode,
so unknown or misspelt fields fail, against Kubernetes K8S_VERSION (stated
in deploy/README.md too); a kind it has no schema for fails as well. Then
the parsed YAML is checked for what the schemas cannot know:
- terminationGracePeriodSeconds covers the preStop sleep, medserve's
  --drain-timeout and the 3 s it gives aborted requests to send their error
  (docs/threats.md G3), with room to exit;
- startup, readiness and liveness probes are HTTP GETs of /health on the
  serving port (200 ready; 503 loading, draining, faulted);
- every container runs as non-root with a read-only root filesystem, no
  privilege escalation, all capabilities dropped, seccomp RuntimeDefault;
- every volume the server mounts is mounted read-only, the model volume is a
  read-only PersistentVolumeClaim, and the key file is in a mounted volume;
- resources: CPU and memory requests and limits, memory request = limit;
- the Service, PodDisruptionBudget and HorizontalPodAutoscaler point at the
  Deployment's pods.
Each check is also run on a broken copy, which must fail."""
import copy
import glob
import os
import re
import subprocess
import sys

import kubernetes_validate as kv  # make deps installs it (tools/install-deps.sh)
import pytest
import yaml  # PyYAML, a dependency of kubernetes-validate
from kubernetes_validate import utils as kv_utils

from srvutil import ROOT, tmpdir

K8S_VERSION = "1.35.0"  # deploy/README.md states the same
K8S_DIR = os.path.join(ROOT, "deploy", "k8s")
ABORT_GRACE_S = 3  # server/serve.c: after the drain timeout, aborted requests get this long
EXIT_MARGIN_S = 2  # closing connections, freeing the engine


def files():
    """Every file in deploy/k8s/."""
    fs = sorted(glob.glob(os.path.join(K8S_DIR, "*")))
    assert fs, "no files in deploy/k8s"
    return fs


def load_all():
    """Every YAML document of deploy/k8s/, parsed."""
    docs = []
    for f in files():
        with open(f) as fh:
            docs += [d for d in yaml.safe_load_all(fh) if d]
    return docs


def validate(paths):
    """(exit code, output) of the kubernetes-validate command, strict."""
    p = subprocess.run([sys.executable, "-m", "kubernetes_validate", "--strict", "--kubernetes-version", K8S_VERSION]
                       + list(paths), capture_output=True, text=True, timeout=300)
    return p.returncode, p.stdout + p.stderr


def schema_problems(docs):
    """Strict validation of parsed documents; a kind without a schema is a problem too."""
    out = []
    for d in docs:
        try:
            kv.validate(d, K8S_VERSION, strict=True)
        except kv.ValidationError as e:
            out.append("%s/%s: %s: %s" % (d.get("kind"), d.get("metadata", {}).get("name"),
                                          ".".join(str(x) for x in e.path), e.message))
        except (kv.SchemaNotFoundError, kv.InvalidSchemaError) as e:
            out.append(e.message)
    return out


def of_kind(docs, kind):
    """The documents of one kind."""
    return [d for d in docs if d.get("kind") == kind]


def arg(args, name, default=None):
    """The value after option name in a container's args, else default."""
    return args[args.index(name) + 1] if name in args else default


def prestop_seconds(c):
    """Seconds the preStop hook sleeps (exec sleep N, or the sleep action); 0 without one."""
    pre = (c.get("lifecycle") or {}).get("preStop")
    if not pre:
        return 0
    if "sleep" in pre:
        return float(pre["sleep"]["seconds"])
    cmd = pre.get("exec", {}).get("command", [])
    assert len(cmd) == 2 and os.path.basename(cmd[0]) == "sleep", "preStop is not a plain sleep: %r" % cmd
    return float(cmd[1])


def invariant_problems(docs):
    """What is wrong with the manifests beyond their schemas, as a list of messages."""
    p = []
    deps = of_kind(docs, "Deployment")
    if len(deps) != 1:
        return ["expected one Deployment, found %d" % len(deps)]
    dep = deps[0]
    spec = dep["spec"]["template"]["spec"]
    labels = dep["spec"]["template"]["metadata"]["labels"]
    if dep["spec"]["selector"].get("matchLabels") != labels:
        p.append("the Deployment's selector is not its pod labels")
    mains = [c for c in spec["containers"] if c["name"] == "medserve"]
    if len(mains) != 1:
        return p + ["expected one container named medserve"]
    main = mains[0]
    args = [str(a) for a in main.get("args", [])]
    ports = {x.get("name"): x["containerPort"] for x in main.get("ports", [])}
    serve_port = int(arg(args, "--port", 8080))
    if serve_port not in ports.values():
        p.append("--port %d is not a containerPort" % serve_port)
    # a rolling update never goes below the wanted count
    ru = dep["spec"].get("strategy", {}).get("rollingUpdate", {})
    if ru.get("maxUnavailable") not in (0, "0", "0%"):
        p.append("rollingUpdate.maxUnavailable should be 0 (a new pod loads before an old one stops)")

    # termination: grace period > preStop + drain + abort grace + exit
    drain = float(arg(args, "--drain-timeout", 30))
    pre = prestop_seconds(main)
    grace = spec.get("terminationGracePeriodSeconds", 30)
    if pre <= 0:
        p.append("no preStop sleep: requests routed before the endpoint update would hit a draining pod")
    if not grace > pre + drain + ABORT_GRACE_S + EXIT_MARGIN_S - 1e-9:
        p.append("terminationGracePeriodSeconds %s does not cover preStop %g + --drain-timeout %g + %d + %d s"
                 % (grace, pre, drain, ABORT_GRACE_S, EXIT_MARGIN_S))

    # probes on /health
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        pr = main.get(kind)
        if not pr or "httpGet" not in pr:
            p.append("%s: missing or not an HTTP GET" % kind)
            continue
        g = pr["httpGet"]
        port = ports.get(g["port"], g["port"]) if isinstance(g["port"], str) else g["port"]
        if g.get("path") != "/health" or port != serve_port:
            p.append("%s: GET %s on port %s, expected /health on %d" % (kind, g.get("path"), g["port"], serve_port))

    # security context, pod level with container overrides
    psc = spec.get("securityContext", {})
    for c in spec.get("initContainers", []) + spec["containers"]:
        sc = c.get("securityContext", {})
        eff = dict(psc, **sc)
        n = c["name"]
        if eff.get("runAsNonRoot") is not True:
            p.append("%s: runAsNonRoot is not true" % n)
        if eff.get("runAsUser") == 0:
            p.append("%s: runAsUser 0" % n)
        if sc.get("readOnlyRootFilesystem") is not True:
            p.append("%s: readOnlyRootFilesystem is not true" % n)
        if sc.get("allowPrivilegeEscalation") is not False:
            p.append("%s: allowPrivilegeEscalation is not false" % n)
        if sc.get("privileged"):
            p.append("%s: privileged" % n)
        caps = sc.get("capabilities", {})
        if "ALL" not in caps.get("drop", []) or caps.get("add"):
            p.append("%s: capabilities must drop ALL and add none" % n)
        if (eff.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
            p.append("%s: seccompProfile is not RuntimeDefault" % n)
        if not c.get("resources", {}).get("limits"):
            p.append("%s: no resource limits" % n)
    if spec.get("hostNetwork") or spec.get("hostPID") or spec.get("hostIPC"):
        p.append("host namespaces are shared")

    # volumes: all read-only for the server; the model from a read-only PVC
    vols = {v["name"]: v for v in spec.get("volumes", [])}
    mounts = {m["mountPath"]: m for m in main.get("volumeMounts", [])}
    for m in mounts.values():
        if m.get("readOnly") is not True:
            p.append("medserve mounts %s (%s) writable" % (m["name"], m["mountPath"]))
    for v in vols.values():
        if "hostPath" in v:
            p.append("volume %s is a hostPath" % v["name"])
    model = mounts.get(args[0] if args and not args[0].startswith("-") else "/model")
    if not model:
        p.append("the model directory %r is not a mount" % (args[:1],))
    else:
        src = vols.get(model["name"], {})
        if (src.get("persistentVolumeClaim") or {}).get("readOnly") is not True:
            p.append("the model volume %s is not a read-only persistentVolumeClaim" % model["name"])
    keyfile = arg(args, "--api-key-file")
    if keyfile and not any(keyfile.startswith(mp.rstrip("/") + "/") for mp in mounts):
        p.append("--api-key-file %s is not in a mounted volume" % keyfile)
    for v in vols.values():
        mode = (v.get("secret") or {}).get("defaultMode")
        if mode is not None and mode & 0o007:
            p.append("secret volume %s: defaultMode %o lets others read it" % (v["name"], mode))

    # resources: sized, and memory fixed
    res = main.get("resources", {})
    for k in ("cpu", "memory"):
        if k not in res.get("requests", {}) or k not in res.get("limits", {}):
            p.append("medserve: no %s request or limit" % k)
    if res.get("requests", {}).get("memory") != res.get("limits", {}).get("memory"):
        p.append("medserve: memory request != limit")

    # the other objects find these pods
    def selects(sel):
        """True when a label selector matches the Deployment's pods."""
        return sel and all(labels.get(k) == v for k, v in sel.items())

    svcs = of_kind(docs, "Service")
    if not svcs or not all(selects(s["spec"].get("selector")) for s in svcs):
        p.append("no Service, or one that does not select the pods")
    for s in svcs:
        for sp in s["spec"]["ports"]:
            t = sp.get("targetPort", sp["port"])
            if ports.get(t, t) != serve_port:
                p.append("Service port %s does not target %d" % (sp["port"], serve_port))
    pdbs = of_kind(docs, "PodDisruptionBudget")
    if len(pdbs) != 1 or not selects(pdbs[0]["spec"]["selector"].get("matchLabels")):
        p.append("no PodDisruptionBudget selecting the pods")
    hpas = of_kind(docs, "HorizontalPodAutoscaler")
    if len(hpas) != 1:
        p.append("no HorizontalPodAutoscaler")
    else:
        h = hpas[0]["spec"]
        ref = h["scaleTargetRef"]
        if ref["kind"] != "Deployment" or ref["name"] != dep["metadata"]["name"]:
            p.append("the HorizontalPodAutoscaler does not scale the Deployment")
        if h.get("minReplicas", 1) < 2:
            p.append("minReplicas < 2: one pod is no scale-out")
        if not any(m.get("resource", {}).get("name") == "cpu" for m in h.get("metrics", [])):
            p.append("the HorizontalPodAutoscaler has no CPU metric")
        if pdbs and pdbs[0]["spec"].get("maxUnavailable", 0) >= h.get("minReplicas", 1):
            p.append("the PodDisruptionBudget allows every pod down")
    return p


def test_kubernetes_validate_strict():
    assert K8S_VERSION.rsplit(".", 1)[0] in [v.rsplit(".", 1)[0] for v in kv_utils.all_versions()], \
        "kubernetes-validate has no schemas for %s" % K8S_VERSION
    for f in files():
        assert f.endswith(".yaml"), "%s: deploy/k8s holds only manifests (.yaml)" % f
    rc, out = validate(files())
    assert rc == 0, out
    assert "ERROR" not in out and "WARN" not in out and "FATAL" not in out, out
    assert out.count("INFO") == len(load_all()), out
    assert schema_problems(load_all()) == []


def test_invariants():
    docs = load_all()
    assert invariant_problems(docs) == []


def test_strict_validation_fails_on_broken_manifests():
    src = open(os.path.join(K8S_DIR, "deployment.yaml")).read()
    for bad in [src.replace("readOnlyRootFilesystem:", "readOnlyRootFileSystem:", 1),  # unknown field
                re.sub(r"terminationGracePeriodSeconds: \d+", "terminationGracePeriodSeconds: fifty", src),
                src.replace("kind: Deployment", "kind: Deploymnet")]:
        assert bad != src
        path = os.path.join(tmpdir(), "broken.yaml")
        with open(path, "w") as f:
            f.write(bad)
        rc, out = validate([path])
        docs = [d for d in yaml.safe_load_all(bad) if d]
        assert schema_problems(docs), bad[:200]
        assert rc != 0 or "WARN" in out, out  # an unknown kind is only a warning for the command


def dep_of(docs):
    """The Deployment's pod spec."""
    return of_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]


def main_of(docs):
    """The medserve container of the Deployment."""
    return [c for c in dep_of(docs)["containers"] if c["name"] == "medserve"][0]


def set_arg(docs, name, value):
    """Sets the value after an option in medserve's args."""
    a = main_of(docs)["args"]
    a[a.index(name) + 1] = value


def break_(fn):
    """A breakage as a function that changes the documents and returns them."""
    def f(docs):
        fn(docs)
        return docs
    return f


BREAKS = {
    "short grace": break_(lambda d: dep_of(d).__setitem__("terminationGracePeriodSeconds", 40)),
    "long drain": break_(lambda d: set_arg(d, "--drain-timeout", "40")),
    "long preStop": break_(lambda d: main_of(d)["lifecycle"]["preStop"]["exec"].__setitem__(
        "command", ["/bin/sleep", "20"])),
    "no preStop": break_(lambda d: main_of(d).pop("lifecycle")),
    "readiness on /": break_(lambda d: main_of(d)["readinessProbe"]["httpGet"].__setitem__("path", "/")),
    "liveness gone": break_(lambda d: main_of(d).pop("livenessProbe")),
    "startup on other port": break_(lambda d: main_of(d)["startupProbe"]["httpGet"].__setitem__("port", 9090)),
    "writable root": break_(lambda d: main_of(d)["securityContext"].__setitem__("readOnlyRootFilesystem", False)),
    "init writable root": break_(lambda d: dep_of(d)["initContainers"][0]["securityContext"].pop(
        "readOnlyRootFilesystem")),
    "may run as root": break_(lambda d: [dep_of(d)["securityContext"].pop("runAsNonRoot"),
                                         main_of(d)["securityContext"].pop("runAsNonRoot"),
                                         dep_of(d)["initContainers"][0]["securityContext"].pop("runAsNonRoot")]),
    "root user": break_(lambda d: main_of(d)["securityContext"].__setitem__("runAsUser", 0)),
    "escalation": break_(lambda d: main_of(d)["securityContext"].__setitem__("allowPrivilegeEscalation", True)),
    "caps kept": break_(lambda d: main_of(d)["securityContext"]["capabilities"].__setitem__("drop", ["NET_RAW"])),
    "no seccomp": break_(lambda d: dep_of(d)["securityContext"].pop("seccompProfile")),
    "model mount writable": break_(lambda d: [m for m in main_of(d)["volumeMounts"] if m["name"] == "model"][0]
                                   .__setitem__("readOnly", False)),
    "model claim writable": break_(lambda d: [v for v in dep_of(d)["volumes"] if v["name"] == "model"][0]
                                   ["persistentVolumeClaim"].pop("readOnly")),
    "model on hostPath": break_(lambda d: [v for v in dep_of(d)["volumes"] if v["name"] == "model"][0].update(
        {"persistentVolumeClaim": None, "hostPath": {"path": "/srv/model"}})),
    "keys world-readable": break_(lambda d: [v for v in dep_of(d)["volumes"] if "secret" in v][0]["secret"]
                                  .__setitem__("defaultMode", 0o444)),
    "no memory limit": break_(lambda d: main_of(d)["resources"]["limits"].pop("memory")),
    "service elsewhere": break_(lambda d: of_kind(d, "Service")[0]["spec"]["selector"].__setitem__(
        "app.kubernetes.io/name", "other")),
    "hpa elsewhere": break_(lambda d: of_kind(d, "HorizontalPodAutoscaler")[0]["spec"]["scaleTargetRef"]
                            .__setitem__("name", "other")),
    "no pdb": break_(lambda d: d.remove(of_kind(d, "PodDisruptionBudget")[0])),
}


@pytest.mark.parametrize("name", sorted(BREAKS))
def test_invariants_fail_on_broken_copy(name):
    docs = BREAKS[name](copy.deepcopy(load_all()))
    assert invariant_problems(docs), "%s went unnoticed" % name
