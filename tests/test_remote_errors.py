"""A server that breaks the protocol gets a RemoteProtocolError, and nothing else.

Never an IndexError or a bare ValueError, never a hang (NEED_DATA forever when
the bytes already prove the server wrong), never a wrong value. Afterwards the
connection stays failed: every read raises again and every send is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

import beanproto as bp
from core_helpers import (
    ALL_COMMAND_TYPES,
    ALLOWED_EVENTS,
    SAMPLE_COMMANDS,
    Via,
    bytewise,
    drain,
    feed,
    job_reply,
    ok_reply,
    state,
)


@dataclass(frozen=True)
class Bad:
    """A scripted server that misbehaves."""

    name: str
    commands: tuple[bp.Command, ...]
    data: bytes
    error: type[bp.RemoteProtocolError] = bp.RemoteProtocolError
    #: Events that must come out before the error.
    before: tuple[bp.Event, ...] = ()
    #: Close the connection after the data.
    eof: bool = False
    limits: dict[str, int] = field(default_factory=dict)


def assert_failed_for_good(conn: bp.Connection) -> None:
    """The connection is in its sticky error state."""
    assert state(conn) is bp.State.ERROR
    for _ in range(2):
        with pytest.raises(bp.RemoteProtocolError):
            conn.next_event()
    with pytest.raises(bp.LocalProtocolError):
        conn.send(bp.Reserve())
    with pytest.raises(bp.LocalProtocolError):
        conn.send_parts(bp.Put(body=b"x"))
    assert state(conn) is bp.State.ERROR


def collect_into(conn: bp.Connection, events: list[bp.Event]) -> None:
    """Like ``drain``, but keeps the events seen before an exception."""
    while (event := conn.next_event()) is not bp.NEED_DATA:
        assert isinstance(event, bp.Event)
        events.append(event)


def run_bad(case: Bad, split: str, via: Via) -> bp.RemoteProtocolError:
    """Play ``case`` and return the error it raised, after checking the
    events before it and the sticky state after it."""
    conn = bp.Connection(**case.limits)
    for command in case.commands:
        conn.send(command)
    pieces = [case.data] if split == "whole" else bytewise(case.data)
    events: list[bp.Event] = []
    with pytest.raises(bp.RemoteProtocolError) as info:
        for piece in pieces:
            feed(conn, piece, via)
            collect_into(conn, events)
        if case.eof:
            conn.receive_data(b"")
            collect_into(conn, events)
    assert type(info.value) is case.error or isinstance(info.value, case.error)
    assert events == list(case.before)
    assert_failed_for_good(conn)
    return info.value


PUT = bp.Put(body=b"x")
STATS = bp.Stats()
CLOSED = bp.ConnectionClosedError


def _lines(command: bp.Command, *lines: bytes) -> list[Bad]:
    return [
        Bad(f"{command.verb.decode()}:{line[:30]!r}", (command,), line + b"\r\n") for line in lines
    ]


CASES: list[Bad] = [
    # -- unknown statuses
    Bad("unknown", (PUT,), b"FOO\r\n", bp.UnknownResponseError),
    Bad("unknown-args", (PUT,), b"SOME_ERROR 1 2 3\r\n", bp.UnknownResponseError),
    Bad("lowercase", (PUT,), b"inserted 1\r\n", bp.UnknownResponseError),
    Bad("empty-line", (PUT,), b"\r\n", bp.UnknownResponseError),
    Bad("leading-space", (PUT,), b" INSERTED 1\r\n", bp.UnknownResponseError),
    Bad("tab", (PUT,), b"INSERTED\t1\r\n", bp.UnknownResponseError),
    Bad("bare-lf-line", (PUT,), b"INSERTED 1\nINSERTED 2\r\n"),
    Bad("binary", (PUT,), b"\x00\xff\x80\r\n", bp.UnknownResponseError),
    # -- known statuses that do not answer the pending command
    Bad("deleted-to-put", (PUT,), b"DELETED\r\n", bp.UnknownResponseError),
    Bad("inserted-to-delete", (bp.Delete(id=1),), b"INSERTED 5\r\n", bp.UnknownResponseError),
    Bad(
        "reserved-to-peek",
        (bp.Peek(id=1),),
        job_reply(b"RESERVED", 1, b"x"),
        bp.UnknownResponseError,
    ),
    Bad("found-to-reserve", (bp.Reserve(),), job_reply(b"FOUND", 1, b"x"), bp.UnknownResponseError),
    Bad("ok-to-reserve", (bp.Reserve(),), ok_reply(b"---\n"), bp.UnknownResponseError),
    Bad("timed-out-to-put", (PUT,), b"TIMED_OUT\r\n", bp.UnknownResponseError),
    Bad(
        "out-of-order",
        (bp.Delete(id=1), PUT),
        b"DELETED\r\nDELETED\r\n",
        bp.UnknownResponseError,
        before=(bp.Deleted(),),
    ),
    # -- numbers: negative, not numeric, overflowing, missing, padded
    *_lines(
        PUT,
        b"INSERTED -1",
        b"INSERTED abc",
        b"INSERTED 99999999999999999999999",
        b"INSERTED 18446744073709551616",
        b"INSERTED",
        b"INSERTED ",
        b"INSERTED 1 2",
        b"INSERTED +1",
        b"INSERTED  1",
        b"INSERTED 1 ",
        b"INSERTED 1.0",
        b"INSERTED 0x1",
        b"INSERTED 1e3",
        "INSERTED \u0661".encode(),  # an Arabic-Indic digit one
        "INSERTED \u00b2".encode(),  # superscript two
        b"BURIED -1",
        b"BURIED",
        b"BURIED x",
    ),
    *_lines(bp.Watch(tube="w"), b"WATCHING -1", b"WATCHING x", b"WATCHING", b"WATCHING 1 2"),
    *_lines(bp.Ignore(tube="w"), b"WATCHING -1", b"WATCHING"),
    *_lines(bp.Kick(bound=1), b"KICKED -5", b"KICKED", b"KICKED five"),
    *_lines(
        bp.Reserve(),
        b"RESERVED -1 1",
        b"RESERVED 1 -1",
        b"RESERVED 1",
        b"RESERVED",
        b"RESERVED a 1",
        b"RESERVED 1 a",
        b"RESERVED 1 2 3",
        b"RESERVED 1  2",
        b"RESERVED 1 99999999999999999999999",
        b"RESERVED 99999999999999999999999 1",
    ),
    *_lines(bp.Peek(id=1), b"FOUND x 1", b"FOUND 1", b"FOUND -1 1"),
    *_lines(STATS, b"OK -1", b"OK", b"OK x", b"OK 1 2", b"OK "),
    *_lines(bp.ListTubes(), b"OK -4"),
    # -- names that are not names
    *_lines(
        bp.Use(tube="a"),
        b"USING ",
        b"USING",
        b"USING a b",
        b"USING -a",
        b"USING a\xff",
        b"USING a:b",
        b"USING " + b"n" * 201,
    ),
    *_lines(bp.ListTubeUsed(), b"USING ", b"USING a\tb"),
    # -- arguments on replies that take none
    *_lines(bp.Delete(id=1), b"DELETED 1", b"DELETED ", b"NOT_FOUND 1"),
    *_lines(bp.Reserve(), b"TIMED_OUT 0", b"DEADLINE_SOON x"),
    *_lines(bp.KickJob(id=1), b"KICKED 5", b"KICKED "),
    *_lines(bp.Bury(id=1), b"BURIED 5"),
    *_lines(bp.Release(id=1), b"BURIED 5", b"RELEASED x"),
    *_lines(bp.Touch(id=1), b"TOUCHED 1"),
    *_lines(bp.Ignore(tube="w"), b"NOT_IGNORED 1"),
    *_lines(bp.PauseTube(tube="t", delay=1), b"PAUSED 1"),
    *_lines(PUT, b"EXPECTED_CRLF 1", b"JOB_TOO_BIG 1", b"DRAINING 1"),
    *_lines(
        STATS,
        b"OUT_OF_MEMORY 1",
        b"INTERNAL_ERROR x",
        b"BAD_FORMAT 1",
        b"UNKNOWN_COMMAND x",
    ),
    # -- a body not followed by CRLF
    Bad("body-no-crlf", (bp.Reserve(),), b"RESERVED 1 3\r\nabcXY"),
    Bad("body-lfcr", (bp.Reserve(),), b"RESERVED 1 3\r\nabc\n\r"),
    Bad("body-longer", (bp.Reserve(),), b"RESERVED 1 3\r\nabcd\r\n"),
    Bad("body-crlf-inside", (bp.Reserve(),), b"RESERVED 1 5\r\nab\r\nXY\r\n"),
    Bad("body-empty-not-crlf", (bp.Reserve(),), b"RESERVED 1 0\r\nX\r\n"),
    Bad("found-body-longer", (bp.Peek(id=1),), b"FOUND 1 2\r\nabc\r\n"),
    Bad("ok-body-no-crlf", (STATS,), b"OK 4\r\n---\nXX"),
    # -- lines longer than max_line_length
    Bad("long-line-crlf", (bp.Use(tube="a"),), b"USING " + b"a" * 300 + b"\r\n"),
    Bad("long-line-no-crlf", (PUT,), b"I" * 224),
    Bad("long-line-huge", (PUT,), b"x" * 5000),
    Bad("limit-16-crlf", (PUT,), b"INSERTED 123456\r\n", limits={"max_line_length": 16}),
    Bad("limit-16-no-crlf", (PUT,), b"INSERTED 1234567", limits={"max_line_length": 16}),
    Bad("limit-8-lone-cr", (PUT,), b"\r" * 8, limits={"max_line_length": 8}),
    # -- bodies larger than max_body_size (refused before the body arrives)
    Bad("body-too-big", (bp.Reserve(),), b"RESERVED 1 11\r\n", limits={"max_body_size": 10}),
    Bad("found-too-big", (bp.PeekReady(),), b"FOUND 1 11\r\n", limits={"max_body_size": 10}),
    Bad("ok-too-big", (STATS,), b"OK 11\r\n", limits={"max_body_size": 10}),
    Bad("zero-limit", (bp.Reserve(),), b"RESERVED 1 1\r\n", limits={"max_body_size": 0}),
    Bad("default-limit", (bp.Reserve(),), b"RESERVED 1 1073741825\r\n"),
    Bad("u64-body", (bp.Reserve(),), b"RESERVED 1 18446744073709551615\r\n"),
    # -- bytes when no reply is owed
    Bad("nothing-sent", (), b"INSERTED 1\r\n"),
    Bad("nothing-sent-cr", (), b"\r"),
    Bad("extra-reply", (bp.Delete(id=1),), b"DELETED\r\nDELETED\r\n", before=(bp.Deleted(),)),
    Bad("extra-byte", (bp.Delete(id=1),), b"DELETED\r\n\n", before=(bp.Deleted(),)),
    Bad("after-quit", (bp.Quit(),), b"OK\r\n"),
    Bad("after-quit-reply", (PUT, bp.Quit()), b"INSERTED 1\r\nX", before=(bp.Inserted(id=1),)),
    # -- end of file while a reply is owed
    Bad("eof-nothing", (PUT,), b"", CLOSED, eof=True),
    Bad("eof-mid-line", (PUT,), b"INSER", CLOSED, eof=True),
    Bad("eof-before-lf", (PUT,), b"INSERTED 1\r", CLOSED, eof=True),
    Bad("eof-mid-body", (bp.Reserve(),), b"RESERVED 1 10\r\nabc", CLOSED, eof=True),
    Bad("eof-before-crlf", (bp.Reserve(),), b"RESERVED 1 3\r\nabc", CLOSED, eof=True),
    Bad("eof-before-body-lf", (bp.Peek(id=1),), b"FOUND 1 3\r\nabc\r", CLOSED, eof=True),
    Bad("eof-mid-yaml", (STATS,), b"OK 40\r\n---\npid: 1\n", CLOSED, eof=True),
    Bad(
        "eof-second-reply",
        (bp.Delete(id=1), bp.Delete(id=2)),
        b"DELETED\r\n",
        CLOSED,
        before=(bp.Deleted(),),
        eof=True,
    ),
    Bad("eof-after-quit", (PUT, bp.Quit()), b"", CLOSED, eof=True),
    # -- YAML that is not what beanstalkd writes
    *[
        Bad(f"yaml:{doc[:24]!r}", (STATS,), ok_reply(doc))
        for doc in (
            b"cmd-put: 1\n",
            b"---\ncmd-put: 1",
            b"---\ncmd-put 1\n",
            b"---\ncmd-put:1\n",
            b"---\ncmd-put: abc\n",
            b"---\ncmd-put: 1.5\n",
            b"---\ncmd-put: \n",
            b"---\n: 1\n",
            b"---\ndraining: yes\n",
            b"---\ndraining: 1\n",
            b"---\nrusage-utime: fast\n",
            b"---\nrusage-utime: 1.\n",
            b"---\nrusage-utime: .5\n",
            b"---\npid: -\n",
            b"---\npid: 99999999999999999999999\n",
            b"",
            b"--\n",
        )
    ],
    *[
        Bad(f"yaml-list:{doc[:24]!r}", (bp.ListTubes(),), ok_reply(doc))
        for doc in (b"---\ndefault\n", b"---\n-\n", b"---\n- \n", b"---\n-default\n", b"- a\n")
    ],
    Bad("yaml-watched", (bp.ListTubesWatched(),), ok_reply(b"---\nname: default\n")),
    Bad("yaml-job-id", (bp.StatsJob(id=1),), ok_reply(b"---\nid: x\n")),
    Bad("yaml-job-pri", (bp.StatsJob(id=1),), ok_reply(b"---\npri: high\n")),
    Bad("yaml-tube", (bp.StatsTube(tube="t"),), ok_reply(b"---\ncurrent-jobs-ready: 1.5\n")),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
@pytest.mark.parametrize(
    ("split", "via"),
    [
        ("whole", "receive_data"),
        ("bytewise", "receive_data"),
        ("whole", "buffer"),
        ("bytewise", "buffer"),
    ],
    ids=["whole", "bytewise", "buffer", "buffer-bytewise"],
)
def test_server_breaks_protocol(case: Bad, split: str, via: Via) -> None:
    run_bad(case, split, via)


# -- the error's details -------------------------------------------------------


def _case(name: str) -> Bad:
    return next(case for case in CASES if case.name == name)


def test_unknown_status_carries_status_and_values() -> None:
    error = run_bad(_case("unknown-args"), "whole", "receive_data")
    assert isinstance(error, bp.UnknownResponseError)
    assert error.status == b"SOME_ERROR"
    assert error.values == [b"1", b"2", b"3"]


def test_unknown_bare_status_has_no_values() -> None:
    error = run_bad(_case("unknown"), "whole", "receive_data")
    assert isinstance(error, bp.UnknownResponseError)
    assert (error.status, error.values) == (b"FOO", [])


def test_wrong_known_status_carries_status_and_values() -> None:
    case = Bad("x", (bp.Delete(id=1),), b"INSERTED 5\r\n", bp.UnknownResponseError)
    error = run_bad(case, "whole", "receive_data")
    assert isinstance(error, bp.UnknownResponseError)
    assert (error.status, error.values) == (b"INSERTED", [b"5"])


def test_connection_closed_error_is_a_connection_error() -> None:
    error = run_bad(Bad("x", (PUT,), b"INS", eof=True), "whole", "receive_data")
    assert isinstance(error, bp.ConnectionClosedError)
    assert isinstance(error, ConnectionError)
    assert isinstance(error, bp.RemoteProtocolError)
    assert isinstance(error, bp.Error)


def test_remote_errors_are_not_local_errors() -> None:
    assert not issubclass(bp.RemoteProtocolError, bp.LocalProtocolError)
    assert not issubclass(bp.RemoteProtocolError, ValueError)
    assert issubclass(bp.UnknownResponseError, bp.RemoteProtocolError)


# -- every known status is refused by every command it does not answer ---------

#: One well-formed example of every status the protocol defines.
STATUS_EXAMPLES: list[tuple[bytes, type[bp.Event]]] = [
    (b"INSERTED 1\r\n", bp.Inserted),
    (b"BURIED 1\r\n", bp.Buried),
    (b"BURIED\r\n", bp.Buried),
    (b"EXPECTED_CRLF\r\n", bp.ExpectedCrlf),
    (b"JOB_TOO_BIG\r\n", bp.JobTooBig),
    (b"DRAINING\r\n", bp.Draining),
    (b"USING t\r\n", bp.Using),
    (job_reply(b"RESERVED", 1, b"x"), bp.Reserved),
    (b"DEADLINE_SOON\r\n", bp.DeadlineSoon),
    (b"TIMED_OUT\r\n", bp.TimedOut),
    (b"DELETED\r\n", bp.Deleted),
    (b"NOT_FOUND\r\n", bp.NotFound),
    (b"RELEASED\r\n", bp.Released),
    (b"TOUCHED\r\n", bp.Touched),
    (b"WATCHING 1\r\n", bp.Watching),
    (b"NOT_IGNORED\r\n", bp.NotIgnored),
    (job_reply(b"FOUND", 1, b"x"), bp.Found),
    (b"KICKED 1\r\n", bp.Kicked),
    (b"KICKED\r\n", bp.Kicked),
    (ok_reply(b"---\n"), bp.Ok),
    (b"PAUSED\r\n", bp.Paused),
]

MISMATCHES = [
    (SAMPLE_COMMANDS[command_type], reply)
    for command_type in ALL_COMMAND_TYPES
    if command_type is not bp.Quit
    for reply, event_type in STATUS_EXAMPLES
    if event_type not in ALLOWED_EVENTS[command_type]
]


@pytest.mark.parametrize(
    ("command", "reply"),
    MISMATCHES,
    ids=[f"{c.verb.decode()}<-{r.split(b' ')[0].strip().decode()}" for c, r in MISMATCHES],
)
def test_known_status_to_the_wrong_command(command: bp.Command, reply: bytes) -> None:
    error = run_bad(Bad("", (command,), reply, bp.UnknownResponseError), "whole", "receive_data")
    assert isinstance(error, bp.UnknownResponseError)
    assert error.status == reply.split(b"\r\n")[0].split(b" ")[0]


# -- boundaries: the limits are exact, not off by one ----------------------------


@pytest.mark.parametrize("via", ["receive_data", "buffer"])
def test_line_of_exactly_max_line_length_is_accepted(via: Via) -> None:
    for pieces in ([b"INSERTED 12345\r\n"], bytewise(b"INSERTED 12345\r\n")):
        conn = bp.Connection(max_line_length=16)
        conn.send(PUT)
        events: list[bp.Event] = []
        for piece in pieces:
            feed(conn, piece, via)
            events.extend(drain(conn))
        assert events == [bp.Inserted(id=12345)]


def test_default_limit_takes_the_longest_real_reply() -> None:
    # USING <200-byte name> is the longest line beanstalkd sends (208 bytes).
    conn = bp.Connection()
    conn.send(bp.Use(tube="n" * 200))
    for byte in bytewise(b"USING " + b"n" * 200 + b"\r\n"):
        conn.receive_data(byte)
    assert drain(conn) == [bp.Using(tube="n" * 200)]


def test_partial_line_below_the_limit_waits() -> None:
    conn = bp.Connection(max_line_length=16)
    conn.send(PUT)
    conn.receive_data(b"INSERTED 123456")  # 15 bytes, no CRLF yet
    assert conn.next_event() is bp.NEED_DATA
    conn.receive_data(b"7")
    with pytest.raises(bp.RemoteProtocolError):
        conn.next_event()


def test_body_of_exactly_max_body_size_is_accepted() -> None:
    conn = bp.Connection(max_body_size=11)
    conn.send(bp.Reserve())
    conn.send(STATS)
    conn.receive_data(b"RESERVED 1 11\r\n0123456789a\r\n" + ok_reply(b"---\npid: 1\n"))
    assert drain(conn) == [bp.Reserved(id=1, body=b"0123456789a"), bp.Ok(data={"pid": 1})]


def test_too_big_body_is_refused_without_waiting_for_it() -> None:
    conn = bp.Connection(max_body_size=10)
    conn.send(bp.Reserve())
    conn.receive_data(b"RESERVED 1 11\r\n")
    with pytest.raises(bp.RemoteProtocolError, match="max_body_size"):
        conn.next_event()


# -- bytes nobody asked for ------------------------------------------------------


def test_unsolicited_bytes_via_receive_data_raise_at_once() -> None:
    conn = bp.Connection()
    with pytest.raises(bp.RemoteProtocolError):
        conn.receive_data(b"INSERTED 1\r\n")
    assert_failed_for_good(conn)


def test_unsolicited_bytes_via_buffer_updated_raise_at_once() -> None:
    conn = bp.Connection()
    view = conn.get_buffer()
    view[:3] = b"OK\r"
    view.release()
    with pytest.raises(bp.RemoteProtocolError):
        conn.buffer_updated(3)
    assert_failed_for_good(conn)


def test_more_data_does_not_revive_a_failed_connection() -> None:
    conn = bp.Connection()
    conn.send(bp.Reserve())
    conn.receive_data(b"WHAT\r\n")
    with pytest.raises(bp.UnknownResponseError):
        conn.next_event()
    conn.receive_data(b"TIMED_OUT\r\n")
    feed(conn, b"TIMED_OUT\r\n", "buffer")
    with pytest.raises(bp.RemoteProtocolError):
        conn.next_event()
    conn.receive_data(b"")
    with pytest.raises(bp.RemoteProtocolError):
        conn.next_event()
    assert_failed_for_good(conn)


def test_repeated_error_refers_to_the_first() -> None:
    conn = bp.Connection()
    conn.send(PUT)
    conn.receive_data(b"INSERTED -1\r\n")
    with pytest.raises(bp.RemoteProtocolError) as first:
        conn.next_event()
    with pytest.raises(bp.RemoteProtocolError) as second:
        conn.next_event()
    assert second.value is first.value or second.value.__cause__ is first.value
