"""Commands: one frozen class per beanstalk command.

Each command checks its arguments when it is made, so a command object that
exists can always be written to the wire; :meth:`Connection.send` only formats
it. Field names follow the protocol document (``priority`` for ``<pri>``,
``bound`` for ``kick``'s bound); defaults follow greenstalk 2.1.1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, TypeVar, cast

from ._validate import (
    MAX_BODY_SIZE,
    MAX_RESERVE_TIMEOUT,
    MAX_UINT32,
    MAX_UINT64,
    check_body,
    check_body_size,
    check_int,
    check_seconds,
    check_tube,
)

__all__ = [
    "Command",
    "Put",
    "Use",
    "Reserve",
    "ReserveWithTimeout",
    "ReserveJob",
    "Delete",
    "Release",
    "Bury",
    "Touch",
    "Watch",
    "Ignore",
    "Peek",
    "PeekReady",
    "PeekDelayed",
    "PeekBuried",
    "Kick",
    "KickJob",
    "StatsJob",
    "StatsTube",
    "Stats",
    "ListTubes",
    "ListTubeUsed",
    "ListTubesWatched",
    "PauseTube",
    "Quit",
    "DEFAULT_PRIORITY",
    "DEFAULT_DELAY",
    "DEFAULT_TTR",
    "make_put",
    "make_with_id",
]

DEFAULT_PRIORITY = 2**16
DEFAULT_DELAY = 0
DEFAULT_TTR = 60


class Command:
    """Base class of every command.

    ``verb`` is the command's name on the wire.
    """

    __slots__ = ()
    verb: ClassVar[bytes]

    def wire(self) -> bytes:
        """The command line, CRLF included (for ``put``, without the body)."""
        return self.verb + b"\r\n"


def _store(command: Command, field: str, checked: object) -> None:
    """Keep the checked form of a field (``int`` for an int-like or a float
    number of seconds) in the frozen command."""
    if checked is not getattr(command, field):
        object.__setattr__(command, field, checked)


def _id(command: Command) -> None:
    _store(command, "id", check_int(getattr(command, "id"), "id", MAX_UINT64))  # noqa: B009


def _u32(command: Command, field: str) -> None:
    _store(command, field, check_int(getattr(command, field), field, MAX_UINT32))


def _seconds(command: Command, field: str) -> None:
    _store(command, field, check_seconds(getattr(command, field), field))


_C = TypeVar("_C", bound=type)


def _subcommand(cls: _C) -> _C:
    """The dataclass decorator for a command that only renames a base's
    fields (``Delete`` of :class:`_IdCommand` …).

    ``dataclass(slots=True)`` on Python 3.10 gives a subclass its own slot
    for every inherited field; the object then has two ``id`` slots, and a
    value set through the base's descriptor (as :func:`make_with_id` does) is
    invisible through the subclass's. 3.11 and later skip inherited slots.
    Such a subclass therefore declares ``__slots__ = ()`` itself and is made a
    dataclass without ``slots=True``: one slot per field, in the base, on
    every Python.
    """
    if cls.__dict__.get("__slots__") != ():
        raise TypeError(f"{cls.__name__} must declare __slots__ = ()")
    return cast(_C, dataclass(frozen=True, kw_only=True)(cls))


@dataclass(frozen=True, slots=True, kw_only=True)
class Put(Command):
    """``put <pri> <delay> <ttr> <bytes>``: insert a job into the used tube."""

    verb: ClassVar[bytes] = b"put"
    body: bytes | bytearray | memoryview
    priority: int = DEFAULT_PRIORITY
    delay: int = DEFAULT_DELAY
    ttr: int = DEFAULT_TTR

    def __post_init__(self) -> None:
        if type(self.body) is not bytes:
            body = check_body(self.body)
            if body is not self.body:
                object.__setattr__(self, "body", body)
        if len(self.body) > MAX_BODY_SIZE:
            check_body_size(len(self.body))
        priority, delay, ttr = self.priority, self.delay, self.ttr
        if not (
            type(priority) is int
            and type(delay) is int
            and type(ttr) is int
            and 0 <= priority <= MAX_UINT32
            and 0 <= delay <= MAX_UINT32
            and 0 <= ttr <= MAX_UINT32
        ):
            _u32(self, "priority")
            _seconds(self, "delay")
            _seconds(self, "ttr")

    def wire(self) -> bytes:
        return b"put %d %d %d %d\r\n" % (self.priority, self.delay, self.ttr, len(self.body))


@dataclass(frozen=True, slots=True, kw_only=True)
class Use(Command):
    """``use <tube>``: put later jobs into ``tube``."""

    verb: ClassVar[bytes] = b"use"
    tube: str

    def __post_init__(self) -> None:
        check_tube(self.tube)

    def wire(self) -> bytes:
        return b"use %s\r\n" % self.tube.encode("ascii")


@dataclass(frozen=True, slots=True, kw_only=True)
class Reserve(Command):
    """``reserve``: wait, without limit, for a job from the watched tubes."""

    verb: ClassVar[bytes] = b"reserve"


@dataclass(frozen=True, slots=True, kw_only=True)
class ReserveWithTimeout(Command):
    """``reserve-with-timeout <seconds>``: wait at most ``timeout`` seconds
    (at most ``MAX_RESERVE_TIMEOUT``, 2**31-1, which beanstalkd 1.13 enforces)."""

    verb: ClassVar[bytes] = b"reserve-with-timeout"
    timeout: int

    def __post_init__(self) -> None:
        _store(self, "timeout", check_seconds(self.timeout, "timeout", MAX_RESERVE_TIMEOUT))

    def wire(self) -> bytes:
        return b"reserve-with-timeout %d\r\n" % self.timeout


@dataclass(frozen=True, slots=True, kw_only=True)
class _IdCommand(Command):
    """A command whose only argument is a job id."""

    id: int

    def __post_init__(self) -> None:
        _id(self)

    def wire(self) -> bytes:
        return b"%s %d\r\n" % (self.verb, self.id)


@_subcommand
class ReserveJob(_IdCommand):
    """``reserve-job <id>``: reserve one job by id (beanstalkd 1.12+)."""

    __slots__ = ()

    verb: ClassVar[bytes] = b"reserve-job"


@_subcommand
class Delete(_IdCommand):
    """``delete <id>``: remove a job for good."""

    __slots__ = ()

    verb: ClassVar[bytes] = b"delete"


@dataclass(frozen=True, slots=True, kw_only=True)
class Release(Command):
    """``release <id> <pri> <delay>``: give a reserved job back."""

    verb: ClassVar[bytes] = b"release"
    id: int
    priority: int = DEFAULT_PRIORITY
    delay: int = DEFAULT_DELAY

    def __post_init__(self) -> None:
        _id(self)
        _u32(self, "priority")
        _seconds(self, "delay")

    def wire(self) -> bytes:
        return b"release %d %d %d\r\n" % (self.id, self.priority, self.delay)


@dataclass(frozen=True, slots=True, kw_only=True)
class Bury(Command):
    """``bury <id> <pri>``: set a reserved job aside until kicked."""

    verb: ClassVar[bytes] = b"bury"
    id: int
    priority: int = DEFAULT_PRIORITY

    def __post_init__(self) -> None:
        _id(self)
        _u32(self, "priority")

    def wire(self) -> bytes:
        return b"bury %d %d\r\n" % (self.id, self.priority)


@_subcommand
class Touch(_IdCommand):
    """``touch <id>``: restart a reserved job's TTR."""

    __slots__ = ()

    verb: ClassVar[bytes] = b"touch"


