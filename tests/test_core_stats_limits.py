"""A hostile ``stats`` reply costs what a ``list-tubes`` of its size costs.

Issue 7, item 1.6: a reply with 20,000 distinct keys took seconds in one
``next_event()`` (the layout learner compiled one regular expression per
layout, with a group per key), 100,000 keys a minute and 300 MiB. The
learner now only learns documents that look like the server's; everything
else is parsed line by line, in linear time.
"""

from __future__ import annotations

import itertools
import time
import tracemalloc
from collections.abc import Callable, Iterable

import pytest

import beanproto as bp
from beanproto import _stats
from core_helpers import ok_reply

_fresh = itertools.count()


def hostile_stats(keys: int, style: str) -> bytes:
    """A ``stats`` document of ``keys`` distinct keys the server never sends,
    with a prefix never used before (so nothing learnt can match it)."""
    prefix = b"k%d-" % next(_fresh)
    lines: Iterable[bytes]
    if style == "int":
        lines = (b"%s%07d: %d\n" % (prefix, i, i) for i in range(keys))
    elif style == "quoted":
        lines = (b'%s%07d: "v%d"\n' % (prefix, i, i) for i in range(keys))
    else:  # the server's own keys first, then the flood
        head = b"pid: 1\nversion: 1.12\ndraining: false\nrusage-utime: 0.5\n"
        lines = itertools.chain([head], (b"%s%07d: x\n" % (prefix, i) for i in range(keys)))
    return b"---\n" + b"".join(lines)


def tube_list(size: int) -> bytes:
    """A ``list-tubes`` document of about ``size`` bytes."""
    count = size // len(b"- tube-00000000\n") + 1
    return b"---\n" + b"".join(b"- tube-%08d\n" % i for i in range(count))


def timed_event(command: bp.Command, document: bytes) -> tuple[float, bp.Event]:
    """Seconds spent in the one ``next_event()`` that parses ``document``."""
    conn = bp.Connection()
    conn.send(command)
    conn.receive_data(ok_reply(document))
    start = time.perf_counter()
    event = conn.next_event()
    seconds = time.perf_counter() - start
    assert isinstance(event, bp.Event)
    return seconds, event


def peak_bytes(parse: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        parse()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("style", ["int", "quoted", "server-then-flood"])
def test_20000_hostile_keys_parse_in_linear_time(style: str) -> None:
    document = hostile_stats(20_000, style)
    seconds, event = timed_event(bp.Stats(), document)
    assert isinstance(event, bp.Ok)
    assert isinstance(event.data, dict)
    assert len(event.data) >= 20_000
    assert seconds < 1.0  # took 2 to 10 s before
    # And within a few times a list-tubes of the same size (best of three,
    # so a scheduling hiccup does not decide).
    listing = tube_list(len(document))
    reference = min(timed_event(bp.ListTubes(), listing)[0] for _ in range(3))
    hostile = min(timed_event(bp.Stats(), hostile_stats(20_000, style))[0] for _ in range(3))
    assert hostile < 5 * reference + 0.05, (hostile, reference)


def test_hostile_keys_are_never_learnt() -> None:
    _stats._STATS.plan = None
    timed_event(bp.Stats(), hostile_stats(20_000, "int"))
    assert _stats._STATS.plan is None
    # A document too large to be the server's is not learnt either.
    long_value = b"---\nhostname: " + b"h" * _stats.LEARN_MAX_BYTES + b"\n"
    timed_event(bp.Stats(), long_value)
    assert _stats._STATS.plan is None
    # The server's own layout still is.
    timed_event(bp.Stats(), b"---\npid: 1\nversion: 1.12\ndraining: false\n")
    assert _stats._STATS.plan is not None


def test_a_few_unknown_keys_are_still_learnt() -> None:
    # A newer server adds a handful of keys: its layout gets the fast path.
    document = b"---\npid: 1\n" + b"".join(b"new-key-%d: %d\n" % (i, i) for i in range(16))
    _stats._STATS.plan = None
    first = timed_event(bp.Stats(), document)[1]
    plan = _stats._STATS.plan
    assert plan is not None
    assert isinstance(first, bp.Ok)
    assert plan.parse(document) == first.data
    too_many = document + b"new-key-16: 16\n"
    _stats._STATS.plan = None
    timed_event(bp.Stats(), too_many)
    assert _stats._STATS.plan is None


def test_hostile_keys_take_memory_in_proportion() -> None:
    document = hostile_stats(20_000, "int")
    listing = tube_list(len(document))
    stats_peak = peak_bytes(lambda: timed_event(bp.Stats(), document))
    list_peak = peak_bytes(lambda: timed_event(bp.ListTubes(), listing))
    assert stats_peak < 3 * list_peak, (stats_peak, list_peak)
