"""The connection state machine: commands out as bytes, bytes in as events.

Theory of operation
-------------------
beanstalkd answers each connection's commands one at a time, in the order they
arrived (protocol section "Protocol"). So the client needs no ids: it keeps a
FIFO of the commands it has sent, and the command at the head of the FIFO
decides how the next reply is read (``_replies.REPLIES``). Sending several
commands before reading any reply (pipelining) is just a longer FIFO.

Reading a reply has two steps. First the reply line, up to CRLF; its status
word picks a reader. Most replies end there. ``RESERVED``, ``FOUND`` and
``OK`` announce a body of a known length: the connection then waits until the
body and its CRLF are all buffered, and only then builds the event. Nothing is
parsed twice and every byte is appended once, so any split of the input gives
the same events for work linear in the input.

The connection is in one of four states:

``OPEN``     commands may be sent.
``CLOSING``  ``quit`` was sent; replies still owed are read, nothing is sent.
``CLOSED``   the server closed the connection; :class:`ConnectionClosed` is
             the last event.
``ERROR``    the server broke the protocol, or closed the connection in the
             middle of a reply. Every later call raises again: once framing
             is lost, nothing after it is trustworthy.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import fields
from typing import Any, Final, Literal, NoReturn, cast

from . import _events as e
from ._buffer import READ_SIZE, ReceiveBuffer
from ._commands import Command, Put, Quit
from ._replies import KNOWN_STATUSES, REPLIES, BodyWanted, Reader
from ._validate import MAX_UINT32, MAX_UINT64, check_int
from .errors import (
    ArgumentError,
    ArgumentTypeError,
    BrokenJobError,
    ConnectionClosedError,
    LocalProtocolError,
    RemoteProtocolError,
    UnknownResponseError,
)

__all__ = ["Connection", "NEED_DATA", "NeedData", "State"]


class NeedData(enum.Enum):
    """The type of :data:`NEED_DATA`."""

    NEED_DATA = "NEED_DATA"

    def __repr__(self) -> str:
        return "NEED_DATA"

    __str__ = __repr__


#: Returned by :meth:`Connection.next_event` when more bytes must be received.
NEED_DATA: Final = NeedData.NEED_DATA


class State(enum.Enum):
    """Where a :class:`Connection` is in its life."""

    OPEN = "OPEN"
    CLOSING = "CLOSING"
    CLOSED = "CLOSED"
    ERROR = "ERROR"


#: The longest reply line beanstalkd can send is ``USING <200-byte name>``
#: (208 bytes with CRLF); the server itself refuses command lines over 224.
DEFAULT_MAX_LINE_LENGTH = 224

#: beanstalkd's largest ``-z`` (max job size) is 1 GiB.
DEFAULT_MAX_BODY_SIZE = 2**30

#: Room made in advance for an announced body is capped: a reply line alone
#: must not make the client allocate up to ``max_body_size``. Beyond this the
#: buffer grows by doubling as the bytes actually arrive.
_MAX_ADVANCE = 8 * 1024 * 1024

_CONNECTION_CLOSED = e.ConnectionClosed()
_OPEN = State.OPEN
_CRLF = b"\r\n"
_PUT_REPLIES = REPLIES[Put]

#: Command type -> (its reply table, its bytes if it has no fields: those are
#: the same for every instance, so ``reserve`` and ``stats`` skip ``wire()``).
_SENDING: dict[type[Command], tuple[dict[bytes, Reader], bytes | None]] = {
    command_type: (table, None if fields(cast(Any, command_type)) else command_type.verb + _CRLF)
    for command_type, table in REPLIES.items()
}


def _byte_view(data: object) -> memoryview:
    """A flat view of the bytes of ``data``, counted in bytes, not items."""
    try:
        return memoryview(data).cast("B")  # type: ignore[arg-type]
    except TypeError:
        raise ArgumentTypeError(
            f"data must be a contiguous bytes-like object, not {type(data).__name__}"
        ) from None


class Connection:
    """One client connection to beanstalkd, without I/O.

    Args:
        max_line_length: longest reply line accepted, CRLF included. A server
            that sends more bytes without a CRLF is broken.
        max_body_size: largest body (job, or YAML document) accepted from the
            server.
    """

    __slots__ = (
        "_body",
        "_buffer",
        "_eof",
        "_error",
        "_pending",
        "_state",
        "_stopped",
        "max_body_size",
        "max_line_length",
    )

    def __init__(
        self,
        *,
        max_line_length: int = DEFAULT_MAX_LINE_LENGTH,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
    ) -> None:
        check_int(max_line_length, "max_line_length", MAX_UINT32)
        check_int(max_body_size, "max_body_size", MAX_UINT64)
        if max_line_length < 8:
            raise ArgumentError("max_line_length must be at least 8")
        self.max_line_length = max_line_length
        self.max_body_size = max_body_size
        self._pending: deque[tuple[Command, dict[bytes, Reader]]] = deque()
        self._buffer = ReceiveBuffer()
        self._body: BodyWanted | None = None
        self._state = State.OPEN
        self._error: RemoteProtocolError | None = None
        self._eof = False
        #: The end of file was received or the connection failed (either
        #: rules out the fast path of next_event_with).
        self._stopped = False

    def __repr__(self) -> str:
        return f"<beanproto.Connection state={self._state.name} pending={len(self._pending)}>"

    # -- state ------------------------------------------------------------

    @property
    def state(self) -> State:
        """The connection's :class:`State`."""
        return self._state

    @property
    def pending(self) -> int:
        """How many commands sent are still waiting for their reply."""
        return len(self._pending)

    @property
    def buffered(self) -> int:
        """How many received bytes are not yet turned into events.

        When it is 0 and the connection is open, :meth:`next_event` has no
        event to give, so a loop may read from the transport before asking.
        """
        buffer = self._buffer
        return buffer._end - buffer._start  # (not len(): one call less on the hot path)

    @property
    def mid_reply(self) -> bool:
        """Whether part of a reply has arrived and the rest has not: bytes
        not yet an event, or a reply line whose body is still due.

        A transport with a timeout uses it to tell a server that is slow to
        answer (a ``reserve`` may rightly wait) from one that stalled in the
        middle of answering.
        """
        return self._body is not None or self.buffered > 0

    @property
    def pending_commands(self) -> tuple[Command, ...]:
        """The commands still waiting for their reply, oldest first."""
        return tuple(command for command, _ in self._pending)

    # -- sending ----------------------------------------------------------

    def send(self, command: Command) -> bytes:
        """Queue ``command`` and return the bytes to write to the server.

        Raises:
            LocalProtocolError: the connection has quit, closed or failed.
            ArgumentTypeError: ``command`` is not a command.
        """
        if type(command) is Put and self._state is _OPEN:
            # The hot path. One format, one copy of the body (%b takes any buffer).
            pending = self._pending
            if not pending and self._buffer._end:
                self._unsolicited()
            pending.append((command, _PUT_REPLIES))
            body = command.body
            return b"put %d %d %d %d\r\n%b\r\n" % (  # type: ignore[str-format]
                command.priority,
                command.delay,
                command.ttr,
                len(body),
                body,
            )
        if self._state is _OPEN:
            sending = _SENDING.get(type(command))
            if sending is not None:
                pending = self._pending
                if not pending and self._buffer._end:
                    self._unsolicited()
                table, wire = sending
                pending.append((command, table))
                return command.wire() if wire is None else wire
        return self._enqueue(command)

    def send_parts(self, command: Command) -> list[bytes | bytearray | memoryview]:
        """Like :meth:`send`, but return the bytes in pieces to be written
        in order (``sendmsg``, ``writelines``), so that a large ``put`` body is
        never copied into one string."""
        head = self._enqueue(command)
        if type(command) is Put:
            return [head, command.body, _CRLF]
        return [head]

    def unsend(self, command: Command) -> None:
        """Take back ``command``, the newest one sent, when none of its bytes
        were written (the write was cancelled before it began): the
        connection is then as if it had never been sent. For a write of
        several commands, take each back, newest first.

        Raises:
            LocalProtocolError: ``command`` is not the newest command sent, or
                it already has its reply.
        """
        if type(command) is Quit and self._state is State.CLOSING:
            self._state = State.OPEN
            return
        pending = self._pending
        if not pending or pending[-1][0] is not command or self._state is State.ERROR:
            raise LocalProtocolError(f"cannot unsend {command.verb.decode()}: not the newest sent")
        if len(pending) == 1 and self._body is not None:
            raise LocalProtocolError(f"cannot unsend {command.verb.decode()}: its reply has begun")
        pending.pop()

    def _enqueue(self, command: Command) -> bytes:
        if self._state is not State.OPEN:
            raise LocalProtocolError(self._why_closed("send"))
        if type(command) is Quit:
            self._state = State.CLOSING
            return command.wire()
        try:
            table = REPLIES[type(command)]
        except KeyError:
            raise ArgumentTypeError(
                f"expected a beanproto command, not {type(command).__name__}"
            ) from None
        head = command.wire()
        if not self._pending and self._buffer._end:
            self._unsolicited()
        self._pending.append((command, table))
        return head

    def _unsolicited(self) -> NoReturn:
        """Refuse to send while bytes that answer nothing are buffered: they
        arrived when no reply was owed, and would otherwise be taken for the
        reply to the command about to be sent."""
        self._fail(
            RemoteProtocolError(
                f"server sent bytes when no reply was owed: {self._buffer.head(40)!r}"
            )
        )

    def _why_closed(self, action: str) -> str:
        if self._state is State.ERROR:
            return f"cannot {action}: the connection failed earlier ({self._error})"
        if self._state is State.CLOSING:
            return f"cannot {action}: quit was sent"
        return f"cannot {action}: the server closed the connection"

    # -- receiving --------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes received from the server; ``b""`` means it closed.

        Raises:
            LocalProtocolError: data after end of file.
            RemoteProtocolError: bytes arrived when no reply is owed.
        """
        if self._eof:
            if data:
                raise LocalProtocolError("received data after end of file")
            return
        if not data:
            self._eof = self._stopped = True
            return
        if type(data) is not bytes:
            data = _byte_view(data)
        self._check_wanted(len(data))
        self._buffer.write(data)

    def get_buffer(self, sizehint: int = -1) -> memoryview:
        """Lend a writable buffer to receive into, then call
        :meth:`buffer_updated` with the count of bytes written.

        The same contract as :class:`asyncio.BufferedProtocol`. While a body is
        expected the buffer has room for all of it (up to 8 MiB at a time), so
        a large body is read straight into place and copied once more, into
        the event's ``bytes``.
        """
        if type(sizehint) is not int:
            check_int(sizehint, "sizehint", MAX_UINT64)
        if self._body is None and sizehint <= READ_SIZE:
            return self._buffer.writable(READ_SIZE)
        return self._buffer.writable(max(sizehint, self._bytes_wanted()))

    def buffer_updated(self, nbytes: int) -> None:
        """Count ``nbytes`` written into the view from :meth:`get_buffer`.

        ``0`` bytes is not end of file; call ``receive_data(b"")`` for that.
        """
        if type(nbytes) is not int:
            raise ArgumentTypeError(f"nbytes must be an int, not {type(nbytes).__name__}")
        if nbytes > 0 and self._pending and not self._eof:
            self._buffer.commit(nbytes)
            return
        if self._eof and nbytes:
            raise LocalProtocolError("received data after end of file")
        if nbytes:
            self._check_wanted(nbytes)
        self._buffer.commit(nbytes)

    def _bytes_wanted(self) -> int:
        if self._body is not None:
            missing = self._body.size + 2 - len(self._buffer)
            if missing > READ_SIZE:
                return min(missing, _MAX_ADVANCE)
        return READ_SIZE

    def _check_wanted(self, nbytes: int) -> None:
        if not self._pending and self._state is not State.ERROR:
            self._fail(RemoteProtocolError(f"server sent {nbytes} bytes when no reply was owed"))

    def next_event(self) -> e.Event | Literal[NeedData.NEED_DATA]:
        """Return the next complete event, or :data:`NEED_DATA`.

        Raises:
            RemoteProtocolError: the server broke the protocol (and every call
                after this one raises too).
            ConnectionClosedError: the server closed the connection while a
                reply was owed.
        """
        if self._state is State.ERROR:
            raise RemoteProtocolError(self._why_closed("read")) from self._error
        try:
            body = self._body
            if body is None:
                if not self._pending:
                    return self._idle()
                # The hot path: one reply line, most often a complete reply.
                line = self._buffer.take_line()
                if line is None:
                    return self._no_line()
                if len(line) + 2 > self.max_line_length:
                    raise RemoteProtocolError(
                        f"reply line longer than {self.max_line_length} bytes: {line[:40]!r}"
                    )
                status, sep, rest = line.partition(b" ")
                pending = self._pending
                command, table = pending[0]
                reader = table.get(status)
                if reader is None:
                    self._unexpected(command, line)
                result = reader(rest, sep)
                if type(result) is not BodyWanted:
                    pending.popleft()
                    return result  # type: ignore[return-value]
                body = self._expect_body(result)
            return self._read_body(body)
        except RemoteProtocolError as exc:
            self._fail(exc)

    def next_event_with(
        self, data: bytes | bytearray | memoryview
    ) -> e.Event | Literal[NeedData.NEED_DATA]:
        """:meth:`receive_data` then :meth:`next_event`, in one call.

        The same events, errors and state as those two calls, always; faster
        when ``data`` is exactly one complete reply to the oldest command and
        nothing else is buffered, which is what a client that sends one
        command and reads its reply gets on almost every read: the reply is
        then parsed straight from ``data``, without passing through the
        receive buffer. Anything else (part of a reply, several replies, a
        reply that breaks the protocol) takes the general path, so every
        error comes from one place. The tests feed the same random, split,
        truncated and mutated replies to both paths and demand the same.
        """
        pending = self._pending
        if (
            pending
            and self._body is None
            and not self._buffer._end  # nothing buffered (it is 0 when empty)
            and not self._stopped
            and type(data) is bytes
        ):
            # (partition, not find: bytes.find parses its arguments as a tuple.)
            line, crlf, after = data.partition(b"\r\n")
            if crlf and len(line) < self.max_line_length - 1:
                status, sep, rest = line.partition(b" ")
                reader = pending[0][1].get(status)
                if reader is not None:
                    try:
                        result = reader(rest, sep)
                    except RemoteProtocolError:
                        pass  # the general path below raises it, and fails
                    else:
                        if type(result) is not BodyWanted:
                            if not after:
                                # One line, the whole read: most replies.
                                pending.popleft()
                                return result  # type: ignore[return-value]
                        elif (
                            # A line and its body, the whole read (RESERVED, FOUND, OK).
                            len(after) == result.size + 2
                            and result.size <= self.max_body_size
                            and after[-2:] == b"\r\n"
                        ):
                            try:
                                event = result.finish(result.arg, after[:-2])
                            except RemoteProtocolError:
                                pass  # a broken YAML body: the general path fails
                            else:
                                pending.popleft()
                                return event
        self.receive_data(data)
        return self.next_event()

    def _fail(self, exc: RemoteProtocolError) -> NoReturn:
        self._state = State.ERROR
        self._error = exc
        self._stopped = True
        raise exc

    def _idle(self) -> e.Event | Literal[NeedData.NEED_DATA]:
        if len(self._buffer):
            raise RemoteProtocolError(
                f"server sent bytes when no reply was owed: {self._buffer.head(40)!r}"
            )
        if self._eof:
            self._state = State.CLOSED
            return _CONNECTION_CLOSED
        return NEED_DATA

    def _no_line(self) -> Literal[NeedData.NEED_DATA]:
        if len(self._buffer) >= self.max_line_length:
            raise RemoteProtocolError(
                f"reply line longer than {self.max_line_length} bytes: {self._buffer.head(40)!r}"
            )
        return self._need_data()

    def _expect_body(self, wanted: BodyWanted) -> BodyWanted:
        if wanted.size > self.max_body_size:
            raise RemoteProtocolError(
                f"reply announces a {wanted.size}-byte body, more than "
                f"max_body_size={self.max_body_size}"
            )
        self._body = wanted
        missing = wanted.size + 2 - len(self._buffer)
        if missing > 0:
            # Room for the whole body now, so it arrives without being moved.
            self._buffer.reserve(min(missing, _MAX_ADVANCE))
        return wanted

    def _read_body(self, body: BodyWanted) -> e.Event | Literal[NeedData.NEED_DATA]:
        buffer = self._buffer
        try:
            data = buffer.take_body(body.size)
        except RemoteProtocolError:
            if type(body.arg) is int:  # a job's body (RESERVED, FOUND)
                raise BrokenJobError(body.arg, body.size) from None
            raise
        if data is None:
            return self._need_data()
        self._body = None
        self._pending.popleft()
        return body.finish(body.arg, data)

    def _need_data(self) -> Literal[NeedData.NEED_DATA]:
        if self._eof:
            command = self._pending[0][0]
            raise ConnectionClosedError(
                f"server closed the connection before replying to {command.verb.decode()}"
            )
        return NEED_DATA

    @staticmethod
    def _unexpected(command: Command, line: bytes) -> NoReturn:
        status, *values = line.split(b" ")
        if status in KNOWN_STATUSES:
            message = f"reply {line[:80]!r} does not answer {command.verb.decode()}"
        else:
            message = f"unknown reply {line[:80]!r} to {command.verb.decode()}"
        raise UnknownResponseError(status, values, message)
