"""The README's Python samples run as written, against a real beanstalkd.

Each ```python block of README.md runs in its own interpreter (``-X dev``,
warnings as errors, so an unclosed socket is a ResourceWarning that fails it)
against a fresh server, with the sample's ``("127.0.0.1", 11300)`` replaced by
that server's address. Afterwards the server must show that the sample did
its work: at least one job put, none left reserved or buried.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from tools.beanstalkd import running_beanstalkd

import beanproto_sync

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parent.parent / "README.md"
ADDRESS = '("127.0.0.1", 11300)'

#: Runs a sample as ``__main__``, then drops everything it left behind, so
#: an object it never closed is finalized (and warns) while warnings count.
HARNESS = """
import gc, runpy, sys
runpy.run_path(sys.argv[1], run_name="__main__")
gc.collect()
"""


def samples() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", README.read_text(), flags=re.M | re.S)


def sample_id(code: str) -> str:
    imports = re.findall(r"^import (beanproto\w*)", code, flags=re.M)
    return imports[0] if imports else code.splitlines()[0]


def test_the_readme_has_its_samples() -> None:
    found = [sample_id(code) for code in samples()]
    assert found == [
        "beanproto_sync",
        "beanproto_trio",
        "beanproto_asyncio",
        "beanproto_anyio",
        "beanproto_sync",  # batches and pipelines
        "beanproto_asyncio",
        "beanproto_sync",  # a worker
        "beanproto_sync",  # a pool
        "beanproto",
    ]


@pytest.mark.parametrize("code", samples(), ids=sample_id)
def test_sample_runs_as_written(code: str, tmp_path: Path) -> None:
    assert ADDRESS in code, "every sample talks to the server on the default address"
    with running_beanstalkd() as server:
        script = tmp_path / "sample.py"
        script.write_text(code.replace(ADDRESS, repr(server.address)))
        done = subprocess.run(
            [sys.executable, "-X", "dev", "-bb", "-W", "error", "-c", HARNESS, str(script)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert done.stderr == ""
        assert done.stdout
        with beanproto_sync.Client(server.address) as client:
            stats = client.stats()
    assert stats["total-jobs"] >= 1
    assert stats["current-jobs-reserved"] == 0
    assert stats["current-jobs-buried"] == 0


def test_sans_io_sample_prints_what_its_comment_says(tmp_path: Path) -> None:
    (code,) = [c for c in samples() if sample_id(c) == "beanproto"]
    with running_beanstalkd() as server:
        script = tmp_path / "sample.py"
        script.write_text(code.replace(ADDRESS, repr(server.address)))
        done = subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, timeout=30, check=True
        )
    using, inserted, ok = done.stdout.splitlines()
    assert using == "Using(tube='emails')"
    assert inserted == "Inserted(id=1)"
    assert ok.startswith("Ok(data={")
