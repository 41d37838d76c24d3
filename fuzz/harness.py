"""Fuzz harness: any bytes from a server give events or RemoteProtocolError.

:func:`check` reads its input as a small script followed by what the server
sends::

    byte 0        bits 0-2  how many commands are pending (0-7)
                  bit 3     also send ``quit`` after them
                  bit 4     feed through get_buffer/buffer_updated
                            instead of receive_data
                  bit 5     the server closes the connection at the end
                  bits 6-7  which limits the connection has (see LIMITS)
    next N bytes  which command each pending command is (index into COMMANDS)
    next byte     K, how many read sizes follow (0-15)
    next K bytes  the sizes of the first K reads (1-64 bytes each); the rest
                  of the data arrives in one last read
    the rest      the bytes the server sends

It then feeds those bytes and takes every event. Allowed outcomes: events
that may answer the command they answer, ``NEED_DATA``, and
:class:`beanproto.RemoteProtocolError` (after which the connection must stay
failed). Anything else -- another exception, an event for the wrong command,
a connection that recovers from an error -- propagates or fails an assert.

The same function runs under Hypothesis (``tests/test_fuzz.py``) and under
atheris (``fuzz/fuzz_receive.py``).
"""

from __future__ import annotations

import hashlib
import pathlib
from typing import NamedTuple

import beanproto as bp

__all__ = ["ALLOWED", "COMMANDS", "LIMITS", "Outcome", "check", "encode", "seeds", "write_seeds"]

#: The commands an input can choose from: every command with a reply.
COMMANDS: tuple[bp.Command, ...] = (
    bp.Put(body=b"job"),
    bp.Use(tube="tube"),
    bp.Reserve(),
    bp.ReserveWithTimeout(timeout=0),
    bp.ReserveJob(id=1),
    bp.Delete(id=1),
    bp.Release(id=1),
    bp.Bury(id=1),
    bp.Touch(id=1),
    bp.Watch(tube="tube"),
    bp.Ignore(tube="tube"),
    bp.Peek(id=1),
    bp.PeekReady(),
    bp.PeekDelayed(),
    bp.PeekBuried(),
    bp.Kick(bound=5),
    bp.KickJob(id=1),
    bp.StatsJob(id=1),
    bp.StatsTube(tube="tube"),
    bp.Stats(),
    bp.ListTubes(),
    bp.ListTubeUsed(),
    bp.ListTubesWatched(),
    bp.PauseTube(tube="tube", delay=1),
)

#: (max_line_length, max_body_size) choices; kept small so that no input can
#: make the harness allocate much.
LIMITS: tuple[tuple[int, int], ...] = ((224, 65536), (16, 16), (8, 0), (1024, 1 << 20))

_GENERAL = frozenset({bp.OutOfMemory, bp.InternalError, bp.BadFormat, bp.UnknownCommand})
_PEEK = frozenset({bp.Found, bp.NotFound})

#: Which events may answer which command, from the protocol document.
ALLOWED: dict[type[bp.Command], frozenset[type[bp.Event]]] = {
    bp.Put: frozenset({bp.Inserted, bp.Buried, bp.ExpectedCrlf, bp.JobTooBig, bp.Draining}),
    bp.Use: frozenset({bp.Using}),
    bp.Reserve: frozenset({bp.Reserved, bp.DeadlineSoon, bp.TimedOut}),
    bp.ReserveWithTimeout: frozenset({bp.Reserved, bp.DeadlineSoon, bp.TimedOut}),
    bp.ReserveJob: frozenset({bp.Reserved, bp.NotFound}),
    bp.Delete: frozenset({bp.Deleted, bp.NotFound}),
    bp.Release: frozenset({bp.Released, bp.Buried, bp.NotFound}),
    bp.Bury: frozenset({bp.Buried, bp.NotFound}),
    bp.Touch: frozenset({bp.Touched, bp.NotFound}),
    bp.Watch: frozenset({bp.Watching}),
    bp.Ignore: frozenset({bp.Watching, bp.NotIgnored}),
    bp.Peek: _PEEK,
    bp.PeekReady: _PEEK,
    bp.PeekDelayed: _PEEK,
    bp.PeekBuried: _PEEK,
    bp.Kick: frozenset({bp.Kicked}),
    bp.KickJob: frozenset({bp.Kicked, bp.NotFound}),
    bp.StatsJob: frozenset({bp.Ok, bp.NotFound}),
    bp.StatsTube: frozenset({bp.Ok, bp.NotFound}),
    bp.Stats: frozenset({bp.Ok}),
    bp.ListTubes: frozenset({bp.Ok}),
    bp.ListTubeUsed: frozenset({bp.Using}),
    bp.ListTubesWatched: frozenset({bp.Ok}),
    bp.PauseTube: frozenset({bp.Paused, bp.NotFound}),
}

