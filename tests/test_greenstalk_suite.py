"""greenstalk 2.1.1's own test suite, as behaviours, on greenstalk and on beanproto_sync.

greenstalk's ``tests/test_greenstalk.py`` (tag v2.1.1) is the Python
conformance suite of the beanstalkd protocol. beanproto_sync must pass its
public-API tests unchanged, but that file cannot be fetched when our tests
run, so this module restates every behaviour those tests check, in our own
words: each upstream test has a test here (two for ``test_delays``, one for
both repr tests), named after what it checks, with the upstream name in its
docstring; a few tests go further (any binary body, bytes on a text client).
The six upstream tests of greenstalk's private ``_parse_response`` /
``_parse_chunk`` are left out (tests/test_sync_errors.py checks the same
replies through the public API with a scripted peer).

Each check is a scenario run twice through :mod:`side_by_side`: once with
greenstalk 2.1.1 itself and once with ``beanproto_sync``, and the two must
observe the same results. Where greenstalk's suite leans on a server of its
own (job ids from 1, zero counters, the tube list) each side gets a private
beanstalkd; elsewhere both share the test's server and use tubes of their own.
The checks that wait on the server's clock (delays, TTR, timeouts, pause)
run both sides at once and wait one second, not greenstalk's two or three.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
import typing
from typing import Any

import greenstalk
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tools.beanstalkd import Server

import beanproto_sync
from conftest import ServerPool
from side_by_side import MODULES, Side, SideBySide, strip_module

pytestmark = pytest.mark.integration

#: Slack for the waits on the server's clock: never early, at most this late.
LATE = 0.5


@pytest.fixture
def pair(server: Server) -> SideBySide:
    """Both modules on the test's server (TCP and unix socket)."""
    return SideBySide(server)


@pytest.fixture
def unix_pair(server_pool: ServerPool) -> SideBySide:
    """Both modules on the shared unix-socket server, for the waits on the
    server's clock (greenstalk runs those over a unix socket too)."""
    return SideBySide(server_pool.get("unix"))


def took(start: float, seconds: float) -> bool:
    """Whether the time since ``start`` is ``seconds``, give or take the slack."""
    elapsed = time.monotonic() - start
    assert seconds - 0.01 <= elapsed <= seconds + LATE, f"{elapsed:.3f}s, expected {seconds}s"
    return True


def declared_types(typed_dict: Any) -> dict[str, str]:
    """The value type greenstalk declares for each key of one of its
    ``Stats`` TypedDicts (``Literal["true", "false"]`` counts as ``str``)."""
    declared = {}
    for key, hint in typing.get_type_hints(typed_dict).items():
        if typing.get_origin(hint) is typing.Literal:
            (kind,) = {type(arg) for arg in typing.get_args(hint)}
            hint = kind
        declared[key] = hint.__name__
    return declared


def type_names(mapping: dict[str, Any]) -> dict[str, str]:
    return {key: type(value).__name__ for key, value in mapping.items()}


# -- put, reserve, priorities, tubes -------------------------------------------------


def test_use_put_watch_ignore_reserve_delete_round_trip(pair: SideBySide) -> None:
    """Upstream ``test_basic_usage``: a non-ASCII body through a tube chosen
    after connecting, reserved after ignoring ``default``."""
    body = "测试@example.com"

    def scenario(side: Side) -> tuple[int, int, bool, str]:
        tube = side.tube()
        c = side.client()
        c.use(tube)
        jid = c.put(body)
        watching = c.watch(tube)
        left = c.ignore("default")
        job = c.reserve()
        c.delete(job)
        with side.raises("NotFoundError"):
            c.peek(jid)
        return watching, left, job.id == jid, job.body

    assert pair.same(scenario) == (2, 1, True, body)


def test_lower_priority_number_is_reserved_first(pair: SideBySide) -> None:
    """Upstream ``test_put_priority``."""

    def scenario(side: Side) -> list[str]:
        tube = side.tube()
        c = side.client(use=tube, watch=tube)
        c.put("2", priority=2)
        c.put("1", priority=1)
        return [c.reserve().body, c.reserve().body]

    assert pair.same(scenario) == ["1", "2"]


