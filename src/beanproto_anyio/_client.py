"""The anyio client: the kit's API over a socket, with anyio's waits.

Built on the public adapter kit alone (:mod:`beanproto` for the protocol,
:mod:`beanproto.client` for everything else), as ``docs/adapter.rst``
describes. It runs wherever anyio runs: in an asyncio program and in a trio
one alike.

How bytes move
--------------
Bytes move by plain calls on a non-blocking standard socket; only when it
has nothing to read (or no room to write) does a call wait, with
``anyio.wait_readable`` (``wait_writable``), which every anyio backend
provides. (anyio's socket streams cost a trip through their own buffering
and, on asyncio, switch the transport's reading on and off around every
read.) A call queues a *slot* for its reply on the connection (a *link*) and
writes its command under the link's send lock, so that concurrent calls
never interleave their bytes. Then it reads under the receive lock:
whichever waiting task holds it reads events off the socket and hands each
to the oldest slot, until its own slot is filled. Replies come back in the
order the commands went out, so several tasks' commands are pipelined on the
one connection and every task gets its own reply. Every call is a schedule
point.

Cancellation
------------
A read that is cancelled has taken nothing off the socket (only the wait is
cancelled), so what remains is the reply the cancelled call will not read:

* for most commands it is dropped when it arrives (the command itself may or
  may not have taken effect);
* a cancelled ``reserve`` closes the connection instead
  (:func:`beanproto.client.abandon_needs_reset`): beanstalkd cannot abort a
  reserve that waits, and a job it handed out would be reserved for nobody.
  Closing puts back every job this connection held reserved; calls of other
  tasks still waiting on it raise :class:`~beanproto.ReplyLostError`.

A call cancelled before a byte of its command is written leaves no trace
(the command is taken back from the core too). One cancelled while its
command is part-way out gives the connection up: part of a command is on the
wire.

Faults
------
``connect_timeout`` bounds opening the connection and its ``use``/``watch``
set-up together (:class:`TimeoutError`; ``close()`` ends it with
:class:`ConnectionError`). ``io_timeout`` bounds the wait for the oldest
call's reply: due within ``io_timeout`` of its command going out, of the
reply before it, or of the last bytes of it that came, plus ``t`` for
``reserve(timeout=t)``; ``reserve()`` has no bound (TCP keepalive notices a
dead peer). Writing a command is bounded on progress: no byte of it taken
for ``io_timeout``. Late: the connection is given up, the late call raises
:class:`TimeoutError`, the others waiting on it
:class:`~beanproto.ReplyLostError`. The next call connects again, unless
``reconnect=False``.

Before a command goes out on a connection that owes no reply, the client
looks (one ``poll`` with a zero timeout) whether anything arrived meanwhile:
an end of file (the server restarted, or dropped the idle connection) means
the command goes out on a new connection instead; bytes nobody asked for
raise :class:`~beanproto.RemoteProtocolError`.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import socket
from collections import deque
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, overload

import anyio
import anyio.lowlevel
import anyio.to_thread

import beanproto as bp
from beanproto import client as kit

__all__ = ["Client"]

#: The most read off the socket at once.
_READ_SIZE = 65536

#: Bodies at least this large are written as parts (``Connection.send_parts``:
#: never joined with the command line, never copied).
_PARTS_BODY = 32 * 1024

_INF = math.inf
_TCP = (socket.AF_INET, socket.AF_INET6)

#: What a socket call, or a wait for one, raises when the connection fails
#: (``ClosedResourceError``: the link was given up while a task waited).
_IO_ERRORS = (OSError, anyio.ClosedResourceError)


class _Slot:
    """One call's place in the line of replies a link owes."""

    __slots__ = ("command", "error", "event", "orphan", "withdrawn")

    def __init__(self, command: bp.Command) -> None:
        self.command = command
        self.event: bp.Event | None = None
        self.error: BaseException | None = None
        #: Its call was cancelled: the reply is dropped when it comes.
        self.orphan = False
        #: Taken back before a byte of its command was written.
        self.withdrawn = False

    @property
    def done(self) -> bool:
        return self.event is not None or self.error is not None


