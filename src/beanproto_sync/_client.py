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
fails while a reply is owed gives the connection up; the calls waiting for
the lock have sent nothing yet, so they go out on a new connection. :meth:`Client.close` may be
called from any thread, even while another thread waits in ``reserve()``:
that call then raises :class:`ConnectionError`.

Bytes nobody asked for
----------------------
Before a call sends its command the client looks, without waiting, for bytes
that arrived since the last reply (one ``poll`` with a zero timeout).
Bytes there are a broken server (:class:`beanproto.RemoteProtocolError`: they
would otherwise be taken for the reply to this call); an end of file means
the server closed the idle connection (it restarted, or dropped idle
clients), and as the command provably never left, the client opens a new
connection, restores ``use`` and ``watch``, and sends it there.

Failures
--------
The fault model of every client (``beanproto.client._faults``; the README's
"Failures"): ``connect_timeout`` bounds connecting and the set-up,
``io_timeout`` every wait for bytes due now, ``keepalive`` tunes TCP
keepalive. Waits are bounded by the kernel (``SO_RCVTIMEO``/``SO_SNDTIMEO``
on a blocking socket: no system call until one expires). A reserve's wait is
the server's to take: when ``io_timeout`` expires during one, the client
goes on waiting, for ever (``reserve()``) or for the timeout it asked for
plus ``io_timeout``. A failure after the command went out gives the
connection up and raises :class:`~beanproto.ReplyLostError` (or
:class:`TimeoutError`): the command may have run, so it is not sent again.
The next call connects again, unless ``reconnect=False`` or the socket was
passed in.
"""

from __future__ import annotations

import functools
import os
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Union, overload

import beanproto as bp
from beanproto import _batch as batch
from beanproto.client import _faults as faults
from beanproto.client import _outcomes as lib
from beanproto.client._job import TBody
from beanproto.client._readiness import Probe, close_probe, readiness_probe

from ._api import SyncAPI

__all__ = ["Address", "ConnectionTarget", "Client"]

Address = Union[tuple[str, int], str]  # noqa: UP007 (runtime alias, as greenstalk)
"""A ``(host, port)`` pair or the path of a unix socket."""

ConnectionTarget = Union[Address, socket.socket]  # noqa: UP007 (runtime alias, as greenstalk)
"""An address, or a socket already connected to beanstalkd."""


#: Bodies at least this large are written with ``sendmsg`` from the caller's
#: own buffer instead of being joined to the command line first.
_VECTORED_BODY = 32 * 1024

#: What the first read of a reply asks for.
_READ_SIZE = 65536


def _connect(address: ConnectionTarget, timeouts: faults.Timeouts) -> tuple[socket.socket, Any]:
    """Open a connection to ``address`` (a socket passed in is used as it is),
    within ``timeouts.connect``; the socket comes back with that timeout set,
    for the set-up that follows."""
    if isinstance(address, socket.socket):
        address.settimeout(timeouts.connect)
        return address, address.getpeername()
    if isinstance(address, (str, os.PathLike)):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeouts.connect)
            sock.connect(os.fspath(address))
        except BaseException:
            sock.close()
            raise
        return sock, os.fspath(address)
    sock = socket.create_connection(address, timeout=timeouts.connect)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        faults.set_keepalive(sock, timeouts.keepalive)
    except BaseException:
        sock.close()
        raise
    return sock, address


#: Whether ``SO_RCVTIMEO``/``SO_SNDTIMEO`` can bound a blocking socket's waits
#: (Linux's ``struct timeval`` layout is known). Elsewhere the socket gets a
#: Python timeout instead, which costs a ``poll`` before every read.
_KERNEL_TIMEOUTS = sys.platform.startswith("linux") and hasattr(socket, "SO_RCVTIMEO")


def _timeval(seconds: float | None) -> bytes:
    """A ``struct timeval`` for ``SO_RCVTIMEO``/``SO_SNDTIMEO`` (all zero
    means no limit, so a positive bound never rounds down to it)."""
    if seconds is None:
        return struct.pack("@ll", 0, 0)
    whole = int(seconds)
    micro = round((seconds - whole) * 1_000_000)
    if micro >= 1_000_000:
        whole, micro = whole + 1, 0
    if whole == 0 and micro == 0:
        micro = 1
    return struct.pack("@ll", whole, micro)


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

    def bound_waits(self, seconds: float | None) -> None:
        """From now on, let no read or write wait longer than ``seconds``
        without progress (``None``: no limit).

        On Linux the bound is the kernel's (``SO_RCVTIMEO``/``SO_SNDTIMEO`` on
        a blocking socket): an expired wait fails with ``EAGAIN`` and costs
        nothing while it does not expire. Elsewhere, and on sockets that are
        not plain (``ssl.SSLSocket``), it is a Python socket timeout.
        """
        if _KERNEL_TIMEOUTS and self.poll is not _maybe_readable:
            self.sock.settimeout(None)
            value = _timeval(seconds)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)
        else:
            self.sock.settimeout(seconds)

    def wait_readable(self, seconds: float | None) -> bool:
        """Wait at most ``seconds`` (``None``: without limit) for bytes, or an
        end of file, to read; whether they came."""
        milliseconds = None if seconds is None else seconds * 1000
        if self.poll is not _maybe_readable:
            return bool(self.poll(milliseconds))
        pending = getattr(self.sock, "pending", None)
        if pending is not None and pending():
            return True  # decrypted bytes the socket itself no longer shows
        probe = readiness_probe(self.sock.fileno())
        try:
            return bool(probe(milliseconds))
        finally:
            close_probe(probe)

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


def _maybe_readable(timeout: float | None) -> bool:
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
        connect_timeout: seconds to connect and set up (``None``: no bound).
        io_timeout: seconds any reply or transfer may stall, a reserve's own
            wait aside (``None``: no bound).
        keepalive: seconds within which TCP keepalive notices a vanished
            peer (``None``: off).
        reconnect: whether the next call after a lost connection opens a
            new one (``False``: greenstalk's behaviour, the client stays
            unusable).

    Raises:
        ArgumentError: a tube name or setting the protocol forbids (nothing
            is sent).
        ConnectionError: the server cannot be reached.
        TimeoutError: connecting or the set-up took over ``connect_timeout``.
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
        #: Why the client cannot be used any more (closed, or lost for good),
        #: or None. A lost connection is not that: the next call opens a new
        #: one (unless ``reconnect=False``, or the socket was passed in).
        self._unusable: str | None = "the client never connected"
        #: Held by a call from sending its command until its reply is read.
        self._lock = threading.Lock()
        self._target = self._address  # what to connect to again
        self._link: _Link | None = None
        self._link = self._connect(self._setup_commands)
        self._unusable = None

    def _connect(self, setup: list[bp.Command]) -> _Link:
        """Open a connection and set it up, all within ``connect_timeout``
        (each read of the set-up within ``io_timeout`` when that is None).

        While it is set up the link is the client's, so that close() can
        wake it. Whatever fails here, no command of the caller's has left:
        a set-up cut off raises a plain :class:`ConnectionError`.
        """
        timeouts = self._timeouts
        where = faults.describe(self._target)
        start = time.monotonic()
        try:
            sock, self._address = _connect(self._target, timeouts)
        except TimeoutError as exc:
            raise faults.timed_out(f"connecting to {where}", timeouts.connect) from exc
        try:
            link = _Link(sock)
        except BaseException:
            sock.close()
            raise
        self._link = link
        try:
            if setup:
                deadline = None if timeouts.connect is None else start + timeouts.connect
                # Pipelined: every set-up command goes out in one write.
                _bounded(sock, deadline, timeouts.io)
                sock.sendall(b"".join(link.conn.send(command) for command in setup))
                bound = functools.partial(_bounded, sock, deadline, timeouts.io)
                events = [self._read_event(link, bound) for _ in setup]
                lib.check_setup(setup, events)
            link.bound_waits(timeouts.io)
        except BaseException as exc:
            self._link = None
            link.close()
            if not isinstance(exc, Exception):
                raise  # Ctrl-C …
            if self._unusable == _CLOSED:
                raise lib.connection_lost(_CLOSED) from exc  # close() woke it
            if isinstance(exc, TimeoutError) and exc.errno is None:
                seconds = timeouts.io if timeouts.connect is None else timeouts.connect
                raise faults.timed_out(f"setting up the connection to {where}", seconds) from exc
            if isinstance(exc, bp.ConnectionClosedError):
                # Not a lost reply: only set-up commands had gone out.
                raise lib.connection_lost(f"setting the connection up failed: {exc}") from exc
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
            # (Bytes read ahead of a reply and left over are the core's to
            # refuse: Connection.send raises RemoteProtocolError.)
            if link is None or self._unusable is not None or link.poll(0):
                # Nothing has been sent yet: whatever fails here, the command
                # provably did not reach the server.
                link = self._usable_link(link)
            conn = link.conn
            sock = link.sock
            try:
                if type(command) is not _Put or len(command.body) < _VECTORED_BODY:
                    sock.sendall(conn.send(command))
                elif link.vectored:
                    _sendmsg_all(sock, conn.send_parts(command))
                else:
                    sock.sendall(conn.send(command))
                try:
                    # The usual reply: one read, one complete reply.
                    event = conn.next_event_with(sock.recv(_READ_SIZE))
                    if event is _NEED_DATA:
                        event = self._read_event(link)
                except OSError as exc:
                    # io_timeout expired? A reserve may rightly take longer.
                    if type(command) not in _WAITING or not _expired(exc) or conn.mid_reply:
                        raise  # late, or the reply began and then stalled
                    event = self._read_waiting(link, command)
            except BaseException as exc:
                # Interrupted between sending and reading (a transport error, a
                # protocol error, a timeout, even KeyboardInterrupt), the reply
                # still owed would be handed to the next call. So the
                # connection is given up, and the command is not sent again:
                # it may have taken effect.
                self._drop(link, exc)
                failure = self._failure(command, exc)
                if failure is exc:
                    raise
                raise failure from exc
        if self._unusable is not None:
            # close() came meanwhile and found the lock taken: it only shut
            # the socket down. Checked after releasing the lock, so that
            # either this or close() itself sees the other and closes it.
            link.close()
        return event

    def _request_many(self, commands: list[bp.Command]) -> list[bp.Event]:
        """Send a batch and read its replies (``put_many``, pipelines).

        The core's plan (``beanproto._batch.Plan``) says what to write next
        and when to read first; writes go out with ``sendall`` (a put with a
        large body with ``sendmsg`` from the caller's buffer, as in
        :meth:`_request`) and replies are read with :meth:`_read_event`, all
        under the lock, so other threads' calls wait until the whole batch
        is answered. A failure is handled as in :meth:`_request` (the link is
        given up, errors mapped the same way); once part of the batch went
        out it raises ``beanproto._batch.Interrupted`` with what was
        answered, which the API turns into :class:`~beanproto.BatchLostError`.
        """
        if self._unusable is not None:
            raise lib.connection_lost(self._unusable)
        with self._lock:
            link = self._link
            if link is None or self._unusable is not None or link.conn.buffered or link.poll(0):
                # Nothing has been sent yet (see _request).
                link = self._usable_link(link)
            conn = link.conn
            sock = link.sock
            tcp = sock.family in _TCP
            plan = batch.Plan(conn, commands, max_unread=batch.unread_limit(tcp))
            events: list[bp.Event] = []
            append = events.append
            read_event = self._read_event
            try:
                while True:
                    write = plan.next_write()
                    if write is not None:
                        large = write.large
                        if large is None:
                            sock.sendall(write.data)
                        elif link.vectored:
                            _sendmsg_all(sock, conn.send_parts(large))
                        else:
                            sock.sendall(conn.send(large))
                    elif plan.done:
                        break
                    else:
                        try:
                            append(read_event(link))
                        except OSError as exc:
                            # io_timeout expired in a reserve's own wait? (see _request)
                            command = commands[plan.answered]
                            if type(command) not in _WAITING or not _expired(exc) or conn.mid_reply:
                                raise
                            append(self._read_waiting(link, command))
                        plan.replied()
                        # The replies that came in the same read, without a
                        # call of _read_event (and a next_write) for each.
                        while conn.buffered and plan.answered < plan.sent:
                            event = conn.next_event()
                            if event is _NEED_DATA:
                                break
                            append(event)
                            plan.replied()
            except BaseException as exc:
                self._drop(link, exc)  # the replies still owed: the connection is lost
                if not isinstance(exc, Exception):
                    raise  # Ctrl-C …
                failure = self._failure(commands[min(plan.answered, len(commands) - 1)], exc)
                owed = plan.sent - plan.answered
                if plan.sent == 0:
                    if failure is exc:
                        raise
                    raise failure from exc
                lost: list[BaseException] = [failure] if owed else []
                if owed > 1:
                    why = f"{type(failure).__name__}: {failure}"
                    lost.extend(faults.reply_lost(why) for _ in range(owed - 1))
                # The failure itself: the reset, not the ReplyLostError made of it.
                lost_only = type(failure) is bp.ReplyLostError and failure is not exc
                cause = exc if lost_only else failure
                raise batch.Interrupted(events, lost, cause) from exc
        if self._unusable is not None:
            link.close()  # close() came meanwhile (see _request)
        return events

    def _usable_link(self, link: _Link | None) -> _Link:
        """The link a call may send on (the lock is held), when the quick
        checks of :meth:`_request` found something to look at: the client
        closed meanwhile, no link, or bytes (or an end of file) on one that
        owes no reply."""
        if self._unusable is not None:
            if link is not None:
                # close() found the lock taken and only shut it down.
                self._link = None
                link.close()
            raise lib.connection_lost(self._unusable)
        return self._fresh_link(link)

    def _failure(self, command: bp.Command, exc: BaseException) -> BaseException:
        """What a call whose command went out raises for ``exc``."""
        if self._unusable == _CLOSED and isinstance(exc, Exception):
            return lib.connection_lost(_CLOSED)  # close() woke the call up
        if isinstance(exc, bp.Error) or not isinstance(exc, (OSError, _Expired)):
            return exc  # a broken reply (ConnectionClosedError: reply lost), Ctrl-C …
        verb = command.verb.decode()
        if isinstance(exc, _Expired):
            return faults.reply_timed_out(verb, exc.seconds)
        if _expired(exc):
            return faults.reply_timed_out(verb, self._timeouts.io)
        if isinstance(exc, TimeoutError):  # ETIMEDOUT: keepalive or TCP_USER_TIMEOUT
            return faults.reply_lost(f"the server stopped answering ({exc})")
        return faults.reply_lost(f"{type(exc).__name__}: {exc}")

    def _fresh_link(self, link: _Link | None) -> _Link:
        """The link to send on: ``link`` if it is still good, else a new one.

        ``link`` is ``None`` (lost by an earlier call) or owes no reply and
        has something to read: bytes nobody asked for (a broken server:
        :class:`~beanproto.RemoteProtocolError`), or an end of file (the
        server closed the idle connection: it restarted, or drops idle
        clients). As the command has not left, it then goes out on a new
        connection set up like the old one.
        """
        if link is not None:
            try:
                if not self._closed_while_idle(link):
                    return link  # nothing after all (a socket without a readiness check)
            except BaseException as exc:
                self._drop(link, exc)
                raise
            self._drop(link, lib.connection_lost("the server closed the idle connection"))
            if self._unusable is not None:
                raise lib.connection_lost(self._unusable)
        new = self._link = self._connect(lib.setup_commands(self._use, self._watch))
        if self._unusable is not None:  # close() while reconnecting
            self._link = None
            new.close()
            raise lib.connection_lost(self._unusable)
        return new

    @staticmethod
    def _closed_while_idle(link: _Link) -> bool:
        """Read what arrived on an idle connection: whether it was the end of
        file (bytes raise :class:`~beanproto.RemoteProtocolError`)."""
        conn = link.conn
        if conn.buffered:
            conn.next_event()  # read ahead, and no reply owed: RemoteProtocolError
        nbytes = link.read_idle()
        if nbytes is None:
            return False
        if nbytes:
            conn.buffer_updated(nbytes)  # no reply owed: RemoteProtocolError
            conn.next_event()
        return True

    def _read_waiting(self, link: _Link, command: bp.Command) -> bp.Event:
        """Go on reading the reply to a reserve after ``io_timeout`` expired
        once: the server may keep it waiting as long as the command asks, so
        its reply is due ``io_timeout`` after that (``faults.reply_timeout``,
        counted from about when the command went out)."""
        io = self._timeouts.io
        wait = faults.reply_timeout(command, io)
        deadline = None if wait is None or io is None else time.monotonic() + wait - io
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise _Expired(wait)
            if not link.wait_readable(left):
                raise _Expired(wait)
            try:
                return self._read_event(link)
            except OSError as exc:
                if not _expired(exc) or link.conn.mid_reply:
                    raise  # the reply began and then stalled: io_timeout applies

    @staticmethod
    def _read_event(link: _Link, before_read: Callable[[], None] | None = None) -> bp.Event:
        """Read the next event; ``before_read()`` before every read (the
        set-up bounds each wait by what is left of its deadline)."""
        conn = link.conn
        # With nothing buffered the first next_event() can only say NEED_DATA.
        event = conn.next_event() if conn.buffered else bp.NEED_DATA
        while event is bp.NEED_DATA:
            if before_read is not None:
                before_read()
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
            self._unusable = _CLOSED
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

    def _drop(self, link: _Link, why: BaseException) -> None:
        """Give ``link`` up (the lock is held). The next call connects again,
        unless the socket was passed in or ``reconnect=False``."""
        if self._link is link:
            self._link = None
        link.close()
        if self._unusable is None:
            if isinstance(self._target, socket.socket):
                self._unusable = f"{type(why).__name__}: {why} (a socket passed in is not replaced)"
            elif not self._timeouts.reconnect:
                self._unusable = f"{type(why).__name__}: {why} (reconnect=False)"


_CLOSED = "the client is closed"


def _bounded(sock: socket.socket, deadline: float | None, io: float | None) -> None:
    """Let the socket's next wait last until ``deadline`` at most (else
    ``io``); raise :class:`TimeoutError` if it has passed."""
    if deadline is None:
        sock.settimeout(io)
        return
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    sock.settimeout(left)


def _expired(exc: OSError) -> bool:
    """Whether ``exc`` is io_timeout expiring: ``EAGAIN`` from a blocking
    socket's ``SO_RCVTIMEO``/``SO_SNDTIMEO``, or a Python socket timeout (no
    errno) — not ``ETIMEDOUT``, the kernel giving a dead peer up."""
    return isinstance(exc, BlockingIOError) or (isinstance(exc, TimeoutError) and exc.errno is None)


class _Expired(Exception):
    """A waiting command's reply did not start within ``seconds``."""

    def __init__(self, seconds: float | None) -> None:
        super().__init__(seconds)
        self.seconds = seconds


_Put = bp.Put
_NEED_DATA = bp.NEED_DATA

#: Socket families that are TCP: a batch's plan needs no reply count limit
#: there (``beanproto._batch.MAX_UNREAD``).
_TCP = (socket.AF_INET, socket.AF_INET6)

#: Commands the server may rightly keep waiting (see faults.server_wait).
_WAITING = frozenset({bp.Reserve, bp.ReserveWithTimeout})
