"""What a worker decides, without I/O: shared by the three clients' workers.

A worker (``beanproto_sync.Worker``, ``beanproto_trio.Worker``,
``beanproto_asyncio.Worker``) reserves jobs, runs a handler on each and
settles the job by what the handler did. The rules live here, once:

* **Outcomes.** A handler that returns deletes its job. One that raises
  :class:`ReleaseJob` or :class:`BuryJob` asks for that. Any other exception is a
  failure: the job is released with a delay that doubles with each release
  the server has counted for it (``stats-job`` ``releases``), up to a cap,
  and buried once it has been released ``max_releases`` times.
* **Touches.** A handler still running ``touch_after`` seconds after it
  started learns its job's ``time-left`` (one ``stats-job``) and is then
  touched ahead of every deadline, so short handlers cost nothing extra.
* **Connections.** Every handler slot has a connection of its own (a job can
  only be settled on the connection that reserved it, and a waiting
  ``reserve`` holds its connection), opened with ``reconnect=False``: a
  connection lost mid-job means its reservation is gone, which the slot then
  knows for sure (it logs it, reports nothing done, and opens a new one).

Everything a worker does is logged under the ``beanproto.worker`` logger,
with the job id.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .._commands import DEFAULT_PRIORITY
from .._validate import MAX_UINT32, check_tube
from ..errors import ArgumentError, ArgumentTypeError

__all__ = [
    "ReleaseJob",
    "BuryJob",
    "Settings",
    "Delete",
    "Outcome",
    "failure_outcome",
    "touch_delay",
    "logger",
]

logger = logging.getLogger("beanproto.worker")


class ReleaseJob(Exception):
    """Raised by a handler: put the job back, to be reserved again.

    Args:
        delay: seconds before the job is ready again.
        priority: its new priority (``None``: the one it has).
    """

    def __init__(self, delay: int = 0, priority: int | None = None) -> None:
        super().__init__(delay, priority)
        self.delay = _uint32(delay, "delay")
        self.priority = None if priority is None else _uint32(priority, "priority")


class BuryJob(Exception):
    """Raised by a handler: bury the job (kept, not reserved again until
    kicked).

    Args:
        priority: its new priority (``None``: the one it has).
    """

    def __init__(self, priority: int | None = None) -> None:
        super().__init__(priority)
        self.priority = None if priority is None else _uint32(priority, "priority")


@dataclass(frozen=True)
class Delete:
    """The handler returned: delete the job."""


Outcome = Delete | ReleaseJob | BuryJob
"""How a job is settled."""


def _uint32(value: object, name: str) -> int:
    if type(value) is not int:
        raise ArgumentTypeError(f"{name} must be an int, not {type(value).__name__}")
    if not 0 <= value <= MAX_UINT32:
        raise ArgumentError(f"{name} must be between 0 and {MAX_UINT32}, not {value}")
    return value


def _seconds(value: object, name: str, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ArgumentTypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        which = "a positive" if positive else "a nonnegative"
        raise ArgumentError(f"{name} must be {which} finite number of seconds, not {value!r}")
    return float(value)


@dataclass(frozen=True)
class Settings:
    """A worker's settings, checked once, before anything connects."""

    watch: tuple[str, ...]
    concurrency: int
    grace: float
    max_releases: int
    backoff: int
    backoff_cap: int
    touch_after: float
    reconnect_delay: float

    @classmethod
    def checked(
        cls,
        *,
        watch: object,
        concurrency: object,
        grace: object,
        max_releases: object,
        backoff: object,
        backoff_cap: object,
        touch_after: object,
        reconnect_delay: object,
    ) -> Settings:
        if isinstance(watch, str):
            tubes: tuple[str, ...] = (watch,)
        elif isinstance(watch, Iterable):
            tubes = tuple(watch)
        else:
            raise ArgumentTypeError(f"watch must be a tube name or names, not {watch!r}")
        if not tubes:
            raise ArgumentError("watch must name at least one tube")
        for tube in tubes:
            check_tube(tube, "watch")
        if type(concurrency) is not int:
            raise ArgumentTypeError(f"concurrency must be an int, not {concurrency!r}")
        if not 1 <= concurrency <= 10_000:
            raise ArgumentError(f"concurrency must be between 1 and 10000, not {concurrency}")
        if type(max_releases) is not int or max_releases < 0:
            raise ArgumentError(f"max_releases must be an int of 0 or more, not {max_releases!r}")
        touch_after = _seconds(touch_after, "touch_after", positive=True)
        if touch_after >= 1:
            # beanstalkd's shortest TTR is 1 s: a later first look could come
            # after the deadline of a job reserved for a second.
            raise ArgumentError(
                f"touch_after must be under 1 s (beanstalkd's shortest TTR), not {touch_after!r}"
            )
        return cls(
            watch=tubes,
            concurrency=concurrency,
            grace=_seconds(grace, "grace"),
            max_releases=max_releases,
            backoff=_uint32(backoff, "backoff"),
            backoff_cap=_uint32(backoff_cap, "backoff_cap"),
            touch_after=touch_after,
            reconnect_delay=_seconds(reconnect_delay, "reconnect_delay", positive=True),
        )


