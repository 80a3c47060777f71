#!/usr/bin/env bash
# tools/install-deps.sh: installs what a fresh Debian machine lacks to build
# and test medserve. Idempotent: does nothing when everything is present.
# Not root and something missing: names exactly what to install and fails.
set -u
DEB_PKGS="gcc make libcjson-dev libmicrohttpd-dev libcurl4-openssl-dev libpcre2-dev libutf8proc-dev clang-format python3 python3-pip curl bc nginx openssl"
PY_PKGS="pytest openai kubernetes_validate"   # PyPI tools the end-to-end tests use, by import name (no torch: fixtures are committed)

missing_deb=""
for p in $DEB_PKGS; do
    dpkg -s "$p" >/dev/null 2>&1 || missing_deb="$missing_deb $p"
done
if [ -n "$missing_deb" ]; then
    if [ "$(id -u)" -eq 0 ]; then
        echo "install-deps: apt-get install$missing_deb"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null && apt-get install -y -qq $missing_deb >/dev/null || {
            echo "install-deps: apt-get failed for:$missing_deb" >&2; exit 1; }
    else
        echo "install-deps: missing Debian packages:$missing_deb (run: sudo apt-get install$missing_deb)" >&2
        exit 1
    fi
fi

missing_py=""
for p in $PY_PKGS; do
    python3 -c "import $p" >/dev/null 2>&1 || missing_py="$missing_py $p"
done
if [ -n "$missing_py" ]; then
    echo "install-deps: pip install$missing_py"
    python3 -m pip install -q $missing_py 2>/dev/null || python3 -m pip install -q --break-system-packages $missing_py || {
        echo "install-deps: missing Python packages:$missing_py (run: python3 -m pip install$missing_py)" >&2; exit 1; }
fi
exit 0
