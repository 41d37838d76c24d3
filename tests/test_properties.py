"""Properties of the core (STYLE item 10).

(a) any split of a valid reply stream gives the same events as feeding it
    whole, through ``receive_data`` and through ``get_buffer``/``buffer_updated``;
(b) every command round-trips through its wire form;
(c) any bytes after any pending commands give events, ``NEED_DATA`` or
    ``RemoteProtocolError``, never another exception;
(d) buffering is linear: a 64 MiB body in 64 KiB reads is quick and the
    receive buffer is not reallocated per read.
"""

from __future__ import annotations

import math
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import beanproto as bp
from core_helpers import (
    ALLOWED_EVENTS,
    GENERAL_ERRORS,
    Via,
    bytewise,
    feed,
    feed_and_collect,
    feed_pieces,
    job_reply,
    ok_reply,
    parse_command,
    parse_commands,
    pieces_from_sizes,
    state,
)

# -- strategies: commands ------------------------------------------------------------

NAME_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-+/;.$_()"

tube_names = st.text(alphabet=NAME_ALPHABET, min_size=1, max_size=200).filter(
    lambda name: not name.startswith("-")
)
short_tube_names = st.text(alphabet=NAME_ALPHABET, min_size=1, max_size=12).filter(
    lambda name: not name.startswith("-")
)
u32 = st.integers(0, bp.MAX_UINT32)
u64 = st.integers(0, bp.MAX_UINT64)

#: Bodies that like to contain what a reply parser might trip over.
bodies = st.lists(
    st.one_of(
        st.sampled_from([b"\r\n", b"\r", b"\n", b"RESERVED 1 1\r\n", b"OK 3\r\n", b" ", b"\x00"]),
        st.binary(max_size=16),
    ),
    max_size=8,
).map(b"".join)

commands: st.SearchStrategy[bp.Command] = st.one_of(
    st.builds(bp.Put, body=bodies, priority=u32, delay=u32, ttr=u32),
    st.builds(bp.Put, body=bodies.map(bytearray)),
    st.builds(bp.Use, tube=tube_names),
    st.just(bp.Reserve()),
    st.builds(bp.ReserveWithTimeout, timeout=st.integers(0, bp.MAX_RESERVE_TIMEOUT)),
    st.builds(bp.ReserveJob, id=u64),
    st.builds(bp.Delete, id=u64),
    st.builds(bp.Release, id=u64, priority=u32, delay=u32),
    st.builds(bp.Bury, id=u64, priority=u32),
    st.builds(bp.Touch, id=u64),
    st.builds(bp.Watch, tube=tube_names),
    st.builds(bp.Ignore, tube=tube_names),
    st.builds(bp.Peek, id=u64),
    st.just(bp.PeekReady()),
    st.just(bp.PeekDelayed()),
    st.just(bp.PeekBuried()),
    st.builds(bp.Kick, bound=u32),
    st.builds(bp.KickJob, id=u64),
    st.builds(bp.StatsJob, id=u64),
    st.builds(bp.StatsTube, tube=tube_names),
    st.just(bp.Stats()),
    st.just(bp.ListTubes()),
    st.just(bp.ListTubeUsed()),
    st.just(bp.ListTubesWatched()),
    st.builds(bp.PauseTube, tube=tube_names, delay=u32),
)

# -- strategies: a valid reply for a command -----------------------------------------

Reply = tuple[bytes, bp.Event]


def _bare(event: bp.Event) -> Reply:
    return event.status + b"\r\n", event


