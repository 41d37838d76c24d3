"""Every exception beanproto raises.

There are three families, all deriving from :class:`Error`:

* **Local errors** — the caller asked for something the protocol cannot
  express (a tube name with a space, a priority of ``2**32``, a ``str`` body).
  They are raised before a single byte is produced, and also derive from
  :class:`ValueError` or :class:`TypeError` so that ordinary argument checks
  catch them.
* **Remote errors** — the server broke the protocol (an unknown status, a
  malformed number, a body without its CRLF, a line too long to be any reply,
  bytes nobody asked for). The connection that saw one stays in an error state:
  once the byte stream has lost its framing nothing after it can be trusted.
* **Server replies that mean failure** — ``NOT_FOUND``, ``TIMED_OUT``,
  ``JOB_TOO_BIG`` … The core reports them as ordinary events; the clients raise
  these classes, which keep greenstalk 2.1.1's names and hierarchy so code
  written for greenstalk catches them unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "Error",
    "LocalProtocolError",
    "ArgumentError",
    "ArgumentTypeError",
    "RemoteProtocolError",
    "UnknownResponseError",
    "BrokenJobError",
    "ReplyLostError",
    "ConnectionClosedError",
    "BeanstalkdError",
    "BadFormatError",
    "BuriedError",
    "DeadlineSoonError",
    "DrainingError",
    "ExpectedCrlfError",
    "InternalError",
    "JobTooBigError",
    "NotFoundError",
    "NotIgnoredError",
    "OutOfMemoryError",
    "TimedOutError",
    "UnknownCommandError",
    "JobDecodeError",
    "BatchError",
    "BatchLostError",
]


class Error(Exception):
    """Base class of every exception beanproto raises.

    Connection failures of the transport itself (refused, reset) are the
    built-in :class:`ConnectionError` family, as in greenstalk; a server that
    closes the connection in the middle of a reply raises
    :class:`ConnectionClosedError`, which is both.
    """


class LocalProtocolError(Error):
    """The caller used the API in a way the protocol cannot carry out.

    Examples: sending on a connection that has quit or failed, feeding data
    after end of file.
    """


class ArgumentError(LocalProtocolError, ValueError):
    """An argument has the right type but a value the protocol forbids.

    Raised before any byte is produced, so nothing reaches the server.
    """


class ArgumentTypeError(LocalProtocolError, TypeError):
    """An argument has a type the protocol cannot carry (a ``str`` body, a
    ``bool`` priority). Raised before any byte is produced."""


class RemoteProtocolError(Error):
    """The server sent bytes that break the beanstalk protocol.

    After this the connection is in an error state: every later call on it
    raises again, since the framing of the byte stream is lost.
    """


class BrokenJobError(RemoteProtocolError):
    """A job's body arrived without the CRLF that must end it: the server
    holds a broken job.

    beanstalkd restores one after a crash: it writes a job to its binlog in
    several writes, and a server killed between them comes back with the job
    and a body of zero bytes where the end of the body should be (its put
    was never answered: the client saw :class:`ReplyLostError`). The job is
    served like any other, so every ``reserve`` that gets it fails; ``id``
    names it, to delete (or bury) it from a new connection. As with any
    :class:`RemoteProtocolError` the connection is given up; the job goes
    back to the ready queue when the server sees it closed.

    Attributes:
        id: the job's id.
        size: the body size the server announced.
    """

    def __init__(self, id: int, size: int) -> None:
        self.id: int = id
        self.size: int = size
        super().__init__(
            f"body of job {id} ({size} bytes) is not followed by CRLF: the server "
            "holds a broken job (beanstalkd restores one from a binlog record a "
            "crash cut short); delete it by id"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.id, self.size))


class UnknownResponseError(RemoteProtocolError):
    """The server sent a status this client does not understand, or one that
    is not a valid answer to the command it answers.

    Attributes:
        status: the first word of the reply line, e.g. ``b"SOME_ERROR"`` for
            ``b"SOME_ERROR 1 2 3\\r\\n"``.
        values: the remaining words, e.g. ``[b"1", b"2", b"3"]``.
    """

    def __init__(self, status: bytes, values: list[bytes], message: str | None = None) -> None:
        self.status: bytes = status
        self.values: list[bytes] = values
        super().__init__(message or f"unknown response {status!r} {values!r}")
        self._message = message

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.status, self.values, self._message))


class ReplyLostError(ConnectionError):
    """The connection was lost after a command was sent and before its reply
    was read: **the command may have taken effect** (a ``put`` may have
    inserted its job, a ``delete`` deleted it).

    The client does not send the command again: only the caller knows whether
    doing it twice is harmless. (A command that provably never left, because
    the connection was found closed before sending, is sent on a new
    connection without an error.) It is a plain :class:`ConnectionError`
    otherwise, so code written for greenstalk's ``except ConnectionError``
    still catches it.
    """


class ConnectionClosedError(RemoteProtocolError, ReplyLostError):
    """The server closed the connection while replies were still owed.

    It is a :class:`ConnectionError` too, which is what greenstalk raises on an
    unexpected end of file, and a :class:`ReplyLostError`: the command whose
    reply was cut off may have taken effect.
    """


class BeanstalkdError(Error):
    """Base class for the error replies the server can send."""


class BadFormatError(BeanstalkdError):
    """``BAD_FORMAT``: the server could not parse a command line.

    beanproto validates every argument before sending, so this means a bug in
    beanproto or a server that disagrees with the protocol document.
    """


class BuriedError(BeanstalkdError):
    """``BURIED`` in reply to ``put`` or ``release``: the server ran out of
    memory growing its priority queue and buried the job instead.

    Attributes:
        id: the id of the buried job, or ``None`` when the reply carried none
            (``release``).
    """

    def __init__(self, values: list[bytes] | None = None, *, id: int | None = None) -> None:
        if id is None and values:
            id = int(values[0])
        self.id: int | None = id
        super().__init__(f"job {id} was buried" if id is not None else "job was buried")

    def __reduce__(self) -> tuple[object, ...]:
        return (_make_buried, (self.id,))


def _make_buried(id: int | None) -> BuriedError:
    return BuriedError(id=id)


class DeadlineSoonError(BeanstalkdError):
    """``DEADLINE_SOON``: a job this client reserved times out within a second."""


class DrainingError(BeanstalkdError):
    """``DRAINING``: the server is in drain mode and accepts no new jobs."""


class ExpectedCrlfError(BeanstalkdError):
    """``EXPECTED_CRLF``: a job body was not followed by CRLF.

    beanproto always frames bodies itself, so this should be unreachable.
    """


class InternalError(BeanstalkdError):
    """``INTERNAL_ERROR``: the server detected a bug in itself."""


class JobTooBigError(BeanstalkdError):
    """``JOB_TOO_BIG``: the body is larger than the server's ``max-job-size``."""


