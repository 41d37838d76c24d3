"""What a pool of servers returns: ids and jobs that say where they live.

Job ids are per server, so a pool (``Pool`` in each client package) hands
back ids and jobs that carry their server's address, and sends every later
command about them there.
"""

from __future__ import annotations

from typing import Any

from ._job import Job, TBody

__all__ = ["PooledId", "PooledJob"]


class PooledId(int):
    """A job id a pool returned: an ``int`` that also says which server
    holds the job (``server``, its address)."""

    server: Any

    def __new__(cls, value: int, server: Any) -> PooledId:
        self = super().__new__(cls, value)
        self.server = server
        return self

    def __repr__(self) -> str:
        return f"PooledId({int(self)}, server={self.server!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (PooledId, (int(self), self.server))


class PooledJob(Job[TBody]):
    """A job a pool reserved or peeked; ``server`` is where it lives."""

    def __init__(self, id: int, body: TBody, server: Any, via: Any = None) -> None:
        super().__init__(PooledId(id, server), body)  # type: ignore[arg-type]
        self.server = server
        #: The connection (client) that reserved the job, if one did: a
        #: reservation is only good on it.
        self.via = via

    def __repr__(self) -> str:
        return f"PooledJob(id={int(self.id)!r}, body={self.body!r}, server={self.server!r})"
