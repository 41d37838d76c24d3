"""The trio client: greenstalk's API as coroutines, on the beanproto core.

How bytes move
--------------
No background task moves bytes, and the bytes move by plain calls on the
standard (non-blocking) socket under the trio one: a call queues a *slot*
for its reply and writes its command with one ``send``, which nearly always
takes all of it; only a socket that is full makes it wait
(``trio.lowlevel.wait_writable``), under a send lock that the calls behind
it then wait for, so the bytes of concurrent calls never interleave. Then it
reads: whichever waiting task holds the receive lock reads events off the
socket and hands each to the oldest slot, until its own slot is filled. A
read is tried at once and only waits (``wait_readable``) when nothing has
come yet; a read that did not wait yields once afterwards, so every call is
a schedule point, and it is a cancel point before its command is queued. A
read that is exactly one reply (the usual case) is parsed by the core
straight from the bytes read (``next_event_with``); the rest of a reply that
came in part is read straight into the core's buffer. Replies come back in
the order the commands went out, so several tasks' commands are pipelined
on the one connection and every task gets its own reply. The locks are the
client's own (:class:`_Gate`): taking one that is free is setting a flag.

Cancellation
------------
Bytes are never lost to a cancellation: a read that is cancelled has taken
nothing off the socket, and bytes already read sit in the core's buffer for
the next reader. What remains is the reply the cancelled call will not read:

* For most commands it is simply dropped when it arrives. The command itself
  may or may not have taken effect (a cancelled ``put`` may have inserted its
  job: the server processes every command that reaches it).
* A cancelled ``reserve`` (or ``reserve_job``) is different: beanstalkd cannot
  abort a reserve that waits, so the connection would stay blocked until a job
  comes, and that job would be reserved for nobody until its TTR. So the
  connection is closed instead. beanstalkd then ends the wait and puts back
  every job this connection held reserved, *at once*: the cancelled call's job
  and also any other job this client had reserved and not yet deleted,
  released or buried (those are back in the ready queue: another consumer may
  take them, and this client can no longer release, bury or touch them; finish
  jobs before cancelling a reserve, or reserve on a client of its own). Calls
  of other tasks still waiting for a reply on that connection fail with
  :class:`~beanproto.ReplyLostError`: their commands may or may not have
  taken effect. The next call opens a new connection and restores the
  ``use`` and ``watch`` tubes.

A call cancelled before the first byte of its command is written leaves no
trace: its command is taken back (from the core's queue too), and the
connection and every job it holds stay as they were. A command cut off in the
middle (a large ``put`` whose socket buffer filled up) has left part of
itself on the wire, so that connection is given up.

The idle check
--------------
Before a command goes out on a connection that owes no reply, the client
looks (one ``poll`` with a zero timeout: the check costs 0.3-0.5 µs)
whether anything arrived meanwhile. Bytes nobody asked for would otherwise
become the reply to this command: they raise
:class:`~beanproto.RemoteProtocolError` and the connection is given up. An
end of file (the server restarted, or dropped the idle connection) is not an
error: the command has provably not left, so it goes out on a new connection
(a socket passed in cannot be replaced: :class:`ConnectionError`).

Faults
------
``connect_timeout`` bounds opening the connection (every address of the
host) and its ``use``/``watch`` set-up together, in one cancel scope that
``close()`` also cancels: :class:`TimeoutError` (a cancellation from outside
stays :class:`trio.Cancelled`). ``io_timeout`` is kept by one watchdog (a
trio system task) per connection, not by a cancel scope per call (one costs
about a third of a ``put``): a call only notes when its reply became due.
The oldest call's reply is due within ``io_timeout`` of its command going
out, of the reply before it, or of the last bytes moved (a large body is
bounded on progress), plus ``t`` for ``reserve(timeout=t)``; ``reserve()``
has no bound (TCP keepalive, tuned by ``keepalive``, notices a dead peer).
A command being written while the socket is full is bounded on its own,
whatever the oldest call is (a ``reserve()`` with no bound included): no
bytes out for ``io_timeout``.
Late: the connection is given up, the late call raises :class:`TimeoutError`
and the others waiting on it :class:`~beanproto.ReplyLostError`. A call whose
command went out and whose connection then fails (end of file, reset,
timeout, a cancelled reserve, ``close()``) raises
:class:`~beanproto.ReplyLostError` and is never sent again; one whose
command did not go out whole (so cannot have run) raises a plain
:class:`ConnectionError`. The next call connects
again, unless ``reconnect=False`` (then every later call raises
:class:`ConnectionError`).

Cost (callgrind, user-space instructions per operation,
``bench/callgrind.py``): a ``put`` 68-69k and a put + reserve + delete 203-209k
(before issue 9: 161k and 482k), against 98-100k and 299-306k for a raw loop
on ``trio.socket`` (``send`` and ``recv_into``, each a trio checkpoint: two
trips through the scheduler per command where this client makes one). The
floor, a raw loop doing what this client does per command and nothing else
(one ``send``, a ``recv`` tried at once, one schedule point), is 36-41k and
113-122k. (Trio figures move by a few percent from run to run: a read tried
before the reply is in costs an exception and a wait.)

A ``reserve()`` that waits on the server holds up every command sent after it
on the same connection, whichever task sent it: beanstalkd serves one
connection's commands one at a time. Give each consumer task its own client,
or use ``reserve(timeout=...)``.
"""

