"""The names every client package exports besides its ``Client``: greenstalk
2.1.1's module-level API (jobs, stats types, defaults, exceptions), and the
outcomes a worker's handler raises.

A client package star-imports this module and adds its own ``Client``,
``Pool`` and ``Worker``, so every package offers the same names (and the
same classes: a job reserved with one client can be deleted with another,
and ``except beanproto_sync.NotFoundError`` catches what any client raises).
"""

from .._commands import DEFAULT_DELAY, DEFAULT_PRIORITY, DEFAULT_TTR
from .._stats import Stats, StatsJob, StatsTube
from ..errors import (
    ArgumentError,
    ArgumentTypeError,
    BadFormatError,
    BatchError,
    BatchLostError,
    BeanstalkdError,
    BrokenJobError,
    BuriedError,
    ConnectionClosedError,
    DeadlineSoonError,
    DrainingError,
    Error,
    ExpectedCrlfError,
    InternalError,
    JobDecodeError,
    JobTooBigError,
    LocalProtocolError,
    NotFoundError,
    NotIgnoredError,
    OutOfMemoryError,
    RemoteProtocolError,
    ReplyLostError,
    TimedOutError,
    UnknownCommandError,
    UnknownResponseError,
)
from ._job import Job, JobOrID, TBody
from ._outcomes import DEFAULT_TUBE, ERROR_RESPONSES
from ._worker_rules import BuryJob, ReleaseJob

__all__ = [
    "Job",
    "JobOrID",
    "TBody",
    "Stats",
    "StatsJob",
    "StatsTube",
    "DEFAULT_TUBE",
    "DEFAULT_PRIORITY",
    "DEFAULT_DELAY",
    "DEFAULT_TTR",
    "ERROR_RESPONSES",
    "Error",
    "LocalProtocolError",
    "ArgumentError",
    "ArgumentTypeError",
    "RemoteProtocolError",
    "UnknownResponseError",
    "BrokenJobError",
    "ConnectionClosedError",
    "ReplyLostError",
    "BatchError",
    "BatchLostError",
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
    "ReleaseJob",
    "BuryJob",
]
