"""Argument checks shared by every command.

Every value that reaches the wire passes through one of these functions first,
so a bad argument is refused before a byte is produced (protocol section
"Protocol": names, and "All integers in the protocol are formatted in decimal
and … nonnegative").
"""

from __future__ import annotations

import math
import operator

from .errors import ArgumentError, ArgumentTypeError

#: Characters a name may contain (protocol section "Protocol").
NAME_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-+/;.$_()")
_NAME_DELETE = bytes(NAME_CHARS)

#: The server refuses tube names longer than this (protocol section "use").
MAX_NAME_LENGTH = 200

#: Priorities, delays, TTRs, timeouts and kick bounds are unsigned 32-bit.
MAX_UINT32 = 2**32 - 1

#: Job ids are unsigned 64-bit in beanstalkd.
MAX_UINT64 = 2**64 - 1

#: ``<bytes>`` of ``put`` is read as an unsigned 32-bit count: a longer body
#: gets ``BAD_FORMAT``, after which the server reads the body as commands.
MAX_BODY_SIZE = MAX_UINT32

#: beanstalkd 1.13 refuses a ``reserve-with-timeout`` above a signed 32-bit
#: int (1.12 takes it); the clients follow the stricter server.
MAX_RESERVE_TIMEOUT = 2**31 - 1


def name_error(raw: bytes) -> str | None:
    """Return why ``raw`` is not a valid name, or ``None`` if it is."""
    if not raw:
        return "must not be empty"
    if len(raw) > MAX_NAME_LENGTH:
        return f"is {len(raw)} bytes long, more than {MAX_NAME_LENGTH}"
    bad = raw.translate(None, _NAME_DELETE)
    if bad:
        return f"contains {chr(bad[0])!r}, which the protocol does not allow in names"
    if raw[0] == 0x2D:  # "-"
        return "must not begin with a hyphen"
    return None


def check_tube(value: object, field: str = "tube") -> bytes:
    """Validate a tube name and return its wire form (ASCII bytes)."""
    if not isinstance(value, str):
        raise ArgumentTypeError(f"{field} must be a str, not {type(value).__name__}")
    try:
        raw = value.encode("ascii")
    except UnicodeEncodeError:
        raise ArgumentError(f"{field} {value!r} is not ASCII") from None
    problem = name_error(raw)
    if problem is not None:
        raise ArgumentError(f"{field} {value!r} {problem}")
    return raw


def check_int(value: object, field: str, maximum: int) -> int:
    """Validate an integer argument in ``0..maximum`` and return it as an
    ``int``. Integer-like objects (``operator.index``: numpy integers …) are
    accepted; ``bool`` and ``float`` are refused."""
    if type(value) is not int:
        if isinstance(value, bool):
            raise ArgumentTypeError(f"{field} must be an int, not bool")
        try:
            value = operator.index(value)  # type: ignore[arg-type]
        except TypeError:
            raise ArgumentTypeError(f"{field} must be an int, not {type(value).__name__}") from None
    if value < 0 or value > maximum:
        raise ArgumentError(f"{field} must be between 0 and {maximum}, got {value}")
    return value


def check_seconds(value: object, field: str, maximum: int = MAX_UINT32) -> int:
    """Validate a duration in whole seconds (``delay``, ``ttr``, ``timeout``).

    The protocol counts whole seconds. A ``float`` (greenstalk accepts one
    and silently truncates it, so ``timeout=0.5`` meant "do not wait") is
    rounded *up*, so a duration is never shorter than asked.
    """
    if isinstance(value, float):
        if not math.isfinite(value) or value < 0:
            raise ArgumentError(
                f"{field} must be a finite, non-negative number of seconds, got {value}"
            )
        value = math.ceil(value)
    return check_int(value, field, maximum)


def check_body_size(size: int) -> None:
    """Refuse a body the server would take for commands (``MAX_BODY_SIZE``)."""
    if size > MAX_BODY_SIZE:
        raise ArgumentError(
            f"body is {size} bytes long; beanstalkd reads at most {MAX_BODY_SIZE} "
            "(the put command's <bytes> is a 32-bit count)"
        )


def check_body(value: object) -> bytes | bytearray | memoryview:
    """Validate a job body: any contiguous bytes-like object of bytes. Its
    size is checked apart (:func:`check_body_size`), for every type."""
    if isinstance(value, (bytes, bytearray)):
        return value
    if isinstance(value, memoryview):
        if not value.c_contiguous:
            raise ArgumentError("body memoryview must be contiguous")
        return value.cast("B") if value.format != "B" or value.ndim != 1 else value
    if isinstance(value, str):
        raise ArgumentTypeError(
            "body must be bytes, not str: encode it first (the clients do this "
            "for you unless encoding=None)"
        )
    raise ArgumentTypeError(f"body must be bytes, not {type(value).__name__}")
