"""A zero-timeout readiness check for a client's socket, shared by the
blocking and trio clients (which read only when a call asks them to).

Before sending on a connection that owes no reply, those clients ask whether
anything arrived meanwhile: bytes nobody asked for, or the end of file of a
server that closed the idle connection. The question must cost one cheap
system call: an ``epoll`` object made once per connection (no per-call
registration), else ``poll``, else ``select``.

Not part of the sans-I/O core: only the clients import it.
"""

from __future__ import annotations

import select
from collections.abc import Callable
from typing import Any

__all__ = ["Probe", "readiness_probe", "close_probe"]

#: ``probe(seconds)`` is true when the socket has bytes, or an end of file, to
#: read, waiting at most ``seconds`` (``0``: not at all; ``None``: without limit)
#: for them to come.
Probe = Callable[[float | None], object]


def readiness_probe(fd: int) -> Probe:
    """A :data:`Probe` for the socket with file descriptor ``fd``."""
    if hasattr(select, "epoll"):
        poller: Any = select.epoll(1)
        poller.register(fd, select.EPOLLIN)
        return poller.poll  # type: ignore[no-any-return]
    if hasattr(select, "poll"):  # pragma: no cover (not Linux)
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        # poll() counts milliseconds; a Probe takes seconds, like epoll.
        return lambda timeout: poller.poll(None if timeout is None else timeout * 1000)
    return lambda timeout: select.select([fd], [], [], timeout)[0]  # pragma: no cover


def close_probe(probe: Probe) -> None:
    """Release what ``probe`` holds (the epoll object's own descriptor)."""
    owner = getattr(probe, "__self__", None)
    close = getattr(owner, "close", None)
    if close is not None:
        close()
