"""The blocking client: greenstalk 2.1.1's API on the beanproto core.

All the client does is move bytes between a socket and a
:class:`beanproto.Connection` and turn the events it gets back into return
values and exceptions. It parses nothing; its methods are generated from the
async clients' (``_api.py``), so only the byte moving lives here.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Union, overload

import beanproto as bp
from beanproto import _clientlib as lib
from beanproto._job import TBody

from ._api import SyncAPI

__all__ = ["Address", "ConnectionTarget", "Client"]

Address = Union[tuple[str, int], str]  # noqa: UP007 (runtime alias, as greenstalk)
"""A ``(host, port)`` pair or the path of a unix socket."""

ConnectionTarget = Union[Address, socket.socket]  # noqa: UP007 (runtime alias, as greenstalk)
"""An address, or a socket already connected to beanstalkd."""


#: Bodies at least this large are written with ``sendmsg`` from the caller's
#: own buffer instead of being joined to the command line first.
_VECTORED_BODY = 32 * 1024


def _connect(address: ConnectionTarget) -> tuple[socket.socket, Any]:
    if isinstance(address, socket.socket):
        return address, address.getpeername()
    if isinstance(address, (str, os.PathLike)):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(os.fspath(address))
        except BaseException:
            sock.close()
            raise
        return sock, os.fspath(address)
    sock = socket.create_connection(address)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock, address


def _sendmsg_all(sock: socket.socket, parts: list[bytes | bytearray | memoryview]) -> None:
    """Write every byte of ``parts`` with vectored writes, copying nothing."""
    views = [memoryview(p).cast("B") for p in parts]
    while views:
        sent = sock.sendmsg(views)
        while sent:
            first = views[0]
            if sent >= len(first):
                sent -= len(first)
                views.pop(0)
            else:
                views[0] = first[sent:]
                sent = 0
        while views and not len(views[0]):
            views.pop(0)


class Client(SyncAPI[TBody]):
    """A blocking beanstalkd client, a drop-in for ``greenstalk.Client``.

    Connecting happens at construction; ``use`` and ``watch`` are applied
    straight away (in one round trip).

    Args:
        address: ``(host, port)``, a unix socket path, or a socket already
            connected to beanstalkd.
        encoding: the encoding of job bodies; ``None`` for raw ``bytes``.
        use: the tube ``put`` inserts into.
        watch: the tube or tubes ``reserve`` takes from. ``default`` is
            ignored unless it is named.

    Raises:
        ArgumentError: a tube name the protocol forbids (nothing is sent).
        ConnectionError: the server cannot be reached.
    """

    if TYPE_CHECKING:  # the body type follows the encoding (AsyncAPI.__init__ runs)

        @overload
        def __init__(
            self: Client[bytes],
            address: ConnectionTarget,
            encoding: None,
            use: str = ...,
            watch: str | Iterable[str] = ...,
        ) -> None: ...

        @overload
        def __init__(
            self: Client[str],
            address: ConnectionTarget,
            encoding: str = ...,
            use: str = ...,
            watch: str | Iterable[str] = ...,
        ) -> None: ...

        def __init__(self, *args: Any, **kwargs: Any) -> None: ...

    def _open(self) -> None:
        #: Why the client cannot be used any more (closed, or lost), or None.
        self._unusable: str | None = "the client never connected"
        self._conn = bp.Connection()
        self._sock, self._address = _connect(self._address)
        # Vectored writes need a plain socket (not ssl.SSLSocket, not Windows).
        self._vectored = type(self._sock) is socket.socket and hasattr(self._sock, "sendmsg")
        self._unusable = None
        if self._setup_commands:
            try:
                self._setup(self._setup_commands)
            except BaseException:
                self.close()
                raise

    def _setup(self, commands: list[bp.Command]) -> None:
        # Pipelined: every setup command goes out in one write.
        try:
            self._sock.sendall(b"".join(self._conn.send(command) for command in commands))
            events = [self._read_event() for _ in commands]
        except BaseException as exc:
            self._abandon(exc)
            raise
        lib.check_setup(commands, events)

    # -- the loop: the only place bytes move ---------------------------------

    def _request(self, command: bp.Command) -> bp.Event:
        if self._unusable is not None:
            raise lib.connection_lost(self._unusable)
        conn = self._conn
        try:
            if conn.buffered:
                # Bytes nobody asked for: the core raises RemoteProtocolError.
                conn.next_event()
            if type(command) is bp.Put and self._vectored and len(command.body) >= _VECTORED_BODY:
                _sendmsg_all(self._sock, conn.send_parts(command))
            else:
                self._sock.sendall(conn.send(command))
            return self._read_event()
        except BaseException as exc:
            # Interrupted between sending and reading (a transport error, a
            # protocol error, even KeyboardInterrupt), the reply still owed
            # would be handed to the next call. So the connection is given
            # up: the error propagates, and later calls raise ConnectionError.
            self._abandon(exc)
            raise

    def _read_event(self) -> bp.Event:
        conn = self._conn
        # With nothing buffered the first next_event() can only say NEED_DATA.
        event = conn.next_event() if conn.buffered else bp.NEED_DATA
        while event is bp.NEED_DATA:
            nbytes = self._sock.recv_into(conn.get_buffer())
            if nbytes:
                conn.buffer_updated(nbytes)
            else:
                conn.receive_data(b"")
            event = conn.next_event()
        return event

    # -- context management -----------------------------------------------------

    def close(self) -> None:
        """Close the connection. The client cannot be used afterwards.

        Jobs this client still holds reserved go back to the ready queue.
        """
        self._abandon("the client is closed")

    def _abandon(self, why: BaseException | str) -> None:
        if self._unusable is None:
            self._unusable = why if isinstance(why, str) else f"{type(why).__name__}: {why}"
            self._sock.close()
