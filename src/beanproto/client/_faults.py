"""The fault model every client follows: how long to wait, how to notice a
dead peer, and what a caller is told when the connection fails.

One set of rules for the blocking, trio and asyncio clients (only how they
wait differs):

* ``connect_timeout`` bounds opening a connection *and* its ``use``/``watch``
  set-up; ``io_timeout`` bounds every wait for bytes that should come now
  (the reply to an ordinary command, progress while a body is sent or
  received), never the wait a command asks the server for (``reserve``,
  ``reserve(timeout=t)``: ``t`` plus ``io_timeout``). Both raise the builtin
  :class:`TimeoutError`.
* ``keepalive`` turns on TCP keepalive tuned so that a peer that vanished
  without a word is noticed within about that many seconds.
* A connection lost with a reply owed raises :class:`ReplyLostError` (the
  command may have run) and is not replayed; the next call connects again
  unless ``reconnect=False``.

Not part of the sans-I/O core: only the clients import it.
"""

from __future__ import annotations

import math
import os
import socket
from dataclasses import dataclass
from typing import Any

from .. import _commands as c
from ..errors import ArgumentError, ArgumentTypeError, ReplyLostError

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_IO_TIMEOUT",
    "DEFAULT_KEEPALIVE",
    "MAX_TIMEOUT",
    "MAX_KEEPALIVE",
    "Timeouts",
    "server_wait",
    "reply_timeout",
    "set_keepalive",
    "keepalive_settings",
    "reply_lost",
    "describe",
    "reply_timed_out",
    "timed_out",
]

#: Seconds to open a connection and set it up.
DEFAULT_CONNECT_TIMEOUT = 10.0

#: Seconds to wait for bytes that should come now. beanstalkd answers an
#: ordinary command in microseconds and streams a body as fast as the network
#: allows, so a reply that is 30 s late means the server (or the path to it)
#: is stuck, not busy. It is long enough for an fsync-per-write binlog on a
#: slow disk, or a reply crossing a congested link, and short enough that no
#: call can hang a program for good.
DEFAULT_IO_TIMEOUT = 30.0

#: Seconds within which TCP keepalive notices a vanished peer.
DEFAULT_KEEPALIVE = 60.0


#: The longest finite bound (about 68 years): what a ``struct timeval`` and
#: the event loops take. Longer means no bound: say ``None``.
MAX_TIMEOUT = 2**31 - 1

#: The longest keepalive: Linux's limit on ``TCP_KEEPIDLE`` (about 9 hours).
MAX_KEEPALIVE = 32767


def _check_seconds(value: object, name: str, maximum: float) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ArgumentTypeError(f"{name} must be a number of seconds or None, not {value!r}")
    if math.isinf(value) and value > 0:
        return None
    if math.isnan(value) or not 0 < value <= maximum:
        raise ArgumentError(
            f"{name} must be a number of seconds in (0, {maximum}], or None, not {value!r}"
        )
    return float(value)


@dataclass(frozen=True, slots=True)
class Timeouts:
    """A client's fault settings, checked once at construction (a bad value
    is refused before any connection is made)."""

    connect: float | None = DEFAULT_CONNECT_TIMEOUT
    io: float | None = DEFAULT_IO_TIMEOUT
    keepalive: float | None = DEFAULT_KEEPALIVE
    reconnect: bool = True

    @classmethod
    def checked(cls, connect: object, io: object, keepalive: object, reconnect: object) -> Timeouts:
        if not isinstance(reconnect, bool):
            raise ArgumentTypeError(f"reconnect must be True or False, not {reconnect!r}")
        return cls(
            _check_seconds(connect, "connect_timeout", MAX_TIMEOUT),
            _check_seconds(io, "io_timeout", MAX_TIMEOUT),
            _check_seconds(keepalive, "keepalive", MAX_KEEPALIVE),
            reconnect,
        )