def test_reserve_job_by_id_takes_it_once(pair: SideBySide) -> None:
    """Upstream ``test_reserve_job``: reserved jobs are neither reservable by
    id again nor handed out by ``reserve``, before or after their delete."""

    def scenario(side: Side) -> list[str]:
        tube = side.tube()
        c = side.client(use=tube, watch=tube)
        ids = [c.put("a"), c.put("b")]
        jobs = [c.reserve_job(jid) for jid in ids]
        for jid in ids:
            with side.raises("NotFoundError"):
                c.reserve_job(jid)
        with side.raises("TimedOutError"):
            c.reserve(timeout=0)
        for job in jobs:
            c.delete(job)
        with side.raises("TimedOutError"):
            c.reserve(timeout=0)
        assert [job.id for job in jobs] == ids
        return [job.body for job in jobs]

    assert pair.same(scenario) == ["a", "b"]


def test_constructor_use_and_watch_one_tube(pair: SideBySide) -> None:
    """Upstream ``test_initialize_with_tubes``: ``use=``/``watch=`` at
    construction; delete by id; a job put in an unwatched tube is not reserved."""

    def scenario(side: Side) -> str:
        tube, elsewhere = side.tube(), side.tube()
        c = side.client(use=tube, watch=tube)
        c.put("www.example.com")
        job = c.reserve()
        c.delete(job.id)
        c.use(elsewhere)
        c.put("")
        with side.raises("TimedOutError"):
            c.reserve(timeout=0)
        assert c.watching() == [tube]
        body: str = job.body
        return body

    assert pair.same(scenario) == "www.example.com"


def test_constructor_watches_several_tubes_and_drops_default(pair: SideBySide) -> None:
    """Upstream ``test_initialize_watch_multiple``: ``watch=[...]`` watches
    each tube, ignores ``default``, and jobs come in id order across tubes."""

    def scenario(side: Side) -> tuple[bool, list[str]]:
        first, second = side.tube(), side.tube()
        c = side.client(watch=[first, second])
        c.use(first)
        c.put("haskell")
        c.put("rust")
        c.use(second)
        c.put("python")
        bodies = [c.reserve(timeout=0).body for _ in range(3)]
        return set(c.watching()) == {first, second}, bodies

    assert pair.same(scenario) == (True, ["haskell", "rust", "python"])


def test_bytes_body_on_a_text_client_is_sent_as_is(pair: SideBySide) -> None:
    """The earlier form of upstream ``test_initialize_watch_multiple`` (and
    ``test_max_job_size``, ``test_drain_mode``) puts ``bytes`` on a utf-8 client."""

    def scenario(side: Side) -> str:
        tube = side.tube()
        c = side.client(use=tube, watch=tube)
        c.put(b"haskell")
        body: str = c.reserve(timeout=0).body
        return body

    assert pair.same(scenario) == "haskell"


def test_binary_body_round_trips_without_encoding(pair: SideBySide) -> None:
    """Upstream ``test_binary_jobs``: 4 KiB of random bytes, ``encoding=None``."""
    data = os.urandom(4096)

    def scenario(side: Side) -> bytes:
        tube = side.tube()
        c = side.client(encoding=None, use=tube, watch=tube)
        c.put(data)
        body: bytes = c.reserve().body
        return body

    assert pair.same(scenario) == data


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=3000) | st.sampled_from([b"\r\n", b"x\r\nput 0 0 1 1\r\n"]))
def test_any_binary_body_round_trips_like_greenstalk(pair: SideBySide, data: bytes) -> None:
    """``test_binary_jobs`` for any body (the shared server is safe to reuse:
    each example works in tubes of its own)."""

    def scenario(side: Side) -> tuple[bytes, bytes]:
        tube = side.tube()
        c = side.client(encoding=None, use=tube, watch=tube)
        jid = c.put(data)
        peeked: bytes = c.peek(jid).body
        job = c.reserve(timeout=0)
        c.delete(job)
        return peeked, job.body

    assert pair.same(scenario) == (data, data)