@dataclass(frozen=True, slots=True, kw_only=True)
class _TubeCommand(Command):
    """A command whose only argument is a tube name."""

    tube: str

    def __post_init__(self) -> None:
        check_tube(self.tube)

    def wire(self) -> bytes:
        return b"%s %s\r\n" % (self.verb, self.tube.encode("ascii"))


@_subcommand
class Watch(_TubeCommand):
    """``watch <tube>``: add a tube to the watch list."""

    __slots__ = ()

    verb: ClassVar[bytes] = b"watch"


@_subcommand
class Ignore(_TubeCommand):
    """``ignore <tube>``: remove a tube from the watch list."""

    __slots__ = ()

    verb: ClassVar[bytes] = b"ignore"


@_subcommand
class Peek(_IdCommand):
    """``peek <id>``: look at a job without reserving it."""

    __slots__ = ()

    verb: ClassVar[bytes] = b"peek"


@dataclass(frozen=True, slots=True, kw_only=True)
class PeekReady(Command):
    """``peek-ready``: the next ready job in the used tube."""

    verb: ClassVar[bytes] = b"peek-ready"


@dataclass(frozen=True, slots=True, kw_only=True)
class PeekDelayed(Command):
    """``peek-delayed``: the delayed job with the least delay left."""

    verb: ClassVar[bytes] = b"peek-delayed"


@dataclass(frozen=True, slots=True, kw_only=True)
class PeekBuried(Command):
    """``peek-buried``: the oldest buried job in the used tube."""

    verb: ClassVar[bytes] = b"peek-buried"


@dataclass(frozen=True, slots=True, kw_only=True)
class Kick(Command):
    """``kick <bound>``: move up to ``bound`` buried (else delayed) jobs to ready."""

    verb: ClassVar[bytes] = b"kick"
    bound: int

    def __post_init__(self) -> None:
        _u32(self, "bound")

    def wire(self) -> bytes:
        return b"kick %d\r\n" % self.bound


@_subcommand
class KickJob(_IdCommand):
    """``kick-job <id>``: move one buried or delayed job to ready."""

    __slots__ = ()

    verb: ClassVar[bytes] = b"kick-job"


@_subcommand
class StatsJob(_IdCommand):
    """``stats-job <id>``: statistics of one job."""

    __slots__ = ()

    verb: ClassVar[bytes] = b"stats-job"


@_subcommand
class StatsTube(_TubeCommand):
    """``stats-tube <tube>``: statistics of one tube."""

    __slots__ = ()

    verb: ClassVar[bytes] = b"stats-tube"