from __future__ import annotations

import math
import os
import socket as stdlib_socket
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, NoReturn, overload

import trio

import beanproto as bp
from beanproto import _batch as batch
from beanproto.client import _outcomes as lib
from beanproto.client._api import AsyncAPI
from beanproto.client._faults import describe, reply_lost, server_wait, set_keepalive, timed_out
from beanproto.client._job import TBody
from beanproto.client._readiness import Probe, close_probe, readiness_probe
from beanproto.client._reconnect import Reconnecting
from beanproto.errors import ReplyLostError

__all__ = ["Client"]

DEFAULT_TUBE = lib.DEFAULT_TUBE

#: Bodies at least this large are written with ``sendmsg`` from the caller's
#: own buffer instead of being joined to the command line first.
_VECTORED_BODY = 32 * 1024

_INF = math.inf

_NEED_DATA = bp.NEED_DATA
_Put = bp.Put

#: What a read asks for (the core's own read size).
_READ_SIZE = 65536

#: Socket families that are TCP: a batch's plan needs no reply count limit
#: there (``beanproto._batch.MAX_UNREAD``).
_TCP = (stdlib_socket.AF_INET, stdlib_socket.AF_INET6)


class _Slot:
    """A call waiting for its reply."""

    __slots__ = ("command", "error", "event", "orphan")

    def __init__(self, command: bp.Command) -> None:
        self.command = command
        self.event: bp.Event | None = None
        self.error: BaseException | None = None
        #: The call was cancelled: nobody waits for this reply any more.
        self.orphan = False


class _Link:
    """One connection: its socket, its core state machine and the calls
    waiting on it, oldest first.

    Bytes move through ``raw``, the standard socket under ``sock``
    (non-blocking): a write or read that can be done at once is one system
    call, and only a socket that is full (or has nothing yet) waits, with
    ``trio.lowlevel.wait_writable`` / ``wait_readable``. For a socket passed
    in, ``raw`` is a duplicate of its descriptor (closed with it).

    With an ``io`` bound, a watchdog task (:func:`_watchdog`) keeps it: the
    oldest call's reply is due ``io`` seconds (plus the server's own wait, for
    a reserve) after ``since``, the moment that call became the oldest (its
    command was sent, or the reply before it came) or bytes last moved. The
    calls only write ``since`` (one read of the clock); the watchdog sleeps
    until ``wake`` (at most ``io`` ahead, or for ever while nothing is due)
    and is woken earlier only when something becomes due before ``wake``.
    A command still being written (``sending``) is due ``io`` after
    ``since`` too, whatever the oldest call is: each write that makes
    progress moves ``since``.
    """

    __slots__ = (
        "__weakref__",
        "alarm",
        "clock",
        "conn",
        "error",
        "io",
        "poll",
        "raw",
        "sending",
        "since",
        "slots",
        "sock",
        "started",
        "wake",
    )

    def __init__(self, sock: trio.socket.SocketType, raw: stdlib_socket.socket) -> None:
        self.sock = sock
        self.raw = raw
        self.conn = bp.Connection()
        self.slots: deque[_Slot] = deque()
        self.error: BaseException | None = None
        #: ``poll(0)``: whether the socket is readable (data or end of file),
        #: without blocking or yielding; one cheap system call.
        self.poll: Probe = readiness_probe(raw.fileno())
        #: The io_timeout the watchdog keeps (``None``: no watchdog).
        self.io: float | None = None
        self.clock: Callable[[], float] = trio.lowlevel.current_clock().current_time
        #: When the oldest call's deadline starts (see the class).
        self.since = 0.0
        #: Whether bytes of the oldest call's reply came (so the server
        #: waits no more: a reserve's own wait is over).
        self.started = False
        #: The call whose command is being written while the socket is full.
        self.sending: _Slot | None = None
        #: When the watchdog wakes up next, and the scope it sleeps in.
        self.wake = _INF
        self.alarm: trio.CancelScope | None = None

    def watch(self, io: float | None) -> None:
        """Start keeping ``io`` (the io_timeout) on this link."""
        if io is not None and self.error is None:
            self.io = io
            trio.lowlevel.spawn_system_task(
                _watchdog, self, name="beanproto_trio io_timeout watchdog"
            )

    def moved(self) -> None:
        """Bytes moved, or the oldest call changed: its deadline starts again."""
        io = self.io
        if io is not None:
            now = self.since = self.clock()
            if now + io < self.wake:
                self.wake_at(now + io)

    def wake_at(self, when: float) -> None:
        """Have the watchdog look again at ``when`` (before its own wake-up)."""
        self.wake = when
        if self.alarm is not None:
            self.alarm.deadline = when

    def give_up(self, error: BaseException) -> None:
        """Close the link and fail every call waiting on it.

        The oldest call gets ``error`` itself when it is about its reply (a
        :class:`beanproto.Error`: the reply broke or was cut off); every other
        call, a :class:`ReplyLostError`: its command went out and may have
        run. A call that already has its error (the late one) keeps it.
        """
        if self.error is not None:
            return
        self.error = error
        slots = self.slots
        if slots:
            why = f"{type(error).__name__}: {error}"
            for n, slot in enumerate(slots):
                if slot.event is None and slot.error is None:
                    if n == 0 and isinstance(error, bp.Error):
                        slot.error = error
                    else:
                        lost = reply_lost(why)
                        lost.__cause__ = error
                        slot.error = lost
            slots.clear()
        if self.alarm is not None:
            self.alarm.cancel()
        # Wake a task waiting on the socket (it raises ClosedResourceError),
        # then close: ``raw`` (ours, or the duplicate of a socket passed in),
        # then the trio socket.
        trio.lowlevel.notify_closing(self.raw)
        self.raw.close()
        self.sock.close()
        close_probe(self.poll)


