"""beanproto_sync: a blocking beanstalkd client, a drop-in for greenstalk 2.1.1.

Scripts written for greenstalk run unchanged after::

    import beanproto_sync as greenstalk

Every byte goes through the :mod:`beanproto` core, so replies are checked
for real (not with ``assert``) and a body that cannot be decoded still tells
you which job it belongs to (:class:`JobDecodeError`).
"""

from beanproto._clientlib import ERROR_RESPONSES
from beanproto._stats import Stats, StatsJob, StatsTube
from beanproto.errors import (
    ArgumentError,
    ArgumentTypeError,
    BadFormatError,
    BeanstalkdError,
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
    TimedOutError,
    UnknownCommandError,
    UnknownResponseError,
)

from ._client import (
    DEFAULT_DELAY,
    DEFAULT_PRIORITY,
    DEFAULT_TTR,
    DEFAULT_TUBE,
    Address,
    Client,
    ConnectionTarget,
    Job,
    JobOrID,
    TBody,
)

__version__ = "0.1.0"

__all__ = [
    "Client",
    "Job",
    "Address",
    "ConnectionTarget",
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
    # greenstalk's exceptions
    "Error",
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
    "UnknownResponseError",
    # beanproto's own additions
    "ArgumentError",
    "ArgumentTypeError",
    "ConnectionClosedError",
    "JobDecodeError",
    "LocalProtocolError",
    "RemoteProtocolError",
]
