"""Every reply the protocol allows, for every command, becomes the right event.

Each case is fed whole, byte by byte (with no event before the last byte),
through ``get_buffer``/``buffer_updated``, and followed by trailing data that
belongs to the next pipelined command (STYLE item 9).
"""

from __future__ import annotations

import array

import pytest

import beanproto as bp
from core_helpers import (
    ALL_COMMAND_TYPES,
    ALLOWED_EVENTS,
    GENERAL_ERRORS,
    SAMPLE_COMMANDS,
    Via,
    bytewise,
    drain,
    feed,
    feed_and_collect,
    feed_pieces,
    job_reply,
    ok_reply,
    state,
)

STATS_JOB_DOC = (
    b"---\nid: 7\ntube: emails\nstate: reserved\npri: 1024\nage: 3\ndelay: 0\nttr: 60\n"
    b"time-left: 59\nfile: 0\nreserves: 1\ntimeouts: 0\nreleases: 0\nburies: 0\nkicks: 0\n"
)
STATS_JOB_DATA: dict[str, bp.StatValue] = {
    "id": 7,
    "tube": "emails",
    "state": "reserved",
    "pri": 1024,
    "age": 3,
    "delay": 0,
    "ttr": 60,
    "time-left": 59,
    "file": 0,
    "reserves": 1,
    "timeouts": 0,
    "releases": 0,
    "buries": 0,
    "kicks": 0,
}
STATS_TUBE_DOC = (
    b"---\nname: emails\ncurrent-jobs-urgent: 0\ncurrent-jobs-ready: 2\n"
    b"current-jobs-reserved: 1\ncurrent-jobs-delayed: 0\ncurrent-jobs-buried: 0\n"
    b"total-jobs: 3\ncurrent-using: 1\ncurrent-watching: 1\ncurrent-waiting: 0\n"
    b"cmd-delete: 0\ncmd-pause-tube: 0\npause: 0\npause-time-left: 0\n"
)
STATS_TUBE_DATA: dict[str, bp.StatValue] = {
    "name": "emails",
    "current-jobs-urgent": 0,
    "current-jobs-ready": 2,
    "current-jobs-reserved": 1,
    "current-jobs-delayed": 0,
    "current-jobs-buried": 0,
    "total-jobs": 3,
    "current-using": 1,
    "current-watching": 1,
    "current-waiting": 0,
    "cmd-delete": 0,
    "cmd-pause-tube": 0,
    "pause": 0,
    "pause-time-left": 0,
}
STATS_DOC = (
    b'---\ncurrent-jobs-urgent: 0\ncmd-put: 12\npid: 99\nversion: "1.12"\n'
    b"rusage-utime: 0.012000\nrusage-stime: 1.500000\ndraining: false\n"
    b"id: 0123456789abcdef\nhostname: host\n"
)
STATS_DATA: dict[str, bp.StatValue] = {
    "current-jobs-urgent": 0,
    "cmd-put": 12,
    "pid": 99,
    "version": "1.12",
    "rusage-utime": "0.012000",
    "rusage-stime": "1.500000",
    "draining": "false",
    "id": "0123456789abcdef",
    "hostname": "host",
}

BINARY = bytes(range(256))
TRICKY_BODY = b"RESERVED 1 1\r\nx\r\n\r\n"