class _Gate:
    """A lock for tasks of one trio run (the send and the receive side of a
    client), with the interface of :class:`trio.Lock` that the client uses.

    Uncontended, taking and releasing it is setting ``held``: no task
    bookkeeping (a ``trio.Lock`` registers its owner, which costs more than
    the write or read it guards). Contended, tasks park in order and each
    release hands the gate straight to the first of them.
    """

    __slots__ = ("held", "lot", "waiting")

    def __init__(self) -> None:
        self.held = False
        #: How many tasks are parked (or woken, and not yet running) in ``lot``.
        self.waiting = 0
        self.lot = trio.lowlevel.ParkingLot()

    def locked(self) -> bool:
        return self.held

    def acquire_nowait(self) -> None:
        if self.held:
            raise trio.WouldBlock
        self.held = True

    async def acquire(self) -> None:
        if not self.held:
            await trio.lowlevel.checkpoint()
            if not self.held:
                self.held = True
                return
        self.waiting += 1
        try:
            await self.lot.park()  # woken by release(): the gate is ours
        finally:
            self.waiting -= 1

    def release(self) -> None:
        # Hand over to the first task parked, if any (a task cancelled while
        # parked has left the lot already, though it may still be counted).
        if not (self.waiting and self.lot.unpark()):
            self.held = False


async def _watchdog(link: _Link) -> None:
    """Keep a link's io_timeout (see :class:`_Link`): give the link up when
    its oldest call is late, or a command being written makes no progress
    for io, the late call failing with :class:`TimeoutError`.

    A system task that holds its link only while it looks at it, so that an
    abandoned client's link is still collected (the task then ends too).
    It ends when the link is given up.
    """
    token = trio.lowlevel.current_trio_token()
    alarm = trio.CancelScope()

    def collected(_: object) -> None:
        try:
            token.run_sync_soon(alarm.cancel)
        except trio.RunFinishedError:  # pragma: no cover (collected after the run)
            pass

    ref = weakref.ref(link, collected)
    del link
    while True:
        current = ref()
        if current is None or current.error is not None or current.io is None:
            return
        link, io = current, current.io
        del current
        try:
            now = link.clock()
            wake = _INF
            if link.slots:
                head = link.slots[0]
                wait = 0.0 if link.started else server_wait(head.command)
                if wait is not None:  # None: a reserve that may wait for ever
                    due = link.since + wait + io
                    if now >= due and link.poll(0):
                        # Bytes (or an end of file) nobody has read yet: not
                        # late, but a reader busy elsewhere, or none (a
                        # cancelled call's reply waits for the next call).
                        due = now + io
                    if now >= due:
                        verb = head.command.verb.decode()
                        if link.sending is head:
                            error = timed_out(f"sending {verb} to the server", io)
                        else:
                            error = timed_out(f"the reply to {verb}", wait + io)
                        if head.event is None and head.error is None:
                            head.error = error
                        link.give_up(error)
                        return
                    wake = min(due, now + io)
                # A command being written while the socket is full is bounded
                # on its own, whatever the oldest call waits for (a reserve
                # with no bound, or its own timeout): io of no bytes out.
                sending = link.sending
                if sending is not None:
                    due = link.since + io
                    if now >= due:
                        verb = sending.command.verb.decode()
                        error = timed_out(f"sending {verb} to the server", io)
                        if sending.event is None and sending.error is None:
                            sending.error = error
                        link.give_up(error)  # the others: ReplyLostError
                        return
                    wake = min(wake, due)
                del head, sending
            alarm = link.alarm = trio.CancelScope(deadline=wake)
            link.wake = wake
        except Exception as exc:  # pragma: no cover (a bug here must not crash trio.run)
            link.give_up(exc)
            return
        del link
        with alarm:
            await trio.sleep_forever()