class NotFoundError(BeanstalkdError):
    """``NOT_FOUND``: the job or tube does not exist, or is not in a state the
    command needs (not reserved by this client, nothing to peek, …)."""


class NotIgnoredError(BeanstalkdError):
    """``NOT_IGNORED``: a client cannot ignore the only tube it watches."""


class OutOfMemoryError(BeanstalkdError):
    """``OUT_OF_MEMORY``: the server could not allocate memory for the job."""


class TimedOutError(BeanstalkdError):
    """``TIMED_OUT``: no job could be reserved within the timeout."""


class UnknownCommandError(BeanstalkdError):
    """``UNKNOWN_COMMAND``: the server does not know the command sent.

    beanstalkd older than 1.12 answers ``reserve-job`` this way.
    """


class JobDecodeError(Error, UnicodeDecodeError):
    """A reserved or peeked body could not be decoded with the client's
    encoding.

    It is a :class:`UnicodeDecodeError` like the one greenstalk lets escape,
    but it keeps what greenstalk loses: the job's ``id`` and its raw ``body``,
    so the caller can still bury, release or delete the job.
    """

    def __init__(self, cause: UnicodeDecodeError, id: int, body: bytes) -> None:
        UnicodeDecodeError.__init__(
            self, cause.encoding, cause.object, cause.start, cause.end, cause.reason
        )
        self.id: int = id
        self.body: bytes = body

    def __reduce__(self) -> tuple[object, ...]:
        cause = UnicodeDecodeError(self.encoding, self.object, self.start, self.end, self.reason)
        return (type(self), (cause, self.id, self.body))

    def __str__(self) -> str:
        return f"job {self.id}: {UnicodeDecodeError.__str__(self)}"


