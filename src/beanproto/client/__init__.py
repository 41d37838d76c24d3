"""The adapter kit: what every beanproto client shares, whatever its I/O.

``beanproto`` itself is the protocol (commands in, bytes out; bytes in,
events out). This subpackage is the layer above it that the shipped clients
(``beanproto_sync``, ``beanproto_trio``, ``beanproto_asyncio``,
``beanproto_anyio``) are built on, and that a new adapter is built on too:

* :class:`AsyncAPI` — greenstalk's whole API (and batches, pipelines), written
  once as coroutines over three methods an adapter implements: ``_request``
  (send one command, return the event that answers it), ``_request_many``
  (a batch, driven by :class:`Plan`) and ``close``.
* :class:`Reconnecting` — the connection life cycle: one connection at a
  time, a new one (set up again with :func:`setup_commands`) after a failure,
  ``reconnect=False``, a socket passed in.
* The outcome rules — which event is success for which command
  (:func:`expect`), which exception a failure reply becomes
  (:func:`error_for`), how bodies are encoded and decoded, and what an
  abandoned (cancelled) call costs (:func:`abandon_needs_reset`).
* The fault model — :class:`Timeouts`, :func:`reply_timeout`,
  :func:`set_keepalive`, and the exceptions a caller sees
  (:func:`reply_lost`, :func:`timed_out`, :func:`connection_lost`).
* :class:`AsyncPool` and :class:`AsyncWorker` over a small :class:`Runtime`,
  so an adapter gets pools and workers by binding its client and its tasks.

The guide "Writing an adapter" (``docs/adapter.rst``) walks through an
adapter built on these names alone: ``beanproto_anyio``.

Importing this package imports :mod:`socket` and :mod:`select` (the fault
model tunes sockets); ``import beanproto`` alone still imports no I/O module.
"""

from .._batch import Interrupted, Plan, Write, unread_limit
from ._api import AsyncAPI, Pipeline
from ._faults import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_IO_TIMEOUT,
    DEFAULT_KEEPALIVE,
    MAX_KEEPALIVE,
    MAX_TIMEOUT,
    Timeouts,
    describe,
    keepalive_settings,
    reply_lost,
    reply_timed_out,
    reply_timeout,
    server_wait,
    set_keepalive,
    timed_out,
)
from ._job import to_id
from ._outcomes import (
    ERROR_FOR_EVENT,
    RESERVING,
    abandon_needs_reset,
    check_setup,
    connection_lost,
    decode_body,
    encode_body,
    error_for,
    expect,
    setup_commands,
    watch_list,
)
from ._pool import AsyncPool
from ._pooled import PooledId, PooledJob
from ._readiness import Probe, close_probe, readiness_probe
from ._reconnect import Reconnecting
from ._worker import AsyncWorker, Flag, Group, Runtime, Task
from .common import *  # noqa: F403 (the names every client package exports)
from .common import __all__ as _exports

__all__ = [
    # the API, written once
    "AsyncAPI",
    "Pipeline",
    # batches: the core's plan and how a lost one is reported
    "Plan",
    "Write",
    "Interrupted",
    "unread_limit",
    # the connection life cycle
    "Reconnecting",
    "setup_commands",
    "check_setup",
    "watch_list",
    # outcomes: events to results and exceptions, bodies, abandoned calls
    "ERROR_FOR_EVENT",
    "expect",
    "error_for",
    "encode_body",
    "decode_body",
    "RESERVING",
    "abandon_needs_reset",
    "connection_lost",
    "to_id",
    # the fault model
    "Timeouts",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_IO_TIMEOUT",
    "DEFAULT_KEEPALIVE",
    "MAX_TIMEOUT",
    "MAX_KEEPALIVE",
    "server_wait",
    "reply_timeout",
    "set_keepalive",
    "keepalive_settings",
    "describe",
    "reply_lost",
    "reply_timed_out",
    "timed_out",
    "Probe",
    "readiness_probe",
    "close_probe",
    # pools and workers, bound by each adapter
    "AsyncPool",
    "PooledId",
    "PooledJob",
    "AsyncWorker",
    "Runtime",
    "Group",
    "Task",
    "Flag",
    *_exports,
]
