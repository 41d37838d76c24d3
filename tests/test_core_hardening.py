"""Hardening of the core: every command class built the same way on every
Python, and limits the server enforces checked before a byte is produced.

Issue 7, items 1.3 (bodies of 2**32 bytes or more), 3.1 (Python 3.10) and
the ``reserve-with-timeout`` limit of beanstalkd 1.13.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import mmap
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

import beanproto as bp
import beanproto_sync
from beanproto import _commands, _validate
from beanproto._commands import make_put, make_with_id
from core_helpers import ALL_COMMAND_TYPES, SAMPLE_COMMANDS

ID_COMMANDS = (bp.ReserveJob, bp.Delete, bp.Touch, bp.Peek, bp.KickJob, bp.StatsJob)


def _slot_names(cls: type) -> list[str]:
    """Every slot declared anywhere in ``cls``'s MRO, repeats included."""
    names: list[str] = []
    for klass in cls.__mro__:
        slots = klass.__dict__.get("__slots__", ())
        names.extend([slots] if isinstance(slots, str) else slots)
    return names


# -- Python 3.10: one slot per field ---------------------------------------------


@pytest.mark.parametrize("command_type", ALL_COMMAND_TYPES, ids=lambda t: t.__name__)
def test_every_field_has_exactly_one_slot(command_type: type[bp.Command]) -> None:
    # dataclass(slots=True) on 3.10 re-declares inherited fields as slots of
    # the subclass; the object then has two slots named "id" (or "tube").
    names = _slot_names(command_type)
    assert len(names) == len(set(names)), names
    fields = {f.name for f in dataclasses.fields(command_type)}  # type: ignore[arg-type]
    assert set(names) == fields
    assert "__dict__" not in dir(SAMPLE_COMMANDS[command_type])


@pytest.mark.parametrize("command_type", ID_COMMANDS, ids=lambda t: t.__name__)
def test_the_hot_path_builds_what_the_constructor_builds(
    command_type: type[bp.Command],
) -> None:
    fast = make_with_id(command_type, 42)  # type: ignore[type-var]
    assert type(fast) is command_type
    assert getattr(fast, "id") == 42  # noqa: B009  # AttributeError on 3.10 before the fix
    assert fast == command_type(id=42)  # type: ignore[call-arg]
    assert hash(fast) == hash(command_type(id=42))  # type: ignore[call-arg]
    assert repr(fast) == f"{command_type.__name__}(id=42)"
    assert fast.wire() == command_type.verb + b" 42\r\n"


@pytest.mark.parametrize("command_type", ID_COMMANDS, ids=lambda t: t.__name__)
def test_id_commands_go_through_a_connection(command_type: type[bp.Command]) -> None:
    conn = bp.Connection()
    assert conn.send(make_with_id(command_type, 7)) == command_type.verb + b" 7\r\n"  # type: ignore[type-var]
    assert conn.pending == 1


@pytest.mark.parametrize("command_type", ALL_COMMAND_TYPES, ids=lambda t: t.__name__)
def test_commands_stay_frozen(command_type: type[bp.Command]) -> None:
    command = SAMPLE_COMMANDS[command_type]
    for field in dataclasses.fields(command):  # type: ignore[arg-type]
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(command, field.name, getattr(command, field.name))
    assert dataclasses.replace(command) == command  # type: ignore[type-var]


# -- bodies of 2**32 bytes or more ----------------------------------------------


class Huge:
    """A body of ``2**32`` bytes that costs no memory, behind a short repr:
    a failing test must not print (and so touch) four gigabytes.

    ``view`` is a memoryview of anonymous mmap pages, which are only
    allocated when touched; ``data`` a real ``bytes`` (for the ``bytes`` hot
    path), which CPython allocates with calloc, so its zero pages stay
    untouched too.
    """

    def __init__(self) -> None:
        self._area = mmap.mmap(-1, 2**32)
        self.view = memoryview(self._area)
        self._data: bytes | None = None

    @property
    def data(self) -> bytes:
        if self._data is None:
            try:
                self._data = bytes(2**32)
            except MemoryError:  # pragma: no cover - a machine that does not overcommit
                pytest.skip("cannot reserve 4 GiB of address space")
        return self._data

    def __repr__(self) -> str:
        return "<2**32 bytes>"

    def close(self) -> None:
        self.view.release()
        with contextlib.suppress(BufferError):  # a failed test's traceback holds a view
            self._area.close()