_LISTS = (bp.ListTubes, bp.ListTubesWatched)


class Outcome(NamedTuple):
    """What one input did: the events, and the error that ended it, if any."""

    events: list[bp.Event]
    error: bp.RemoteProtocolError | None


def encode(
    commands: list[int],
    payload: bytes,
    *,
    quit: bool = False,
    buffered: bool = False,
    eof: bool = False,
    limits: int = 0,
    sizes: list[int] | None = None,
) -> bytes:
    """Build the input that :func:`check` reads back as this script."""
    assert len(commands) <= 7 and 0 <= limits < len(LIMITS)
    sizes = sizes or []
    assert len(sizes) <= 15 and all(1 <= size <= 64 for size in sizes)
    header = len(commands) | quit << 3 | buffered << 4 | eof << 5 | limits << 6
    return bytes([header, *commands, len(sizes)]) + bytes(size - 1 for size in sizes) + payload


def _check_event(event: bp.Event, owed: list[bp.Command], max_body_size: int) -> None:
    assert isinstance(event, bp.Event), event
    if not owed:
        assert isinstance(event, bp.ConnectionClosed), event
        return
    command = owed.pop(0)
    assert type(event) in ALLOWED[type(command)] | _GENERAL, (command, event)
    if isinstance(event, (bp.Reserved, bp.Found)):
        assert type(event.body) is bytes and len(event.body) <= max_body_size
        assert 0 <= event.id < 2**64
    elif isinstance(event, bp.Ok):
        if isinstance(command, _LISTS):
            assert isinstance(event.data, list)
            assert all(type(name) is str for name in event.data)
        else:
            assert isinstance(event.data, dict)
            assert all(type(key) is str for key in event.data)
            assert all(type(v) in (int, float, bool, str) for v in event.data.values())
    elif isinstance(event, (bp.Inserted, bp.Watching)):
        value = event.id if isinstance(event, bp.Inserted) else event.count
        assert type(value) is int and 0 <= value < 2**64
    elif isinstance(event, bp.Using):
        assert type(event.tube) is str and 1 <= len(event.tube) <= 200


def _feed(conn: bp.Connection, piece: bytes, buffered: bool) -> None:
    if not buffered:
        conn.receive_data(piece)
        return
    at = 0
    while at < len(piece):
        view = conn.get_buffer(len(piece) - at)
        n = min(len(view), len(piece) - at)
        assert n > 0
        view[:n] = piece[at : at + n]
        view.release()
        conn.buffer_updated(n)
        at += n


def check(data: bytes) -> Outcome:
    """Run one input; see the module docstring. Returns what happened."""
    header = data[0] if data else 0
    count = header & 7
    quit, buffered, eof = bool(header & 8), bool(header & 16), bool(header & 32)
    max_line_length, max_body_size = LIMITS[header >> 6]
    at = 1
    chosen = [COMMANDS[b % len(COMMANDS)] for b in data[at : at + count]]
    at += count
    k = data[at] % 16 if at < len(data) else 0
    at += 1
    sizes = [b % 64 + 1 for b in data[at : at + k]]
    at += k
    payload = data[at:]

    conn = bp.Connection(max_line_length=max_line_length, max_body_size=max_body_size)
    for command in chosen:
        conn.send(command)
    if quit:
        conn.send(bp.Quit())
    owed = list(chosen)
    events: list[bp.Event] = []

    def take_events() -> None:
        while not events or not isinstance(events[-1], bp.ConnectionClosed):
            event = conn.next_event()
            if event is bp.NEED_DATA:
                return
            _check_event(event, owed, max_body_size)
            events.append(event)

    pieces: list[bytes] = []
    start = 0
    for size in sizes:
        if start >= len(payload):
            break
        pieces.append(payload[start : start + size])
        start += size
    if start < len(payload):
        pieces.append(payload[start:])

    try:
        for piece in pieces:
            _feed(conn, piece, buffered)
            take_events()
        if eof:
            conn.receive_data(b"")
            take_events()
            # Every reply owed has arrived, or the error above was raised.
            assert not owed and isinstance(events[-1], bp.ConnectionClosed)
    except bp.RemoteProtocolError as error:
        _check_failed_for_good(conn)
        return Outcome(events, error)
    assert conn.pending == len(owed)
    return Outcome(events, None)