def server_wait(command: c.Command) -> float | None:
    """How long the server may rightly keep ``command`` waiting before it
    answers: ``0.0`` for every command but the reserves that wait, ``None``
    (no limit) for ``reserve``."""
    kind = type(command)
    if kind is c.ReserveWithTimeout:
        return float(command.timeout)  # type: ignore[attr-defined]
    if kind is c.Reserve:
        return None
    return 0.0


def reply_timeout(command: c.Command, io_timeout: float | None) -> float | None:
    """How long to wait for the first byte of ``command``'s reply
    (``None``: without limit)."""
    wait = server_wait(command)
    if wait is None or io_timeout is None:
        return None
    return wait + io_timeout


def keepalive_settings(seconds: float) -> tuple[int, int, int]:
    """``(idle, interval, count)`` for TCP keepalive, so that a silent peer is
    given up about ``seconds`` after it last answered: probes start after
    ``idle`` seconds of silence and ``count`` unanswered probes, ``interval``
    apart, end the connection (all whole seconds, at least 1)."""
    total = max(3, round(seconds))
    interval = max(1, total // 6)
    count = 3
    idle = max(1, total - count * interval)
    return idle, interval, count


def set_keepalive(sock: Any, seconds: float | None) -> None:
    """Turn TCP keepalive on for ``sock`` (a stdlib or trio TCP socket), tuned
    by :func:`keepalive_settings`, or leave it off when ``seconds`` is None.

    ``TCP_USER_TIMEOUT`` gets the same total, so that data the peer never
    acknowledges (a command sent into a dead link) also ends the connection
    in about that time instead of after the kernel's ~15 minutes of
    retransmissions. Options the platform lacks are skipped: keepalive then
    runs on the system's own timers.
    """
    if seconds is None:
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    idle, interval, count = keepalive_settings(seconds)
    total = idle + interval * count  # whole seconds, at least 3
    # macOS names the idle time TCP_KEEPALIVE.
    idle_option = getattr(socket, "TCP_KEEPIDLE", None) or getattr(socket, "TCP_KEEPALIVE", None)
    for option, value in (
        (idle_option, idle),
        (getattr(socket, "TCP_KEEPINTVL", None), interval),
        (getattr(socket, "TCP_KEEPCNT", None), count),
        (getattr(socket, "TCP_USER_TIMEOUT", None), total * 1000),
    ):
        if option is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, option, value)
            except OSError:  # pragma: no cover (an option this kernel refuses)
                pass


def describe(address: object) -> str:
    """``address`` as error messages name it: ``host:port`` (``[::1]:11300``
    for IPv6), a unix socket's path, or "the socket passed in"."""
    if isinstance(address, (str, os.PathLike)):
        return os.fspath(address)
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return "the socket passed in"


def reply_timed_out(verb: str, seconds: float | None) -> TimeoutError:
    """The builtin :class:`TimeoutError` of a call whose reply is late: its
    command went out, so it may have run, and the connection is given up.

    ``verb`` is the command's name as text (``command.verb.decode()``);
    ``seconds`` the bound that passed (:func:`reply_timeout`'s figure).
    """
    within = "in time" if seconds is None else f"within {seconds:g} s"
    return TimeoutError(
        f"no reply to {verb} {within}: the connection is given up (the command may have run)"
    )


def reply_lost(why: object) -> ReplyLostError:
    """The error of a call whose command went out and whose reply was lost."""
    return ReplyLostError(
        f"connection lost before the reply came (the command may have run): {why}"
    )


def timed_out(what: str, seconds: float | None) -> TimeoutError:
    """The builtin :class:`TimeoutError`, saying which bound expired.

    ``what`` is the wait, as the message's subject: ``"connecting to
    127.0.0.1:11300"``, ``"sending put to the server"``. ``seconds``: the
    bound (``None``: one the system set, such as a TCP connect's).
    """
    if seconds is None:  # a wait the system bounded (a TCP connect)
        return TimeoutError(f"{what} timed out")
    return TimeoutError(f"{what} took longer than {seconds:g} s")
