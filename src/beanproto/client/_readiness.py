"""A zero-timeout readiness check for a client's socket, shared by the
clients (the blocking and trio ones read only when a call asks them to; the
asyncio one looks before writing on an idle connection).

Before sending on a connection that owes no reply, a client asks whether
anything arrived meanwhile: bytes nobody asked for, or the end of file of a
server that closed the idle connection. The question must cost one cheap
system call: a ``poll`` object made once per connection (no per-call
registration, no descriptor of its own; about 450 instructions a call less
than an ``epoll`` object's ``poll``, measured with callgrind), else
``select``.

Not part of the sans-I/O core: only the clients import it.
"""

from __future__ import annotations

import select
from collections.abc import Callable
from typing import Any

__all__ = ["Probe", "readiness_probe", "close_probe"]

#: ``probe(milliseconds)`` is true when the socket has bytes, or an end of file,
#: to read, waiting at most ``milliseconds`` (``0``: not at all; ``None``:
#: without limit) for them to come. (Milliseconds, as ``poll`` counts them:
#: the zero-timeout check is then the poll object's own method, with no
#: Python frame between.)
Probe = Callable[[float | None], object]


def readiness_probe(fd: int) -> Probe:
    """A :data:`Probe` for the socket with file descriptor ``fd``."""
    if hasattr(select, "poll"):
        poller: Any = select.poll()
        poller.register(fd, select.POLLIN)
        return poller.poll  # type: ignore[no-any-return]
    return lambda timeout: select.select(  # pragma: no cover (no poll: Windows)
        [fd], [], [], None if timeout is None else timeout / 1000
    )[0]


def close_probe(probe: Probe) -> None:
    """Release what ``probe`` holds (nothing for a ``poll`` object; kept so
    that a probe with a descriptor of its own can be closed by its owner)."""
    owner = getattr(probe, "__self__", None)
    close = getattr(owner, "close", None)
    if close is not None:
        close()
