"""Which replies answer which command, and how each reply line is read.

``REPLIES[type(command)]`` maps a status word to a reader. A reader gets the
rest of the reply line (after the status and one space) and returns either the
finished event or a :class:`BodyWanted` naming the body length to wait for and
how to build the event once the body is there.

Every command may also get the four general errors (protocol section
"Protocol": ``OUT_OF_MEMORY``, ``INTERNAL_ERROR``, ``BAD_FORMAT``,
``UNKNOWN_COMMAND``). A status missing from a command's table is a protocol
error, even when it answers some other command: replies are matched to
commands in order, and one that does not fit means the stream is out of step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, cast

from . import _commands as c
from . import _events as e
from ._stats import parse_list, parse_stats, parse_stats_job, parse_stats_tube
from ._validate import MAX_UINT64, name_error
from .errors import RemoteProtocolError

__all__ = ["REPLIES", "KNOWN_STATUSES", "BodyWanted", "Reader"]


class BodyWanted(NamedTuple):
    """A reply line announced ``size`` bytes of body (plus CRLF); once they
    are in, the event is ``finish(arg, body)``."""

    size: int
    finish: Callable[[Any, bytes], e.Event]
    arg: Any = None


_wanted = tuple.__new__

Reader = Callable[[bytes, bytes], e.Event | BodyWanted]
"""``reader(rest, separator) -> event or BodyWanted``."""


def _bad(what: str, rest: bytes) -> RemoteProtocolError:
    return RemoteProtocolError(f"malformed reply: {what}, got {rest[:80]!r}")


def _uint(raw: bytes) -> int:
    """A nonnegative decimal integer that fits in 64 bits."""
    if raw.isdigit() and len(raw) <= 20:
        value = int(raw)
        if value <= MAX_UINT64:
            return value
    raise _bad("expected a nonnegative integer", raw)


_new = object.__new__


def _bare(event_type: type[e.Event]) -> Reader:
    """A reply that is its status alone, such as ``DELETED``."""
    event = event_type()  # frozen, so one instance serves every reply

    def read(rest: bytes, sep: bytes) -> e.Event:
        if sep:
            raise _bad(f"{event_type.status.decode()} takes no arguments", rest)
        return event

    return read


def _one_int(event_type: type[e.Event]) -> Reader:
    """A reply with one integer: ``INSERTED <id>``, ``WATCHING <count>`` …"""
    build = e.builder(event_type)
    (field,) = dataclasses.fields(cast(Any, event_type))
    set_value = getattr(event_type, field.name).__set__

    def read(rest: bytes, sep: bytes) -> e.Event:
        if rest.isdigit() and len(rest) < 20:  # the common case, inline
            # One slot to set: through its descriptor, without a builder's
            # frame, is the cheapest way (measured with callgrind).
            event = _new(event_type)
            set_value(event, int(rest))
            return event
        return build(_uint(rest))

    return read


def _name(rest: bytes, sep: bytes) -> e.Event:
    """``USING <tube>``."""
    problem = name_error(rest)
    if problem is not None:
        raise _bad(f"tube name {problem}", rest)
    return e.Using(tube=rest.decode("ascii"))


def _job(event_type: type[e.Reserved] | type[e.Found]) -> Reader:
    """``RESERVED <id> <bytes>`` or ``FOUND <id> <bytes>``, then the body."""
    build = e.builder(event_type)

    def read(rest: bytes, sep: bytes) -> BodyWanted:
        job_id, space, size = rest.partition(b" ")
        if not space:
            raise _bad("expected '<id> <bytes>'", rest)
        if job_id.isdigit() and size.isdigit() and len(job_id) < 20 and len(size) < 20:
            # The common case, inline; tuple.__new__ is BodyWanted(...)
            # without the Python-level __new__ of a NamedTuple.
            return _wanted(BodyWanted, (int(size), build, int(job_id)))
        return BodyWanted(_uint(size), build, _uint(job_id))

    return read


def _ok(parse: Callable[[bytes], dict[str, e.StatValue] | list[str]]) -> Reader:
    """``OK <bytes>``, then a YAML document."""

    build = e.builder(e.Ok)

    def finish(arg: None, body: bytes) -> e.Event:
        return build(parse(body))

    def read(rest: bytes, sep: bytes) -> BodyWanted:
        return BodyWanted(_uint(rest), finish)

    return read


_GENERAL: dict[bytes, Reader] = {
    b"OUT_OF_MEMORY": _bare(e.OutOfMemory),
    b"INTERNAL_ERROR": _bare(e.InternalError),
    b"BAD_FORMAT": _bare(e.BadFormat),
    b"UNKNOWN_COMMAND": _bare(e.UnknownCommand),
}

_NOT_FOUND = {b"NOT_FOUND": _bare(e.NotFound)}
_RESERVED = {b"RESERVED": _job(e.Reserved)}
_FOUND = {b"FOUND": _job(e.Found), **_NOT_FOUND}
_WATCHING = {b"WATCHING": _one_int(e.Watching)}
_USING = {b"USING": _name}
_LIST = {b"OK": _ok(parse_list)}


def _table(*parts: Mapping[bytes, Reader]) -> dict[bytes, Reader]:
    table: dict[bytes, Reader] = {}
    for part in parts:
        table.update(part)
    table.update(_GENERAL)
    return table


#: Command type -> {status: reader}. Protocol sections named after each command.
REPLIES: dict[type[c.Command], dict[bytes, Reader]] = {
    c.Put: _table(
        {
            b"INSERTED": _one_int(e.Inserted),
            b"BURIED": _one_int(e.Buried),
            b"EXPECTED_CRLF": _bare(e.ExpectedCrlf),
            b"JOB_TOO_BIG": _bare(e.JobTooBig),
            b"DRAINING": _bare(e.Draining),
        }
    ),
    c.Use: _table(_USING),
    c.Reserve: _table(
        _RESERVED,
        {b"DEADLINE_SOON": _bare(e.DeadlineSoon), b"TIMED_OUT": _bare(e.TimedOut)},
    ),
    c.ReserveJob: _table(_RESERVED, _NOT_FOUND),
    c.Delete: _table({b"DELETED": _bare(e.Deleted)}, _NOT_FOUND),
    c.Release: _table({b"RELEASED": _bare(e.Released), b"BURIED": _bare(e.Buried)}, _NOT_FOUND),
    c.Bury: _table({b"BURIED": _bare(e.Buried)}, _NOT_FOUND),
    c.Touch: _table({b"TOUCHED": _bare(e.Touched)}, _NOT_FOUND),
    c.Watch: _table(_WATCHING),
    c.Ignore: _table(_WATCHING, {b"NOT_IGNORED": _bare(e.NotIgnored)}),
    c.Peek: _table(_FOUND),
    c.PeekReady: _table(_FOUND),
    c.PeekDelayed: _table(_FOUND),
    c.PeekBuried: _table(_FOUND),
    c.Kick: _table({b"KICKED": _one_int(e.Kicked)}),
    c.KickJob: _table({b"KICKED": _bare(e.Kicked)}, _NOT_FOUND),
    c.StatsJob: _table({b"OK": _ok(parse_stats_job)}, _NOT_FOUND),
    c.StatsTube: _table({b"OK": _ok(parse_stats_tube)}, _NOT_FOUND),
    c.Stats: _table({b"OK": _ok(parse_stats)}),
    c.ListTubes: _table(_LIST),
    c.ListTubeUsed: _table(_USING),
    c.ListTubesWatched: _table(_LIST),
    c.PauseTube: _table({b"PAUSED": _bare(e.Paused)}, _NOT_FOUND),
}
REPLIES[c.ReserveWithTimeout] = REPLIES[c.Reserve]

#: Every status word the protocol defines.
KNOWN_STATUSES = frozenset(status for table in REPLIES.values() for status in table)
