"""The blocking worker: handlers in threads, one connection per thread.

The rules (outcomes, backoff, touches, one connection per slot opened with
``reconnect=False``) are ``beanproto.client._worker_rules``'s; this module only runs them
with threads:

* ``concurrency`` slot threads, each with its own :class:`Client` waiting in
  ``reserve()`` and running the handler on the job it got;
* one keeper thread that touches the jobs of handlers still running after
  ``touch_after`` seconds (on the connection of the slot that reserved
  them: the client is thread-safe, and the slot does not use it meanwhile);
* :meth:`Worker.run` in the caller's thread, which waits for a stop and then
  stops: the connections waiting in ``reserve()`` are closed at once (a job
  the server handed out as they closed goes back to its ready queue), the
  running handlers get ``grace`` seconds, and the jobs of those still
  running after it are released and their connections closed.

A worker opens ``concurrency`` connections.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Generic

from beanproto.client import _faults as faults
from beanproto.client import _worker_rules as policy
from beanproto.client._job import Job, TBody
from beanproto.client._worker_rules import BuryJob, ReleaseJob
from beanproto.errors import (
    BrokenJobError,
    DeadlineSoonError,
    JobDecodeError,
    NotFoundError,
    RemoteProtocolError,
)

from ._client import Client, ConnectionTarget
from ._pool_api import SyncPool

__all__ = ["Worker"]

log = policy.logger

_IDLE, _RESERVING, _HANDLING = "idle", "reserving", "handling"
#: How often run() looks whether SIGTERM or SIGINT came (seconds).
_SIGNAL_LOOK = 0.05
#: What ends a connection's usefulness to a slot (it then opens a new one).
_LOST = (ConnectionError, TimeoutError, OSError, RemoteProtocolError)


class _Slot:
    """One handler thread's state, guarded by the worker's lock."""

    __slots__ = ("client", "job", "state", "abandoned", "thread", "broken")

    def __init__(self) -> None:
        self.client: Client[Any] | None = None
        self.job: Job[Any] | None = None
        self.state = _IDLE
        #: Set when the grace period ended with the handler still running:
        #: its job was released, so the handler's outcome is not applied.
        self.abandoned = False
        self.thread: threading.Thread | None = None
        #: The id of a broken job (BrokenJobError) to delete once connected.
        self.broken: int | None = None


class _Touch:
    """A running handler's job, as the keeper sees it."""

    __slots__ = ("client", "job", "due", "ttr", "busy")

    def __init__(self, client: Client[Any], job: Job[Any], due: float) -> None:
        self.client = client
        self.job = job
        self.due = due
        self.ttr: float | None = None  # learnt with the first stats-job
        self.busy = False  # a touch (or the first look) is under way


