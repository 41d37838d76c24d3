"""What importing each package pulls in, checked in a fresh interpreter.

``beanproto`` is sans-I/O: it imports no networking or event loop. The
blocking and asyncio clients work without trio installed, so importing them
never imports it.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

I_O_MODULES = {"socket", "selectors", "asyncio", "trio"}


def modules_after(code: str) -> set[str]:
    """The names in ``sys.modules`` after running ``code`` in a fresh interpreter."""
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=30
    )
    return set(json.loads(result.stdout))


@pytest.fixture(scope="module")
def baseline() -> set[str]:
    """What the interpreter has imported before any of ours."""
    return modules_after("")


def test_core_imports_no_io(baseline: set[str]) -> None:
    loaded = modules_after("import beanproto") - baseline
    assert "beanproto" in loaded
    assert not I_O_MODULES & loaded


def test_sync_and_asyncio_clients_never_import_trio(baseline: set[str]) -> None:
    assert "trio" not in baseline
    loaded = modules_after("import beanproto_sync, beanproto_asyncio")
    assert {"beanproto_sync", "beanproto_asyncio", "asyncio"} <= loaded
    assert not {name for name in loaded if name == "trio" or name.startswith("trio.")}


def test_the_check_itself_sees_trio() -> None:
    assert "trio" in modules_after("import beanproto_trio")


#: Runs ``import beanproto_trio`` with ``trio`` (or one of its submodules)
#: made unimportable, as if the extra were not installed.
WITHOUT_TRIO = """
import importlib.abc, json, sys

class NoTrio(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "trio" or name.startswith("trio."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NoTrio())
try:
    import beanproto_trio
except ImportError as exc:
    print(json.dumps([type(exc).__name__, exc.name, str(exc)]))
else:
    print(json.dumps(None))
"""


def test_trio_client_without_trio_says_to_install_the_extra() -> None:
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_TRIO], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    kind, name, message = json.loads(result.stdout)
    assert kind == "ModuleNotFoundError"
    assert name == "trio"
    assert "pip install 'beanproto[trio]'" in message


def test_a_missing_dependency_of_trio_is_not_reported_as_trio() -> None:
    # trio importable, but something it imports is not: that error stays as it is.
    script = WITHOUT_TRIO.replace(
        'name == "trio" or name.startswith("trio.")', 'name == "trio._core"'
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    kind, name, message = json.loads(result.stdout)
    assert (kind, name) == ("ModuleNotFoundError", "trio._core")
    assert "beanproto[trio]" not in message