class _Link:
    """One connection: the socket, the core's state, the replies it owes."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.raw = sock
        self.tcp = sock.family in _TCP
        self.conn = bp.Connection()
        self.slots: deque[_Slot] = deque()
        self.error: BaseException | None = None
        self.probe = kit.readiness_probe(sock.fileno())
        # fast_acquire: a free lock is taken without a trip through the event
        # loop (each call still waits once, for its reply).
        self.send_lock = anyio.Lock(fast_acquire=True)
        self.recv_lock = anyio.Lock(fast_acquire=True)
        #: When the oldest call's reply became due (see the module's "Faults").
        self.since = anyio.current_time()
        #: Part of the oldest reply came (it is then due on progress alone).
        self.started = False

    def moved(self) -> None:
        self.since = anyio.current_time()

    def due(self, io: float | None) -> float:
        """When the oldest call is late (``inf``: never)."""
        if io is None or not self.slots:
            return _INF
        wait = 0.0 if self.started else kit.server_wait(self.slots[0].command)
        return _INF if wait is None else self.since + wait + io

    def give_up(self, error: BaseException) -> None:
        """Fail every call waiting on this link and close the connection.

        The oldest call gets ``error`` itself when it is about its reply (a
        :class:`beanproto.Error`); every other call a
        :class:`~beanproto.ReplyLostError` (its command went out and may
        have run). A call that has its error already (the late one) keeps it.
        Tasks waiting on the socket are woken first (their waits raise
        ``ClosedResourceError``); closing it makes the server put back every
        job the connection held reserved.
        """
        if self.error is not None:
            return
        self.error = error
        why = f"{type(error).__name__}: {error}"
        for n, slot in enumerate(self.slots):
            if not slot.done:
                if n == 0 and isinstance(error, bp.Error):
                    slot.error = error
                else:
                    lost = kit.reply_lost(why)
                    lost.__cause__ = error
                    slot.error = lost
        self.slots.clear()
        kit.close_probe(self.probe)
        with contextlib.suppress(Exception):  # (no event loop: nobody is waiting)
            anyio.notify_closing(self.raw)
        self.raw.close()

    def hand_over(self, event: bp.Event) -> None:
        """Give ``event`` to the oldest call; drop the replies of cancelled
        calls that are already here."""
        self.slots.popleft().event = event
        self.drop_orphans()
        self.started = False
        self.moved()  # the next call is the oldest now: its reply is due from here

    def drop_orphans(self) -> bool:
        """Hand the replies already read to the oldest calls while those were
        cancelled (their replies are dropped); whether there was any."""
        slots = self.slots
        conn = self.conn
        dropped = False
        while slots and slots[0].orphan and conn.buffered:
            event = conn.next_event()
            if event is bp.NEED_DATA:
                break
            slots.popleft().event = event
            dropped = True
        return dropped

    def withdraw(self, slots: list[_Slot]) -> None:
        """Take back the newest commands, none of whose bytes were written:
        their slots, and their places in the core's queue of replies owed."""
        for slot in reversed(slots):
            self.slots.remove(slot)
            self.conn.unsend(slot.command)
            slot.withdrawn = True