def _cut_off(link: _Link, slot: _Slot, exc: BaseException) -> NoReturn:
    """Raise what a call whose command was written only in part raises."""
    if link.error is None:
        link.give_up(exc)
        if isinstance(exc, OSError):
            # Cut off before its end, the command cannot have run.
            raise lib.connection_lost(f"sending failed: {exc}") from exc
        raise exc
    if isinstance(exc, Exception) and slot.error is not None:
        # Given up under us (the watchdog, close()): the link says why.
        slot.error.__suppress_context__ = True
        raise slot.error
    raise exc  # cancelled, interrupted


def _drop_orphans(link: _Link) -> None:
    """Hand the replies already read to the oldest calls while those were
    cancelled, with no read (so that a reply that came is never left for the
    watchdog to take for a late one). An error gives the link up."""
    slots = link.slots
    conn = link.conn
    dropped = False
    try:
        while slots and slots[0].orphan and conn.buffered:
            event = conn.next_event()
            if event is bp.NEED_DATA:
                break
            slots.popleft().event = event
            dropped = True
    except Exception as exc:
        link.give_up(exc)
        return
    if dropped and slots:
        link.started = False
        link.moved()  # the next call is the oldest now


def _withdraw(link: _Link, slot: _Slot) -> None:
    """Take back the newest command, none of whose bytes were written: its
    slot, and its place in the core's queue of commands owed a reply."""
    link.slots.remove(slot)
    link.conn.unsend(slot.command)