@dataclass(frozen=True, slots=True, kw_only=True)
class Stats(Command):
    """``stats``: statistics of the whole server."""

    verb: ClassVar[bytes] = b"stats"


@dataclass(frozen=True, slots=True, kw_only=True)
class ListTubes(Command):
    """``list-tubes``: every existing tube."""

    verb: ClassVar[bytes] = b"list-tubes"


@dataclass(frozen=True, slots=True, kw_only=True)
class ListTubeUsed(Command):
    """``list-tube-used``: the tube this connection puts jobs into."""

    verb: ClassVar[bytes] = b"list-tube-used"


@dataclass(frozen=True, slots=True, kw_only=True)
class ListTubesWatched(Command):
    """``list-tubes-watched``: the tubes this connection reserves from."""

    verb: ClassVar[bytes] = b"list-tubes-watched"


@dataclass(frozen=True, slots=True, kw_only=True)
class PauseTube(Command):
    """``pause-tube <tube> <delay>``: hold back reserves from a tube."""

    verb: ClassVar[bytes] = b"pause-tube"
    tube: str
    delay: int

    def __post_init__(self) -> None:
        check_tube(self.tube)
        _seconds(self, "delay")

    def wire(self) -> bytes:
        return b"pause-tube %s %d\r\n" % (self.tube.encode("ascii"), self.delay)


@dataclass(frozen=True, slots=True, kw_only=True)
class Quit(Command):
    """``quit``: ask the server to close the connection. It has no reply."""

    verb: ClassVar[bytes] = b"quit"


_new = object.__new__


class _PutDraft(Command):
    """A :class:`Put` under construction: the same slots, in the same order,
    but not frozen. :func:`make_put` fills one with plain attribute stores
    and then makes it a ``Put`` by assigning ``__class__`` (allowed between
    classes of the same layout). That costs a third of setting the four
    frozen slots one by one through their descriptors, which Python calls
    the slow way (a tuple of arguments per call)."""

    __slots__ = ("body", "priority", "delay", "ttr")
    body: bytes
    priority: int
    delay: int
    ttr: int


assert _PutDraft.__slots__ == Put.__slots__  # the layouts must match


# The last priority, delay and ttr objects make_put found valid. An ``int``
# object that passed the checks once passes them again (ints are immutable),
# so the common call, which passes the same objects every time (the
# defaults), is recognised by three identity tests instead of six checks.
# Each global always holds a checked int, so threads racing to update them
# can only mix checked values.
_ok_priority: int = DEFAULT_PRIORITY
_ok_delay: int = DEFAULT_DELAY
_ok_ttr: int = DEFAULT_TTR


def make_put(body: object, priority: int, delay: int, ttr: int) -> Put:
    """Build a :class:`Put` on the clients' hot path.

    Valid common arguments (a ``bytes`` body no longer than
    ``MAX_BODY_SIZE``, plain ``int`` values in range) make the same frozen
    object as ``Put(...)`` without going through the dataclass constructor;
    anything else goes through ``Put(...)``, so every error is raised by the
    one set of checks there.
    """
    if (
        priority is _ok_priority
        and delay is _ok_delay
        and ttr is _ok_ttr
        and type(body) is bytes
        and len(body) <= MAX_BODY_SIZE
    ):
        draft = _new(_PutDraft)
        draft.body = body
        draft.priority = priority
        draft.delay = delay
        draft.ttr = ttr
        draft.__class__ = Put  # type: ignore[assignment]
        return draft  # type: ignore[return-value]
    return _make_put_checked(body, priority, delay, ttr)


def _make_put_checked(body: object, priority: int, delay: int, ttr: int) -> Put:
    """:func:`make_put` for values it has not seen last time."""
    global _ok_priority, _ok_delay, _ok_ttr
    if (
        type(priority) is int
        and type(delay) is int
        and type(ttr) is int
        and 0 <= priority <= MAX_UINT32
        and 0 <= delay <= MAX_UINT32
        and 0 <= ttr <= MAX_UINT32
    ):
        _ok_priority, _ok_delay, _ok_ttr = priority, delay, ttr
        if type(body) is bytes and len(body) <= MAX_BODY_SIZE:
            return make_put(body, priority, delay, ttr)
    return Put(body=body, priority=priority, delay=delay, ttr=ttr)  # type: ignore[arg-type]


_IdCommandT = TypeVar("_IdCommandT", bound=_IdCommand)


def make_with_id(command_type: type[_IdCommandT], job_id: object) -> _IdCommandT:
    """Build a command whose only field is a job id (``Delete``, ``Touch`` …)
    on the clients' hot path; like :func:`make_put`, anything unusual goes
    through the ordinary constructor and its checks."""
    if type(job_id) is int and 0 <= job_id <= MAX_UINT64:
        command = _new(command_type)
        _set_id(command, job_id)
        return command
    return command_type(id=job_id)  # type: ignore[arg-type]


_set_id = _IdCommand.__dict__["id"].__set__