# -- waits on the server's clock ------------------------------------------------------


def test_delayed_put_becomes_ready_after_its_delay(unix_pair: SideBySide) -> None:
    """Upstream ``test_delays``, first part: ``put(delay=1)`` is reserved a
    second later."""

    def scenario(side: Side) -> tuple[str, bool]:
        tube = side.tube()
        c = side.client(use=tube, watch=tube)
        start = time.monotonic()
        c.put("delayed", delay=1)
        body: str = c.reserve().body
        return body, took(start, 1)

    assert unix_pair.same(scenario, parallel=True) == ("delayed", True)


def test_release_with_delay_then_bury(unix_pair: SideBySide) -> None:
    """Upstream ``test_delays``, second part: a job released with a delay is
    not reservable until then, a ``reserve`` with a timeout returns it as soon
    as it is ready, and a buried job is not reservable at all."""

    def scenario(side: Side) -> tuple[bool, bool]:
        tube = side.tube()
        c = side.client(use=tube, watch=tube)
        jid = c.put("job")
        job = c.reserve()
        start = time.monotonic()
        c.release(job, delay=1)
        with side.raises("TimedOutError"):
            c.reserve(timeout=0)
        again = c.reserve(timeout=3)
        waited = took(start, 1)
        c.bury(again)
        with side.raises("TimedOutError"):
            c.reserve(timeout=0)
        return again.id == jid, waited

    assert unix_pair.same(scenario, parallel=True) == (True, True)


def test_deadline_soon_and_touch_restarts_the_ttr(unix_pair: SideBySide) -> None:
    """Upstream ``test_ttr``: with ``ttr=2`` a second ``reserve`` raises
    ``DeadlineSoonError`` once the job has a second left; after ``touch``
    the job is out of that margin again (a ``reserve`` times out instead)."""

    def scenario(side: Side) -> bool:
        tube = side.tube()
        c = side.client(use=tube, watch=tube)
        c.put("two second ttr", ttr=2)
        start = time.monotonic()
        job = c.reserve()
        with side.raises("DeadlineSoonError"):
            c.reserve()
        waited = took(start, 1)
        c.touch(job)
        with side.raises("TimedOutError"):
            c.reserve(timeout=0)
        c.release(job)
        return waited

    assert unix_pair.same(scenario, parallel=True) is True


def test_reserve_with_timeout_raises_timed_out(unix_pair: SideBySide) -> None:
    """Upstream ``test_reserve_raises_on_timeout``."""

    def scenario(side: Side) -> bool:
        tube = side.tube()
        c = side.client(use=tube, watch=tube)
        start = time.monotonic()
        with side.raises("TimedOutError"):
            c.reserve(timeout=1)
        return took(start, 1)

    assert unix_pair.same(scenario, parallel=True) is True


def test_paused_tube_holds_its_jobs_for_the_pause(unix_pair: SideBySide) -> None:
    """Upstream ``test_pause_tube``."""

    def scenario(side: Side) -> tuple[str, bool]:
        tube = side.tube()
        c = side.client(use=tube, watch=tube)
        c.put("")
        start = time.monotonic()
        c.pause_tube(tube, 1)
        body: str = c.reserve().body
        return body, took(start, 1)

    assert unix_pair.same(scenario, parallel=True) == ("", True)


# -- peek ------------------------------------------------------------------------------


def test_peek_by_id(pair: SideBySide) -> None:
    """Upstream ``test_peek``."""

    def scenario(side: Side) -> tuple[bool, str]:
        tube = side.tube()
        c = side.client(use=tube, watch=tube)
        jid = c.put("job")
        job = c.peek(jid)
        return job.id == jid, job.body

    assert pair.same(scenario) == (True, "job")


def test_peek_of_a_missing_id_raises_not_found(pair: SideBySide) -> None:
    """Upstream ``test_peek_not_found`` (there: id 111 on an empty server;
    here: the id of a job just deleted, which no server reuses)."""

    def scenario(side: Side) -> bool:
        tube = side.tube()
        c = side.client(use=tube, watch=tube)
        jid = c.put("gone")
        c.delete(jid)
        with side.raises("NotFoundError"):
            c.peek(jid)
        return True

    assert pair.same(scenario) is True