class Client(Reconnecting[_Link], AsyncAPI[TBody]):
    """A trio beanstalkd client with the API of ``beanproto_sync.Client``.

    Use it as ``async with Client(address) as client:``. Every method of the
    blocking client is here as a coroutine, with the same arguments, defaults,
    return values and exceptions. Connecting happens on entry (or on the
    first call); nothing is done in the constructor except checking the tube
    names.

    Args:
        address: ``(host, port)``, a unix socket path, or a connected
            ``trio.socket`` socket (which cannot be replaced once lost).
        encoding: the encoding of job bodies; ``None`` for raw ``bytes``.
        use: the tube ``put`` inserts into.
        watch: the tube or tubes ``reserve`` takes from.
        connect_timeout: seconds to open a connection and set it up
            (``None``: no bound).
        io_timeout: seconds to wait for bytes that should come now; never
            cuts the wait of a ``reserve`` (``None``: no bound).
        keepalive: seconds within which TCP keepalive notices a vanished
            peer (``None``: keepalive off).
        reconnect: whether a call after a lost connection connects again.
    """

    if TYPE_CHECKING:  # the body type follows the encoding (AsyncAPI.__init__ runs)

        @overload
        def __init__(
            self: Client[bytes],
            address: Any,
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
            address: Any,
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
        self._init_links(trio.Lock())
        self._send_lock = _Gate()
        self._recv_lock = _Gate()
        #: The scope connecting runs in: its deadline is connect_timeout,
        #: and close() cancels it.
        self._connect_scope: trio.CancelScope | None = None

    # -- life cycle --------------------------------------------------------------

    def _given_socket(self) -> bool:
        return isinstance(self._address, trio.socket.SocketType)

    async def _checkpoint(self) -> None:
        await trio.lowlevel.checkpoint()

    def _drop(self, link: _Link, error: BaseException) -> None:
        link.give_up(error)

    def _stop_connecting(self) -> None:
        if self._connect_scope is not None:
            self._connect_scope.cancel()

    async def _connect(self) -> _Link:
        """Open a connection and set it up, within connect_timeout.

        A cancellation from outside stays a :class:`trio.Cancelled`; the
        deadline raises :class:`TimeoutError`, close() :class:`ConnectionError`.
        """
        seconds = self._timeouts.connect
        deadline = _INF if seconds is None else trio.current_time() + seconds
        scope = self._connect_scope = trio.CancelScope(deadline=deadline)
        try:
            with scope:
                return await self._open_link()
        finally:
            self._connect_scope = None
        if self._closed:
            raise lib.connection_lost("the client is closed")
        raise timed_out(f"connecting to {describe(self._address)}", seconds or 0.0)

    async def _open_link(self) -> _Link:
        address = self._address
        timeouts = self._timeouts
        if isinstance(address, trio.socket.SocketType):
            sock = address
            # Our own descriptor for the same socket, so that bytes move by
            # plain calls on a standard socket (see _Link); it is closed with
            # the link, and the socket passed in with it, as before.
            raw = stdlib_socket.socket(fileno=os.dup(address.fileno()))
            raw.setblocking(False)
        elif isinstance(address, (str, os.PathLike)):
            raw = stdlib_socket.socket(stdlib_socket.AF_UNIX, stdlib_socket.SOCK_STREAM)
            sock = trio.socket.from_stdlib_socket(raw)
            try:
                await sock.connect(os.fspath(address))
            except BaseException:
                sock.close()
                raise
        else:
            host, port = address
            sock, raw = await _open_tcp(host, port, timeouts.keepalive)
        link = self._connecting = _Link(sock, raw)
        try:
            if timeouts.connect is None:
                link.watch(timeouts.io)  # nothing else bounds the set-up
            setup = lib.setup_commands(self._use, self._watch)
            slots = [_Slot(command) for command in setup]
            if setup:
                data = b"".join(link.conn.send(command) for command in setup)
                link.slots.extend(slots)
                link.moved()
                try:
                    await _send_all(link, data)
                except _NothingSent as unsent:
                    raise unsent.error from None
                for slot in slots:
                    await self._read_one(link, slot)
                lib.check_setup(setup, [slot.event for slot in slots])  # type: ignore[misc]
        except BaseException as exc:
            link.give_up(exc)
            if isinstance(exc, ReplyLostError):
                # The caller's own command has not left: nothing of it is lost.
                raise lib.connection_lost(f"setting the connection up failed: {exc}") from exc
            raise
        finally:
            self._connecting = None
        if timeouts.connect is not None:
            link.watch(timeouts.io)
        return link

    # -- the loop: the only place bytes move ---------------------------------------

    async def _request(self, command: bp.Command) -> bp.Event:
        if self._closed:
            raise lib.connection_lost("the client is closed")
        slot = _Slot(command)
        link = self._link
        if (
            link is None
            or link.error is not None
            or self._send_lock.held
            or (type(command) is _Put and len(command.body) >= _VECTORED_BODY)
            or (not link.slots and (link.conn._buffer._end or link.poll(0)))
        ):
            link = await self._send_slowly(slot)
        else:
            # The usual path, without the send lock: nothing yields between
            # the checks above and the write, and a command the socket takes
            # at once is out whole. Only a socket that is full needs the lock
            # (the rest of the command then goes out under it).
            # Raise a pending cancellation before the command is queued.
            await trio.lowlevel.checkpoint_if_cancelled()
            try:
                conn = link.conn
                data = conn.send(command)
                slots = link.slots
                if not slots:
                    # The oldest call now: its reply is due from here
                    # (link.moved(), inlined: this is every call's path).
                    io = link.io
                    if io is not None:
                        now = link.since = link.clock()
                        link.started = False
                        if now + io < link.wake:
                            link.wake_at(now + io)
                slots.append(slot)
                sent = link.raw.send(data)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                # Not a byte of this command left: nothing is lost.
                link.give_up(exc)
                raise lib.connection_lost(f"{type(exc).__name__}: {exc}") from exc
            except BaseException as exc:
                # KeyboardInterrupt (trio may raise it at any line here):
                # the command is queued in the core and may or may not have
                # left, so the connection is out of step. Give it up, as the
                # blocking client does; the next call connects again.
                link.give_up(exc)
                raise
            if sent != len(data):
                await self._send_rest(link, slot, data, sent)
        recv_lock = self._recv_lock
        try:
            while slot.event is None and slot.error is None:
                if recv_lock.held:
                    await recv_lock.acquire()
                else:
                    recv_lock.held = True
                try:
                    if slot.event is None and slot.error is None:
                        await self._read_one(link, slot)
                finally:
                    recv_lock.release()
        except BaseException:
            if lib.abandon_needs_reset(command, slot.event):
                link.give_up(lib.connection_lost("a reserve was cancelled"))
            elif slot.event is None and slot.error is None:
                slot.orphan = True  # its reply is dropped when it comes
                if not recv_lock.held:
                    _drop_orphans(link)  # it may have come already
            raise
        if slot.error is not None:
            raise slot.error
        return slot.event  # type: ignore[return-value]

    async def _send_rest(self, link: _Link, slot: _Slot, data: bytes, sent: int) -> None:
        """Write the rest of ``data`` (``sent`` bytes of it went out) under
        the send lock, which nobody holds (so this takes it at once)."""
        send_lock = self._send_lock
        send_lock.acquire_nowait()
        try:
            await self._sending(link, slot, data, sent)
        finally:
            send_lock.release()

    async def _send_slowly(self, slot: _Slot) -> _Link:
        """Send ``slot``'s command under the send lock: when another call
        holds it (its command did not fit in the socket), the link is lost or
        not there yet, the idle check finds something, or the command is a
        large ``put`` (written from the caller's buffer). Returns the link
        it went out on."""
        command = slot.command
        send_lock = self._send_lock
        reconnected = False
        while True:
            link = self._link
            if link is None or link.error is not None:
                link = await self._current_link()
            try:
                send_lock.acquire_nowait()
            except trio.WouldBlock:
                await send_lock.acquire()
            try:
                if link.error is not None:
                    continue  # lost while we waited: take the next connection
                conn = link.conn
                slots = link.slots
                if not slots and (conn.buffered or link.poll(0)):
                    if not await self._read_idle(link):
                        if reconnected:  # the new connection too: do not loop
                            raise lib.connection_lost(
                                "the server closed a new connection before the command was sent"
                            )
                        reconnected = True
                        continue  # closed by the server while idle: connect again
                # Raise a pending cancellation before the command is queued:
                # from here to the first write, nothing yields.
                await trio.lowlevel.checkpoint_if_cancelled()
                if type(command) is _Put and len(command.body) >= _VECTORED_BODY:
                    data: Any = conn.send_parts(command)
                else:
                    data = conn.send(command)
                if not slots:
                    link.started = False
                    link.moved()  # the oldest call now: its reply is due from here
                slots.append(slot)
                await self._sending(link, slot, data)
                return link
            finally:
                send_lock.release()

    @staticmethod
    async def _sending(link: _Link, slot: _Slot, data: Any, sent: int = 0) -> None:
        """:func:`_send_all` for ``slot`` (queued last on ``link``), and what
        a call raises when that fails."""
        try:
            await _send_all(link, data, sent)
        except _NothingSent as unsent:
            error = unsent.error
            if link.error is None:
                if isinstance(error, trio.Cancelled):
                    _withdraw(link, slot)  # the connection stays as it was
                    raise error from None
                link.give_up(error)
            if isinstance(error, OSError | trio.ClosedResourceError):
                # Not a byte of this command left: nothing is lost.
                raise lib.connection_lost(f"{type(error).__name__}: {error}") from error
            raise error from None
        except BaseException as exc:
            # Part of the command is on the wire: the stream is lost.
            _cut_off(link, slot, exc)

    async def _request_many(self, commands: list[bp.Command]) -> list[bp.Event]:
        """Send a batch and read its replies (``put_many``, pipelines).

        The core's plan (``beanproto._batch.Plan``) says what to write next
        and when to read first. Each planned write takes the send lock for
        itself (other tasks' commands may go out between a batch's writes)
        and queues one slot per command, so replies reach their owners
        through the same reading as single calls (:meth:`_read_one`, under
        the receive lock), watched by the same watchdog. Once part of the
        batch went out a failure raises ``beanproto._batch.Interrupted``
        (what was answered, what was lost); before that, what a single call
        raises. Cancelled, it leaves the client as a cancelled call does:
        replies still owed are dropped as they come, commands not yet sent
        are never sent, and a reserve among those sent costs the connection.
        """
        if self._closed:
            raise lib.connection_lost("the client is closed")
        recv_lock = self._recv_lock
        mine: list[_Slot] = []  # the slots of the commands sent, in order
        events: list[bp.Event] = []
        link: _Link | None = None
        plan: batch.Plan | None = None
        try:
            while True:
                if plan is None or plan.ready:
                    link, plan = await self._batch_write(link, plan, commands, mine)
                    continue
                if plan.done:
                    return events
                assert link is not None  # (set with the plan)
                slot = mine[plan.answered]
                while slot.event is None and slot.error is None:
                    try:
                        recv_lock.acquire_nowait()
                    except trio.WouldBlock:
                        await recv_lock.acquire()
                    try:
                        if slot.event is None and slot.error is None:
                            await self._read_one(link, slot)
                    finally:
                        recv_lock.release()
                if slot.error is not None:
                    raise slot.error
                events.append(slot.event)  # type: ignore[arg-type]
                plan.replied()
        except BaseException as exc:
            if link is None or not mine:
                raise  # nothing of the batch went out: as a single call
            if not isinstance(exc, Exception):  # cancelled, interrupted
                self._abandon_batch(link, mine)
                raise
            if link.error is None:
                link.give_up(exc)
            n = len(events)
            while n < len(mine) and mine[n].event is not None:  # read by another task
                events.append(mine[n].event)  # type: ignore[arg-type]
                n += 1
            cause = link.error if link.error is not None else exc
            why = f"{type(cause).__name__}: {cause}"
            lost = [slot.error or reply_lost(why) for slot in mine[n:]]
            raise batch.Interrupted(events, lost, cause) from exc

    async def _batch_write(
        self,
        link: _Link | None,
        plan: batch.Plan | None,
        commands: list[bp.Command],
        mine: list[_Slot],
    ) -> tuple[_Link, batch.Plan]:
        """Write the next planned part of a batch (its first: ``plan`` is
        ``None``, and the link is found as :meth:`_request` finds it) under
        the send lock; its slots join ``mine``."""
        send_lock = self._send_lock
        reconnected = False
        while True:
            if plan is None:
                link = self._link
                if link is None or link.error is not None:
                    link = await self._current_link()
            assert link is not None
            try:
                send_lock.acquire_nowait()
            except trio.WouldBlock:
                await send_lock.acquire()
            try:
                if link.error is not None:
                    if plan is None:
                        continue  # lost while we waited: take the next connection
                    raise lib.connection_lost(f"{type(link.error).__name__}: {link.error}")
                conn = link.conn
                if plan is None and not link.slots and (conn.buffered or link.poll(0)):
                    if not await self._read_idle(link):
                        if reconnected:
                            raise lib.connection_lost(
                                "the server closed a new connection before the batch was sent"
                            )
                        reconnected = True
                        continue  # closed by the server while idle: connect again
                await trio.lowlevel.checkpoint_if_cancelled()
                if plan is None:
                    tcp = link.sock.family in _TCP
                    plan = batch.Plan(conn, commands, max_unread=batch.unread_limit(tcp))
                write = plan.next_write()
                assert write is not None
                new = [_Slot(command) for command in commands[write.start : write.stop]]
                data: Any = write.data if write.large is None else conn.send_parts(write.large)
                if not link.slots:
                    link.started = False
                    link.moved()  # the oldest call now: its reply is due from here
                link.slots.extend(new)
                mine.extend(new)
                try:
                    await _send_all(link, data)
                except _NothingSent as unsent:
                    del mine[len(mine) - len(new) :]  # not a byte of them left
                    error = unsent.error
                    if link.error is None:
                        if isinstance(error, trio.Cancelled):
                            for slot in reversed(new):
                                _withdraw(link, slot)  # the connection stays as it was
                            raise error from None
                        link.give_up(error)
                    if isinstance(error, OSError | trio.ClosedResourceError):
                        raise lib.connection_lost(f"{type(error).__name__}: {error}") from error
                    raise error from None
                except BaseException as exc:
                    # Part of the write is on the wire: the stream is lost,
                    # and any of its commands may have run.
                    if link.error is None:
                        link.give_up(exc)
                    raise
                return link, plan
            finally:
                send_lock.release()

    def _abandon_batch(self, link: _Link, mine: list[_Slot]) -> None:
        """A batch cancelled (or interrupted) after part of it went out: as
        for a cancelled call, its replies still owed are dropped as they
        come, unless a reserve among its commands may hold a job for nobody
        (or still waits on the server): then the connection is closed."""
        if any(lib.abandon_needs_reset(slot.command, slot.event) for slot in mine):
            link.give_up(lib.connection_lost("a batch with a reserve was cancelled"))
            return
        for slot in mine:
            if slot.event is None and slot.error is None:
                slot.orphan = True  # its reply is dropped when it comes
        if not self._recv_lock.locked():
            _drop_orphans(link)  # they may have come already

    async def _read_idle(self, link: _Link) -> bool:
        """Read what arrived on ``link`` while it owed no reply (the send lock
        is held and no call waits, so nobody else reads). Nothing yields:
        the caller found the socket readable (or bytes buffered).

        Returns ``True`` if it was nothing after all, ``False`` if the server
        closed the connection (now given up: the caller connects again).

        Raises:
            RemoteProtocolError: bytes nobody asked for (the link is given up).
        """
        conn = link.conn
        try:
            if not conn.buffered:
                try:
                    data = link.raw.recv(_READ_SIZE)
                except BlockingIOError:
                    return True  # nothing after all
                conn.receive_data(data)  # raises if there are bytes: no reply is owed
            event = conn.next_event()
        except OSError as exc:
            link.give_up(exc)  # reset while idle: the command has not left
            return False
        except BaseException as exc:
            link.give_up(exc)
            raise
        if event is _NEED_DATA:
            return True
        link.give_up(lib.connection_lost("the server closed the connection while idle"))
        return False

    async def _read_one(self, link: _Link, mine: _Slot) -> None:
        """Read the next event and hand it to the oldest waiting call, for the
        call waiting for ``mine`` (the oldest, or one behind it).

        A read is tried first; only when nothing has come yet does the task
        wait for the socket (``wait_readable``, a checkpoint). A read that
        did not wait yields once afterwards (a schedule point, as every
        trio read is), shielded: the event is already handed over.

        Every wait yields to other tasks, and one of them may give the link
        up meanwhile (``close()``, a cancelled reserve, the watchdog): then
        what was read belongs to nobody, and this call raises what the link
        left it (:class:`ReplyLostError`, or :class:`TimeoutError` if it was
        late).
        """
        conn = link.conn
        raw = link.raw
        waited = False
        try:
            # (conn._buffer._end is conn.buffered without a property call:
            # 0 when nothing is buffered.)
            partial = bool(conn._buffer._end)
            event = conn.next_event() if partial else _NEED_DATA
            while event is _NEED_DATA:
                try:
                    if partial:
                        # The rest of a reply that came in part (a large body,
                        # most often): read straight into the core's buffer,
                        # which has room for all of it.
                        nbytes = raw.recv_into(conn.get_buffer())
                        if nbytes:
                            conn.buffer_updated(nbytes)
                        else:
                            conn.receive_data(b"")
                        event = conn.next_event()
                    else:
                        # One read, most often exactly one reply, which the
                        # core then parses straight from the bytes read.
                        event = conn.next_event_with(raw.recv(_READ_SIZE))
                except BlockingIOError:
                    await trio.lowlevel.wait_readable(raw)
                    waited = True
                    if link.error is not None:
                        raise lib.connection_lost(str(link.error)) from None
                    continue
                if event is _NEED_DATA:  # part of a reply: progress
                    partial = True
                    link.started = True
                    link.moved()
        except trio.Cancelled:
            raise  # nothing was taken off the socket
        except BaseException as exc:
            ours = link.error is None
            if ours:
                link.give_up(exc)
            error = mine.error
            if not isinstance(exc, Exception) or error is None or error is exc:
                raise
            if ours:
                raise error from exc
            error.__suppress_context__ = True  # closed under us: not news
            raise error  # noqa: B904 (its cause is the link's failure)
        slots = link.slots
        slots.popleft().event = event
        if slots:
            # The next call is the oldest now: its reply is due from here.
            link.started = False
            link.moved()
            if slots[0].orphan:
                _drop_orphans(link)
        if not waited:
            await trio.lowlevel.cancel_shielded_checkpoint()


async def _open_tcp(
    host: str, port: int, keepalive: float | None
) -> tuple[trio.socket.SocketType, stdlib_socket.socket]:
    """Connect to each address of ``host`` in turn; raise the last failure as
    it is (``ConnectionRefusedError`` …), as the other clients do. Returns
    the trio socket and the standard socket under it."""
    error: OSError | None = None
    for family, kind, proto, _, address in await trio.socket.getaddrinfo(
        host, port, type=stdlib_socket.SOCK_STREAM
    ):
        raw = stdlib_socket.socket(family, kind, proto)
        sock = trio.socket.from_stdlib_socket(raw)
        try:
            await sock.connect(address)
        except BaseException as exc:
            sock.close()
            if not isinstance(exc, OSError):
                raise
            error = exc
            continue
        try:
            sock.setsockopt(stdlib_socket.IPPROTO_TCP, stdlib_socket.TCP_NODELAY, 1)
            set_keepalive(sock, keepalive)
        except BaseException:
            sock.close()
            raise
        return sock, raw
    raise error or OSError(f"no address found for {host!r}")


class _NothingSent(Exception):
    """:func:`_send_all` failed before writing a byte; ``error`` is why."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(error)
        self.error = error


async def _send_all(link: _Link, data: Any, sent: int = 0) -> None:
    """Write every byte of ``data`` (bytes, or a list of parts, in order)
    on ``link``; parts go out in vectored writes, so a large body is never
    joined to its command line. ``sent``: how many bytes of ``data`` (bytes)
    the caller wrote already. While the socket is full, every write that
    makes progress restarts the oldest call's clock (a send that makes none
    for io_timeout is late).

    Nothing yields when the socket takes everything at once (the caller's
    read is its checkpoint); otherwise the task waits for room with
    ``wait_writable`` (cancellable).

    Raises:
        _NothingSent: not one byte of ``data`` left: the first write failed,
            or a wait for room before it was cancelled (or the link closed).
    """
    raw = link.raw
    if type(data) is bytes:
        if not sent:
            try:
                sent = raw.send(data)  # a whole command, nearly always
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                raise _NothingSent(exc) from None
            if sent == len(data):
                return
        views = [memoryview(data)[sent:]]
    else:
        views = [memoryview(part).cast("B") for part in data]
        try:
            sent = raw.sendmsg(views)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            raise _NothingSent(exc) from None
        views = _advance(views, sent)
        if not views:
            return
    written = sent  # bytes of data out so far
    link.sending = link.slots[-1] if link.slots else None
    try:
        while views:
            link.moved()
            try:
                await trio.lowlevel.wait_writable(raw)
                if link.error is not None:
                    raise lib.connection_lost(str(link.error))
                if len(views) == 1:
                    sent = raw.send(views[0])
                else:
                    sent = raw.sendmsg(views)
            except BlockingIOError:
                continue
            except BaseException as exc:
                if not written:
                    raise _NothingSent(exc) from None
                raise
            written += sent
            views = _advance(views, sent)
    finally:
        link.sending = None
    link.moved()  # all sent: the reply is due from now


def _advance(views: list[memoryview], sent: int) -> list[memoryview]:
    """What is left of ``views`` after ``sent`` bytes of them were written."""
    while sent:
        if sent >= len(views[0]):
            sent -= len(views.pop(0))
        else:
            views[0] = views[0][sent:]
            sent = 0
    while views and not views[0]:
        views.pop(0)
    return views