class Worker(Generic[TBody]):
    """Reserve jobs from ``watch`` and run ``handler`` on each, ``concurrency``
    at a time, until :meth:`stop` (or SIGTERM / SIGINT).

    ``handler(job)`` returning deletes the job; raising :class:`ReleaseJob` or
    :class:`BuryJob` does that; any other exception releases the job with a
    delay of ``backoff * 2**releases`` seconds (at most ``backoff_cap``) and
    buries it once the server has counted ``max_releases`` releases. A
    handler still running after ``touch_after`` seconds has its job touched
    before each deadline until it ends. Delivery is at least once: a job
    whose reservation is lost (its connection died, its TTR ran out) is not
    reported done and will be delivered again.

    Args:
        address: the server, as for :class:`Client`, or a :class:`Pool` of
            servers (each slot then takes jobs from all of them, with
            connections of its own; the worker's ``watch``, ``encoding`` and
            timeouts apply).
        handler: called with each :class:`Job`, in a slot thread.
        watch: the tube or tubes to take jobs from.
        concurrency: handlers run at once (one thread and one connection
            each).
        grace: seconds running handlers get to finish after a stop; the jobs
            of those still running then are released.
        max_releases: releases after which a failing job is buried.
        backoff, backoff_cap: the failure delay, in whole seconds.
        touch_after: seconds after which a running handler's job is looked
            at (one ``stats-job``) and then kept alive; under 1 s, the
            shortest TTR beanstalkd gives a job.
        reconnect_delay: seconds between attempts to reach a server that
            cannot be reached.
        encoding: job bodies' encoding (``None``: ``bytes``).
        connect_timeout, io_timeout, keepalive: as for :class:`Client`.

    Raises:
        ArgumentError, ArgumentTypeError: a bad setting (nothing connects).
    """

    def __init__(
        self,
        address: ConnectionTarget | SyncPool[Any],
        handler: Callable[[Job[TBody]], object],
        *,
        watch: str | Iterable[str] = "default",
        concurrency: int = 1,
        grace: float = 30.0,
        max_releases: int = 5,
        backoff: int = 1,
        backoff_cap: int = 3600,
        touch_after: float = 0.5,
        reconnect_delay: float = 1.0,
        encoding: str | None = "utf-8",
        connect_timeout: float | None = faults.DEFAULT_CONNECT_TIMEOUT,
        io_timeout: float | None = faults.DEFAULT_IO_TIMEOUT,
        keepalive: float | None = faults.DEFAULT_KEEPALIVE,
    ) -> None:
        self.settings, self._client_options = policy.prepared(
            handler,
            watch=watch,
            concurrency=concurrency,
            grace=grace,
            max_releases=max_releases,
            backoff=backoff,
            backoff_cap=backoff_cap,
            touch_after=touch_after,
            reconnect_delay=reconnect_delay,
            encoding=encoding,
            connect_timeout=connect_timeout,
            io_timeout=io_timeout,
            keepalive=keepalive,
        )
        self.address = address
        self.handler: Callable[[Job[TBody]], object] = handler
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stop = threading.Event()  # stop() asked; ends every wait between attempts
        self._stopping = False  # the slots stop (guarded by the lock)
        self._slots = [_Slot() for _ in range(self.settings.concurrency)]
        self._touching: dict[_Slot, _Touch] = {}
        self._keeper_wakes = math.inf
        self._fatal: BaseException | None = None
        self._started = False
        self._signal_seen = False

    # -- control ---------------------------------------------------------------------

    def stop(self) -> None:
        """Ask :meth:`run` to stop; returns at once. Safe from any thread."""
        self._stop.set()

    def _signalled(self) -> None:
        # A signal handler runs in the main thread between two bytecodes,
        # maybe while run() holds the stop Event's own lock: it only sets a
        # flag, which run() looks at every _SIGNAL_LOOK seconds.
        self._signal_seen = True

    def run(self) -> None:
        """Work until :meth:`stop`, SIGTERM or SIGINT (the signals are taken
        over while it runs, when it runs in the main thread), then stop as
        the class describes and return.

        Raises:
            RuntimeError: the worker ran before.
            BaseException: what a handler raised that is not an
                :class:`Exception` (``SystemExit``): its job is released and
                the worker stops.
        """
        if self._started:
            raise RuntimeError("a Worker runs once; make a new one")
        self._started = True
        restore = _take_signals(self._signalled)
        try:
            keeper = threading.Thread(
                target=self._guarded, args=(self._keep,), name="beanproto-keeper", daemon=True
            )
            keeper.start()
            for number, slot in enumerate(self._slots):
                slot.thread = threading.Thread(
                    target=self._guarded,
                    args=(self._serve, slot),
                    name=f"beanproto-slot-{number}",
                    daemon=True,
                )
                slot.thread.start()
            log.info(
                "worker started: %d slot(s) on %r, watching %s",
                len(self._slots),
                self.address,
                ", ".join(self.settings.watch),
            )
            while not self._stop.wait(_SIGNAL_LOOK):
                if self._signal_seen:
                    break
            self._shut_down(keeper)
        finally:
            restore()
        if self._fatal is not None:
            raise self._fatal

    def _shut_down(self, keeper: threading.Thread) -> None:
        with self._lock:
            self._stopping = True
            waiting = [slot.client for slot in self._slots if slot.state is _RESERVING]
            self._changed.notify_all()
        for client in waiting:
            if client is not None:
                client.close()  # its reserve() ends with ConnectionError
        deadline = time.monotonic() + self.settings.grace
        for slot in self._slots:
            assert slot.thread is not None
            # Only a slot running a handler holds a job worth waiting for; one
            # still connecting sees the stop once connected and closes.
            if slot.state is _HANDLING:
                slot.thread.join(max(0.0, deadline - time.monotonic()))
        for slot in self._slots:
            assert slot.thread is not None
            if slot.thread.is_alive() and slot.state is _HANDLING:
                self._abandon(slot)
        with self._lock:
            self._touching.clear()
            self._changed.notify_all()  # the keeper ends
        keeper.join(self.settings.grace + 1.0)
        for slot in self._slots:
            if slot.client is not None:
                slot.client.close()
        log.info("worker stopped")

    def _abandon(self, slot: _Slot) -> None:
        """The grace period is over and ``slot``'s handler still runs: release
        its job (the handler's outcome will not be applied) and close."""
        with self._lock:
            slot.abandoned = True
            job, client = slot.job, slot.client
            self._touching.pop(slot, None)
        if job is None or client is None:
            return
        try:
            client.release(job, priority=_priority(client, job))
            log.warning(
                "job %d: released, its handler still running after the grace period", job.id
            )
        except NotFoundError:
            pass  # settled meanwhile
        except _LOST as exc:
            log.warning("job %d: reservation lost while stopping (%s)", job.id, exc)
        client.close()

    def _guarded(self, fn: Callable[..., None], *args: Any) -> None:
        """Run a slot's or the keeper's loop: an unexpected exception stops
        the worker (and :meth:`run` raises it) instead of ending one thread
        in silence."""
        try:
            fn(*args)
        except BaseException as exc:
            log.critical("worker thread failed: %r; stopping", exc, exc_info=exc)
            if self._fatal is None:
                self._fatal = exc
            self.stop()

    # -- a slot ----------------------------------------------------------------------

    def _serve(self, slot: _Slot) -> None:
        while True:
            client = self._connected(slot)
            if client is None:
                return
            with self._lock:
                if self._stopping:
                    return
                slot.state = _RESERVING
            try:
                job = client.reserve()
            except DeadlineSoonError:
                # Only a connection holding a job hears this, and a slot
                # reserves with none: a server's stray warning, nothing to do.
                with self._lock:
                    slot.state = _IDLE
                continue
            except JobDecodeError as exc:
                # Reserved on this connection, but no handler can take it.
                with self._lock:
                    slot.state = _IDLE
                _bury_undecodable(client, exc)
                continue
            except BrokenJobError as exc:
                slot.broken = exc.id  # deleted once connected again
                self._lost(slot, client, f"job {exc.id} is broken ({exc})")
                continue
            except _LOST as exc:
                if self._lost(slot, client, f"reserve failed ({type(exc).__name__}: {exc})"):
                    return
                continue
            with self._lock:
                if self._stopping:
                    # stop() closes this client (it was reserving): the job
                    # goes back to the ready queue with the connection.
                    slot.state = _IDLE
                    return
                slot.state = _HANDLING
                slot.job = job
                due = time.monotonic() + self.settings.touch_after
                self._touching[slot] = _Touch(client, job, due)
                if due < self._keeper_wakes:
                    self._changed.notify_all()
            failure = self._run_handler(job)
            with self._lock:
                self._touching.pop(slot, None)
                abandoned = slot.abandoned
                slot.job = None  # (nothing for a stop to release from here on)
            if abandoned:
                return
            if failure is not None and not isinstance(failure, Exception):
                # SystemExit and the like: give the job back as it was, and stop.
                _release_as_is(client, job)
                if self._fatal is None:
                    self._fatal = failure
                self.stop()
                return
            # Still _HANDLING while settling: a stop waits for it (grace).
            if not self._settle(client, job, failure):
                client.close()
                slot.client = None
            with self._lock:
                slot.state = _IDLE

    def _run_handler(self, job: Job[Any]) -> BaseException | None:
        try:
            self.handler(job)
        except BaseException as exc:  # every outcome is settled, even SystemExit
            return exc
        return None

    def _connected(self, slot: _Slot) -> Client[Any] | None:
        """The slot's client, connecting (and retrying) when it has none;
        ``None`` once the worker stops."""
        while slot.client is None:
            if self._stop.is_set():
                return None
            try:
                client: Any
                if isinstance(self.address, SyncPool):
                    # A pool of its own per slot: the slot's connections.
                    client = self.address.replica(**self._client_options)
                else:
                    client = Client(self.address, **self._client_options)
            except _LOST as exc:
                log.warning(
                    "cannot reach %r (%s); retrying in %g s",
                    self.address,
                    exc,
                    self.settings.reconnect_delay,
                )
                self._stop.wait(self.settings.reconnect_delay)
                continue
            with self._lock:
                if self._stopping:
                    client.close()
                    return None
                slot.client = client
            if slot.broken is not None:
                _delete_broken(client, slot.broken)
                slot.broken = None
        return slot.client

    def _lost(self, slot: _Slot, client: Client[Any], why: str) -> bool:
        """Give up ``slot``'s connection; whether the worker is stopping."""
        client.close()
        with self._lock:
            slot.state = _IDLE
            slot.client = None
            stopping = self._stopping
        if not stopping:
            log.warning("connection to %r lost: %s; reconnecting", self.address, why)
        return stopping

    def _settle(self, client: Client[Any], job: Job[Any], failure: BaseException | None) -> bool:
        """Apply the handler's outcome; whether the connection is still good."""
        outcome = policy.explicit_outcome(failure)
        if outcome is None:
            log.error(
                "job %d: handler failed (%s)", job.id, type(failure).__name__, exc_info=failure
            )
        try:
            if outcome is None:
                stats = client.stats_job(job)
                outcome = policy.failure_outcome(self.settings, stats["releases"], stats["pri"])
            if isinstance(outcome, ReleaseJob):
                priority = outcome.priority
                if priority is None:
                    priority = _priority(client, job)
                client.release(job, priority=priority, delay=outcome.delay)
            elif isinstance(outcome, BuryJob):
                priority = outcome.priority
                if priority is None:
                    priority = _priority(client, job)
                client.bury(job, priority=priority)
            else:
                client.delete(job)
            log.info("job %d: %s", job.id, policy.describe(outcome))
        except NotFoundError:
            log.warning(
                "job %d: reservation lost (its TTR ran out); not done, it will be delivered again",
                job.id,
            )
        except _LOST as exc:
            log.warning(
                "job %d: reservation lost with the connection (%s); not done, it will be "
                "delivered again",
                job.id,
                exc,
            )
            return False
        return True

    # -- the keeper ------------------------------------------------------------------

    def _keep(self) -> None:
        while True:
            with self._lock:
                while True:
                    if self._stopping and not self._touching:
                        return
                    now = time.monotonic()
                    due = [t for t in self._touching.values() if t.due <= now and not t.busy]
                    for touch in due:
                        touch.busy = True
                    if due:
                        break
                    wake = min(
                        (t.due for t in self._touching.values() if not t.busy), default=math.inf
                    )
                    self._keeper_wakes = wake
                    self._changed.wait(None if wake == math.inf else wake - now)
                self._keeper_wakes = -math.inf  # busy: a new job need not wake it
            for touch in due:
                # Each touch in a thread of its own: a connection that stalls
                # must not hold back the other jobs' touches. (Only handlers
                # running past touch_after have touches at all.)
                threading.Thread(target=self._touch, args=(touch,), daemon=True).start()

    def _touch(self, touch: _Touch) -> None:
        try:
            self._touch_once(touch)
        finally:
            with self._lock:
                touch.busy = False
                self._changed.notify_all()

    def _touch_once(self, touch: _Touch) -> None:
        job = touch.job
        try:
            if touch.ttr is None:
                stats = touch.client.stats_job(job)
                touch.ttr = float(stats["ttr"])
                touch.due = time.monotonic() + policy.touch_delay(stats["time-left"], touch.ttr)
                log.debug("job %d: %d s left of %d", job.id, stats["time-left"], stats["ttr"])
            else:
                touch.client.touch(job)
                touch.due = time.monotonic() + policy.touch_delay(touch.ttr, touch.ttr)
                log.debug("job %d: touched", job.id)
        except NotFoundError:
            touch.due = math.inf  # settled meanwhile, or its reservation is gone
        except _LOST as exc:
            touch.due = math.inf
            log.warning("job %d: cannot touch (%s)", job.id, exc)


