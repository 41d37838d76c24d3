"""Connection management shared by the async clients, whatever their library.

An async client holds one connection (a *link*) at a time. A link is given up
when it fails, is closed, or a cancelled reserve makes it unusable; the next
call then opens a new one, set up with the client's current ``use`` and
``watch`` tubes (unless the client was made with ``reconnect=False``: then
losing the connection ends the client, as in greenstalk). Only one task
connects at a time. A socket handed to the constructor cannot be replaced,
so losing it ends the client.

The library-specific parts are abstract: opening a link (``_connect``),
ending a connect in progress (``_stop_connecting``), giving one up
(``_drop``), a yield to the event loop (``_checkpoint``), and the lock
(``_connect_lock``, any async context manager).
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any, Generic, Protocol, TypeVar

from . import _outcomes as lib
from ._faults import Timeouts

__all__ = ["Reconnecting"]


class _Link(Protocol):
    error: BaseException | None


_L = TypeVar("_L", bound=_Link)


class Reconnecting(Generic[_L]):
    """The link life cycle; mixed into an async client class.

    Call ``_init_links(lock)`` from ``_open()`` with a lock of the I/O
    library. ``await self._current_link()`` returns the live link, or opens
    one with ``_connect()`` (one task at a time, under that lock): after a
    failure, unless ``reconnect=False`` or the address is a socket passed in.
    ``close()`` gives the link up and ends a connect in progress.

    A link is any object with an ``error`` attribute, ``None`` while it is
    usable. The adapter implements:

    * ``async _connect() -> link``: open and set up a connection (within
      ``self._timeouts.connect``; :func:`~beanproto.client.setup_commands`,
      :func:`~beanproto.client.check_setup`);
    * ``_drop(link, error)``: give a link up: set ``link.error``, fail the
      calls waiting on it, end the connection (synchronous);
    * ``_given_socket() -> bool``: whether the address is a connected socket;
    * ``_stop_connecting()``: end a ``_connect`` in progress (it then raises
      :class:`ConnectionError`);
    * ``async _checkpoint()``: a yield to the event loop.
    """

    _address: Any
    _link: _L | None
    _connecting: _L | None
    _closed: bool
    _connect_lock: AbstractAsyncContextManager[Any]
    _timeouts: Timeouts

    def _init_links(self, connect_lock: AbstractAsyncContextManager[Any]) -> None:
        self._link = None
        #: The link being set up, which close() must also end.
        self._connecting = None
        self._closed = False
        self._connect_lock = connect_lock

    async def _connect(self) -> _L:
        raise NotImplementedError

    def _drop(self, link: _L, error: BaseException) -> None:
        """Give ``link`` up: close it and fail every call waiting on it."""
        raise NotImplementedError

    def _given_socket(self) -> bool:
        """Whether the address is a connected socket (which cannot be replaced)."""
        raise NotImplementedError

    async def _checkpoint(self) -> None:
        raise NotImplementedError

    def _stop_connecting(self) -> None:
        """End a connect in progress (it then raises ConnectionError)."""
        raise NotImplementedError

    async def close(self) -> None:
        """Close the connection. Calls still in flight (connecting included)
        end with :class:`ConnectionError`; the client cannot be used
        afterwards.

        Jobs this client still holds reserved go back to the ready queue.
        """
        self._closed = True
        self._stop_connecting()
        for link in (self._link, self._connecting):
            if link is not None:
                self._drop(link, lib.connection_lost("the client is closed"))
        await self._checkpoint()

    aclose = close

    async def _current_link(self) -> _L:
        link = self._link
        if link is not None and link.error is None:
            return link
        async with self._connect_lock:
            link = self._link
            if link is not None and link.error is None:
                return link
            if self._closed:
                raise lib.connection_lost("the client is closed")
            if link is not None and self._given_socket():
                raise lib.connection_lost(f"{link.error} (a socket passed in is not replaced)")
            if link is not None and not self._timeouts.reconnect:
                raise lib.connection_lost(f"{link.error} (reconnect=False)")
            link = await self._connect()
            if self._closed:  # close() came while connecting
                self._drop(link, lib.connection_lost("the client is closed"))
                raise lib.connection_lost("the client is closed")
            if link.error is not None:  # lost at once: a second try would loop
                raise lib.connection_lost(f"the new connection failed at once: {link.error}")
            self._link = link
            return link

    async def _ready(self) -> None:
        await self._current_link()