#: (command, reply bytes, event), protocol section by section.
SPECIFIC: list[tuple[bp.Command, bytes, bp.Event]] = [
    # put
    (bp.Put(body=b"hi"), b"INSERTED 42\r\n", bp.Inserted(id=42)),
    (bp.Put(body=b"hi"), b"INSERTED 0\r\n", bp.Inserted(id=0)),
    (bp.Put(body=b"hi"), b"INSERTED 18446744073709551615\r\n", bp.Inserted(id=2**64 - 1)),
    (bp.Put(body=b"hi"), b"BURIED 43\r\n", bp.Buried(id=43)),
    (bp.Put(body=b"hi"), b"EXPECTED_CRLF\r\n", bp.ExpectedCrlf()),
    (bp.Put(body=b"hi"), b"JOB_TOO_BIG\r\n", bp.JobTooBig()),
    (bp.Put(body=b"hi"), b"DRAINING\r\n", bp.Draining()),
    # use
    (bp.Use(tube="emails"), b"USING emails\r\n", bp.Using(tube="emails")),
    (bp.Use(tube="a-+/;.$_()"), b"USING a-+/;.$_()\r\n", bp.Using(tube="a-+/;.$_()")),
    (bp.Use(tube="123"), b"USING 123\r\n", bp.Using(tube="123")),
    (bp.Use(tube="t" * 200), b"USING " + b"t" * 200 + b"\r\n", bp.Using(tube="t" * 200)),
    # reserve
    (bp.Reserve(), job_reply(b"RESERVED", 5, b"hello"), bp.Reserved(id=5, body=b"hello")),
    (bp.Reserve(), job_reply(b"RESERVED", 6, b""), bp.Reserved(id=6, body=b"")),
    (bp.Reserve(), job_reply(b"RESERVED", 7, TRICKY_BODY), bp.Reserved(id=7, body=TRICKY_BODY)),
    (bp.Reserve(), job_reply(b"RESERVED", 8, BINARY), bp.Reserved(id=8, body=BINARY)),
    (bp.Reserve(), b"DEADLINE_SOON\r\n", bp.DeadlineSoon()),
    (bp.Reserve(), b"TIMED_OUT\r\n", bp.TimedOut()),
    # reserve-with-timeout
    (
        bp.ReserveWithTimeout(timeout=0),
        job_reply(b"RESERVED", 2**64 - 1, b"x"),
        bp.Reserved(id=2**64 - 1, body=b"x"),
    ),
    (bp.ReserveWithTimeout(timeout=0), b"DEADLINE_SOON\r\n", bp.DeadlineSoon()),
    (bp.ReserveWithTimeout(timeout=0), b"TIMED_OUT\r\n", bp.TimedOut()),
    # reserve-job
    (bp.ReserveJob(id=9), job_reply(b"RESERVED", 9, b"job"), bp.Reserved(id=9, body=b"job")),
    (bp.ReserveJob(id=9), b"NOT_FOUND\r\n", bp.NotFound()),
    # delete
    (bp.Delete(id=1), b"DELETED\r\n", bp.Deleted()),
    (bp.Delete(id=1), b"NOT_FOUND\r\n", bp.NotFound()),
    # release: BURIED without an id
    (bp.Release(id=1), b"RELEASED\r\n", bp.Released()),
    (bp.Release(id=1), b"BURIED\r\n", bp.Buried(id=None)),
    (bp.Release(id=1), b"NOT_FOUND\r\n", bp.NotFound()),
    # bury
    (bp.Bury(id=1), b"BURIED\r\n", bp.Buried()),
    (bp.Bury(id=1), b"NOT_FOUND\r\n", bp.NotFound()),
    # touch
    (bp.Touch(id=1), b"TOUCHED\r\n", bp.Touched()),
    (bp.Touch(id=1), b"NOT_FOUND\r\n", bp.NotFound()),
    # watch
    (bp.Watch(tube="w"), b"WATCHING 2\r\n", bp.Watching(count=2)),
    # ignore
    (bp.Ignore(tube="w"), b"WATCHING 1\r\n", bp.Watching(count=1)),
    (bp.Ignore(tube="w"), b"NOT_IGNORED\r\n", bp.NotIgnored()),
    # peeks
    (bp.Peek(id=3), job_reply(b"FOUND", 3, b"body"), bp.Found(id=3, body=b"body")),
    (bp.Peek(id=3), job_reply(b"FOUND", 3, TRICKY_BODY), bp.Found(id=3, body=TRICKY_BODY)),
    (bp.Peek(id=3), b"NOT_FOUND\r\n", bp.NotFound()),
    (bp.PeekReady(), job_reply(b"FOUND", 4, BINARY), bp.Found(id=4, body=BINARY)),
    (bp.PeekReady(), b"NOT_FOUND\r\n", bp.NotFound()),
    (bp.PeekDelayed(), job_reply(b"FOUND", 5, b""), bp.Found(id=5, body=b"")),
    (bp.PeekDelayed(), b"NOT_FOUND\r\n", bp.NotFound()),
    (bp.PeekBuried(), job_reply(b"FOUND", 6, b"b"), bp.Found(id=6, body=b"b")),
    (bp.PeekBuried(), b"NOT_FOUND\r\n", bp.NotFound()),
    # kick
    (bp.Kick(bound=5), b"KICKED 3\r\n", bp.Kicked(count=3)),
    (bp.Kick(bound=5), b"KICKED 0\r\n", bp.Kicked(count=0)),
    # kick-job: KICKED without a count
    (bp.KickJob(id=1), b"KICKED\r\n", bp.Kicked(count=None)),
    (bp.KickJob(id=1), b"NOT_FOUND\r\n", bp.NotFound()),
    # stats-job, stats-tube, stats
    (bp.StatsJob(id=7), ok_reply(STATS_JOB_DOC), bp.Ok(data=STATS_JOB_DATA)),
    (bp.StatsJob(id=7), b"NOT_FOUND\r\n", bp.NotFound()),
    (bp.StatsTube(tube="emails"), ok_reply(STATS_TUBE_DOC), bp.Ok(data=STATS_TUBE_DATA)),
    (bp.StatsTube(tube="emails"), b"NOT_FOUND\r\n", bp.NotFound()),
    (bp.Stats(), ok_reply(STATS_DOC), bp.Ok(data=STATS_DATA)),
    # list-tubes, list-tube-used, list-tubes-watched
    (
        bp.ListTubes(),
        ok_reply(b"---\n- default\n- emails\n- 123\n"),
        bp.Ok(data=["default", "emails", "123"]),
    ),
    (bp.ListTubes(), ok_reply(b"---\n"), bp.Ok(data=[])),
    (bp.ListTubeUsed(), b"USING default\r\n", bp.Using(tube="default")),
    (bp.ListTubesWatched(), ok_reply(b"---\n- default\n"), bp.Ok(data=["default"])),
    # pause-tube
    (bp.PauseTube(tube="t", delay=1), b"PAUSED\r\n", bp.Paused()),
    (bp.PauseTube(tube="t", delay=1), b"NOT_FOUND\r\n", bp.NotFound()),
]