def _priority(client: Client[Any], job: Job[Any] | int) -> int:
    """The job's own priority (to keep it when releasing or burying)."""
    try:
        return int(client.stats_job(job)["pri"])
    except NotFoundError:
        return policy.FALLBACK_PRIORITY


def _release_as_is(client: Client[Any], job: Job[Any]) -> None:
    """Give ``job`` back at once, with its own priority (the worker stops)."""
    try:
        client.release(job, priority=_priority(client, job))
        log.error("job %d: released, the worker stops", job.id)
    except NotFoundError:
        pass
    except _LOST as exc:
        log.warning("job %d: reservation lost while stopping (%s)", job.id, exc)


def _bury_undecodable(client: Client[Any], exc: JobDecodeError) -> None:
    """Bury a job whose body does not decode: no handler can take it."""
    try:
        client.bury(exc.id, priority=_priority(client, exc.id))
        log.error("job %d: body does not decode (%s); buried", exc.id, exc.reason)
    except NotFoundError:
        pass
    except _LOST as err:
        log.warning("job %d: reservation lost (%s)", exc.id, err)


def _delete_broken(client: Client[Any], job_id: int) -> None:
    try:
        client.delete(job_id)
        log.error("job %d: broken on the server (its body lost in a crash); deleted", job_id)
    except NotFoundError:
        pass  # still reserved by the closed connection: it comes back
    except _LOST:
        pass


def _take_signals(stop: Callable[[], None]) -> Callable[[], None]:
    """Make SIGTERM and SIGINT call ``stop`` while the worker runs (only in
    the main thread, where signal handlers live); return the undo."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {}
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous[signum] = signal.signal(signum, lambda *_: stop())

    def restore() -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    return restore
