"""Events: one frozen class per server reply, named after it.

An event is built whole, from a complete reply, and never changes. Replies
that mean failure (``NOT_FOUND``, ``TIMED_OUT`` …) are events too: the core
only reports what the server said; the clients decide what is an exception.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, ClassVar, TypeVar, Union, cast

__all__ = [
    "Event",
    "Inserted",
    "Buried",
    "ExpectedCrlf",
    "JobTooBig",
    "Draining",
    "Using",
    "Reserved",
    "DeadlineSoon",
    "TimedOut",
    "Deleted",
    "NotFound",
    "Released",
    "Touched",
    "Watching",
    "NotIgnored",
    "Found",
    "Kicked",
    "Ok",
    "Paused",
    "OutOfMemory",
    "InternalError",
    "BadFormat",
    "UnknownCommand",
    "ConnectionClosed",
    "StatValue",
]

#: The type of one value in a ``stats``, ``stats-job`` or ``stats-tube`` reply
#: (parsed replies hold ``int`` and ``str``; ``float`` and ``bool`` come from
#: :func:`beanproto.rich_stats`).
StatValue = Union[int, float, bool, str]  # noqa: UP007 (a runtime alias)


class Event:
    """Base class of every event.

    ``status`` is the reply's first word on the wire (empty for
    :class:`ConnectionClosed`, which is no reply).
    """

    __slots__ = ()
    status: ClassVar[bytes] = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class Inserted(Event):
    """``INSERTED <id>``: ``put`` created job ``id``."""

    status: ClassVar[bytes] = b"INSERTED"
    id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Buried(Event):
    """``BURIED`` or ``BURIED <id>``.

    In reply to ``bury`` it is success. In reply to ``put`` (with the new job's
    ``id``) or ``release`` (``id`` is ``None``), the server ran out of memory
    and buried the job.
    """

    status: ClassVar[bytes] = b"BURIED"
    id: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ExpectedCrlf(Event):
    """``EXPECTED_CRLF``: a ``put`` body was not followed by CRLF."""

    status: ClassVar[bytes] = b"EXPECTED_CRLF"


@dataclass(frozen=True, slots=True, kw_only=True)
class JobTooBig(Event):
    """``JOB_TOO_BIG``: a ``put`` body exceeds the server's ``max-job-size``."""

    status: ClassVar[bytes] = b"JOB_TOO_BIG"


@dataclass(frozen=True, slots=True, kw_only=True)
class Draining(Event):
    """``DRAINING``: the server is in drain mode and takes no new jobs."""

    status: ClassVar[bytes] = b"DRAINING"


@dataclass(frozen=True, slots=True, kw_only=True)
class Using(Event):
    """``USING <tube>``: the tube now used (``use``, ``list-tube-used``)."""

    status: ClassVar[bytes] = b"USING"
    tube: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Reserved(Event):
    """``RESERVED <id> <bytes>`` and the body: a job reserved for this client."""

    status: ClassVar[bytes] = b"RESERVED"
    id: int
    body: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadlineSoon(Event):
    """``DEADLINE_SOON``: a job this client holds is within a second of its TTR."""

    status: ClassVar[bytes] = b"DEADLINE_SOON"


@dataclass(frozen=True, slots=True, kw_only=True)
class TimedOut(Event):
    """``TIMED_OUT``: no job could be reserved in time."""

    status: ClassVar[bytes] = b"TIMED_OUT"


@dataclass(frozen=True, slots=True, kw_only=True)
class Deleted(Event):
    """``DELETED``: the job is gone."""

    status: ClassVar[bytes] = b"DELETED"


@dataclass(frozen=True, slots=True, kw_only=True)
class NotFound(Event):
    """``NOT_FOUND``: no such job or tube, or not in the state the command needs."""

    status: ClassVar[bytes] = b"NOT_FOUND"


@dataclass(frozen=True, slots=True, kw_only=True)
class Released(Event):
    """``RELEASED``: the job is back in the ready (or delayed) queue."""

    status: ClassVar[bytes] = b"RELEASED"


