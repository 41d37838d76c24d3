"""The blocking client: greenstalk 2.1.1's API on the beanproto core.

All the client does is move bytes between a socket and a
:class:`beanproto.Connection` and turn the events it gets back into return
values and exceptions. It parses nothing; its methods are generated from the
async clients' (``_api.py``), so only the byte moving lives here.

Threads
-------
One client may be shared by several threads. Calls are serialized: a call
holds the client's lock from sending its command until its reply is read, so
every caller gets its own reply and the bytes of two calls never interleave.
(beanstalkd serves one connection's commands one at a time anyway, so
pipelining several threads' commands would save round trips but change
nothing else; the lock costs about 0.2 µs a call when uncontended.) A
``reserve()`` waiting in one thread therefore holds up the calls of every
other thread on the same client until it returns, exactly as a waiting
reserve holds up the other tasks' commands on an async client: give each
consumer thread its own client, or use ``reserve(timeout=...)``. A call that
fails while a reply is owed gives the connection up, and the calls waiting
for the lock then raise :class:`ConnectionError`. :meth:`Client.close` may be
called from any thread, even while another thread waits in ``reserve()``:
that call then raises :class:`ConnectionError`.

Bytes nobody asked for
----------------------
Before a call sends its command the client looks, without waiting, for bytes
that arrived since the last reply (one ``epoll_wait`` with a zero timeout).
Bytes there are a broken server (:class:`beanproto.RemoteProtocolError`: they
would otherwise be taken for the reply to this call); an end of file means
the server closed the idle connection (it restarted, or dropped idle
clients), and as the command provably never left, the client opens a new
connection, restores ``use`` and ``watch``, and sends it there.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Union, overload

import beanproto as bp
from beanproto import _clientlib as lib
from beanproto._job import TBody
from beanproto._readiness import Probe, close_probe, readiness_probe

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


class _Link:
    """One connection: its socket, the core's state machine for it, and a
    way to ask, without waiting, whether the socket has bytes to read."""

    __slots__ = ("conn", "poll", "sock", "vectored")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.conn = bp.Connection()
        # Vectored writes and the zero-timeout readiness check need a plain
        # socket (not ssl.SSLSocket, whose readable bytes may be no data).
        plain = type(sock) is socket.socket
        self.vectored = plain and hasattr(sock, "sendmsg")
        #: ``poll(0)`` is true when bytes (or an end of file) wait to be read.
        self.poll: Probe = readiness_probe(sock.fileno()) if plain else _maybe_readable

    def read_idle(self) -> int | None:
        """Read what arrived while no reply was owed, without waiting: ``None``
        if nothing did, else the count of bytes now in the core's buffer
        (``0``: the server closed the connection)."""
        if self.poll is _maybe_readable:
            return _read_idle_slow(self.sock, self.conn)
        try:
            return self.sock.recv_into(self.conn.get_buffer())
        except ConnectionResetError:
            return 0

    def close(self) -> None:
        close_probe(self.poll)
        self.sock.close()


def _maybe_readable(timeout: float) -> bool:
    """``poll`` for sockets without a cheap readiness check: always look."""
    return True


def _read_idle_slow(sock: socket.socket, conn: bp.Connection) -> int | None:
    """:meth:`_Link.read_idle` for sockets without a cheap readiness check
    (``ssl.SSLSocket``, where a readable socket may hold no data): one
    non-blocking read."""
    timeout = sock.gettimeout()
    sock.settimeout(0)
    try:
        return sock.recv_into(conn.get_buffer())
    except ConnectionResetError:
        return 0
    except OSError as exc:
        ssl = sys.modules.get("ssl")
        if isinstance(exc, BlockingIOError) or (
            ssl is not None and isinstance(exc, ssl.SSLWantReadError)
        ):
            return None
        raise
    finally:
        sock.settimeout(timeout)


class Client(SyncAPI[TBody]):
    """A blocking beanstalkd client, a drop-in for ``greenstalk.Client``.

    Connecting happens at construction; ``use`` and ``watch`` are applied
    straight away (in one round trip). One client may be shared by several
    threads: calls are serialized (see the module's documentation).

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
            *,
            connect_timeout: float | None = ...,
            io_timeout: float | None = ...,
            keepalive: float | None = ...,
            reconnect: bool = ...,
        ) -> None: ...

        @overload
        def __init__(
            self: Client[str],
            address: ConnectionTarget,
            encoding: str = ...,
            use: str = ...,
            watch: str | Iterable[str] = ...,
            *,
            connect_timeout: float | None = ...,
            io_timeout: float | None = ...,
            keepalive: float | None = ...,
            reconnect: bool = ...,
        ) -> None: ...

        def __init__(self, *args: Any, **kwargs: Any) -> None: ...

    def _open(self) -> None:
        #: Why the client cannot be used any more (closed, or lost), or None.
        self._unusable: str | None = "the client never connected"
        #: Held by a call from sending its command until its reply is read.
        self._lock = threading.Lock()
        self._target = self._address  # what to connect to again
        self._link: _Link | None = None
        self._link = self._connect(self._setup_commands)
        self._unusable = None

    def _connect(self, setup: list[bp.Command]) -> _Link:
        sock, self._address = _connect(self._target)
        try:
            link = _Link(sock)
        except BaseException:
            sock.close()
            raise
        if setup:
            # Pipelined: every set-up command goes out in one write.
            try:
                sock.sendall(b"".join(link.conn.send(command) for command in setup))
                events = [self._read_event(link) for _ in setup]
                lib.check_setup(setup, events)
            except BaseException:
                link.close()
                raise
        return link

    # -- the loop: the only place bytes move ---------------------------------

    def _request(self, command: bp.Command) -> bp.Event:
        if self._unusable is not None:
            raise lib.connection_lost(self._unusable)
        # ``with``, not acquire()/try: an exception from a signal handler
        # (Ctrl-C) between the two would leave the lock held for ever.
        with self._lock:
            link = self._link
            if self._unusable is not None or link is None:
                raise lib.connection_lost(self._unusable or "no connection")
            try:
                if link.conn.buffered or link.poll(0):
                    link = self._after_idle(link)
                if (
                    type(command) is bp.Put
                    and link.vectored
                    and len(command.body) >= _VECTORED_BODY
                ):
                    _sendmsg_all(link.sock, link.conn.send_parts(command))
                else:
                    link.sock.sendall(link.conn.send(command))
                event = self._read_event(link)
            except BaseException as exc:
                # Interrupted between sending and reading (a transport error, a
                # protocol error, even KeyboardInterrupt), the reply still owed
                # would be handed to the next call. So the connection is given
                # up: the error propagates, and later calls raise ConnectionError.
                self._abandon(link, exc)
                raise
        if self._unusable is not None:
            # close() came meanwhile and found the lock taken: it only shut
            # the socket down. Checked after releasing the lock, so that
            # either this or close() itself sees the other and closes it.
            link.close()
        return event

    def _after_idle(self, link: _Link) -> _Link:
        """Deal with what arrived on an idle connection; return the link to
        send on (a new one if the server had closed this one)."""
        conn = link.conn
        if conn.buffered:
            conn.next_event()  # read ahead, and no reply owed: RemoteProtocolError
        nbytes = link.read_idle()
        if nbytes is None:
            return link  # nothing after all (a socket without a readiness check)
        if nbytes:
            conn.buffer_updated(nbytes)  # no reply owed: RemoteProtocolError
            conn.next_event()
        if isinstance(self._target, socket.socket):
            raise lib.connection_lost(
                "the server closed the connection while it was idle "
                "(a socket passed in is not replaced)"
            )
        # Closed by the server while idle: the command has not left, so it
        # goes out on a new connection set up like the old one.
        link.close()
        self._link = None
        new = self._connect(lib.setup_commands(self._use, self._watch))
        if self._unusable is not None:  # close() while reconnecting
            new.close()
            raise lib.connection_lost(self._unusable)
        self._link = new
        return new

    @staticmethod
    def _read_event(link: _Link) -> bp.Event:
        conn = link.conn
        # With nothing buffered the first next_event() can only say NEED_DATA.
        event = conn.next_event() if conn.buffered else bp.NEED_DATA
        while event is bp.NEED_DATA:
            nbytes = link.sock.recv_into(conn.get_buffer())
            if nbytes:
                conn.buffer_updated(nbytes)
            else:
                conn.receive_data(b"")
            event = conn.next_event()
        return event

    # -- context management -----------------------------------------------------

    def close(self) -> None:
        """Close the connection. The client cannot be used afterwards.

        Jobs this client still holds reserved go back to the ready queue. It
        may be called from any thread, and from a signal handler: a call in
        progress (a ``reserve()`` waiting for a job) then ends at once with
        :class:`ConnectionError`.
        """
        if self._unusable is None:
            self._unusable = "the client is closed"
        link = self._link
        if link is None:
            return
        # Never take the lock: close() may interrupt the very call that holds
        # it (a SIGTERM handler during a reserve), and an exception landing
        # between acquiring and releasing it would leave it held for ever.
        # ``_unusable`` is set first, so a call that takes the lock from now
        # on refuses to touch the socket, and a call that holds it closes
        # the socket once it has released it.
        if not self._lock.locked():
            link.close()
        else:
            # Closing the file descriptor under a call that uses it is unsafe
            # (it could be reused): wake the call with a shutdown instead.
            try:
                link.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _abandon(self, link: _Link, why: BaseException) -> None:
        if self._unusable is None:
            self._unusable = f"{type(why).__name__}: {why}"
        link.close()
