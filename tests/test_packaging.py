"""The wheel and the sdist, built offline from a copy of this checkout.

Checks what a user installs: the LICENSE file (MIT) in both, metadata naming
the four packages, the supported Pythons and frameworks, no invented project
URLs, and only the public ``trio`` extra (the test, bench and fuzz
dependencies are PEP 735 groups, which never reach the metadata). The sdist
leaves the tests out (see MANIFEST.in).
"""

from __future__ import annotations

import email.message
import email.parser
import importlib.metadata
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = (
    "beanproto",
    "beanproto_sync",
    "beanproto_trio",
    "beanproto_asyncio",
    "beanproto_anyio",
    "beanproto_cli",
)
PYTHONS = ("3.10", "3.11", "3.12", "3.13")

BUILD = """
import sys
from setuptools import build_meta
out = sys.argv[1]
build_meta.build_wheel(out)
build_meta.build_sdist(out)
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(wheel, sdist) built with the installed setuptools, without network."""
    version = importlib.metadata.version("setuptools")
    assert int(version.split(".")[0]) >= 77, f"setuptools {version}: PEP 639 needs >= 77"
    project = tmp_path_factory.mktemp("project")
    for name in ("pyproject.toml", "README.md", "LICENSE", "MANIFEST.in"):
        shutil.copy2(ROOT / name, project / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", ".*")
    for folder in ("src", "tests"):
        shutil.copytree(ROOT / folder, project / folder, ignore=ignore)
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [sys.executable, "-c", BUILD, str(out)],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return wheel, sdist


def parse(text: str) -> email.message.Message:
    return email.parser.Parser().parsestr(text)


def wheel_metadata(wheel: Path) -> tuple[email.message.Message, list[str]]:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
        return parse(archive.read(meta).decode()), names


def check_metadata(meta: email.message.Message) -> None:
    assert meta["Name"] == "beanproto"
    summary = meta["Summary"]
    for package in PACKAGES:
        assert package in summary.replace(",", " ").replace("(", " ").replace(")", " ").split()
    assert meta["Requires-Python"] == ">=3.10"
    assert meta["License-Expression"] == "MIT"
    assert meta.get_all("License-File") == ["LICENSE"]
    classifiers = meta.get_all("Classifier") or []
    assert "Framework :: AsyncIO" in classifiers
    assert "Framework :: Trio" in classifiers
    assert any(c.startswith("Development Status :: ") for c in classifiers)
    versions = {
        c.rsplit(" :: ", 1)[1]
        for c in classifiers
        if c.startswith("Programming Language :: Python :: 3.")
    }
    assert versions == set(PYTHONS)
    # PEP 639: the SPDX expression replaces the License :: classifiers.
    assert not [c for c in classifiers if c.startswith("License ::")]
    assert meta.get_all("Provides-Extra") == ["trio", "anyio"]
    assert meta.get_all("Requires-Dist") == [
        'trio>=0.22; extra == "trio"',
        'anyio>=4.10; extra == "anyio"',
    ]
    # No invented homepage or repository.
    assert meta.get_all("Project-URL") is None
    assert meta.get("Home-page") is None


def test_wheel_has_the_license_and_metadata(built: tuple[Path, Path]) -> None:
    meta, names = wheel_metadata(built[0])
    check_metadata(meta)
    license_path = next(n for n in names if n.endswith(".dist-info/licenses/LICENSE"))
    with zipfile.ZipFile(built[0]) as archive:
        assert archive.read(license_path).decode() == (ROOT / "LICENSE").read_text()
    top = {n.split("/", 1)[0] for n in names if ".dist-info/" not in n}
    assert top == set(PACKAGES)
    for package in PACKAGES:
        assert f"{package}/py.typed" in names


def test_license_is_mit_with_our_copyright() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n")
    assert "Copyright (c) 2026 the beanproto authors" in text


def test_sdist_has_the_license_and_leaves_the_tests_out(built: tuple[Path, Path]) -> None:
    with tarfile.open(built[1]) as archive:
        members = {m.name.split("/", 1)[1] for m in archive.getmembers() if "/" in m.name}
        root = archive.getnames()[0].split("/", 1)[0]
        pkg_info = archive.extractfile(f"{root}/PKG-INFO")
        license_file = archive.extractfile(f"{root}/LICENSE")
        assert pkg_info is not None and license_file is not None
        check_metadata(parse(pkg_info.read().decode()))
        assert license_file.read().decode() == (ROOT / "LICENSE").read_text()
    assert not [m for m in members if m.startswith("tests")]
    top = {m.split("/", 1)[0] for m in members}
    assert top == {
        "LICENSE",
        "MANIFEST.in",
        "PKG-INFO",
        "README.md",
        "pyproject.toml",
        "setup.cfg",
        "src",
    }