#: The four general errors, on every command that has a reply.
GENERAL: list[tuple[bp.Command, bytes, bp.Event]] = [
    (SAMPLE_COMMANDS[command_type], reply, event)
    for command_type in ALL_COMMAND_TYPES
    if command_type is not bp.Quit
    for reply, event in GENERAL_ERRORS
]

CASES = SPECIFIC + GENERAL


def _case_id(case: tuple[bp.Command, bytes, bp.Event]) -> str:
    command, reply, _ = case
    first_line = reply.split(b"\r\n")[0][:24].decode("latin-1")
    return f"{command.verb.decode()}-{first_line}"


CASE_IDS = [_case_id(case) for case in CASES]

# The next pipelined commands whose replies trail each case: a line, and a
# reply with a body that itself looks like a reply line.
NEXT_LINE = (bp.ListTubeUsed(), b"USING default\r\n", bp.Using(tube="default"))
NEXT_BODY = (
    bp.PeekReady(),
    job_reply(b"FOUND", 99, b"INSERTED 1\r\n"),
    bp.Found(id=99, body=b"INSERTED 1\r\n"),
)


def test_every_allowed_reply_of_every_command_is_covered() -> None:
    covered: dict[type[bp.Command], set[type[bp.Event]]] = {}
    for command, _, event in CASES:
        covered.setdefault(type(command), set()).add(type(event))
    for command_type in ALL_COMMAND_TYPES:
        if command_type is bp.Quit:
            assert command_type not in covered
        else:
            assert covered[command_type] == ALLOWED_EVENTS[command_type], command_type


@pytest.mark.parametrize(("command", "reply", "expected"), CASES, ids=CASE_IDS)
@pytest.mark.parametrize("via", ["receive_data", "buffer"])
def test_reply_whole(command: bp.Command, reply: bytes, expected: bp.Event, via: Via) -> None:
    conn = bp.Connection()
    conn.send(command)
    assert feed_and_collect(conn, reply, via=via) == [expected]
    assert conn.pending == 0
    assert conn.state is bp.State.OPEN
    assert conn.next_event() is bp.NEED_DATA


