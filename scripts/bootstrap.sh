# Sourced by scripts/demo.sh and scripts/test.sh: installs what they need.
#
# - the Debian package beanstalkd, when no beanstalkd is on PATH;
# - a virtualenv in .venv with beanproto (editable) and its test extras.
# Re-running is cheap: the packages are reinstalled only when pyproject.toml
# changes.
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

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    echo "==> creating .venv"
    if ! "$PYTHON" -m venv .venv 2>/dev/null; then
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq python3-venv >/dev/null
        "$PYTHON" -m venv .venv
    fi
fi

stamp=".venv/.beanproto-installed"
want="$(cat pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "==> installing beanproto and its test dependencies into .venv"
    .venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
    .venv/bin/python -m pip install -q -e ".[test,trio,bench]"
    # atheris (the coverage-guided fuzzer) is optional: without it the short
    # fuzz run in the tests falls back to Hypothesis alone.
    .venv/bin/python -m pip install -q -e ".[fuzz]" >/dev/null 2>&1 \
        || echo "    (atheris not installable here: the atheris fuzz run will be skipped)"
    echo "$want" > "$stamp"
fi
