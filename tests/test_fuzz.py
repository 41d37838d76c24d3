"""The fuzz harness (fuzz/harness.py) under Hypothesis, and its atheris
driver (fuzz/fuzz_receive.py) for a short bounded run."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import harness  # fuzz/ is on the path (pytest pythonpath, mypy_path)
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import beanproto as bp

FUZZ_DIR = Path(__file__).resolve().parent.parent / "fuzz"

# -- the harness itself ------------------------------------------------------------


def test_seeds_are_valid_conversations() -> None:
    outcomes = [harness.check(seed) for seed in harness.seeds()]
    # Every seed but the last (a line too long for its limits) is answered
    # without error, and between them they reach every kind of reply.
    assert [outcome.error for outcome in outcomes[:-1]] == [None] * (len(outcomes) - 1)
    assert isinstance(outcomes[-1].error, bp.RemoteProtocolError)
    seen = {type(event) for outcome in outcomes for event in outcome.events}
    assert {bp.Inserted, bp.Reserved, bp.Found, bp.Ok, bp.Using, bp.ConnectionClosed} <= seen


def test_encode_and_check_agree() -> None:
    put = [type(c) for c in harness.COMMANDS].index(bp.Put)
    data = harness.encode([put, put], b"INSERTED 5\r\nINSERTED 6\r\n", sizes=[1, 2, 3])
    assert harness.check(data) == harness.Outcome([bp.Inserted(id=5), bp.Inserted(id=6)], None)
    # The same conversation, closed early by the server.
    data = harness.encode([put, put], b"INSERTED 5\r\n", eof=True, buffered=True)
    outcome = harness.check(data)
    assert outcome.events == [bp.Inserted(id=5)]
    assert isinstance(outcome.error, bp.ConnectionClosedError)


def test_check_reports_wrong_behaviour() -> None:
    # The harness is not vacuous: a reply to the wrong command is an error
    # outcome, and an empty input is simply nothing.
    delete = [type(c) for c in harness.COMMANDS].index(bp.Delete)
    outcome = harness.check(harness.encode([delete], b"INSERTED 1\r\n"))
    assert outcome.events == []
    assert isinstance(outcome.error, bp.UnknownResponseError)
    assert harness.check(b"") == harness.Outcome([], None)


def test_allowed_table_covers_every_command() -> None:
    assert {type(command) for command in harness.COMMANDS} == set(harness.ALLOWED)
    assert len(harness.ALLOWED) == 24


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=600))
def test_harness_on_any_bytes(data: bytes) -> None:
    outcome = harness.check(data)
    assert all(isinstance(event, bp.Event) for event in outcome.events)


#: Pieces of replies, so that random inputs reach past the status line.
_TOKENS = st.sampled_from(
    [
        b"RESERVED 1 ",
        b"FOUND 2 ",
        b"OK ",
        b"INSERTED ",
        b"USING ",
        b"WATCHING ",
        b"KICKED",
        b"NOT_FOUND",
        b"0",
        b"3",
        b"7",
        b"\r\n",
        b"---\n",
        b"- x\n",
        b"pid: 1\n",
        b"draining: true\n",
        b"\xff",
    ]
)


@settings(max_examples=500, deadline=None)
@given(
    head=st.binary(min_size=3, max_size=12),
    body=st.lists(st.one_of(_TOKENS, st.binary(max_size=3)), max_size=30).map(b"".join),
)
def test_harness_on_reply_like_bytes(head: bytes, body: bytes) -> None:
    outcome = harness.check(head + body)
    assert outcome.error is None or isinstance(outcome.error, bp.RemoteProtocolError)


# -- the atheris driver ------------------------------------------------------------


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris is not installed")
def test_atheris_short_run(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    assert harness.write_seeds(corpus) == len(harness.seeds())
    result = subprocess.run(
        [
            sys.executable,
            str(FUZZ_DIR / "fuzz_receive.py"),
            "-runs=3000",
            "-seed=1",
            "-max_len=512",
            str(corpus),
        ],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Done 3000 runs" in result.stderr
