"""Drive a :class:`beanproto.Connection` in memory against a scripted server.

Nothing here touches a socket. Three kinds of helper:

* feeding: :func:`feed_and_collect` splits the server's bytes at given points,
  feeds each piece (with ``receive_data`` or ``get_buffer``/``buffer_updated``)
  and collects every event until ``NEED_DATA``;
* a tiny server-side reader, :func:`parse_command`, that turns the wire bytes
  of a command back into a command object, so that tests can check that the
  bytes say what the object says;
* sample commands, replies and the events they must become.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from typing import Literal

from harness import ALLOWED

import beanproto as bp

__all__ = [
    "ALL_COMMAND_TYPES",
    "CommandSyntaxError",
    "GENERAL_ERRORS",
    "ALLOWED_EVENTS",
    "SAMPLE_COMMANDS",
    "Via",
    "bytewise",
    "drain",
    "feed",
    "feed_and_collect",
    "feed_pieces",
    "job_reply",
    "ok_reply",
    "parse_command",
    "parse_commands",
    "split_at",
    "state",
    "pieces_from_sizes",
]

Via = Literal["receive_data", "buffer"]

#: Every command class, in the order of the protocol document.
ALL_COMMAND_TYPES: tuple[type[bp.Command], ...] = (
    bp.Put,
    bp.Use,
    bp.Reserve,
    bp.ReserveWithTimeout,
    bp.ReserveJob,
    bp.Delete,
    bp.Release,
    bp.Bury,
    bp.Touch,
    bp.Watch,
    bp.Ignore,
    bp.Peek,
    bp.PeekReady,
    bp.PeekDelayed,
    bp.PeekBuried,
    bp.Kick,
    bp.KickJob,
    bp.StatsJob,
    bp.StatsTube,
    bp.Stats,
    bp.ListTubes,
    bp.ListTubeUsed,
    bp.ListTubesWatched,
    bp.PauseTube,
    bp.Quit,
)

#: One ordinary instance of every command class.
SAMPLE_COMMANDS: dict[type[bp.Command], bp.Command] = {
    bp.Put: bp.Put(body=b"hello"),
    bp.Use: bp.Use(tube="emails"),
    bp.Reserve: bp.Reserve(),
    bp.ReserveWithTimeout: bp.ReserveWithTimeout(timeout=5),
    bp.ReserveJob: bp.ReserveJob(id=7),
    bp.Delete: bp.Delete(id=7),
    bp.Release: bp.Release(id=7),
    bp.Bury: bp.Bury(id=7),
    bp.Touch: bp.Touch(id=7),
    bp.Watch: bp.Watch(tube="emails"),
    bp.Ignore: bp.Ignore(tube="emails"),
    bp.Peek: bp.Peek(id=7),
    bp.PeekReady: bp.PeekReady(),
    bp.PeekDelayed: bp.PeekDelayed(),
    bp.PeekBuried: bp.PeekBuried(),
    bp.Kick: bp.Kick(bound=10),
    bp.KickJob: bp.KickJob(id=7),
    bp.StatsJob: bp.StatsJob(id=7),
    bp.StatsTube: bp.StatsTube(tube="emails"),
    bp.Stats: bp.Stats(),
    bp.ListTubes: bp.ListTubes(),
    bp.ListTubeUsed: bp.ListTubeUsed(),
    bp.ListTubesWatched: bp.ListTubesWatched(),
    bp.PauseTube: bp.PauseTube(tube="emails", delay=30),
    bp.Quit: bp.Quit(),
}

#: The four replies any command may get (protocol section "Protocol").
GENERAL_ERRORS: tuple[tuple[bytes, bp.Event], ...] = (
    (b"OUT_OF_MEMORY\r\n", bp.OutOfMemory()),
    (b"INTERNAL_ERROR\r\n", bp.InternalError()),
    (b"BAD_FORMAT\r\n", bp.BadFormat()),
    (b"UNKNOWN_COMMAND\r\n", bp.UnknownCommand()),
)

_GENERAL_TYPES: frozenset[type[bp.Event]] = frozenset(type(event) for _, event in GENERAL_ERRORS)
#: Which event classes may answer which command (written from the protocol
#: document, independently of beanproto's own reply table; the fuzz harness
#: holds the table, so the two cannot drift apart).
ALLOWED_EVENTS: dict[type[bp.Command], frozenset[type[bp.Event]]] = {
    command_type: allowed | _GENERAL_TYPES for command_type, allowed in ALLOWED.items()
}


# -- building replies ------------------------------------------------------


def job_reply(status: bytes, job_id: int, body: bytes) -> bytes:
    """``RESERVED``/``FOUND <id> <bytes>\\r\\n<body>\\r\\n``."""
    return b"%s %d %d\r\n%s\r\n" % (status, job_id, len(body), body)


def ok_reply(document: bytes) -> bytes:
    """``OK <bytes>\\r\\n<document>\\r\\n``."""
    return b"OK %d\r\n%s\r\n" % (len(document), document)


# -- feeding ---------------------------------------------------------------


def split_at(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    """Split ``data`` at the given offsets (any order, out of range clipped)."""
    points = sorted({min(max(cut, 0), len(data)) for cut in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def pieces_from_sizes(data: bytes, sizes: Iterable[int]) -> list[bytes]:
    """Cut ``data`` into pieces of the given sizes (each at least 1); the last
    piece takes whatever is left."""
    pieces: list[bytes] = []
    at = 0
    for size in sizes:
        if at >= len(data):
            break
        pieces.append(data[at : at + max(size, 1)])
        at += max(size, 1)
    if at < len(data):
        pieces.append(data[at:])
    return pieces


def feed(conn: bp.Connection, piece: bytes, via: Via = "receive_data") -> None:
    """Hand ``piece`` to the connection, as ``receive_data`` or through the
    ``get_buffer``/``buffer_updated`` pair (asyncio ``BufferedProtocol``)."""
    if via == "receive_data":
        conn.receive_data(piece)
        return
    at = 0
    while at < len(piece):
        view = conn.get_buffer(len(piece) - at)
        n = min(len(view), len(piece) - at)
        assert n > 0, "get_buffer lent an empty buffer"
        view[:n] = piece[at : at + n]
        view.release()
        conn.buffer_updated(n)
        at += n


def state(conn: bp.Connection) -> bp.State:
    """``conn.state``, read through a call so that mypy does not narrow it
    across the calls that change it."""
    return conn.state


def drain(conn: bp.Connection) -> list[bp.Event]:
    """Collect events until ``NEED_DATA`` (or until ``ConnectionClosed``,
    after which the connection has nothing more to say)."""
    events: list[bp.Event] = []
    while True:
        event = conn.next_event()
        if event is bp.NEED_DATA:
            return events
        assert isinstance(event, bp.Event)
        events.append(event)
        if isinstance(event, bp.ConnectionClosed):
            return events


def feed_and_collect(
    conn: bp.Connection,
    data: bytes,
    cuts: Iterable[int] = (),
    *,
    via: Via = "receive_data",
) -> list[bp.Event]:
    """Feed ``data`` split at ``cuts``; after each piece collect every event
    the connection can produce. Returns all events in order."""
    events: list[bp.Event] = []
    for piece in split_at(data, cuts):
        feed(conn, piece, via)
        events.extend(drain(conn))
    return events


def feed_pieces(
    conn: bp.Connection, pieces: Sequence[bytes], *, via: Via = "receive_data"
) -> list[bp.Event]:
    """Like :func:`feed_and_collect`, with the pieces given."""
    events: list[bp.Event] = []
    for piece in pieces:
        feed(conn, piece, via)
        events.extend(drain(conn))
    return events


def bytewise(data: bytes) -> list[bytes]:
    """``data`` one byte at a time."""
    return [data[i : i + 1] for i in range(len(data))]


# -- the server's side: reading commands back ------------------------------


class CommandSyntaxError(Exception):
    """The bytes are not a well-formed beanstalk command."""


_NAME_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-+/;.$_()")

# verb -> (class, argument kinds in order). "name" is a tube name, "u32" and
# "u64" are decimal integers. put's fields are handled separately.
_SYNTAX: dict[bytes, tuple[Callable[..., bp.Command], tuple[tuple[str, str], ...]]] = {
    b"use": (bp.Use, (("tube", "name"),)),
    b"reserve": (bp.Reserve, ()),
    b"reserve-with-timeout": (bp.ReserveWithTimeout, (("timeout", "u32"),)),
    b"reserve-job": (bp.ReserveJob, (("id", "u64"),)),
    b"delete": (bp.Delete, (("id", "u64"),)),
    b"release": (bp.Release, (("id", "u64"), ("priority", "u32"), ("delay", "u32"))),
    b"bury": (bp.Bury, (("id", "u64"), ("priority", "u32"))),
    b"touch": (bp.Touch, (("id", "u64"),)),
    b"watch": (bp.Watch, (("tube", "name"),)),
    b"ignore": (bp.Ignore, (("tube", "name"),)),
    b"peek": (bp.Peek, (("id", "u64"),)),
    b"peek-ready": (bp.PeekReady, ()),
    b"peek-delayed": (bp.PeekDelayed, ()),
    b"peek-buried": (bp.PeekBuried, ()),
    b"kick": (bp.Kick, (("bound", "u32"),)),
    b"kick-job": (bp.KickJob, (("id", "u64"),)),
    b"stats-job": (bp.StatsJob, (("id", "u64"),)),
    b"stats-tube": (bp.StatsTube, (("tube", "name"),)),
    b"stats": (bp.Stats, ()),
    b"list-tubes": (bp.ListTubes, ()),
    b"list-tube-used": (bp.ListTubeUsed, ()),
    b"list-tubes-watched": (bp.ListTubesWatched, ()),
    b"pause-tube": (bp.PauseTube, (("tube", "name"), ("delay", "u32"))),
    b"quit": (bp.Quit, ()),
}


def _number(raw: bytes, maximum: int) -> int:
    if not raw or not raw.isdigit() or (len(raw) > 1 and raw[0] == 0x30):
        raise CommandSyntaxError(f"not a canonical decimal number: {raw!r}")
    value = int(raw)
    if value > maximum:
        raise CommandSyntaxError(f"number out of range: {raw!r}")
    return value


def _name(raw: bytes) -> str:
    if not raw or len(raw) > 200 or raw[0] == 0x2D or not set(raw) <= _NAME_CHARS:
        raise CommandSyntaxError(f"not a valid name: {raw!r}")
    return raw.decode("ascii")


def parse_command(data: bytes) -> tuple[bp.Command, bytes]:
    """Read one command from the front of ``data``, as a server would.

    Returns the command and the bytes after it. Raises
    :class:`CommandSyntaxError` if the bytes are not exactly one well-formed
    command line (and, for ``put``, its body and CRLF).
    """
    end = data.find(b"\r\n")
    if end < 0:
        raise CommandSyntaxError("no CRLF")
    line, rest = data[:end], data[end + 2 :]
    if len(line) + 2 > 224:
        raise CommandSyntaxError("command line longer than 224 bytes")
    verb, *args = line.split(b" ")
    if verb == b"put":
        if len(args) != 4:
            raise CommandSyntaxError(f"put takes 4 arguments, got {args!r}")
        priority, delay, ttr = (_number(arg, bp.MAX_UINT32) for arg in args[:3])
        size = _number(args[3], bp.MAX_UINT64)
        if len(rest) < size + 2 or rest[size : size + 2] != b"\r\n":
            raise CommandSyntaxError("put body is not followed by CRLF")
        put = bp.Put(body=rest[:size], priority=priority, delay=delay, ttr=ttr)
        return put, rest[size + 2 :]
    try:
        command_type, kinds = _SYNTAX[verb]
    except KeyError:
        raise CommandSyntaxError(f"unknown command {verb!r}") from None
    if len(args) != len(kinds):
        raise CommandSyntaxError(f"{verb!r} takes {len(kinds)} arguments, got {args!r}")
    fields: dict[str, int | str] = {}
    for (field, kind), raw in zip(kinds, args, strict=True):
        if kind == "name":
            fields[field] = _name(raw)
        else:
            fields[field] = _number(raw, bp.MAX_UINT32 if kind == "u32" else bp.MAX_UINT64)
    return command_type(**fields), rest


def parse_commands(data: bytes) -> list[bp.Command]:
    """Read every command in ``data``; it must end on a command boundary."""
    commands: list[bp.Command] = []
    while data:
        command, data = parse_command(data)
        commands.append(command)
    return commands