@st.composite
def replies_to(draw: st.DrawFn, command: bp.Command) -> Reply:
    """A reply the protocol allows for ``command``, and its event."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.sampled_from(GENERAL_ERRORS))
    kind = type(command)
    not_found = _bare(bp.NotFound())

    def job(status: bytes) -> Reply:
        job_id, body = draw(u64), draw(bodies)
        event: bp.Event = (
            bp.Reserved(id=job_id, body=body)
            if status == b"RESERVED"
            else bp.Found(id=job_id, body=body)
        )
        return job_reply(status, job_id, body), event

    def using() -> Reply:
        tube = draw(tube_names)
        return b"USING %s\r\n" % tube.encode(), bp.Using(tube=tube)

    def watching() -> Reply:
        count = draw(u64)
        return b"WATCHING %d\r\n" % count, bp.Watching(count=count)

    def tube_list() -> Reply:
        names = draw(st.lists(short_tube_names, max_size=5))
        quote = b'"' if draw(st.booleans()) else b""
        doc = b"---\n" + b"".join(b"- " + quote + n.encode() + quote + b"\n" for n in names)
        return ok_reply(doc), bp.Ok(data=names)

    options: list[Reply]
    if kind is bp.Put:
        job_id = draw(u64)
        options = [
            (b"INSERTED %d\r\n" % job_id, bp.Inserted(id=job_id)),
            (b"BURIED %d\r\n" % job_id, bp.Buried(id=job_id)),
            _bare(bp.ExpectedCrlf()),
            _bare(bp.JobTooBig()),
            _bare(bp.Draining()),
        ]
    elif kind in (bp.Use, bp.ListTubeUsed):
        options = [using()]
    elif kind in (bp.Reserve, bp.ReserveWithTimeout):
        options = [job(b"RESERVED"), _bare(bp.DeadlineSoon()), _bare(bp.TimedOut())]
    elif kind is bp.ReserveJob:
        options = [job(b"RESERVED"), not_found]
    elif kind is bp.Delete:
        options = [_bare(bp.Deleted()), not_found]
    elif kind is bp.Release:
        options = [_bare(bp.Released()), (b"BURIED\r\n", bp.Buried()), not_found]
    elif kind is bp.Bury:
        options = [(b"BURIED\r\n", bp.Buried()), not_found]
    elif kind is bp.Touch:
        options = [_bare(bp.Touched()), not_found]
    elif kind is bp.Watch:
        options = [watching()]
    elif kind is bp.Ignore:
        options = [watching(), _bare(bp.NotIgnored())]
    elif kind in (bp.Peek, bp.PeekReady, bp.PeekDelayed, bp.PeekBuried):
        options = [job(b"FOUND"), not_found]
    elif kind is bp.Kick:
        count = draw(u32)
        options = [(b"KICKED %d\r\n" % count, bp.Kicked(count=count))]
    elif kind is bp.KickJob:
        options = [(b"KICKED\r\n", bp.Kicked()), not_found]
    elif kind is bp.StatsJob:
        job_id, pri, tube = draw(u64), draw(u32), draw(short_tube_names)
        doc = b"---\nid: %d\ntube: %s\nstate: ready\npri: %d\n" % (job_id, tube.encode(), pri)
        data: dict[str, bp.StatValue] = {"id": job_id, "tube": tube, "state": "ready", "pri": pri}
        options = [(ok_reply(doc), bp.Ok(data=data)), not_found]
    elif kind is bp.StatsTube:
        tube, ready = draw(short_tube_names), draw(u32)
        doc = b'---\nname: "%s"\ncurrent-jobs-ready: %d\n' % (tube.encode(), ready)
        data = {"name": tube, "current-jobs-ready": ready}
        options = [(ok_reply(doc), bp.Ok(data=data)), not_found]
    elif kind is bp.Stats:
        pid, draining = draw(u32), draw(st.sampled_from(["true", "false"]))
        doc = b'---\npid: %d\nversion: "1.12"\nrusage-utime: 0.250000\ndraining: %s\n' % (
            pid,
            draining.encode(),
        )
        data = {"pid": pid, "version": "1.12", "rusage-utime": "0.250000", "draining": draining}
        options = [(ok_reply(doc), bp.Ok(data=data))]
    elif kind in (bp.ListTubes, bp.ListTubesWatched):
        options = [tube_list()]
    elif kind is bp.PauseTube:
        options = [_bare(bp.Paused()), not_found]
    else:  # pragma: no cover - every command is listed above
        raise AssertionError(kind)
    return draw(st.sampled_from(options))


Script = tuple[list[bp.Command], bytes, list[bp.Event]]


@st.composite
def scripts(draw: st.DrawFn, max_commands: int = 8) -> Script:
    """Commands, the server's whole reply stream, and the events it means."""
    sent = draw(st.lists(commands, min_size=1, max_size=max_commands))
    replies = [draw(replies_to(command)) for command in sent]
    return sent, b"".join(reply for reply, _ in replies), [event for _, event in replies]


