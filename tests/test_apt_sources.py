"""The trixie source list the test command derives from the machine's own
apt sources (tools/apt_sources.py), on made-up sources files."""

from __future__ import annotations

from pathlib import Path

import pytest
from tools.apt_sources import derive_deb822, derive_one_line, host_codename, main, rename_suite

DEB822 = """\
Types: deb deb-src
# a comment the machine's file carries
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates bookworm-backports
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://vendor.example/apt
Suites: stable
Components: main

Types: deb
Enabled: no
URIs: http://mirror.example/debian
Suites: bookworm
Components: main

Types: deb-src
URIs: http://mirror.example/debian
Suites: bookworm
Components: main
"""


def test_deb822_keeps_the_mirrors_and_renames_the_suites() -> None:
    assert derive_deb822(DEB822, "bookworm") == [
        "Types: deb\n"
        "URIs: http://mirror.example/debian\n"
        "Suites: trixie trixie-updates\n"
        "Components: main contrib\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg",
        "Types: deb\n"
        "URIs: http://mirror.example/debian-security\n"
        "Suites: trixie-security\n"
        "Components: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg",
    ]


ONE_LINE = """\
# the classic format
deb http://mirror.example/debian bookworm main
deb [arch=amd64 signed-by=/etc/apt/k.gpg] http://mirror.example/debian bookworm-updates main
deb-src http://mirror.example/debian bookworm main
deb http://mirror.example/debian-security bookworm-security main  # trailing comment
deb http://vendor.example/apt stable main
"""


def test_one_line_entries_become_deb822_stanzas() -> None:
    assert derive_one_line(ONE_LINE, "bookworm") == [
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: trixie\nComponents: main",
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: trixie-updates\n"
        "Components: main\nArchitectures: amd64\nSigned-By: /etc/apt/k.gpg",
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: trixie-security\n"
        "Components: main",
    ]


@pytest.mark.parametrize(
    ("suite", "renamed"),
    [
        ("bookworm", "trixie"),
        ("bookworm-updates", "trixie-updates"),
        ("bookworm-security", "trixie-security"),
        ("bookworm-backports", None),
        ("bookwormish", None),
        ("stable", None),
    ],
)
def test_rename_suite(suite: str, renamed: str | None) -> None:
    assert rename_suite(suite, "bookworm") == renamed


def test_host_codename() -> None:
    assert host_codename('ID=debian\nVERSION_CODENAME="bookworm"\n') == "bookworm"
    assert host_codename("VERSION_CODENAME=trixie\n") == "trixie"
    assert host_codename("ID=debian\n") == "bookworm"


def test_main_needs_an_output_directory(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["apt_sources"]) == 2
    assert "usage" in capsys.readouterr().err


def test_main_writes_the_derived_list(tmp_path: Path) -> None:
    # This machine's real sources: whatever they are, the output parses back.
    code = main(["apt_sources", str(tmp_path)])
    if code != 0:
        pytest.skip("this machine's apt sources name no bookworm/trixie suite")
    text = (tmp_path / "trixie.sources").read_text()
    assert "Suites: trixie" in text
    assert derive_deb822(text, "trixie")