def prepared(handler: object, **values: Any) -> tuple[Settings, dict[str, Any]]:
    """What every Worker's constructor does, before anything connects:
    check ``handler`` and the settings, and make the options each slot's
    client is opened with (``reconnect=False``: see the module).

    ``values``: the Worker's keyword arguments (its settings, ``encoding``
    and the client timeouts).
    """
    from . import _faults as faults  # (clients only: the core imports no I/O module)

    if not callable(handler):
        raise ArgumentTypeError(f"handler must be callable, not {handler!r}")
    timeouts = {key: values.pop(key) for key in ("connect_timeout", "io_timeout", "keepalive")}
    encoding = values.pop("encoding")
    settings = Settings.checked(**values)
    faults.Timeouts.checked(
        timeouts["connect_timeout"], timeouts["io_timeout"], timeouts["keepalive"], False
    )
    options = {"encoding": encoding, "watch": settings.watch, **timeouts, "reconnect": False}
    return settings, options


def failure_outcome(settings: Settings, releases: int, priority: int) -> ReleaseJob | BuryJob:
    """What a failed handler does to its job, which the server has released
    ``releases`` times before: released again with ``backoff * 2**releases``
    seconds of delay (at most ``backoff_cap``), or buried once it has been
    released ``max_releases`` times. The priority is kept."""
    if releases >= settings.max_releases:
        return BuryJob(priority)
    delay = min(settings.backoff_cap, settings.backoff * 2 ** min(releases, 32))
    return ReleaseJob(delay, priority)


def explicit_outcome(exc: BaseException | None) -> Outcome | None:
    """The outcome a handler chose (returned, or raised :class:`ReleaseJob` /
    :class:`BuryJob`), or ``None`` for a failure."""
    if exc is None:
        return Delete()
    if isinstance(exc, ReleaseJob | BuryJob):
        return exc
    return None


def touch_delay(time_left: float, ttr: float) -> float:
    """Seconds from now to touch a job with ``time_left`` seconds left of a
    ``ttr``-second reservation.

    beanstalkd reports ``time-left`` in whole seconds, rounded down, so the
    deadline may be up to a second later than it says, never earlier. The
    touch goes a margin ahead: a quarter of the TTR, at least half a second
    and at most five seconds (a TTR of one second is touched every half
    second).
    """
    margin = min(5.0, max(0.5, ttr / 4))
    return max(0.0, time_left - margin)


def describe(outcome: Outcome) -> str:
    """How an outcome reads in the log."""
    if isinstance(outcome, ReleaseJob):
        return f"released (delay {outcome.delay} s)"
    if isinstance(outcome, BuryJob):
        return "buried"
    return "deleted"


#: The priority to settle with when the handler named none and the job's own
#: is unknown (its stats could not be read).
FALLBACK_PRIORITY = DEFAULT_PRIORITY
