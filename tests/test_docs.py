"""The documentation's examples run as written, against a real beanstalkd.

Every ``.. code-block:: python`` of docs/**/*.rst runs in its own interpreter
(``-X dev``, warnings as errors, so an unclosed socket is a ResourceWarning
that fails it) against a fresh server, as tests/test_readme.py runs the
README's samples: ``("127.0.0.1", 11300)`` is replaced by that server's
address, and ``("127.0.0.1", 11301)`` (the second server of the pool
examples) by a second fresh server's. Afterwards the servers must show that
the example did its work and cleaned up: at least one job put, none left
reserved or buried.

Every ``.. code-block:: console`` of docs/cli.rst runs too, one ``$ ...``
line after another, against a fresh server: each line goes to ``bash -c``
with ``beanproto`` on ``PATH`` being this interpreter's ``beanproto_cli``
with ``-s HOST:PORT`` of that server, and must exit with 0. The ``top``
example is a ``.. code-block:: text`` block, not run: it is an interactive
curses view (tests/test_cli.py drives it in tmux).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shlex
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from tools.beanstalkd import Server, running_beanstalkd

import beanproto_sync

pytestmark = pytest.mark.integration

DOCS = Path(__file__).resolve().parent.parent / "docs"
ADDRESS = '("127.0.0.1", 11300)'
SECOND_ADDRESS = '("127.0.0.1", 11301)'

#: Runs an example as ``__main__``, then drops everything it left behind, so
#: an object it never closed is finalized (and warns) while warnings count.
HARNESS = """
import gc, runpy, sys
runpy.run_path(sys.argv[1], run_name="__main__")
gc.collect()
"""

_BLOCK = re.compile(r"^\.\. code-block:: (\w+)\n((?:\n|[ \t]+\S.*\n)+)", re.M)


def code_blocks(language: str) -> list[tuple[str, str]]:
    """``(where, code)`` of every block of ``language`` in the docs, in order."""
    found = []
    for page in sorted(DOCS.rglob("*.rst")):
        text = page.read_text()
        for match in _BLOCK.finditer(text):
            if match.group(1) == language:
                line = text.count("\n", 0, match.start()) + 1
                found.append((f"{page.relative_to(DOCS)}:{line}", textwrap.dedent(match.group(2))))
    return found


def block_id(block: tuple[str, str]) -> str:
    return block[0]


PYTHON = code_blocks("python")
CONSOLE = code_blocks("console")


def test_the_docs_have_their_examples() -> None:
    pages = {where.split(":")[0] for where, _ in PYTHON}
    assert len(PYTHON) >= 10
    assert {"quickstart.rst", "clients.rst", "failures.rst", "workers.rst"} <= pages
    assert len(CONSOLE) >= 3
    assert all(where.startswith("cli.rst:") for where, _ in CONSOLE)


def test_the_block_finder_finds_what_is_there_and_nothing_else() -> None:
    text = ".. code-block:: python\n\n   print(1)\n\n   print(2)\nafter\n"
    (match,) = _BLOCK.finditer(text)
    assert textwrap.dedent(match.group(2)).strip() == "print(1)\n\nprint(2)"


@contextlib.contextmanager
def servers_for(code: str) -> Iterator[list[Server]]:
    """A fresh server, and a second one when the code names the second address."""
    with contextlib.ExitStack() as stack:
        servers = [stack.enter_context(running_beanstalkd())]
        if SECOND_ADDRESS in code:
            servers.append(stack.enter_context(running_beanstalkd()))
        yield servers


def run_example(
    code: str, servers: list[Server], tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    code = code.replace(ADDRESS, repr(servers[0].address))
    if len(servers) > 1:
        code = code.replace(SECOND_ADDRESS, repr(servers[1].address))
    script = tmp_path / "example.py"
    script.write_text(code)
    return subprocess.run(
        [sys.executable, "-X", "dev", "-bb", "-W", "error", "-c", HARNESS, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def server_state(servers: list[Server]) -> tuple[int, int, int]:
    """Jobs ever put, jobs reserved now and jobs buried now, over ``servers``."""
    put = reserved = buried = 0
    for server in servers:
        with beanproto_sync.Client(server.address) as client:
            stats = client.stats()
        put += stats["total-jobs"]
        reserved += stats["current-jobs-reserved"]
        buried += stats["current-jobs-buried"]
    return put, reserved, buried


def check_example(code: str, tmp_path: Path) -> None:
    assert ADDRESS in code, "every example talks to the server on the default address"
    with servers_for(code) as servers:
        done = run_example(code, servers, tmp_path)
        assert done.returncode == 0, done.stderr
        assert done.stderr == ""
        put, reserved, buried = server_state(servers)
    assert put >= 1
    assert reserved == 0, "an example left a job reserved"
    assert buried == 0, "an example left a job buried"


@pytest.mark.parametrize("block", PYTHON, ids=block_id)
def test_python_example_runs_as_written(block: tuple[str, str], tmp_path: Path) -> None:
    _, code = block
    if "import beanproto_anyio" in code and importlib.util.find_spec("beanproto_anyio") is None:
        pytest.skip("beanproto_anyio is not importable yet")
    check_example(code, tmp_path)


@pytest.mark.parametrize(
    "code",
    [
        pytest.param(f"import beanproto_sync\n{ADDRESS}\nprint('nothing put')\n", id="no-job"),
        pytest.param(
            "import beanproto_sync\n"
            f"with beanproto_sync.Client({ADDRESS}) as client:\n"
            "    client.bury(client.reserve(timeout=1) if client.put('x') else 0)\n"
            "print('left buried')\n",
            id="left-buried",
        ),
        pytest.param(
            f"import beanproto_sync\nclient = beanproto_sync.Client({ADDRESS})\n"
            "client.put('x')\nprint('never closed')\n",
            id="unclosed",
        ),
        pytest.param(f"import warnings\n{ADDRESS}\nwarnings.warn('x')\n", id="warns"),
        pytest.param(f"{ADDRESS}\nraise SystemExit(1)\n", id="fails"),
    ],
)
def test_the_check_can_fail(code: str, tmp_path: Path) -> None:
    with pytest.raises(AssertionError):
        check_example(code, tmp_path)


def console_commands(block: str) -> list[str]:
    commands = [line[2:] for line in block.splitlines() if line.startswith("$ ")]
    assert commands, "a console block without a $ line"
    return commands


def make_beanproto(bin_dir: Path, server: Server) -> None:
    """``beanproto`` on ``PATH``: this interpreter's command, on ``server``."""
    host, port = server.address
    bin_dir.mkdir()
    script = bin_dir / "beanproto"
    script.write_text(
        f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m beanproto_cli -s {host}:{port} "$@"\n'
    )
    script.chmod(0o755)


@pytest.mark.parametrize("block", CONSOLE, ids=block_id)
def test_console_example_runs_as_written(block: tuple[str, str], tmp_path: Path) -> None:
    _, text = block
    commands = console_commands(text)
    assert all(shlex.split(c)[0] in ("beanproto", "printf") for c in commands)
    with running_beanstalkd() as server:
        make_beanproto(tmp_path / "bin", server)
        env = {**os.environ, "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}"}
        for command in commands:
            done = subprocess.run(
                ["bash", "-o", "pipefail", "-c", command],
                capture_output=True,
                text=True,
                timeout=60,
                env=env,
                stdin=subprocess.DEVNULL,
                check=False,
            )
            assert done.returncode == 0, f"$ {command}\n{done.stdout}{done.stderr}"
            assert done.stdout, f"$ {command} printed nothing"
        put, reserved, buried = server_state([server])
    assert put >= 1
    assert reserved == 0
    assert buried == 0