@dataclass(frozen=True, slots=True, kw_only=True)
class Touched(Event):
    """``TOUCHED``: the job's TTR starts again."""

    status: ClassVar[bytes] = b"TOUCHED"


@dataclass(frozen=True, slots=True, kw_only=True)
class Watching(Event):
    """``WATCHING <count>``: the watch list now holds ``count`` tubes."""

    status: ClassVar[bytes] = b"WATCHING"
    count: int


@dataclass(frozen=True, slots=True, kw_only=True)
class NotIgnored(Event):
    """``NOT_IGNORED``: the last watched tube cannot be ignored."""

    status: ClassVar[bytes] = b"NOT_IGNORED"


@dataclass(frozen=True, slots=True, kw_only=True)
class Found(Event):
    """``FOUND <id> <bytes>`` and the body: the job a ``peek`` asked for."""

    status: ClassVar[bytes] = b"FOUND"
    id: int
    body: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Kicked(Event):
    """``KICKED <count>`` (reply to ``kick``) or ``KICKED`` (``kick-job``)."""

    status: ClassVar[bytes] = b"KICKED"
    count: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Ok(Event):
    """``OK <bytes>`` and a YAML document, already parsed.

    ``data`` is a ``dict`` for ``stats``, ``stats-job`` and ``stats-tube`` and a
    ``list`` of tube names for ``list-tubes`` and ``list-tubes-watched``.
    """

    status: ClassVar[bytes] = b"OK"
    data: dict[str, StatValue] | list[str]


@dataclass(frozen=True, slots=True, kw_only=True)
class Paused(Event):
    """``PAUSED``: the tube is paused."""

    status: ClassVar[bytes] = b"PAUSED"


@dataclass(frozen=True, slots=True, kw_only=True)
class OutOfMemory(Event):
    """``OUT_OF_MEMORY``: the server could not allocate memory."""

    status: ClassVar[bytes] = b"OUT_OF_MEMORY"


@dataclass(frozen=True, slots=True, kw_only=True)
class InternalError(Event):
    """``INTERNAL_ERROR``: the server found a bug in itself."""

    status: ClassVar[bytes] = b"INTERNAL_ERROR"


@dataclass(frozen=True, slots=True, kw_only=True)
class BadFormat(Event):
    """``BAD_FORMAT``: the server could not parse a command line."""

    status: ClassVar[bytes] = b"BAD_FORMAT"


@dataclass(frozen=True, slots=True, kw_only=True)
class UnknownCommand(Event):
    """``UNKNOWN_COMMAND``: the server does not know the command."""

    status: ClassVar[bytes] = b"UNKNOWN_COMMAND"


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionClosed(Event):
    """The server closed the connection when no reply was owed (after
    ``quit``, or while idle)."""


_E = TypeVar("_E", bound=Event)


def builder(event_type: type[_E]) -> Callable[..., _E]:
    """A fast positional constructor for ``event_type``, for the core's reply
    readers, which have already checked every value.

    It makes the same frozen object as ``event_type(**fields)`` without the
    dataclass ``__init__`` (which sets each field through
    ``object.__setattr__``, a slow call): it fills a mutable twin of the
    event's class (the same slots) with plain attribute stores, then makes it
    an ``event_type`` by assigning ``__class__``, which Python allows between
    classes of the same layout. About a third of the cost. The function is
    generated, as dataclasses generate ``__init__``, because an attribute
    store names its field in the code.
    """
    names = [f.name for f in fields(cast(Any, event_type))]
    slots = tuple(cast(Any, event_type).__slots__)
    if tuple(names) != slots:
        raise TypeError(f"{event_type.__name__}: slots {slots} are not its fields {names}")
    draft = type(f"_{event_type.__name__}Draft", (Event,), {"__slots__": slots})
    args = ", ".join(names)
    source = "\n".join(
        [f"def build({args}):", "    event = new(draft)"]
        + [f"    event.{name} = {name}" for name in names]
        + ["    event.__class__ = event_type", "    return event"]
    )
    namespace: dict[str, Any] = {"new": object.__new__, "draft": draft, "event_type": event_type}
    exec(source, namespace)
    return cast(Callable[..., _E], namespace["build"])