@pytest.fixture(scope="module")
def huge() -> Iterator[Huge]:
    bodies = Huge()
    try:
        yield bodies
    finally:
        bodies.close()


def test_the_limit_is_the_32_bit_count() -> None:
    assert bp.MAX_BODY_SIZE == 2**32 - 1


@pytest.mark.parametrize("cut", [0, 1, 2], ids=["2**32", "2**32-1", "2**32-2"])
def test_put_refuses_a_body_the_server_would_run_as_commands(huge: Huge, cut: int) -> None:
    size = 2**32 - cut
    if size >= 2**32:
        with pytest.raises(bp.ArgumentError, match="4294967295"):
            bp.Put(body=huge.view[:size])
        with pytest.raises(bp.ArgumentError):
            make_put(huge.view[:size], 0, 0, 60)
    else:
        assert len(bp.Put(body=huge.view[:size]).body) == size
        assert len(make_put(huge.view[:size], 0, 0, 60).body) == size


def test_put_refuses_a_long_memoryview_of_wider_items(huge: Huge) -> None:
    # 2**30 items of 4 bytes: the count on the wire is bytes, not items.
    wide = huge.view.cast("I")
    assert len(wide) == 2**30
    with pytest.raises(bp.ArgumentError):
        bp.Put(body=wide)
    with pytest.raises(bp.ArgumentError):
        make_put(wide, 0, 0, 60)
    wide.release()


def test_the_bytes_hot_path_checks_the_size_too(huge: Huge) -> None:
    with pytest.raises(bp.ArgumentError):
        make_put(huge.data, 0, 0, 60)
    with pytest.raises(bp.ArgumentError):
        bp.Put(body=huge.data)


def test_the_bytes_hot_path_compares_with_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    # The same check at a size a test can afford to send: the limit is read
    # from the module, so lowering it shows where the boundary lies.
    monkeypatch.setattr(_commands, "MAX_BODY_SIZE", 4)
    assert make_put(b"four", 1, 2, 3) == bp.Put(body=b"four", priority=1, delay=2, ttr=3)
    monkeypatch.setattr(_validate, "MAX_BODY_SIZE", 4)
    with pytest.raises(bp.ArgumentError):
        make_put(b"five!", 1, 2, 3)


def test_nothing_is_queued_for_a_refused_body(huge: Huge) -> None:
    conn = bp.Connection()
    with pytest.raises(bp.ArgumentError):
        conn.send(bp.Put(body=huge.view))
    assert conn.pending == 0
    assert conn.send(bp.Put(body=b"ok")) == b"put 65536 0 60 2\r\nok\r\n"


# -- reserve-with-timeout above 2**31-1 ------------------------------------------


def test_reserve_timeout_limit_is_beanstalkd_113s() -> None:
    assert bp.MAX_RESERVE_TIMEOUT == 2**31 - 1
    wire = bp.ReserveWithTimeout(timeout=2**31 - 1).wire()
    assert wire == b"reserve-with-timeout 2147483647\r\n"


@pytest.mark.parametrize("timeout", [2**31, 2**31 - 0.5, 2**32 - 1, 2**32], ids=repr)
def test_reserve_timeout_above_the_limit_is_refused(timeout: float) -> None:
    with pytest.raises(bp.ArgumentError, match="2147483647"):
        bp.ReserveWithTimeout(timeout=timeout)  # type: ignore[arg-type]


@given(st.integers(0, 2**31 - 1) | st.floats(0, 2**31 - 1))
def test_reserve_timeout_within_the_limit_is_kept(timeout: float) -> None:
    command = bp.ReserveWithTimeout(timeout=timeout)  # type: ignore[arg-type]
    assert command.timeout == math.ceil(timeout)
    assert command.timeout < 2**31