class Client(kit.Reconnecting[_Link], kit.AsyncAPI[kit.TBody]):
    """An anyio beanstalkd client with the API of ``beanproto_sync.Client``.

    Use it as ``async with Client(address) as client:`` in any program anyio
    runs (asyncio or trio). Every method of the blocking client is here as a
    coroutine, with the same arguments, defaults, return values and
    exceptions. Connecting happens on entry (or on the first call); the
    constructor only checks its arguments.

    Args:
        address: ``(host, port)``, a unix socket path, or a connected
            :class:`socket.socket` (which cannot be replaced once lost).
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

    # -- the kit's hooks: the connection life cycle ------------------------------------

    def _open(self) -> None:
        self._init_links(anyio.Lock())
        #: The scope connecting runs in: its deadline is connect_timeout,
        #: and close() cancels it.
        self._connect_scope: anyio.CancelScope | None = None

    def _given_socket(self) -> bool:
        return isinstance(self._address, socket.socket)

    async def _checkpoint(self) -> None:
        await anyio.lowlevel.checkpoint()

    def _drop(self, link: _Link, error: BaseException) -> None:
        link.give_up(error)

    def _stop_connecting(self) -> None:
        if self._connect_scope is not None:
            self._connect_scope.cancel()

    async def _connect(self) -> _Link:
        """Open a connection and set it up, within connect_timeout.

        A cancellation from outside stays the library's; the deadline raises
        :class:`TimeoutError`, close() :class:`ConnectionError`.
        """
        seconds = self._timeouts.connect
        deadline = _INF if seconds is None else anyio.current_time() + seconds
        with anyio.CancelScope(deadline=deadline) as scope:
            self._connect_scope = scope
            try:
                return await self._open_link()
            finally:
                self._connect_scope = None
        if self._closed:
            raise kit.connection_lost("the client is closed")
        raise kit.timed_out(f"connecting to {kit.describe(self._address)}", seconds or 0.0)

    async def _open_link(self) -> _Link:
        address = self._address
        timeouts = self._timeouts
        if isinstance(address, socket.socket):
            sock = address  # closed with the link: it cannot be replaced
        elif isinstance(address, (str, os.PathLike)):
            sock = await _open_unix(os.fspath(address))
        else:
            host, port = address
            sock = await _open_tcp(host, port, timeouts.keepalive)
        link = self._connecting = _Link(sock)
        try:
            setup = kit.setup_commands(self._use, self._watch)
            if setup:
                # While connect_timeout bounds the set-up, io_timeout does not.
                io = timeouts.io if timeouts.connect is None else None
                slots = [_Slot(command) for command in setup]
                link.slots.extend(slots)
                await self._write(link, slots, [link.conn.send(c) for c in setup], io)
                for slot in slots:
                    await self._wait_for(link, slot, io)
                    if slot.error is not None:
                        raise slot.error
                kit.check_setup(setup, [slot.event for slot in slots])  # type: ignore[misc]
        except BaseException as exc:
            link.give_up(exc)
            if isinstance(exc, bp.ReplyLostError):
                # The caller's own command has not left: nothing of it is lost.
                raise kit.connection_lost(f"setting the connection up failed: {exc}") from exc
            raise
        finally:
            self._connecting = None
        return link

    # -- the kit's hooks: one command, a batch ---------------------------------------------

    async def _request(self, command: bp.Command) -> bp.Event:
        if self._closed:
            raise kit.connection_lost("the client is closed")
        slot = _Slot(command)
        link = await self._send(slot)
        try:
            await self._wait_for(link, slot, self._timeouts.io)
        except BaseException:
            self._abandon(link, [slot])
            raise
        if slot.error is not None:
            raise slot.error
        return slot.event  # type: ignore[return-value]

    async def _request_many(self, commands: list[bp.Command]) -> list[bp.Event]:
        """Send a batch as the core's :class:`~beanproto.client.Plan` says
        (each write under the send lock, so other tasks' commands may go out
        between them) and read its replies as single calls read theirs.

        Once part of the batch went out a failure raises
        :class:`~beanproto.client.Interrupted`; before that, what a single
        call raises. Cancelled, it leaves the client as a cancelled call does.
        """
        if self._closed:
            raise kit.connection_lost("the client is closed")
        io = self._timeouts.io
        mine: list[_Slot] = []
        events: list[bp.Event] = []
        link: _Link | None = None
        plan: kit.Plan | None = None
        try:
            while True:
                if plan is None or plan.ready:
                    link, plan = await self._send_planned(link, plan, commands, mine)
                    continue
                if plan.done:
                    return events
                assert link is not None  # (set with the plan)
                slot = mine[plan.answered]
                await self._wait_for(link, slot, io)
                if slot.error is not None:
                    raise slot.error
                events.append(slot.event)  # type: ignore[arg-type]
                plan.replied()
        except BaseException as exc:
            if link is None or not mine:
                raise  # nothing of the batch went out: as a single call
            if not isinstance(exc, Exception):  # cancelled, interrupted
                self._abandon(link, mine)
                raise
            link.give_up(exc)
            n = len(events)
            while n < len(mine) and mine[n].event is not None:  # read by another task
                events.append(mine[n].event)  # type: ignore[arg-type]
                n += 1
            cause = link.error if link.error is not None else exc
            why = f"{type(cause).__name__}: {cause}"
            lost = [slot.error or kit.reply_lost(why) for slot in mine[n:]]
            raise kit.Interrupted(events, lost, cause) from exc

    # -- writing ----------------------------------------------------------------------

    async def _send(self, slot: _Slot) -> _Link:
        """Queue ``slot`` on the current link and write its command."""
        command = slot.command
        reconnected = False
        while True:
            link = await self._current_link()
            # Taking the lock raises a pending cancellation (anyio checks even
            # on its fast path), and nothing yields from there to the write:
            # a call cancelled before it leaves no trace.
            async with link.send_lock:
                if link.error is not None:
                    continue  # lost while we waited: take the next connection
                if not link.slots and not self._still_open(link):
                    if reconnected:
                        raise kit.connection_lost("the server closed a new connection at once")
                    reconnected = True
                    continue  # closed by the server while idle: connect again
                conn = link.conn
                parts: Sequence[Any]
                if type(command) is bp.Put and len(command.body) >= _PARTS_BODY:
                    parts = conn.send_parts(command)
                else:
                    parts = [conn.send(command)]
                if not link.slots:
                    link.started = False
                    link.moved()  # the oldest call now: its reply is due from here
                link.slots.append(slot)
                await self._write(link, [slot], parts, self._timeouts.io)
                return link

    async def _send_planned(
        self,
        link: _Link | None,
        plan: kit.Plan | None,
        commands: list[bp.Command],
        mine: list[_Slot],
    ) -> tuple[_Link, kit.Plan]:
        """Write the next planned part of a batch (its first when ``plan`` is
        ``None``: the link is then found as a single call finds it)."""
        reconnected = False
        while True:
            if plan is None:
                link = await self._current_link()
            assert link is not None
            async with link.send_lock:
                if link.error is not None:
                    if plan is None:
                        continue
                    raise kit.connection_lost(f"{type(link.error).__name__}: {link.error}")
                if plan is None and not link.slots and not self._still_open(link):
                    if reconnected:
                        raise kit.connection_lost("the server closed a new connection at once")
                    reconnected = True
                    continue
                conn = link.conn
                if plan is None:
                    plan = kit.Plan(conn, commands, max_unread=kit.unread_limit(link.tcp))
                write = plan.next_write()
                assert write is not None
                new = [_Slot(command) for command in commands[write.start : write.stop]]
                parts: Sequence[Any] = (
                    [write.data] if write.large is None else conn.send_parts(write.large)
                )
                if not link.slots:
                    link.started = False
                    link.moved()
                link.slots.extend(new)
                mine.extend(new)
                try:
                    await self._write(link, new, parts, self._timeouts.io)
                except BaseException:
                    if new[0].withdrawn:  # not a byte of them left
                        del mine[len(mine) - len(new) :]
                    raise
                return link, plan

    async def _write(
        self, link: _Link, slots: list[_Slot], parts: Sequence[Any], io: float | None
    ) -> None:
        """Write ``parts`` whole (the commands of ``slots``), waiting at most
        ``io`` seconds each time the socket takes nothing.

        Cancelled before a byte went out, the commands are taken back and the
        link stays as it was. Cut off after that (a failure, the deadline, a
        cancellation), the link is given up: part of a command is on the
        wire. A failure raises a plain :class:`ConnectionError` (the command
        did not go out whole, so it cannot have run); the deadline
        :class:`TimeoutError`.
        """
        raw = link.raw
        sent_any = False
        try:
            for part in parts:
                view = memoryview(part)
                while view:
                    try:
                        sent = raw.send(view)
                    except BlockingIOError:
                        with anyio.move_on_after(_INF if io is None else io) as scope:
                            await anyio.wait_writable(raw)
                        if scope.cancelled_caught:
                            verb = slots[-1].command.verb.decode()
                            error = kit.timed_out(f"sending {verb} to the server", io or 0.0)
                            slot = slots[-1]
                            if not slot.done:
                                slot.error = error
                            link.give_up(error)
                            raise error from None
                        continue
                    sent_any = True
                    view = view[sent:]
                    link.moved()  # progress
        except BaseException as exc:
            if link.error is None:
                if not sent_any and not isinstance(exc, Exception):
                    link.withdraw(slots)  # cancelled before a byte left
                    raise
                link.give_up(exc)
                if isinstance(exc, _IO_ERRORS):
                    raise kit.connection_lost(f"sending failed: {exc}") from exc
                raise
            left = slots[-1].error
            if isinstance(exc, Exception) and left is not None and left is not exc:
                # Given up under us (close(), another call's deadline).
                raise left from None
            raise

    def _still_open(self, link: _Link) -> bool:
        """Read what arrived on ``link`` while it owed no reply (the send lock
        is held and no call waits, so nobody else reads; nothing yields).

        Returns ``False`` if the server closed the connection (now given up:
        the caller connects again), ``True`` otherwise.

        Raises:
            RemoteProtocolError: bytes nobody asked for (the link is given up).
        """
        conn = link.conn
        if not conn.buffered and not link.probe(0):
            return True
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
        if event is bp.NEED_DATA:
            return True
        link.give_up(kit.connection_lost("the server closed the connection while idle"))
        return False

    # -- reading -------------------------------------------------------------------------

    async def _wait_for(self, link: _Link, slot: _Slot, io: float | None) -> None:
        """Read, under the receive lock, until ``slot`` has its event or error."""
        while not slot.done:
            async with link.recv_lock:
                if not slot.done:
                    await self._read_one(link, slot, io)

    async def _read_one(self, link: _Link, mine: _Slot, io: float | None) -> None:
        """Read the next event and hand it to the oldest call (``mine``, or
        one before it), within the oldest call's deadline.

        A read is tried first; only when nothing has come does the task wait
        for the socket. A read that did not wait yields once afterwards,
        shielded (the event is handed over already), so that every call is
        a schedule point. If the link is given up meanwhile (``close()``, a
        cancelled reserve, a late call), this call raises what the link left
        it.
        """
        conn = link.conn
        raw = link.raw
        waited = False
        try:
            event = conn.next_event()
            while event is bp.NEED_DATA:
                try:
                    data = raw.recv(_READ_SIZE)
                except BlockingIOError:
                    now = anyio.current_time()
                    due = link.due(io)
                    if due <= now and link.probe(0):
                        # Bytes (or an end of file) nobody has read yet: not
                        # late, only unread (the reply of a cancelled call).
                        due = now + (io or 0.0)
                    if due == _INF:  # (no deadline: no cancel scope to pay for)
                        await anyio.wait_readable(raw)
                        late = False
                    else:
                        with anyio.move_on_after(max(due - now, 0.0)) as scope:
                            await anyio.wait_readable(raw)
                        late = scope.cancelled_caught
                    waited = True
                    if link.error is not None:  # given up while we waited
                        raise kit.connection_lost(str(link.error)) from None
                    if late:
                        self._late(link, io or 0.0)
                        raise kit.connection_lost("late") from None  # (the slot's error)
                    continue
                conn.receive_data(data)  # b"": the server closed the connection
                event = conn.next_event()
                if event is bp.NEED_DATA:  # part of a reply: progress
                    link.started = True
                    link.moved()
        except BaseException as exc:
            if not isinstance(exc, Exception):
                raise  # cancelled, interrupted: nothing was taken off the socket
            ours = link.error is None
            if ours:
                link.give_up(exc)
            error = mine.error
            if error is None or error is exc:
                raise
            if ours:
                raise error from exc
            error.__suppress_context__ = True  # closed under us: not news
            raise error  # noqa: B904 (its cause is the link's failure)
        link.hand_over(event)
        if not waited:
            await anyio.lowlevel.cancel_shielded_checkpoint()

    @staticmethod
    def _late(link: _Link, io: float) -> None:
        head = link.slots[0]
        wait = 0.0 if link.started else kit.server_wait(head.command) or 0.0
        error = kit.timed_out(f"the reply to {head.command.verb.decode()}", wait + io)
        if not head.done:
            head.error = error
        link.give_up(error)

    def _abandon(self, link: _Link, slots: list[_Slot]) -> None:
        """Calls given up by their callers (cancelled) after their commands
        went out: their replies are dropped when they come, unless one may
        hold a job for nobody (a reserve): then the connection is closed."""
        slots = [slot for slot in slots if not slot.withdrawn]
        if any(kit.abandon_needs_reset(slot.command, slot.event) for slot in slots):
            link.give_up(kit.connection_lost("a reserve was cancelled"))
            return
        for slot in slots:
            if not slot.done:
                slot.orphan = True
        if not link.recv_lock.locked():
            # Their replies may be here already: drop them now, so the next
            # call does not take them for late ones.
            try:
                if link.drop_orphans():
                    link.started = False
                    link.moved()
            except Exception as exc:
                link.give_up(exc)


async def _connect_socket(sock: socket.socket, address: Any) -> None:
    """Connect a non-blocking ``sock``; raise the failure as the OS says it
    (``ConnectionRefusedError`` …), as the other clients do."""
    sock.setblocking(False)
    code = sock.connect_ex(address)
    if code in (errno.EINPROGRESS, errno.EAGAIN, errno.EWOULDBLOCK):
        await anyio.wait_writable(sock)
        code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if code:
        raise OSError(code, f"{os.strerror(code)}: {kit.describe(address)}")


async def _open_unix(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        await _connect_socket(sock, path)
    except BaseException:
        sock.close()
        raise
    return sock


async def _addresses(host: str, port: int) -> list[Any]:
    """The addresses of ``host``: at once for an IP address, else looked up
    in a worker thread (as asyncio does; ``anyio.getaddrinfo`` hands asyncio
    the name as bytes, which its debug mode formats with a BytesWarning)."""
    try:
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    except socket.gaierror:
        pass
    return await anyio.to_thread.run_sync(
        lambda: socket.getaddrinfo(host, port, type=socket.SOCK_STREAM), abandon_on_cancel=True
    )


async def _open_tcp(host: str, port: int, keepalive: float | None) -> socket.socket:
    """Connect to each address of ``host`` in turn; raise the last failure."""
    error: OSError | None = None
    for family, kind, proto, _, address in await _addresses(host, port):
        sock = socket.socket(family, kind, proto)
        try:
            await _connect_socket(sock, address)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            kit.set_keepalive(sock, keepalive)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    raise error or OSError(f"no address found for {host!r}")
