#!/usr/bin/env bash
# Run everything CI runs: lint, type checks, the documentation build (Sphinx,
# warnings as errors) and benchmark smoke runs (once, in .venv), then the
# whole pytest suite on every CPython 3.10-3.13 this machine has, against
# beanstalkd 1.12 and 1.13:
#
# - per Python, the tests that need no server ("not integration": core unit
#   tests, Hypothesis properties, a short fuzz run, packaging) run once, and
#   the integration tests (real beanstalkd servers the fixtures start on free
#   ports and stop by pid) run once per server version;
# - each Python has its own virtualenv (.venv for the one that made it,
#   .venvs/3.X for the others); 3.10, the floor in pyproject.toml, must be
#   among them;
# - beanstalkd 1.12 is the machine's (Debian bookworm's package), 1.13 is
#   Debian trixie's, fetched once into .cache/ (scripts/beanstalkd-1.13.sh);
# - branch coverage is measured in .venv's runs and must reach 90 %.
#
# Extra arguments go to every pytest run (bash scripts/test.sh -k stats -x).
# TEST_PYTHONS="3.11" and TEST_SERVERS="1.12" narrow the matrix for a quick
# local run (the 3.10 floor is then not enforced); CI sets neither.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
export PYTHONDONTWRITEBYTECODE=1
if ! command -v tmux >/dev/null 2>&1; then
    # tests/test_cli.py runs `beanproto top` in a real terminal.
    echo "==> installing tmux (apt-get)"
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq tmux >/dev/null
fi
start=$SECONDS

echo "==> ruff"
.venv/bin/python -m ruff check .
.venv/bin/python -m ruff format --check . >/dev/null
echo "==> mypy --strict"
.venv/bin/python -m mypy
echo "==> docs (sphinx -W)"
.venv/bin/python -m sphinx -W --keep-going -q -E -b html docs .cache/docs/html
echo "==> benchmark smoke runs (bench/bench_sync.py --quick; --quick --pipeline --large)"
.venv/bin/python bench/bench_sync.py --quick >/dev/null
.venv/bin/python bench/bench_sync.py --quick --pipeline --large >/dev/null
echo "==> benchmark smoke runs (bench/bench_async.py --quick; --quick --pipeline --shared)"
.venv/bin/python bench/bench_async.py --quick >/dev/null
.venv/bin/python bench/bench_async.py --quick --pipeline --shared >/dev/null
echo "==> benchmark smoke run (bench/bench_pool.py --quick)"
.venv/bin/python bench/bench_pool.py --quick >/dev/null
echo "==> benchmark smoke run (bench/callgrind.py --smoke)"
.venv/bin/python bench/callgrind.py --smoke >/dev/null

# -- the Pythons -------------------------------------------------------------------
version_of() { "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null; }
find_python() {  # find_python 3.X: an interpreter of that version, or nothing
    local want="$1" candidate
    local pyenv_root=""
    command -v pyenv >/dev/null 2>&1 && pyenv_root="$(pyenv root)"
    for candidate in $( { [ -n "$pyenv_root" ] && ls -d "$pyenv_root/versions/$want".*/bin/python 2>/dev/null; } | sort -V -r) \
        "$(command -v "python$want" 2>/dev/null || true)"; do
        if [ -n "$candidate" ] && [ "$(version_of "$candidate")" = "$want" ]; then
            echo "$candidate"
            return 0
        fi
    done
}
main_version="$(version_of .venv/bin/python)"
wanted_pythons="${TEST_PYTHONS:-3.10 3.11 3.12 3.13}"
pythons=()
declare -A venv_of=()
for v in $wanted_pythons; do
    if [ "$v" = "$main_version" ]; then
        venv_of[$v]=.venv
    else
        interpreter="$(find_python "$v")"
        if [ -z "$interpreter" ]; then
            echo "    (no Python $v on this machine)"
            continue
        fi
        ensure_venv ".venvs/$v" "$interpreter" test
        venv_of[$v]=".venvs/$v"
    fi
    pythons+=("$v")
done
if [ -z "${TEST_PYTHONS:-}" ] && [ -z "${venv_of[3.10]:-}" ]; then
    echo "error: Python 3.10, the floor of requires-python, is not on this machine:" >&2
    echo "       install it (pyenv install 3.10, or a python3.10 on PATH) and rerun" >&2
    exit 1
fi
[ "${#pythons[@]}" -gt 0 ] || { echo "error: none of $wanted_pythons found" >&2; exit 1; }

# -- the servers -------------------------------------------------------------------
machine_beanstalkd="$(.venv/bin/python -c 'from tools.beanstalkd import beanstalkd_path; print(beanstalkd_path())')"
declare -A server_of=()
for s in ${TEST_SERVERS:-1.12 1.13}; do
    case "$s" in
        1.13) binary="$(bash scripts/beanstalkd-1.13.sh | tail -n1)" ;;
        *) binary="$machine_beanstalkd" ;;
    esac
    got="$("$binary" -v 2>&1 || true)"
    if [ "$got" != "beanstalkd $s" ]; then
        echo "error: need beanstalkd $s for the integration tests, but $binary -v says: $got" >&2
        exit 1
    fi
    server_of[$s]="$binary"
done
servers=(${TEST_SERVERS:-1.12 1.13})

# -- pytest ------------------------------------------------------------------------
results=".cache/results"
rm -rf "$results"
mkdir -p "$results"
failed=()
runs=()
cov_started=""
pytest_run() {  # pytest_run PYTHON NAME [ENV=VALUE...] -- PYTEST ARGS
    local v="$1" name="$2"
    shift 2
    local envs=()
    while [ "$1" != "--" ]; do envs+=("$1"); shift; done
    shift
    local cov=()
    if [ "${venv_of[$v]}" = .venv ]; then
        cov=(--cov --cov-report= --cov-fail-under=0)
        [ -n "$cov_started" ] && cov+=(--cov-append)
        cov_started=1
    fi
    runs+=("${v}__$name")
    echo "==> pytest: Python $v, $name"
    # -b: bytes/str mix-ups warn, and pytest turns every warning into an error.
    # The outer timeout is a backstop for a hang pytest-timeout cannot break;
    # SIGINT lets the fixtures stop their servers.
    local rc=0
    env "${envs[@]}" timeout -s INT -k 60 1800 "${venv_of[$v]}/bin/python" -b -m pytest -q \
        --junitxml="$results/${v}__$name.xml" "${cov[@]}" "$@" "${extra[@]}" || rc=$?
    # 5: nothing selected (only possible with extra arguments such as -k).
    if [ "$rc" -ne 0 ] && ! { [ "$rc" -eq 5 ] && [ "${#extra[@]}" -gt 0 ]; }; then
        failed+=("Python $v, $name (exit $rc)")
    fi
}
extra=("$@")
for v in "${pythons[@]}"; do
    pytest_run "$v" unit -- -m "not integration"
    for s in "${servers[@]}"; do
        pytest_run "$v" "beanstalkd-$s" "BEANSTALKD=${server_of[$s]}" -- -m integration
    done
done

echo "==> coverage (the .venv runs, Python $main_version)"
if [ -n "$cov_started" ]; then
    .venv/bin/python -m coverage report || failed+=("coverage below the floor")
fi

echo "==> summary ($(( (SECONDS - start) / 60 )) min $(( (SECONDS - start) % 60 )) s)"
.venv/bin/python scripts/summary.py "$results" "${runs[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
    printf 'FAILED: %s\n' "${failed[@]}" >&2
    exit 1
fi
echo "all passed"