def _check_failed_for_good(conn: bp.Connection) -> None:
    assert conn.state is bp.State.ERROR
    try:
        conn.next_event()
    except bp.RemoteProtocolError:
        pass
    else:
        raise AssertionError("a failed connection produced an event")
    try:
        conn.send(bp.Reserve())
    except bp.LocalProtocolError:
        pass
    else:
        raise AssertionError("a failed connection accepted a command")


def _ok(document: bytes) -> bytes:
    return b"OK %d\r\n%s\r\n" % (len(document), document)


def seeds() -> list[bytes]:
    """Valid conversations, one per kind of reply: a starting corpus from
    which a fuzzer reaches the body and YAML readers quickly."""
    index = {type(command): i for i, command in enumerate(COMMANDS)}

    def script(
        types: list[type[bp.Command]],
        payload: bytes,
        *,
        quit: bool = False,
        buffered: bool = False,
        eof: bool = False,
        limits: int = 0,
        sizes: list[int] | None = None,
    ) -> bytes:
        chosen = [index[t] for t in types]
        flags = {"quit": quit, "buffered": buffered, "eof": eof}
        return encode(chosen, payload, limits=limits, sizes=sizes, **flags)

    return [
        script([bp.Put], b"INSERTED 1\r\n"),
        script([bp.Put, bp.Put], b"BURIED 2\r\nJOB_TOO_BIG\r\n", sizes=[3, 7]),
        script([bp.Use, bp.ListTubeUsed], b"USING tube\r\nUSING default\r\n", buffered=True),
        script([bp.Reserve], b"RESERVED 7 5\r\nhello\r\n"),
        script([bp.ReserveWithTimeout], b"TIMED_OUT\r\n", eof=True),
        script([bp.ReserveJob], b"RESERVED 1 4\r\na\r\nb\r\n", buffered=True, sizes=[1, 1, 1]),
        script([bp.Delete, bp.Release, bp.Bury], b"DELETED\r\nRELEASED\r\nBURIED\r\n"),
        script([bp.Touch, bp.Watch, bp.Ignore], b"TOUCHED\r\nWATCHING 2\r\nNOT_IGNORED\r\n"),
        script([bp.Peek, bp.PeekReady], b"FOUND 1 3\r\nabc\r\nNOT_FOUND\r\n"),
        script([bp.Kick, bp.KickJob], b"KICKED 3\r\nKICKED\r\n", quit=True, eof=True),
        script([bp.StatsJob], _ok(b"---\nid: 1\ntube: tube\nstate: ready\npri: 0\n")),
        script([bp.StatsTube], _ok(b'---\nname: "tube"\ncurrent-jobs-ready: 1\n')),
        script(
            [bp.Stats],
            _ok(b'---\npid: 1\nversion: "1.12"\nrusage-utime: 0.5\ndraining: false\n'),
        ),
        script([bp.ListTubes, bp.ListTubesWatched], _ok(b"---\n- a\n") + _ok(b'---\n- "b"\n')),
        script([bp.PauseTube, bp.Stats], b"PAUSED\r\nINTERNAL_ERROR\r\n", limits=3),
        script([bp.Put], b"INSERTED 123456\r\n", limits=1),
    ]


def write_seeds(directory: str | pathlib.Path) -> int:
    """Write :func:`seeds` into ``directory`` (a libFuzzer corpus)."""
    path = pathlib.Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    for seed in seeds():
        (path / hashlib.sha1(seed).hexdigest()).write_bytes(seed)
    return len(seeds())
