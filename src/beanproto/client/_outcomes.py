"""What every client built on the core shares, whatever its I/O.

Clients (the blocking one here, async ones to come) differ only in how they
move bytes.
Everything else lives here, once: which event means success for which
command, which exception each failure reply becomes, how bodies are encoded
and decoded, and the commands that set a new connection up.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar, cast

from .. import _commands as c
from .. import _events as e
from .._validate import check_tube
from ..errors import (
    ArgumentError,
    ArgumentTypeError,
    BadFormatError,
    BeanstalkdError,
    BuriedError,
    DeadlineSoonError,
    DrainingError,
    ExpectedCrlfError,
    InternalError,
    JobDecodeError,
    JobTooBigError,
    NotFoundError,
    NotIgnoredError,
    OutOfMemoryError,
    TimedOutError,
    UnknownCommandError,
    UnknownResponseError,
)

__all__ = [
    "DEFAULT_TUBE",
    "ERROR_FOR_EVENT",
    "ERROR_RESPONSES",
    "error_for",
    "expect",
    "encode_body",
    "decode_body",
    "setup_commands",
    "connection_lost",
    "watch_list",
    "RESERVING",
    "abandon_needs_reset",
    "check_setup",
    "NO_ENCODING_MESSAGE",
]

DEFAULT_TUBE = "default"

#: The exception each failure reply becomes (greenstalk 2.1.1's classes).
ERROR_FOR_EVENT: dict[type[e.Event], type[BeanstalkdError]] = {
    e.BadFormat: BadFormatError,
    e.Buried: BuriedError,
    e.DeadlineSoon: DeadlineSoonError,
    e.Draining: DrainingError,
    e.ExpectedCrlf: ExpectedCrlfError,
    e.InternalError: InternalError,
    e.JobTooBig: JobTooBigError,
    e.NotFound: NotFoundError,
    e.NotIgnored: NotIgnoredError,
    e.OutOfMemory: OutOfMemoryError,
    e.TimedOut: TimedOutError,
    e.UnknownCommand: UnknownCommandError,
}

#: The same table keyed by status word, as greenstalk exports it.
ERROR_RESPONSES: dict[bytes, type[BeanstalkdError]] = {
    event.status: error for event, error in ERROR_FOR_EVENT.items()
}

_E = TypeVar("_E", bound=e.Event)


def _describe(command: c.Command) -> str:
    return command.wire().split(b"\r\n", 1)[0].decode("ascii")


def error_for(command: c.Command, event: e.Event) -> Exception:
    """The exception that ``event`` means as the reply to ``command``."""
    error = ERROR_FOR_EVENT.get(type(event))
    if error is None:
        # A reply the table allows but the caller did not expect.
        return UnknownResponseError(
            event.status, [], f"unexpected {event.status.decode()} reply to {_describe(command)}"
        )
    if error is BuriedError:
        return BuriedError(id=cast(e.Buried, event).id)
    return error(f"{event.status.decode()} in reply to {_describe(command)}")


def expect(command: c.Command, event: e.Event, success: type[_E]) -> _E:
    """Return ``event`` if it is a ``success``, else raise what it means."""
    if type(event) is success:
        return event
    raise error_for(command, event)


#: greenstalk 2.1.1's exact text, which code written for it may compare.
NO_ENCODING_MESSAGE = "Unable to encode string with no encoding set"


def encode_body(body: object, encoding: str | None) -> bytes | bytearray | memoryview:
    """Turn a job body into bytes the way greenstalk does.

    ``str`` is encoded with ``encoding``; bytes-like bodies pass through.
    A ``str`` with ``encoding=None`` is refused before anything is sent, with
    greenstalk's message (an :class:`ArgumentTypeError`, so a ``TypeError``).
    """
    if type(body) is str and encoding is not None:
        return body.encode(encoding)
    if isinstance(body, str):
        if encoding is None:
            raise ArgumentTypeError(NO_ENCODING_MESSAGE)
        return body.encode(encoding)
    if isinstance(body, (bytes, bytearray, memoryview)):
        return body
    try:
        # Any other buffer (array.array, mmap, numpy arrays), as greenstalk
        # sends them; the command checks it is contiguous and counts bytes.
        return memoryview(body)  # type: ignore[arg-type]
    except TypeError:
        raise ArgumentTypeError(
            f"body must be str or a bytes-like object, not {type(body).__name__}"
        ) from None


def decode_body(job_id: int, body: bytes, encoding: str | None) -> str | bytes:
    """Decode a job body; on failure keep the job's id and raw bytes.

    Raises:
        JobDecodeError: a :class:`UnicodeDecodeError` with ``id`` and ``body``.
    """
    if encoding is None:
        return body
    try:
        return body.decode(encoding)
    except UnicodeDecodeError as exc:
        raise JobDecodeError(exc, job_id, body) from exc


def connection_lost(why: str) -> ConnectionError:
    """The error for a call on a client whose connection failed or was closed.

    A plain :class:`ConnectionError`, not a :class:`beanproto.Error`, as
    greenstalk raises: code written for it handles ``except greenstalk.Error``
    (a server reply) and ``except ConnectionError`` (reconnect) apart. The
    failure itself propagates as it happened; a server closing in the middle
    of a reply is a :class:`~beanproto.ConnectionClosedError`, which is both a
    ``ConnectionError`` and a ``beanproto.Error``, and every call after it
    raises this plain one.
    """
    return ConnectionError(f"connection unusable: {why}")


#: Commands after which the server may hold a job reserved for this
#: connection. When such a call is abandoned (cancelled) the connection is
#: closed, which makes beanstalkd put the job back in the ready queue at once.
RESERVING: frozenset[type[c.Command]] = frozenset({c.Reserve, c.ReserveWithTimeout, c.ReserveJob})


def abandon_needs_reset(command: c.Command, event: e.Event | None) -> bool:
    """Whether a call given up before its caller saw ``event`` (``None``: not
    yet arrived) leaves the connection in a state only closing it repairs.

    A reserve waiting on the server blocks every later command on its
    connection, and one that got its job holds it until its TTR: closing the
    connection ends the wait and releases the job at once. Other replies can
    simply be dropped when they arrive.
    """
    if type(command) not in RESERVING:
        return False
    return event is None or type(event) is e.Reserved


def check_setup(commands: list[c.Command], events: list[e.Event]) -> None:
    """Raise what the replies to :func:`setup_commands` mean, if not success."""
    for command, event in zip(commands, events, strict=True):
        expect(command, event, e.Using if type(command) is c.Use else e.Watching)


def watch_list(watch: object) -> list[str]:
    """The tubes a connection set up with ``watch`` ends up watching: one
    name, or an iterable of names (repeats dropped, order kept).

    Raises:
        ArgumentTypeError: ``watch`` is neither (``None``, a number, bytes …)
            or holds something other than a ``str``. The names themselves
            are checked by :func:`setup_commands`.
    """
    if isinstance(watch, str):
        return [watch]
    if isinstance(watch, (bytes, bytearray, memoryview)):
        raise ArgumentTypeError(
            f"watch must be a str or an iterable of str, not {type(watch).__name__}"
        )
    try:
        tubes = list(watch)  # type: ignore[call-overload]
    except TypeError:
        raise ArgumentTypeError(
            f"watch must be a str or an iterable of str, not {type(watch).__name__}"
        ) from None
    for tube in tubes:
        if not isinstance(tube, str):
            raise ArgumentTypeError(f"watch must hold str tube names, not {type(tube).__name__}")
    return list(dict.fromkeys(tubes))


def setup_commands(use: str, watch: str | Iterable[str]) -> list[c.Command]:
    """The commands that give a new connection its ``use`` and ``watch``
    tubes, as greenstalk's constructor sends them.

    All names are checked first, so a bad one is refused before connecting.
    """
    check_tube(use, "use")
    commands: list[c.Command] = []
    if use != DEFAULT_TUBE:
        commands.append(c.Use(tube=use))
    tubes = [watch] if isinstance(watch, str) else list(watch)
    for tube in tubes:
        check_tube(tube, "watch")
    for tube in tubes:
        if tube != DEFAULT_TUBE:
            commands.append(c.Watch(tube=tube))
    if DEFAULT_TUBE not in tubes:
        if not tubes:
            raise ArgumentError("watch must name at least one tube")
        commands.append(c.Ignore(tube=DEFAULT_TUBE))
    return commands