class BatchError(Error):
    """Some commands of a batch (``put_many``, a pipeline's ``execute``) got
    failure replies (``JOB_TOO_BIG``, ``DRAINING``, ``NOT_FOUND`` …); every
    command was answered, so each one's outcome is known.

    One exception for the whole batch, raised after every reply was read, so
    that the commands that succeeded are never lost with the first failure
    (the jobs a ``put_many`` inserted exist: their ids are here).

    Attributes:
        results: one entry per command, in order: what the single call would
            have returned, or the exception it would have raised.
        failures: ``{index: exception}`` for every command that failed.
        ids: the ids of the ``put`` commands that succeeded, in order.
    """

    def __init__(self, results: Sequence[object], ids: Sequence[int] | None = None) -> None:
        self.results: list[object] = list(results)
        self.failures: dict[int, BaseException] = {
            n: r for n, r in enumerate(self.results) if isinstance(r, BaseException)
        }
        self.ids: list[int] = list(ids) if ids is not None else []
        super().__init__(self._describe())

    def _describe(self) -> str:
        failures = self.failures
        text = f"{len(failures)} of {len(self.results)} commands failed"
        if failures:
            first = min(failures)
            error = failures[first]
            text += f"; the first, #{first}: {type(error).__name__}: {error}"
        return text

    def __str__(self) -> str:
        return self._describe()

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.results, self.ids))


class BatchLostError(BatchError, ReplyLostError):
    """The connection failed or timed out in the middle of a batch.

    Like every lost reply it is a :class:`ConnectionError` (a
    :class:`ReplyLostError`), and the connection is given up as for a single
    call: the next call connects again. ``__cause__`` is the failure itself
    (a :class:`TimeoutError`, a reset, ``ConnectionClosedError`` …).

    Attributes:
        results: the results (or failure replies) of the commands answered;
            for each command sent and not answered a :class:`ReplyLostError`
            (it **may have run**); for each command never sent a plain
            :class:`ConnectionError` saying so (it did not run: it may be
            sent again).
        failures: every entry of ``results`` that is an exception.
        ids: the ids of the puts that were answered with one.
        unsent: the indices of the commands never sent.
    """

    def __init__(
        self,
        results: Sequence[object],
        ids: Sequence[int] | None = None,
        unsent: Sequence[int] = (),
    ) -> None:
        self.unsent: list[int] = list(unsent)
        super().__init__(results, ids)

    def _describe(self) -> str:
        results, failures = self.results, self.failures
        unsent = set(self.unsent)
        lost = {n for n, r in failures.items() if n not in unsent and isinstance(r, ReplyLostError)}
        text = (
            f"connection lost in the middle of a batch of {len(results)} commands: "
            f"{len(results) - len(lost) - len(unsent)} answered, "
            f"{len(lost)} sent and not answered (they may have run), {len(unsent)} not sent"
        )
        replies = [n for n in failures if n not in lost and n not in unsent]
        if replies:
            text += f"; {len(replies)} failed, the first, #{replies[0]}: "
            text += f"{type(failures[replies[0]]).__name__}: {failures[replies[0]]}"
        return text

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.results, self.ids, self.unsent))