@pytest.mark.parametrize(("command", "reply", "expected"), CASES, ids=CASE_IDS)
@pytest.mark.parametrize("via", ["receive_data", "buffer"])
def test_reply_byte_by_byte(
    command: bp.Command, reply: bytes, expected: bp.Event, via: Via
) -> None:
    conn = bp.Connection()
    conn.send(command)
    for byte in bytewise(reply[:-1]):
        feed(conn, byte, via)
        assert conn.next_event() is bp.NEED_DATA
        assert conn.pending == 1
    feed(conn, reply[-1:], via)
    assert drain(conn) == [expected]
    assert conn.pending == 0


@pytest.mark.parametrize(("command", "reply", "expected"), CASES, ids=CASE_IDS)
@pytest.mark.parametrize("following", [NEXT_LINE, NEXT_BODY], ids=["line", "body"])
def test_reply_with_trailing_data(
    command: bp.Command,
    reply: bytes,
    expected: bp.Event,
    following: tuple[bp.Command, bytes, bp.Event],
) -> None:
    next_command, next_reply, next_event = following
    # Whole: both replies in one piece.
    conn = bp.Connection()
    conn.send(command)
    conn.send(next_command)
    assert feed_and_collect(conn, reply + next_reply) == [expected, next_event]
    assert conn.pending == 0
    # Byte by byte, across the boundary.
    conn = bp.Connection()
    conn.send(command)
    conn.send(next_command)
    assert feed_pieces(conn, bytewise(reply + next_reply)) == [expected, next_event]
    # With only the start of the next reply: the first event, then a wait.
    for cut in (1, len(next_reply) // 2, len(next_reply) - 1):
        conn = bp.Connection()
        conn.send(command)
        conn.send(next_command)
        assert feed_and_collect(conn, reply + next_reply[:cut]) == [expected]
        assert conn.pending_commands == (next_command,)
        assert conn.next_event() is bp.NEED_DATA
        assert feed_and_collect(conn, next_reply[cut:]) == [next_event]
        assert conn.pending == 0


def test_body_events_carry_bytes() -> None:
    conn = bp.Connection()
    conn.send(bp.Reserve())
    conn.send(bp.Peek(id=1))
    events = feed_and_collect(
        conn, job_reply(b"RESERVED", 1, b"abc") + job_reply(b"FOUND", 1, b"def"), via="buffer"
    )
    assert [type(event) for event in events] == [bp.Reserved, bp.Found]
    for event in events:
        assert isinstance(event, (bp.Reserved, bp.Found))
        assert type(event.body) is bytes


def test_events_are_frozen() -> None:
    event = bp.Inserted(id=1)
    with pytest.raises(AttributeError):
        event.id = 2  # type: ignore[misc]
    assert event.status == b"INSERTED"
    assert bp.Reserved.status == b"RESERVED"


def test_get_buffer_takes_a_whole_body_in_one_read() -> None:
    conn = bp.Connection()
    conn.send(bp.Reserve())
    conn.receive_data(b"RESERVED 1 200000\r\n")
    assert conn.next_event() is bp.NEED_DATA
    view = conn.get_buffer()
    assert len(view) >= 200002
    view[:200002] = b"z" * 200000 + b"\r\n"
    view.release()
    conn.buffer_updated(200002)
    assert conn.next_event() == bp.Reserved(id=1, body=b"z" * 200000)


def test_buffer_updated_zero_is_not_end_of_file() -> None:
    conn = bp.Connection()
    conn.send(bp.Reserve())
    view = conn.get_buffer()
    assert len(view) > 0
    view.release()
    conn.buffer_updated(0)
    assert conn.next_event() is bp.NEED_DATA
    assert conn.state is bp.State.OPEN
    conn.receive_data(b"TIMED_OUT\r\n")
    assert conn.next_event() == bp.TimedOut()


# -- pipelining ------------------------------------------------------------------

PIPELINE: list[tuple[bp.Command, bytes, bp.Event]] = [
    (bp.Use(tube="jobs"), b"USING jobs\r\n", bp.Using(tube="jobs")),
    (bp.Put(body=b"one"), b"INSERTED 1\r\n", bp.Inserted(id=1)),
    (bp.Put(body=b"two\r\n"), b"INSERTED 2\r\n", bp.Inserted(id=2)),
    (bp.Watch(tube="jobs"), b"WATCHING 2\r\n", bp.Watching(count=2)),
    (bp.Reserve(), job_reply(b"RESERVED", 1, b"one"), bp.Reserved(id=1, body=b"one")),
    (bp.Delete(id=1), b"DELETED\r\n", bp.Deleted()),
    (bp.Delete(id=1), b"NOT_FOUND\r\n", bp.NotFound()),
    (bp.Peek(id=2), job_reply(b"FOUND", 2, b"two\r\n"), bp.Found(id=2, body=b"two\r\n")),
    (bp.ListTubes(), ok_reply(b"---\n- default\n- jobs\n"), bp.Ok(data=["default", "jobs"])),
    (bp.KickJob(id=2), b"KICKED\r\n", bp.Kicked()),
    (bp.Kick(bound=9), b"KICKED 0\r\n", bp.Kicked(count=0)),
    (bp.Stats(), b"INTERNAL_ERROR\r\n", bp.InternalError()),
    (bp.ReserveWithTimeout(timeout=0), b"TIMED_OUT\r\n", bp.TimedOut()),
]


@pytest.mark.parametrize("via", ["receive_data", "buffer"])
@pytest.mark.parametrize("split", ["whole", "bytewise", "per-reply"])
def test_pipelined_replies_are_matched_in_order(via: Via, split: str) -> None:
    conn = bp.Connection()
    for command, _, _ in PIPELINE:
        conn.send(command)
    assert conn.pending_commands == tuple(command for command, _, _ in PIPELINE)
    stream = b"".join(reply for _, reply, _ in PIPELINE)
    if split == "whole":
        pieces = [stream]
    elif split == "bytewise":
        pieces = bytewise(stream)
    else:
        pieces = [reply for _, reply, _ in PIPELINE]
    assert feed_pieces(conn, pieces, via=via) == [event for _, _, event in PIPELINE]
    assert conn.pending == 0


def test_pending_shrinks_from_the_front_as_replies_arrive() -> None:
    conn = bp.Connection()
    commands = [command for command, _, _ in PIPELINE]
    for command in commands[:5]:
        conn.send(command)
    for i, (command, reply, event) in enumerate(PIPELINE[:3]):
        assert conn.pending_commands[0] == command
        conn.receive_data(reply)
        assert conn.next_event() == event
        assert conn.pending_commands == tuple(commands[i + 1 : 5])
    # Sending more while replies are outstanding keeps the order.
    for command in commands[5:]:
        conn.send(command)
    rest = b"".join(reply for _, reply, _ in PIPELINE[3:])
    assert feed_and_collect(conn, rest) == [event for _, _, event in PIPELINE[3:]]


# -- quit and close ----------------------------------------------------------------


def test_quit_then_server_closes() -> None:
    conn = bp.Connection()
    assert conn.send(bp.Quit()) == b"quit\r\n"
    assert conn.state is bp.State.CLOSING
    assert conn.pending == 0
    assert conn.next_event() is bp.NEED_DATA
    conn.receive_data(b"")
    assert conn.next_event() == bp.ConnectionClosed()
    assert state(conn) is bp.State.CLOSED
    # ConnectionClosed stays the last word.
    assert conn.next_event() == bp.ConnectionClosed()


def test_quit_after_pipelined_commands_still_reads_their_replies() -> None:
    conn = bp.Connection()
    conn.send(bp.Put(body=b"x"))
    conn.send(bp.Delete(id=3))
    conn.send(bp.Quit())
    assert conn.state is bp.State.CLOSING
    assert conn.pending == 2
    events = feed_and_collect(conn, b"INSERTED 4\r\nDELETED\r\n", [5, 13])
    assert events == [bp.Inserted(id=4), bp.Deleted()]
    conn.receive_data(b"")
    assert drain(conn) == [bp.ConnectionClosed()]
    assert state(conn) is bp.State.CLOSED


def test_quit_then_close_via_buffer_protocol() -> None:
    conn = bp.Connection()
    conn.send(bp.Reserve())
    conn.send(bp.Quit())
    assert feed_and_collect(conn, b"TIMED_OUT\r\n", via="buffer") == [bp.TimedOut()]
    conn.receive_data(b"")
    assert conn.next_event() == bp.ConnectionClosed()


def test_server_closes_an_idle_connection() -> None:
    conn = bp.Connection()
    conn.receive_data(b"")
    assert conn.next_event() == bp.ConnectionClosed()
    assert conn.state is bp.State.CLOSED
    with pytest.raises(bp.LocalProtocolError):
        conn.send(bp.Stats())


def test_end_of_file_twice_is_harmless_but_data_after_it_is_not() -> None:
    conn = bp.Connection()
    conn.receive_data(b"")
    conn.receive_data(b"")
    with pytest.raises(bp.LocalProtocolError):
        conn.receive_data(b"x")
    view = conn.get_buffer()
    view[:1] = b"x"
    view.release()
    with pytest.raises(bp.LocalProtocolError):
        conn.buffer_updated(1)
    assert conn.next_event() == bp.ConnectionClosed()


@pytest.mark.parametrize("method", ["send", "send_parts"])
@pytest.mark.parametrize(
    "command", [bp.Stats(), bp.Put(body=b"x"), bp.Quit()], ids=["stats", "put", "quit"]
)
def test_send_after_quit_is_refused(method: str, command: bp.Command) -> None:
    conn = bp.Connection()
    conn.send(bp.Quit())
    send = conn.send if method == "send" else conn.send_parts
    with pytest.raises(bp.LocalProtocolError, match="quit"):
        send(command)
    assert conn.pending == 0
    assert conn.state is bp.State.CLOSING


@pytest.mark.parametrize("method", ["send", "send_parts"])
def test_send_after_close_is_refused(method: str) -> None:
    conn = bp.Connection()
    conn.send(bp.Quit())
    conn.receive_data(b"")
    assert conn.next_event() == bp.ConnectionClosed()
    send = conn.send if method == "send" else conn.send_parts
    with pytest.raises(bp.LocalProtocolError, match="closed"):
        send(bp.Reserve())


@pytest.mark.parametrize("method", ["send", "send_parts"])
def test_send_after_remote_error_is_refused(method: str) -> None:
    conn = bp.Connection()
    conn.send(bp.Reserve())
    conn.receive_data(b"GARBAGE\r\n")
    with pytest.raises(bp.RemoteProtocolError):
        conn.next_event()
    assert conn.state is bp.State.ERROR
    send = conn.send if method == "send" else conn.send_parts
    with pytest.raises(bp.LocalProtocolError, match="failed"):
        send(bp.Reserve())
    assert conn.pending == 1


# -- misuse of the receive side is a local error -----------------------------------


@pytest.mark.parametrize("extra", [1, 1000], ids=["one-too-many", "far-too-many"])
def test_buffer_updated_beyond_the_lent_buffer_is_a_local_error(extra: int) -> None:
    conn = bp.Connection()
    conn.send(bp.Reserve())
    view = conn.get_buffer()
    size = len(view)
    view.release()
    # errors.py: every exception beanproto raises derives from beanproto.Error;
    # a caller's mistake is a LocalProtocolError (ArgumentError is also a
    # ValueError, so either kind of handler catches it).
    with pytest.raises(bp.LocalProtocolError):
        conn.buffer_updated(size + extra)
    with pytest.raises(bp.LocalProtocolError):
        conn.buffer_updated(-1)
    # Nothing was counted: the connection is still in step.
    assert conn.next_event() is bp.NEED_DATA
    conn.receive_data(b"TIMED_OUT\r\n")
    assert conn.next_event() == bp.TimedOut()


def test_receive_data_takes_any_contiguous_memoryview() -> None:
    # The signature accepts a memoryview; one whose items are wider than a
    # byte must be read as its bytes (as Put does with its body), or refused
    # as a LocalProtocolError, never fail with a BufferError.
    reply = b"INSERTED 1\r\n"
    wide = memoryview(array.array("H", reply))
    assert wide.nbytes == len(reply) and len(wide) == len(reply) // 2
    conn = bp.Connection()
    conn.send(bp.Put(body=b"x"))
    try:
        conn.receive_data(wide)
    except bp.LocalProtocolError:
        assert conn.next_event() is bp.NEED_DATA
    else:
        assert conn.next_event() == bp.Inserted(id=1)