# -- through every client, against a real server ------------------------------


def test_clients_refuse_a_huge_body_and_stay_usable(
    raw_client: beanproto_sync.Client[bytes], huge: Huge
) -> None:
    with pytest.raises(bp.ArgumentError):
        raw_client.put(huge.view)  # type: ignore[arg-type]
    job_id = raw_client.put(b"after")
    assert raw_client.reserve(timeout=0).id == job_id
    assert raw_client.using() == raw_client.watching()[0]


def test_clients_refuse_a_huge_bytes_body(
    raw_client: beanproto_sync.Client[bytes], huge: Huge
) -> None:
    with pytest.raises(bp.ArgumentError):
        raw_client.put(huge.data)
    assert raw_client.put(b"after") > 0


def test_clients_refuse_a_reserve_timeout_above_the_limit(
    client: beanproto_sync.Client[str],
) -> None:
    with pytest.raises(bp.ArgumentError):
        client.reserve(timeout=2**31)
    job_id = client.put("x")
    assert client.reserve(timeout=0).id == job_id


class TestUnsend:
    """``Connection.unsend``: a command whose write was cancelled before any
    byte left is taken back, and the connection reads on as if it had never
    been sent."""

    def test_the_newest_command_is_taken_back(self) -> None:
        conn = bp.Connection()
        put = bp.Put(body=b"x")
        conn.send(put)
        stats = bp.Stats()
        conn.send(stats)
        conn.unsend(stats)
        assert conn.pending_commands == (put,)
        conn.receive_data(b"INSERTED 7\r\n")
        assert conn.next_event() == bp.Inserted(id=7)
        assert conn.pending == 0

    def test_only_the_newest_command(self) -> None:
        conn = bp.Connection()
        put = bp.Put(body=b"x")
        conn.send(put)
        conn.send(bp.Stats())
        with pytest.raises(bp.LocalProtocolError, match="newest"):
            conn.unsend(put)
        with pytest.raises(bp.LocalProtocolError):
            bp.Connection().unsend(put)

    def test_not_once_its_reply_has_begun(self) -> None:
        conn = bp.Connection()
        reserve = bp.Reserve()
        conn.send(reserve)
        conn.receive_data(b"RESERVED 1 5\r\nab")
        assert conn.next_event() is bp.NEED_DATA
        with pytest.raises(bp.LocalProtocolError, match="begun"):
            conn.unsend(reserve)

    def test_quit_taken_back_reopens(self) -> None:
        conn = bp.Connection()
        quit_ = bp.Quit()
        conn.send(quit_)
        states = [conn.state]
        conn.unsend(quit_)
        states.append(conn.state)
        assert states == [bp.State.CLOSING, bp.State.OPEN]
        conn.send(bp.Stats())
        assert conn.pending == 1

    def test_buffered_counts_unread_bytes(self) -> None:
        conn = bp.Connection()
        conn.send(bp.Delete(id=1))
        conn.receive_data(b"DELETED\r\nextra")
        assert conn.buffered == len(b"DELETED\r\nextra")
        assert conn.next_event() == bp.Deleted()
        assert conn.buffered == len(b"extra")


def test_mid_reply_tells_a_slow_server_from_a_stalled_reply() -> None:
    """``mid_reply``: a transport's way to see that a reply has begun."""
    conn = bp.Connection()
    conn.send(bp.Reserve())
    assert not conn.mid_reply  # nothing yet: the server may rightly wait
    conn.receive_data(b"RESER")
    assert conn.next_event() is bp.NEED_DATA
    assert conn.mid_reply  # part of a line
    conn.receive_data(b"VED 1 3\r\n")
    assert conn.next_event() is bp.NEED_DATA
    assert conn.mid_reply  # the line, its body still due
    conn.receive_data(b"abc\r\n")
    assert isinstance(conn.next_event(), bp.Reserved)
    assert not conn.mid_reply