def test_peek_ready(pair: SideBySide) -> None:
    """Upstream ``test_peek_ready``."""

    def scenario(side: Side) -> tuple[bool, str]:
        tube = side.tube()
        c = side.client(use=tube, watch=tube)
        jid = c.put("ready")
        job = c.peek_ready()
        return job.id == jid, job.body

    assert pair.same(scenario) == (True, "ready")


def test_peek_ready_with_only_a_delayed_job_raises_not_found(pair: SideBySide) -> None:
    """Upstream ``test_peek_ready_not_found``."""

    def scenario(side: Side) -> bool:
        tube = side.tube()
        c = side.client(use=tube, watch=tube)
        c.put("delayed", delay=10)
        with side.raises("NotFoundError"):
            c.peek_ready()
        return True

    assert pair.same(scenario) is True


def test_peek_delayed(pair: SideBySide) -> None:
    """Upstream ``test_peek_delayed``."""

    def scenario(side: Side) -> tuple[bool, str]:
        tube = side.tube()
        c = side.client(use=tube, watch=tube)
        jid = c.put("delayed", delay=10)
        job = c.peek_delayed()
        return job.id == jid, job.body

    assert pair.same(scenario) == (True, "delayed")


def test_peek_delayed_in_an_empty_tube_raises_not_found(pair: SideBySide) -> None:
    """Upstream ``test_peek_delayed_not_found``."""

    def scenario(side: Side) -> bool:
        tube = side.tube()
        c = side.client(use=tube, watch=tube)
        with side.raises("NotFoundError"):
            c.peek_delayed()
        return True

    assert pair.same(scenario) is True


def test_peek_buried(pair: SideBySide) -> None:
    """Upstream ``test_peek_buried``."""

    def scenario(side: Side) -> tuple[bool, str]:
        tube = side.tube()
        c = side.client(use=tube, watch=tube)
        jid = c.put("buried")
        c.bury(c.reserve())
        job = c.peek_buried()
        return job.id == jid, job.body

    assert pair.same(scenario) == (True, "buried")


def test_peek_buried_with_only_a_ready_job_raises_not_found(pair: SideBySide) -> None:
    """Upstream ``test_peek_buried_not_found``."""

    def scenario(side: Side) -> bool:
        tube = side.tube()
        c = side.client(use=tube, watch=tube)
        c.put("a ready job")
        with side.raises("NotFoundError"):
            c.peek_buried()
        return True

    assert pair.same(scenario) is True


# -- kick -------------------------------------------------------------------------------


def test_kick_moves_buried_jobs_before_delayed_ones(pair: SideBySide) -> None:
    """Upstream ``test_kick``: one buried and two delayed jobs; the first kick
    moves only the buried one, the second the two delayed ones."""

    def scenario(side: Side) -> list[int]:
        tube = side.tube()
        c = side.client(use=tube, watch=tube)
        c.put("a delayed job", delay=30)
        c.put("another delayed job", delay=45)
        c.put("a ready job")
        c.bury(c.reserve())
        return [c.kick(10), c.kick(10)]

    assert pair.same(scenario) == [1, 2]


def test_kick_job_makes_a_delayed_job_ready(pair: SideBySide) -> None:
    """Upstream ``test_kick_job``."""

    def scenario(side: Side) -> tuple[Any, bool]:
        tube = side.tube()
        c = side.client(use=tube, watch=tube)
        jid = c.put("a delayed job", delay=3600)
        kicked = c.kick_job(jid)
        return kicked, c.reserve(timeout=0).id == jid

    assert pair.same(scenario) == (None, True)


# -- stats ------------------------------------------------------------------------------


