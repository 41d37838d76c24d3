"""Planning a batch of commands (``put_many``, pipelines), without I/O.

Why a plan is needed
--------------------
Pipelining is safe only while the server can always write its replies.
beanstalkd answers one command at a time, and while the reply to a command
cannot be written (the socket buffers towards the client are full) it stops
reading that connection. A client that writes a long batch before reading
anything then deadlocks: it waits for the server to read its commands, the
server waits for it to read the replies. How much fits in between is the
server's send buffer plus the client's receive buffer, and it is small in
two ways: in bytes (a peek of a 1 MiB body is already more than the default
buffers), and on a unix socket in *replies*: every reply is a buffer of its
own there, charged about 750 bytes against the server's 208 KiB send
buffer, so about 280 unread replies of a few bytes each already block it.

So a :class:`Plan` hands out the commands in writes, and says when the
client must read before writing more:

* the replies sent for and not yet read stay within :data:`REPLY_BUDGET`
  bytes (estimated per command: a fixed-size reply such as ``INSERTED
  <id>`` is at most :data:`LINE_REPLY` bytes; one that echoes a tube name at
  most the connection's ``max_line_length``), and, unless the client knows
  its transport is TCP (which joins small replies into segments), within
  :data:`MAX_UNREAD` replies;
* after a command whose reply may carry a body of any size (``peek*``,
  ``reserve*``, ``stats*``, ``list-tubes*``) nothing more is written until
  that reply is read: the client is then only reading, so the body can be
  as large as it likes;
* the bytes joined into one write stay within :data:`WRITE_SIZE`, and a
  ``put`` with a body of :data:`LARGE_BODY` bytes or more is a write of its
  own that the client sends its usual way (vectored, from the caller's
  buffer: never copied or joined).

A window that fills is drained to half before the next write, so that
writes stay large (one per many commands) instead of one per reply read.

The clients drive it with a short loop::

    plan = Plan(conn, commands)
    while not plan.done:
        write = plan.next_write()
        if write is None:
            read one event; plan.replied()
        elif write.large is None:
            send write.data               # commands queued on conn already
        else:
            send conn.send_parts(write.large) the client's own way

It is a core module (no I/O), shared by the three clients.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from . import _commands as c
from . import _events as e
from ._connection import Connection
from ._replies import REPLIES
from .errors import ArgumentTypeError, BatchError, BatchLostError, Error, ReplyLostError

__all__ = [
    "REPLY_BUDGET",
    "MAX_UNREAD",
    "LINE_REPLY",
    "WRITE_SIZE",
    "LARGE_BODY",
    "BODY_REPLIES",
    "Interrupted",
    "Plan",
    "Write",
    "lost_error",
    "put_ids",
    "raise_failures",
    "unread_limit",
]

#: Estimated bytes of replies written for and not yet read, at most. What
#: must fit is the server's send buffer plus the client's receive buffer:
#: 16 KiB is the smaller of Linux's initial TCP buffers on either side
#: (``tcp_wmem``), before any autotuning, with a receive buffer shrunk to
#: almost nothing by ``SO_RCVBUF``.
REPLY_BUDGET: Final = 16 * 1024

#: Replies written for and not yet read, at most, whatever their size, on a
#: transport not known to be TCP. A unix socket charges each reply about 750
#: bytes of the server's send buffer (an ``sk_buff`` per write), so its
#: default 208 KiB holds about 280 of them before the server stops reading:
#: 128 leaves room for larger buffer headers or smaller defaults. TCP joins
#: small writes into segments (Linux loopback held 265,000 unread 16-byte
#: replies), so there the byte budget alone applies (``max_unread=None``):
#: a window of 512 small replies instead of 128 makes a ``put_many`` of
#: small bodies about a quarter faster.
MAX_UNREAD: Final = 128

#: The longest fixed-size reply line, CRLF included: ``INSERTED <id>``,
#: ``BURIED <id>``, ``WATCHING <n>``, ``KICKED <n>`` with a 20-digit number,
#: and every error line (``UNKNOWN_COMMAND``, the longest word, is 17).
LINE_REPLY: Final = 32

#: Bytes of small commands joined into one write, at most: large enough
#: that a write carries hundreds of commands (one system call instead of
#: hundreds), small enough that joining them costs no memory to speak of.
WRITE_SIZE: Final = 64 * 1024

#: Put bodies at least this large are written on their own, from the
#: caller's buffer (the clients' vectored writes, with the same threshold):
#: copying them into a joined write would cost more than the system call.
LARGE_BODY: Final = 32 * 1024

#: A ``put`` command line is at most this long: ``put`` and four numbers of
#: at most ten digits, spaces and CRLF (used to bound a write before the
#: command is formatted).
_PUT_LINE: Final = 4 + 4 * 11 + 2

#: No command line is longer: beanstalkd refuses longer ones (224 bytes,
#: CRLF included).
_COMMAND_LINE: Final = 224

#: Commands whose reply may carry a body of any size (or wait on the server:
#: the reserves): nothing more is written until their reply is read.
BODY_REPLIES: Final[frozenset[type[c.Command]]] = frozenset(
    {
        c.Reserve,
        c.ReserveWithTimeout,
        c.ReserveJob,
        c.Peek,
        c.PeekReady,
        c.PeekDelayed,
        c.PeekBuried,
        c.StatsJob,
        c.StatsTube,
        c.Stats,
        c.ListTubes,
        c.ListTubesWatched,
    }
)

#: Commands whose reply line echoes a tube name (``USING <tube>``): up to
#: the connection's ``max_line_length``.
_TUBE_REPLIES: Final[frozenset[type[c.Command]]] = frozenset({c.Use, c.ListTubeUsed})


def unread_limit(tcp: bool) -> int | None:
    """The ``max_unread`` of a :class:`Plan` for a transport that is TCP
    (``None``: the byte budget alone) or anything else (:data:`MAX_UNREAD`)."""
    return None if tcp else MAX_UNREAD


@dataclass(frozen=True, slots=True)
class Write:
    """One write a :class:`Plan` hands out: the commands ``start`` to
    ``stop`` (indices into the batch).

    Either ``data``, the wire bytes of those commands joined (already queued
    on the connection: write them now, in full), or ``large``, a single
    ``put`` with a large body that is *not* queued yet: the client sends it
    its usual way (``Connection.send_parts`` and a vectored write), so the
    body is never copied.
    """

    start: int
    stop: int
    data: bytes = b""
    large: c.Put | None = None


class Plan:
    """When to write which commands of a batch, and when to read first.

    The rules (why a batch written whole can deadlock, and the limits that
    prevent it) are this module's docstring, and the loop an adapter runs is
    in the guide (``docs/adapter.rst``, "Pipelining"). ``conn`` is the
    connection the batch goes out on; ``next_write`` queues the commands of
    each write on it. ``sent`` counts the commands handed out in writes,
    ``answered`` those whose reply was read (:meth:`replied`): the reply
    read next is the one to ``commands[answered]``.
    Every command is checked to be one with a reply before anything is
    planned (``Quit`` has none: a batch would wait for it for ever).

    The limits are arguments (for the tests, and ``max_unread=None`` for a
    client whose transport is TCP); the defaults are the module's constants.
    """

    __slots__ = (
        "_body_wait",
        "_commands",
        "_conn",
        "_draining",
        "_estimates",
        "_large_body",
        "_max_unread",
        "_reply_budget",
        "_tube_reply",
        "_unread",
        "_unread_bytes",
        "_write_size",
        "answered",
        "sent",
    )

    def __init__(
        self,
        conn: Connection,
        commands: Sequence[c.Command],
        *,
        reply_budget: int = REPLY_BUDGET,
        max_unread: int | None = MAX_UNREAD,
        write_size: int = WRITE_SIZE,
        large_body: int = LARGE_BODY,
    ) -> None:
        for command in commands:
            if type(command) not in REPLIES:
                raise ArgumentTypeError(
                    f"a batch takes commands with a reply, not {type(command).__name__}"
                )
        self._conn = conn
        self._commands = commands
        self._reply_budget = reply_budget
        # None: no limit but the byte budget's.
        self._max_unread = 2**62 if max_unread is None else max(1, max_unread)
        self._write_size = write_size
        self._large_body = large_body
        self._tube_reply = conn.max_line_length
        #: How many commands were handed out in writes, and how many of
        #: their replies were read.
        self.sent = 0
        self.answered = 0
        self._unread = 0
        self._unread_bytes = 0
        #: The estimate of each reply handed out and not yet read, by index.
        self._estimates: list[int] = []
        #: The index of a body-reply command sent and not answered, or -1.
        self._body_wait = -1
        #: The window filled: drain it to half before writing again.
        self._draining = False

    @property
    def done(self) -> bool:
        """Whether every command was sent and answered."""
        return self.answered == len(self._commands)

    @property
    def unread(self) -> int:
        """Replies written for and not yet read."""
        return self._unread

    def estimate(self, command: c.Command) -> int:
        """The most bytes the reply to ``command`` is counted as (a body
        reply's body is not counted: nothing is written behind it)."""
        if type(command) in _TUBE_REPLIES:
            return self._tube_reply
        return LINE_REPLY

    @property
    def ready(self) -> bool:
        """Whether :meth:`next_write` would hand out a write now (else the
        client must read a reply first, or everything is sent)."""
        if self.sent == len(self._commands) or self._body_wait >= 0:
            return False
        command = self._commands[self.sent]
        if self._draining:
            return self._unread == 0 or (
                2 * self._unread <= self._max_unread
                and 2 * self._unread_bytes <= self._reply_budget
                and self._fits(command)
            )
        return self._fits(command)

    def _fits(self, command: c.Command) -> bool:
        return self._unread == 0 or (
            self._unread < self._max_unread
            and self._unread_bytes + self.estimate(command) <= self._reply_budget
        )

    def next_write(self) -> Write | None:
        """The next write, or ``None`` when a reply must be read first (or
        every command was sent)."""
        if not self.ready:
            return None
        self._draining = False
        commands = self._commands
        start = self.sent
        command = commands[start]
        if type(command) is c.Put and len(command.body) >= self._large_body:
            self._take(command)
            return Write(start, start + 1, large=command)
        # The loop below runs once per command of a batch: its state is in
        # locals, written back once per write.
        send = self._conn.send
        parts: list[bytes] = []
        append = parts.append
        estimates = self._estimates
        size = 0
        end = len(commands)
        sent = start
        unread = self._unread
        unread_bytes = self._unread_bytes
        max_unread = self._max_unread
        budget = self._reply_budget
        large_body = self._large_body
        write_size = self._write_size
        tube_reply = self._tube_reply
        put = c.Put
        while sent < end:
            command = commands[sent]
            kind = type(command)
            estimate = tube_reply if kind in _TUBE_REPLIES else LINE_REPLY
            if parts and (unread >= max_unread or unread_bytes + estimate > budget):
                self._draining = True
                break
            if kind is put:
                length = len(command.body)  # type: ignore[attr-defined]
                if length >= large_body:
                    break  # a write of its own, next
                length += _PUT_LINE + 2
            else:
                length = _COMMAND_LINE
            if parts and size + length > write_size:
                break
            data = send(command)
            append(data)
            size += len(data)
            estimates.append(estimate)
            unread += 1
            unread_bytes += estimate
            sent += 1
            if kind in BODY_REPLIES:
                self._body_wait = sent - 1
                break
        self.sent = sent
        self._unread = unread
        self._unread_bytes = unread_bytes
        return Write(start, sent, data=b"".join(parts))

    def _take(self, command: c.Command) -> None:
        estimate = self.estimate(command)
        self._estimates.append(estimate)
        self._unread += 1
        self._unread_bytes += estimate
        if type(command) in BODY_REPLIES:
            self._body_wait = self.sent
        self.sent += 1

    def replied(self) -> None:
        """Count the reply to the oldest command sent and not answered as read."""
        index = self.answered
        if index >= self.sent:
            raise ArgumentTypeError("replied() with no reply owed")  # pragma: no cover
        self.answered = index + 1
        self._unread -= 1
        self._unread_bytes -= self._estimates[index]
        if index == self._body_wait:
            self._body_wait = -1


class Interrupted(Exception):
    """Raised by a client's batch loop when its connection failed part-way.

    The API layer turns it into :class:`~beanproto.BatchLostError` once it
    has made results of the events (it alone knows the client's encoding
    and tubes). ``events`` are the replies read, in order (the first
    ``len(events)`` commands); ``lost`` the error of each command sent after
    those and not answered; the rest were never sent. ``cause`` is the
    failure itself.
    """

    def __init__(
        self, events: list[e.Event], lost: list[BaseException], cause: BaseException
    ) -> None:
        super().__init__(cause)
        self.events = events
        self.lost = lost
        self.cause = cause


def _lost(error: BaseException) -> BaseException:
    """What a command sent and not answered gets: a :class:`ReplyLostError`
    (a reply that broke keeps its own error: it is the one at fault)."""
    if isinstance(error, (ReplyLostError, Error)):
        return error
    lost = ReplyLostError(
        "connection lost before the reply came (the command may have run): "
        f"{type(error).__name__}: {error}"
    )
    lost.__cause__ = error
    return lost


def put_ids(commands: Sequence[c.Command], results: Sequence[object]) -> list[int]:
    """The ids of the puts that succeeded, in order."""
    return [
        result  # type: ignore[misc]
        for command, result in zip(commands, results, strict=True)
        if type(command) is c.Put and not isinstance(result, BaseException)
    ]


def raise_failures(commands: Sequence[c.Command], results: list[object]) -> None:
    """Raise :class:`~beanproto.BatchError` if any result is an exception."""
    for result in results:
        if isinstance(result, BaseException):
            raise BatchError(results, put_ids(commands, results))


def lost_error(
    commands: Sequence[c.Command], answered: list[object], interrupted: Interrupted
) -> BatchLostError:
    """The :class:`~beanproto.BatchLostError` for a batch whose connection
    failed: ``answered`` are the results of the replies read."""
    cause = interrupted.cause
    results: list[object] = list(answered)
    results.extend(_lost(error) for error in interrupted.lost)
    first_unsent = len(results)
    why = f"{type(cause).__name__}: {cause}"
    for _ in range(first_unsent, len(commands)):
        results.append(
            ConnectionError(
                "not sent: the connection was lost before this command went out "
                f"(it did not run; it may be sent again): {why}"
            )
        )
    return BatchLostError(
        results, put_ids(commands, results), unsent=range(first_unsent, len(commands))
    )
