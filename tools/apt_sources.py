"""Derive a Debian trixie source list from this machine's own apt sources.

The test command runs the integration tests against beanstalkd 1.13 too,
which is Debian trixie's package. It fetches that package with
``apt-get download`` from a private apt state (see scripts/beanstalkd-1.13.sh)
whose source list comes from here: the machine's own entries, with the
release's suites renamed (``bookworm`` -> ``trixie``, ``bookworm-updates`` ->
``trixie-updates``, ``bookworm-security`` -> ``trixie-security``). No mirror
is named in the repository: whatever mirror, proxy or snapshot the machine
uses is kept. Entries for other suites (third-party repositories) and source
(``deb-src``) entries are dropped.

Both formats are read: deb822 (``/etc/apt/sources.list.d/*.sources``) and
one-line (``/etc/apt/sources.list``, ``sources.list.d/*.list``).

Usage: ``python -m tools.apt_sources OUT_DIR`` writes ``OUT_DIR/trixie.sources``
(deb822) and prints how many entries it derived; it fails when there are none.
"""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["derive_deb822", "derive_one_line", "host_codename", "main", "rename_suite"]

TARGET = "trixie"

#: The suites of a release that are renamed; any other suite is dropped.
SUFFIXES = ("", "-updates", "-security")


def host_codename(os_release: str) -> str:
    """``VERSION_CODENAME`` from ``/etc/os-release`` text, else ``bookworm``."""
    for line in os_release.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "VERSION_CODENAME" and value.strip().strip("\"'"):
            return value.strip().strip("\"'")
    return "bookworm"


def rename_suite(suite: str, codename: str) -> str | None:
    """``bookworm-security`` -> ``trixie-security``; None for a suite of no release of ours."""
    for suffix in SUFFIXES:
        if suite == codename + suffix:
            return TARGET + suffix
    return None


def _stanzas(text: str) -> list[list[str]]:
    stanzas: list[list[str]] = [[]]
    for line in text.splitlines():
        if line.strip():
            stanzas[-1].append(line)
        elif stanzas[-1]:
            stanzas.append([])
    return [s for s in stanzas if s]


def derive_deb822(text: str, codename: str) -> list[str]:
    """The trixie stanzas for one deb822 ``.sources`` file."""
    out = []
    for stanza in _stanzas(text):
        fields: dict[str, str] = {}
        for line in stanza:
            if line.startswith("#") or line[:1].isspace():
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if fields.get("enabled", "yes").lower() == "no":
            continue
        if "deb" not in fields.get("types", "").split():
            continue
        suites = [s for s in (rename_suite(x, codename) for x in fields["suites"].split()) if s]
        if not suites:
            continue
        lines = []
        for line in stanza:
            if line.startswith("#"):
                continue
            key = line.partition(":")[0].strip().lower()
            if key == "types":
                lines.append("Types: deb")
            elif key == "suites":
                lines.append("Suites: " + " ".join(suites))
            else:
                lines.append(line)
        out.append("\n".join(lines))
    return out


def derive_one_line(text: str, codename: str) -> list[str]:
    """The trixie entries of a one-line ``sources.list``, as deb822 stanzas."""
    out = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        words = line.split()
        if not words or words[0] != "deb":
            continue
        options: list[str] = []
        rest = words[1:]
        if rest and rest[0].startswith("["):
            joined = " ".join(rest)
            inside, _, after = joined[1:].partition("]")
            options = inside.split()
            rest = after.split()
        if len(rest) < 2:
            continue
        uri, suite, components = rest[0], rest[1], rest[2:]
        renamed = rename_suite(suite, codename)
        if renamed is None:
            continue
        lines = ["Types: deb", f"URIs: {uri}", f"Suites: {renamed}"]
        if components:
            lines.append("Components: " + " ".join(components))
        for option in options:
            key, _, value = option.partition("=")
            name = {"signed-by": "Signed-By", "arch": "Architectures"}.get(key.lower())
            if name:
                lines.append(f"{name}: {value.replace(',', ' ')}")
        out.append("\n".join(lines))
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m tools.apt_sources OUT_DIR", file=sys.stderr)
        return 2
    etc = Path("/etc/apt")
    os_release = Path("/etc/os-release")
    codename = host_codename(os_release.read_text() if os_release.exists() else "")
    stanzas: list[str] = []
    one_line = [etc / "sources.list", *sorted((etc / "sources.list.d").glob("*.list"))]
    for path in one_line:
        if path.exists():
            stanzas += derive_one_line(path.read_text(), codename)
    for path in sorted((etc / "sources.list.d").glob("*.sources")):
        stanzas += derive_deb822(path.read_text(), codename)
    if not stanzas:
        print(
            f"no apt source of this machine names the suites {codename}, {codename}-updates "
            f"or {codename}-security: cannot derive a {TARGET} source list",
            file=sys.stderr,
        )
        return 1
    out = Path(argv[1])
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{TARGET}.sources").write_text("\n\n".join(stanzas) + "\n")
    print(f"{len(stanzas)} {TARGET} source entries derived from this machine's ({codename})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
