"""What importing each package pulls in, checked in a fresh interpreter.

``beanproto`` is sans-I/O: it imports no networking or event loop. The
blocking and asyncio clients work without trio installed, so importing them
never imports it.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import beanproto_anyio
import beanproto_trio

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


#: Runs ``import PACKAGE`` with ``LIBRARY`` (or one of its submodules)
#: made unimportable, as if the extra were not installed.
WITHOUT_LIBRARY = """
import importlib.abc, json, sys

class Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "LIBRARY" or name.startswith("LIBRARY."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Missing())
try:
    import PACKAGE
except ImportError as exc:
    print(json.dumps([type(exc).__name__, exc.name, str(exc)]))
else:
    print(json.dumps(None))
"""

#: (client package, the library its extra installs, a submodule of it).
EXTRAS = [("beanproto_trio", "trio", "trio._core"), ("beanproto_anyio", "anyio", "anyio._core")]


def without(package: str, library: str) -> str:
    return WITHOUT_LIBRARY.replace("PACKAGE", package).replace("LIBRARY", library)


@pytest.mark.parametrize(("package", "library", "inner"), EXTRAS)
def test_a_client_without_its_library_says_to_install_the_extra(
    package: str, library: str, inner: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-c", without(package, library)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    kind, name, message = json.loads(result.stdout)
    assert kind == "ModuleNotFoundError"
    assert name == library
    assert f"pip install 'beanproto[{library}]'" in message


@pytest.mark.parametrize(("package", "library", "inner"), EXTRAS)
def test_a_missing_dependency_of_the_library_is_not_reported_as_the_extra(
    package: str, library: str, inner: str
) -> None:
    # The library importable, but something it imports is not: that error
    # stays as it is.
    script = without(package, library).replace(
        f'name == "{library}" or name.startswith("{library}.")', f'name == "{inner}"'
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    kind, name, message = json.loads(result.stdout)
    assert (kind, name) == ("ModuleNotFoundError", inner)
    assert f"beanproto[{library}]" not in message


def _imported_modules(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
    return modules


def test_the_anyio_client_is_built_on_the_public_kit_alone() -> None:
    """beanproto_anyio is the proof that an adapter needs no private module:
    it imports ``beanproto``, ``beanproto.client`` and its star-import
    ``beanproto.client.common``, never a ``_``-module of either."""
    package = Path(beanproto_anyio.__file__).parent
    used = set().union(*(_imported_modules(path) for path in package.glob("*.py")))
    ours = {name for name in used if name.split(".")[0] == "beanproto"}
    assert "beanproto.client" in ours
    private = {
        name
        for name in ours
        if any(p.startswith("_") and not p.startswith("__") for p in name.split("."))
    }
    assert private == set(), private
    # ... and the check can fail: the trio client does use private modules.
    trio_package = Path(beanproto_trio.__file__).parent
    trio_used = set().union(*(_imported_modules(p) for p in trio_package.glob("*.py")))
    assert any("._" in name for name in trio_used if name.startswith("beanproto."))