def test_stats_job_of_a_new_job(pair: SideBySide) -> None:
    """Upstream ``test_stats_job``: every key, value and type (the job's id
    and tube compared with the ones we know)."""

    def scenario(side: Side) -> tuple[dict[str, Any], dict[str, str]]:
        tube = side.tube()
        c = side.client(use=tube, watch=tube)
        jid = c.put("job")
        s = dict(c.stats_job(jid))
        types = type_names(s)
        s["id"], s["tube"] = s["id"] == jid, s["tube"] == tube
        return s, types

    values, types = pair.same(scenario)
    assert values == {
        "id": True,
        "tube": True,
        "state": "ready",
        "pri": greenstalk.DEFAULT_PRIORITY,
        "age": 0,
        "delay": 0,
        "ttr": greenstalk.DEFAULT_TTR,
        "time-left": 0,
        "file": 0,
        "reserves": 0,
        "timeouts": 0,
        "releases": 0,
        "buries": 0,
        "kicks": 0,
    }
    assert types == declared_types(greenstalk.StatsJob)


def test_stats_tube_of_a_watched_unused_tube(pair: SideBySide) -> None:
    """Upstream ``test_stats_tube``: a tube one client watches but does not use."""

    def scenario(side: Side) -> tuple[dict[str, Any], dict[str, str]]:
        tube = side.tube()
        c = side.client(use=side.tube(), watch=tube)
        s = dict(c.stats_tube(tube))
        types = type_names(s)
        s["name"] = s["name"] == tube
        return s, types

    values, types = pair.same(scenario)
    assert values == {
        "name": True,
        "current-jobs-urgent": 0,
        "current-jobs-ready": 0,
        "current-jobs-reserved": 0,
        "current-jobs-delayed": 0,
        "current-jobs-buried": 0,
        "total-jobs": 0,
        "current-using": 0,
        "current-watching": 1,
        "current-waiting": 0,
        "cmd-delete": 0,
        "cmd-pause-tube": 0,
        "pause": 0,
        "pause-time-left": 0,
    }
    assert types == declared_types(greenstalk.StatsTube)


#: ``stats`` keys whose value depends on the process or the clock.
PER_SERVER = {"pid", "id", "rusage-utime", "rusage-stime"}

#: What greenstalk's ``test_stats`` expects of a server whose first command
#: is that ``stats`` (every other counter it names is 0). It also expects
#: ``total-connections`` 1; ours are 2, as tools.beanstalkd connects once to
#: see that the server listens, so that one is compared between the sides.
FIRST_STATS = {"cmd-stats": 1, "current-tubes": 1, "current-connections": 1}
ZERO_STATS = [
    *(f"current-jobs-{state}" for state in ("urgent", "ready", "reserved", "delayed", "buried")),
    *(
        f"cmd-{name}"
        for name in (
            "put peek peek-ready peek-delayed peek-buried reserve reserve-with-timeout delete "
            "release use watch ignore bury kick touch stats-job stats-tube list-tubes "
            "list-tube-used list-tubes-watched pause-tube"
        ).split()
    ),
    "job-timeouts",
    "total-jobs",
    "current-producers",
    "current-workers",
    "current-waiting",
    "uptime",
    *(f"binlog-{name}" for name in ("oldest-index", "current-index", "records-migrated")),
    "binlog-records-written",
]


