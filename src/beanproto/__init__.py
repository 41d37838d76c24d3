"""beanproto: the beanstalkd protocol as a pure state machine (sans-I/O).

Commands go in and come out as bytes; bytes from the server go in and come
out as typed events::

    conn = beanproto.Connection()
    sock.sendall(conn.send(beanproto.Put(body=b"hello")))
    while (event := conn.next_event()) is beanproto.NEED_DATA:
        conn.receive_data(sock.recv(65536))
    assert isinstance(event, beanproto.Inserted)

No I/O and no dependencies. The client layer every adapter shares (the
greenstalk API written once, the fault model, reconnection, pools and
workers) is the subpackage :mod:`beanproto.client`; the blocking, trio,
asyncio and anyio clients are short loops around the two.
"""

from ._commands import (
    DEFAULT_DELAY,
    DEFAULT_PRIORITY,
    DEFAULT_TTR,
    Bury,
    Command,
    Delete,
    Ignore,
    Kick,
    KickJob,
    ListTubes,
    ListTubesWatched,
    ListTubeUsed,
    PauseTube,
    Peek,
    PeekBuried,
    PeekDelayed,
    PeekReady,
    Put,
    Quit,
    Release,
    Reserve,
    ReserveJob,
    ReserveWithTimeout,
    Stats,
    StatsJob,
    StatsTube,
    Touch,
    Use,
    Watch,
)
from ._connection import NEED_DATA, Connection, NeedData, State
from ._events import (
    BadFormat,
    Buried,
    ConnectionClosed,
    DeadlineSoon,
    Deleted,
    Draining,
    Event,
    ExpectedCrlf,
    Found,
    Inserted,
    InternalError,
    JobTooBig,
    Kicked,
    NotFound,
    NotIgnored,
    Ok,
    OutOfMemory,
    Paused,
    Released,
    Reserved,
    StatValue,
    TimedOut,
    Touched,
    UnknownCommand,
    Using,
    Watching,
)
from ._stats import Stats as StatsDict
from ._stats import StatsJob as StatsJobDict
from ._stats import StatsTube as StatsTubeDict
from ._stats import rich_stats
from ._validate import (
    MAX_BODY_SIZE,
    MAX_NAME_LENGTH,
    MAX_RESERVE_TIMEOUT,
    MAX_UINT32,
    MAX_UINT64,
)
from .errors import (
    ArgumentError,
    ArgumentTypeError,
    BatchError,
    BatchLostError,
    BrokenJobError,
    ConnectionClosedError,
    Error,
    LocalProtocolError,
    RemoteProtocolError,
    ReplyLostError,
    UnknownResponseError,
)

__version__ = "0.1.0"

__all__ = [
    # the state machine
    "Connection",
    "NEED_DATA",
    "NeedData",
    "State",
    # commands
    "Command",
    "Put",
    "Use",
    "Reserve",
    "ReserveWithTimeout",
    "ReserveJob",
    "Delete",
    "Release",
    "Bury",
    "Touch",
    "Watch",
    "Ignore",
    "Peek",
    "PeekReady",
    "PeekDelayed",
    "PeekBuried",
    "Kick",
    "KickJob",
    "StatsJob",
    "StatsTube",
    "Stats",
    "ListTubes",
    "ListTubeUsed",
    "ListTubesWatched",
    "PauseTube",
    "Quit",
    # events
    "Event",
    "Inserted",
    "Buried",
    "ExpectedCrlf",
    "JobTooBig",
    "Draining",
    "Using",
    "Reserved",
    "DeadlineSoon",
    "TimedOut",
    "Deleted",
    "NotFound",
    "Released",
    "Touched",
    "Watching",
    "NotIgnored",
    "Found",
    "Kicked",
    "Ok",
    "Paused",
    "OutOfMemory",
    "InternalError",
    "BadFormat",
    "UnknownCommand",
    "ConnectionClosed",
    # typed YAML replies
    "StatValue",
    "StatsDict",
    "StatsJobDict",
    "StatsTubeDict",
    "rich_stats",
    # errors (the server-reply exceptions live in beanproto.errors)
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
    # limits and defaults
    "DEFAULT_PRIORITY",
    "DEFAULT_DELAY",
    "DEFAULT_TTR",
    "MAX_BODY_SIZE",
    "MAX_NAME_LENGTH",
    "MAX_RESERVE_TIMEOUT",
    "MAX_UINT32",
    "MAX_UINT64",
]
