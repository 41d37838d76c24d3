# Sourced by scripts/demo.sh and scripts/test.sh: installs what they need.
#
# - the Debian package beanstalkd, when no beanstalkd is on PATH;
# - a virtualenv in .venv (the main development one) with beanproto
#   (editable), the public trio and anyio extras, and the development
#   dependency groups of pyproject.toml (test, bench, docs; fuzz when
#   atheris installs).
#
# It also defines ensure_venv, which scripts/test.sh uses for one virtualenv
# per Python version (.venvs/3.X). Re-running is cheap: a virtualenv is
# reinstalled only when pyproject.toml changes.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "need root to run: $*" >&2; return 1; fi
}

if ! command -v beanstalkd >/dev/null 2>&1 && [ ! -x /usr/bin/beanstalkd ] && [ -z "${BEANSTALKD:-}" ]; then
    echo "==> installing beanstalkd (apt-get)"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq beanstalkd >/dev/null
fi

# ensure_venv DIR PYTHON GROUP...: DIR is a virtualenv made by PYTHON with
# beanproto installed editable with the trio and anyio extras and the given dependency
# groups (PEP 735, which needs pip >= 25.1: pip is upgraded first).
ensure_venv() {
    local dir="$1" python="$2"
    shift 2
    local stamp="$dir/.beanproto-installed"
    local want
    want="$( (cat pyproject.toml; echo "$*") | sha256sum | cut -d' ' -f1)"
    if [ ! -x "$dir/bin/python" ]; then
        echo "==> creating $dir ($("$python" -V 2>&1))"
        if ! "$python" -m venv "$dir" 2>/dev/null; then
            DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq python3-venv >/dev/null
            rm -rf "$dir"
            "$python" -m venv "$dir"
        fi
    fi
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        echo "==> installing beanproto and its development groups ($*) into $dir"
        "$dir/bin/python" -m pip install -q --upgrade "pip>=25.1"
        local groups=()
        for group in "$@"; do groups+=(--group "$group"); done
        "$dir/bin/python" -m pip install -q -e ".[trio,anyio]" "${groups[@]}"
        echo "$want" > "$stamp"
    fi
}

ensure_venv .venv "${PYTHON:-python3}" test bench docs
if [ "$(cat .venv/.beanproto-fuzz-tried 2>/dev/null)" != "$(cat .venv/.beanproto-installed)" ]; then
    # atheris (the coverage-guided fuzzer) is optional: without it the short
    # fuzz run in the tests falls back to Hypothesis alone.
    .venv/bin/python -m pip install -q --group fuzz >/dev/null 2>&1 \
        || echo "    (atheris not installable here: the atheris fuzz run will be skipped)"
    cp .venv/.beanproto-installed .venv/.beanproto-fuzz-tried
fi