def test_stats_of_a_fresh_server(pair: SideBySide) -> None:
    """Upstream ``test_stats``: the counters of a fresh server, the presence of
    the descriptive keys, and ``draining`` as the string ``"false"``.

    Beyond upstream: every value has the type greenstalk declares in its
    ``Stats`` TypedDict (``rusage-*`` the server's text, ``draining`` a
    string), and every value that does not depend on the process equals
    greenstalk's.
    """

    def scenario(side: Side) -> dict[str, Any]:
        stats: dict[str, Any] = dict(side.client().stats())
        return stats

    theirs, ours = pair.run(scenario, fresh=True)
    for stats in (theirs, ours):
        for key in ZERO_STATS:
            assert stats[key] == 0, key
        for key, value in FIRST_STATS.items():
            assert stats[key] == value, key
        assert stats["draining"] == "false"
        for key in ("max-job-size", "pid", "version", "rusage-utime", "rusage-stime"):
            assert key in stats, key
        for key in ("binlog-max-size", "id", "hostname"):
            assert key in stats, key
        assert stats["total-connections"] >= 1
        for key in ("rusage-utime", "rusage-stime"):  # the server's "%d.%06d", as text
            assert re.fullmatch(r"[0-9]+\.[0-9]{6}", stats[key]), (key, stats[key])
    assert set(ours) == set(theirs)
    declared = declared_types(greenstalk.Stats)
    assert set(declared) >= set(ours)
    assert {key: declared[key] for key in ours} == type_names(ours)
    assert {k: v for k, v in ours.items() if k not in PER_SERVER} == {
        k: v for k, v in theirs.items() if k not in PER_SERVER
    }
    # greenstalk itself turns an all-digit "id" into an int; beanproto keeps
    # the declared str. Where greenstalk is right, the types agree.
    for key, kind in type_names(theirs).items():
        if not (kind == "int" and declared[key] == "str"):
            assert type_names(ours)[key] == kind, key


def test_tubes_lists_every_tube_in_use_or_watched(pair: SideBySide) -> None:
    """Upstream ``test_tubes`` (a fresh server: only ``default`` at first)."""

    def scenario(side: Side) -> list[Any]:
        c = side.client()
        seen: list[Any] = [c.tubes()]
        c.use("a")
        seen.append(set(c.tubes()))
        c.watch("b")
        c.watch("c")
        seen.append(set(c.tubes()))
        return seen

    assert pair.same(scenario, fresh=True) == [
        ["default"],
        {"default", "a"},
        {"default", "a", "b", "c"},
    ]


def test_using_names_the_used_tube(pair: SideBySide) -> None:
    """Upstream ``test_using``."""

    def scenario(side: Side) -> list[bool]:
        tube = side.tube()
        c = side.client()
        before = c.using() == "default"
        c.use(tube)
        return [before, c.using() == tube]

    assert pair.same(scenario) == [True, True]


def test_watching_lists_the_watched_tubes(pair: SideBySide) -> None:
    """Upstream ``test_watching``."""

    def scenario(side: Side) -> tuple[list[str], bool]:
        tube = side.tube()
        c = side.client()
        before: list[str] = c.watching()
        c.watch(tube)
        return before, set(c.watching()) == {"default", tube}

    assert pair.same(scenario) == (["default"], True)


# -- errors from the server -----------------------------------------------------------


def test_body_over_the_servers_limit_raises_job_too_big(pair: SideBySide) -> None:
    """Upstream ``test_max_job_size`` (beanstalkd's default ``-z`` of 65,535
    bytes): 2**16 bytes are refused; the connection stays usable, and one
    byte less is accepted."""

    def scenario(side: Side) -> bool:
        c = side.client(encoding=None, use="default")
        with side.raises("JobTooBigError"):
            c.put(bytes(2**16))
        jid = c.put(bytes(2**16 - 1))
        return len(c.peek(jid).body) == 2**16 - 1

    assert pair.same(scenario, fresh=True) is True


def test_delete_of_a_missing_job_raises_not_found(pair: SideBySide) -> None:
    """Upstream ``test_job_not_found`` (there id 87 on an empty server)."""

    def scenario(side: Side) -> bool:
        tube = side.tube()
        c = side.client(use=tube, watch=tube)
        jid = c.put("gone")
        c.delete(jid)
        with side.raises("NotFoundError"):
            c.delete(jid)
        return True

    assert pair.same(scenario) is True


def test_delete_of_a_job_another_client_reserved_raises_not_found(pair: SideBySide) -> None:
    """Upstream ``test_delete_job_reserved_by_other``; the holder can still
    delete it."""

    def scenario(side: Side) -> bool:
        tube = side.tube()
        c = side.client(use=tube, watch=tube)
        c.put("", ttr=1)
        other = side.client(use=tube, watch=tube)
        job = other.reserve()
        with side.raises("NotFoundError"):
            c.delete(job)
        other.delete(job)
        return True

    assert pair.same(scenario) is True