def split_replies(sent: list[bp.Command], stream: bytes) -> list[bytes]:
    """Cut a valid reply stream into one reply per command, using only the
    framing rules (a line; and for RESERVED, FOUND and OK a body and CRLF)."""
    replies: list[bytes] = []
    at = 0
    for _ in sent:
        end = stream.index(b"\r\n", at) + 2
        words = stream[at : end - 2].split(b" ")
        if words[0] in (b"RESERVED", b"FOUND", b"OK"):
            end += int(words[-1]) + 2
        replies.append(stream[at:end])
        at = end
    assert at == len(stream)
    return replies


# -- (a) split invariance ---------------------------------------------------------------


def _connection(sent: list[bp.Command]) -> bp.Connection:
    conn = bp.Connection()
    for command in sent:
        conn.send(command)
    return conn


@settings(max_examples=200, deadline=None)
@given(script=scripts(), data=st.data())
def test_any_split_gives_the_same_events(script: Script, data: st.DataObject) -> None:
    sent, stream, expected = script
    whole = feed_and_collect(_connection(sent), stream)
    assert whole == expected
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=24), label="cuts")
    for via in ("receive_data", "buffer"):
        conn = _connection(sent)
        assert feed_and_collect(conn, stream, cuts, via=via) == expected
        assert conn.pending == 0
        assert conn.next_event() is bp.NEED_DATA


@settings(max_examples=60, deadline=None)
@given(script=scripts(max_commands=4), via=st.sampled_from(["receive_data", "buffer"]))
def test_one_byte_at_a_time_gives_the_same_events(script: Script, via: Via) -> None:
    sent, stream, expected = script
    conn = _connection(sent)
    assert feed_pieces(conn, bytewise(stream), via=via) == expected
    assert conn.pending == 0


@settings(max_examples=100, deadline=None)
@given(script=scripts(), data=st.data())
def test_mixing_both_ways_of_feeding_gives_the_same_events(
    script: Script, data: st.DataObject
) -> None:
    sent, stream, expected = script
    sizes = data.draw(st.lists(st.integers(1, 64), max_size=40), label="sizes")
    ways = data.draw(
        st.lists(st.sampled_from(["receive_data", "buffer"]), min_size=1), label="ways"
    )
    conn = _connection(sent)
    events: list[bp.Event] = []
    for i, piece in enumerate(pieces_from_sizes(stream, sizes)):
        way: Via = "buffer" if ways[i % len(ways)] == "buffer" else "receive_data"
        feed(conn, piece, way)
        while (event := conn.next_event()) is not bp.NEED_DATA:
            assert isinstance(event, bp.Event)
            events.append(event)
    assert events == expected


