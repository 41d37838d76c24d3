#!/usr/bin/env bash
# Run everything CI runs: lint, type checks, benchmark smoke runs, and the
# whole test suite (unit, property, fuzz smoke, and integration tests against
# a real beanstalkd that the fixtures start) with branch coverage.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
export PYTHONDONTWRITEBYTECODE=1

echo "==> ruff"
.venv/bin/python -m ruff check .
.venv/bin/python -m ruff format --check . >/dev/null
echo "==> mypy --strict"
.venv/bin/python -m mypy
echo "==> benchmark smoke run (bench/bench_sync.py --quick)"
.venv/bin/python bench/bench_sync.py --quick >/dev/null
echo "==> benchmark smoke run (bench/bench_async.py --quick)"
.venv/bin/python bench/bench_async.py --quick >/dev/null
echo "==> pytest"
# -b: bytes/str mix-ups warn, and pytest turns every warning into an error.
exec .venv/bin/python -b -m pytest --cov --cov-report=term --cov-fail-under=90 "$@"