def test_ignoring_the_only_watched_tube_raises_not_ignored(pair: SideBySide) -> None:
    """Upstream ``test_not_ignored``."""

    def scenario(side: Side) -> list[str]:
        c = side.client()
        with side.raises("NotIgnoredError"):
            c.ignore("default")
        watching: list[str] = c.watching()
        return watching

    assert pair.same(scenario) == ["default"]


def test_drain_mode_refuses_puts_and_shows_in_stats(pair: SideBySide) -> None:
    """Upstream ``test_drain_mode``: after SIGUSR1 the server answers puts
    with ``DRAINING`` and ``stats()["draining"]`` is the string ``"true"``.

    The signal is asynchronous: instead of sleeping, put until the first
    ``DrainingError`` (bounded in time; every attempt is a round trip).
    """

    def scenario(side: Side) -> tuple[int, str, str]:
        c = side.client(encoding=None)
        first: int = c.put(b"first")
        before: str = c.stats()["draining"]
        os.kill(side.server.pid, signal.SIGUSR1)
        deadline = time.monotonic() + 5
        while True:
            try:
                c.put(b"second")
            except side.error("DrainingError"):
                break
            assert time.monotonic() < deadline, "the server never started draining"
        after: str = c.stats()["draining"]
        return first, before, after

    assert pair.same(scenario, fresh=True) == (1, "false", "true")


# -- reprs and local errors ------------------------------------------------------------


def test_client_repr_names_its_address(pair: SideBySide) -> None:
    """Upstream ``test_client_repr_inet`` and ``test_client_repr_unix``:
    ``<package>.Client(host='…', port=…)`` or ``<package>.Client(socket='…')``.
    Each package names itself; the rest is greenstalk's text."""

    def scenario(side: Side) -> str:
        return side.strip(repr(side.client()))

    server = pair.server
    expected = (
        f"Client(socket={server.unix_path!r})"
        if server.unix_path is not None
        else f"Client(host={server.host!r}, port={server.port!r})"
    )
    assert pair.same(scenario) == expected


def test_job_repr_shows_id_and_body() -> None:
    """Upstream ``test_job_repr``, but for the package name: greenstalk's
    ``greenstalk.Job(...)`` is ``Job(...)`` here, because one ``Job`` class
    serves the three client packages, so its repr names none of them."""
    body = json.dumps({"user_id": 123}).encode("utf-8")
    theirs = strip_module(greenstalk, repr(greenstalk.Job(id=456, body=body)))
    assert theirs == """Job(id=456, body=b'{"user_id": 123}')"""
    assert repr(beanproto_sync.Job(id=456, body=body)) == theirs


def test_str_body_without_encoding_raises_greenstalks_type_error(pair: SideBySide) -> None:
    """Upstream ``test_str_body_no_encoding``: the exact ``TypeError`` text,
    raised before anything is sent (the connection stays usable)."""

    def scenario(side: Side) -> tuple[str, bytes]:
        tube = side.tube()
        c = side.client(encoding=None, use=tube, watch=tube)
        with pytest.raises(TypeError) as raised:
            c.put("a str job")
        c.put(b"bytes job")
        body: bytes = c.reserve(timeout=0).body
        return str(raised.value), body

    assert pair.same(scenario) == ("Unable to encode string with no encoding set", b"bytes job")


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_put_checks_the_encoding_before_anything_else(module: Any) -> None:
    """Upstream ``test_str_body_no_encoding`` as written: ``Client.put`` on
    a stand-in object with only an ``encoding`` attribute of ``None``."""

    class Bare:
        encoding = None

    with pytest.raises(TypeError) as raised:
        module.Client.put(Bare(), "a str job")
    assert str(raised.value) == "Unable to encode string with no encoding set"


def test_the_modules_compared_are_greenstalk_2_1_1_and_beanproto_sync() -> None:
    """The reference really is greenstalk 2.1.1 (a test dependency, pinned)."""
    assert MODULES == (greenstalk, beanproto_sync)
    assert greenstalk.__version__ == "2.1.1"