@settings(max_examples=100, deadline=None)
@given(script=scripts(), data=st.data())
def test_sending_while_replies_arrive_gives_the_same_events(
    script: Script, data: st.DataObject
) -> None:
    # Commands are sent a few at a time; each reply is fed, in two pieces,
    # only once its command has been sent (else it would be unsolicited).
    sent, stream, expected = script
    replies = split_replies(sent, stream)
    conn = bp.Connection()
    events: list[bp.Event] = []
    sent_so_far = 0
    for i, reply in enumerate(replies):
        while sent_so_far <= i or (sent_so_far < len(sent) and data.draw(st.booleans())):
            conn.send(sent[sent_so_far])
            sent_so_far += 1
        events.extend(feed_and_collect(conn, reply, [len(reply) // 2]))
    assert events == expected
    assert conn.pending == 0


# -- (b) round trip through the wire -----------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(command=commands)
def test_every_command_round_trips(command: bp.Command) -> None:
    conn = bp.Connection()
    wire = conn.send(command)
    parsed, rest = parse_command(wire)
    assert parsed == command
    assert type(parsed) is type(command)
    assert rest == b""
    assert b"".join(bytes(part) for part in bp.Connection().send_parts(command)) == wire


@settings(max_examples=100, deadline=None)
@given(sent=st.lists(commands, max_size=10))
def test_pipelined_commands_round_trip(sent: list[bp.Command]) -> None:
    conn = bp.Connection()
    wire = b"".join(conn.send(command) for command in sent)
    assert parse_commands(wire) == sent
    assert conn.pending_commands == tuple(sent)


# -- (c) any bytes: events, NEED_DATA or RemoteProtocolError ------------------------------

TOKENS = [
    b"INSERTED",
    b"BURIED",
    b"RESERVED",
    b"FOUND",
    b"OK",
    b"USING",
    b"WATCHING",
    b"KICKED",
    b"DELETED",
    b"NOT_FOUND",
    b"TIMED_OUT",
    b"INTERNAL_ERROR",
    b" ",
    b"\r\n",
    b"\r",
    b"\n",
    b"0",
    b"1",
    b"3",
    b"12",
    b"-1",
    b"18446744073709551616",
    b"99999999999999999999999",
    b"---\n",
    b"- a\n",
    b'- "b"\n',
    b"pid: 1\n",
    b"id: x\n",
    b"draining: maybe\n",
    b"\xff: 1\n",
    b'os: "\\"\n',
    b"abc",
    b'"',
    b"\x00",
    b"\xff",
]

garbage = st.one_of(
    st.binary(max_size=200),
    st.lists(st.one_of(st.sampled_from(TOKENS), st.binary(max_size=4)), max_size=40).map(b"".join),
)

STATS_WITH_NON_ASCII_KEY = ok_reply(b"---\n\xff: 1\n")


def check_any_bytes(
    sent: list[bp.Command], quit: bool, stream: bytes, sizes: list[int], via: Via, eof: bool
) -> None:
    conn = bp.Connection(max_body_size=4096)
    for command in sent:
        conn.send(command)
    if quit:
        conn.send(bp.Quit())
    owed = list(sent)
    closed = False

    def take_events() -> None:
        nonlocal closed
        while not closed and (event := conn.next_event()) is not bp.NEED_DATA:
            assert isinstance(event, bp.Event)
            if owed:
                command = owed.pop(0)
                assert type(event) in ALLOWED_EVENTS[type(command)], (command, event)
            else:
                assert event == bp.ConnectionClosed()
                closed = True

    try:
        for piece in pieces_from_sizes(stream, sizes):
            feed(conn, piece, via)
            take_events()
        if eof:
            conn.receive_data(b"")
            take_events()
            assert closed and not owed
    except bp.RemoteProtocolError:
        assert state(conn) is bp.State.ERROR
        try:
            conn.next_event()
        except bp.RemoteProtocolError:
            pass
        else:
            raise AssertionError("the error state did not stick") from None
        try:
            conn.send(bp.Reserve())
        except bp.LocalProtocolError:
            pass
        else:
            raise AssertionError("send worked after a remote error") from None
    else:
        assert conn.pending == len(owed)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sent=st.lists(commands, max_size=5),
    quit=st.booleans(),
    stream=garbage,
    sizes=st.lists(st.integers(1, 40), max_size=20),
    via=st.sampled_from(["receive_data", "buffer"]),
    eof=st.booleans(),
)
def test_any_bytes_give_events_or_remote_errors(
    sent: list[bp.Command], quit: bool, stream: bytes, sizes: list[int], via: Via, eof: bool
) -> None:
    check_any_bytes(sent, quit, stream, sizes, via, eof)


def test_any_bytes_regression_non_ascii_yaml_key() -> None:
    # Found by the property above: a YAML key that is not ASCII.
    for command in (bp.Stats(), bp.StatsJob(id=1), bp.StatsTube(tube="t")):
        check_any_bytes([command], False, STATS_WITH_NON_ASCII_KEY, [], "receive_data", False)


@settings(max_examples=200, deadline=None)
@given(
    script=scripts(max_commands=4),
    data=st.data(),
)
def test_corrupted_valid_streams_give_events_or_remote_errors(
    script: Script, data: st.DataObject
) -> None:
    # Start from a valid stream and damage it: flip, drop or insert bytes.
    sent, stream, _ = script
    damaged = bytearray(stream)
    for _ in range(data.draw(st.integers(1, 4), label="edits")):
        at = data.draw(st.integers(0, len(damaged)), label="at")
        edit = data.draw(st.sampled_from(["flip", "drop", "insert"]), label="edit")
        if edit == "insert" or at == len(damaged):
            damaged[at:at] = data.draw(st.sampled_from(TOKENS), label="token")
        elif edit == "flip":
            damaged[at] = data.draw(st.integers(0, 255), label="byte")
        else:
            del damaged[at]
    sizes = data.draw(st.lists(st.integers(1, 64), max_size=10), label="sizes")
    via: Via = data.draw(st.sampled_from(["receive_data", "buffer"]), label="via")
    check_any_bytes(sent, False, bytes(damaged), sizes, via, data.draw(st.booleans()))


# -- (d) linear buffering ------------------------------------------------------------------

BIG = 64 * 1024 * 1024
CHUNK = 64 * 1024


def _big_body() -> bytes:
    # Not all zeros, and with CRLFs inside, so that nothing can skip it.
    return (b"0123456789abcdef\r\n" * (BIG // 18 + 1))[:BIG]


def _count_reallocations(conn: bp.Connection, last: list[object]) -> int:
    data = conn._buffer._data
    if data is last[0]:
        return 0
    last[0] = data  # holding it keeps its identity from being reused
    return 1


def test_big_body_in_small_reads_is_linear() -> None:
    body = _big_body()
    conn = bp.Connection()
    conn.send(bp.Reserve())
    last: list[object] = [conn._buffer._data]
    reallocations = 0
    view = memoryview(body)
    started = time.perf_counter()
    conn.receive_data(b"RESERVED 1 %d\r\n" % BIG)
    assert conn.next_event() is bp.NEED_DATA
    reallocations += _count_reallocations(conn, last)
    for at in range(0, BIG, CHUNK):
        conn.receive_data(view[at : at + CHUNK])
        reallocations += _count_reallocations(conn, last)
        assert conn.next_event() is bp.NEED_DATA
    conn.receive_data(b"\r\n")
    event = conn.next_event()
    elapsed = time.perf_counter() - started
    reallocations += _count_reallocations(conn, last)
    assert isinstance(event, bp.Reserved)
    assert event.id == 1
    assert event.body == body
    # Doubling from 64 KiB to 64 MiB is 10 steps; one per read would be 1024.
    assert reallocations <= math.log2(BIG // CHUNK) + 2, reallocations
    assert elapsed < 2.0, elapsed


def test_big_body_through_the_buffer_protocol_is_linear() -> None:
    body = _big_body()
    conn = bp.Connection()
    conn.send(bp.Reserve())
    last: list[object] = [conn._buffer._data]
    reallocations = 0
    started = time.perf_counter()
    feed(conn, b"RESERVED 2 %d\r\n" % BIG, "buffer")
    assert conn.next_event() is bp.NEED_DATA
    stream = memoryview(body + b"\r\n")
    at = 0
    reads = 0
    while at < len(stream):
        target = conn.get_buffer(CHUNK)
        n = min(CHUNK, len(target), len(stream) - at)
        target[:n] = stream[at : at + n]
        target.release()
        conn.buffer_updated(n)
        at += n
        reads += 1
        reallocations += _count_reallocations(conn, last)
    event = conn.next_event()
    elapsed = time.perf_counter() - started
    assert event == bp.Reserved(id=2, body=body)
    assert reads == math.ceil((BIG + 2) / CHUNK)
    assert reallocations <= math.log2(BIG // CHUNK) + 2, reallocations
    assert elapsed < 2.0, elapsed
