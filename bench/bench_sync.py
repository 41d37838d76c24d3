"""Benchmark the blocking client against greenstalk 2.1.1 and a raw socket loop.

Usage::

    .venv/bin/python bench/bench_sync.py            # full run (about a minute)
    .venv/bin/python bench/bench_sync.py --quick    # smoke test, a few seconds
    .venv/bin/python bench/bench_sync.py --rounds 7 --n 2 --json results.json
    .venv/bin/python bench/bench_sync.py --profile put --profile cycle

A private beanstalkd is started for the run and stopped afterwards. Three
implementations are measured on four workloads:

``beanproto``   ``beanproto_sync.Client``
``greenstalk``  ``greenstalk.Client`` (2.1.1)
``raw``         no library: ``sendall`` and ``recv_into`` a preallocated
                buffer, reading exactly the reply. The ceiling for a blocking
                Python client. Its ``stats`` reads the whole ``OK`` body but
                does not parse the YAML.

Every measurement gets a fresh tube, which is drained afterwards (untimed).
Implementations are interleaved within each round (in a rotating order) and
the rounds repeated, so machine noise hits all of them alike; the table shows
the median (or best) ops/s over the rounds. This is a report, not a test: the
exit status is 0 whether or not the targets are met.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import importlib.metadata
import io
import os
import platform
import pstats
import re
import resource
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _batch as batch
import greenstalk
from _common import (
    Result,
    Sample,
    build_parser,
    check_args,
    cpu_lines,
    finish,
    result_json,
    source_state,
    spread_lines,
    warmup_count,
)
from _common import run_rounds as run_interleaved
from tools.beanstalkd import Server, running_beanstalkd

import beanproto_sync

Address = tuple[str, int]

#: The server's ``-z``: room for the 1 MiB body and then some.
MAX_JOB_SIZE = 2 * 1024 * 1024

SMALL_SIZE = 100
BIG_SIZE = 1024 * 1024
SMALL_TEXT = ("beanproto-" * (SMALL_SIZE // 10 + 1))[:SMALL_SIZE]
SMALL_BYTES = SMALL_TEXT.encode("ascii")
BIG_BYTES = bytes(range(256)) * (BIG_SIZE // 256)

PRIORITY = 2**16
DELAY = 0
TTR = 60

IMPLEMENTATIONS = ("beanproto", "greenstalk", "raw")
WORKLOADS = ("put", "cycle", "stats", "big")

LABELS = {
    "put": f"put ({SMALL_SIZE} B)",
    "cycle": f"put+reserve+delete ({SMALL_SIZE} B)",
    "stats": "stats()",
    "big": "1 MiB put+reserve+delete",
}

#: Operations per measurement at ``--n 1``. One operation is one ``put``, one
#: ``put``+``reserve``+``delete`` cycle, or one ``stats`` call.
DEFAULT_N = {"put": 20000, "cycle": 8000, "stats": 10000, "big": 300}
QUICK_N = {"put": 300, "cycle": 150, "stats": 150, "big": 6}

#: beanproto / greenstalk ops/s that each workload should reach.
TARGETS = {"put": 1.0, "cycle": 1.0, "stats": 1.25, "big": 2.0}


# -- the raw ceiling ------------------------------------------------------------


class RawError(Exception):
    """The server answered something the raw loop did not expect."""


class RawClient:
    """The least a blocking client can do: format, send, read exactly the reply.

    Replies are received into one preallocated buffer; a reply is complete
    when its line (and, for bodies, the announced bytes and CRLF) are in.
    Nothing is pipelined, so nothing follows a reply in the buffer.
    """

    __slots__ = ("_buf", "_recv_into", "_sendall", "_sock", "_view")

    def __init__(self, address: Address, tube: str) -> None:
        sock = socket.create_connection(address)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        self._buf = bytearray(MAX_JOB_SIZE + 4096)
        self._view = memoryview(self._buf)
        self._recv_into = sock.recv_into
        self._sendall = sock.sendall
        name = tube.encode("ascii")
        sock.sendall(b"use %b\r\nwatch %b\r\nignore default\r\n" % (name, name))
        n = 0
        while self._buf.count(b"\r\n", 0, n) < 3:
            n += self._recv(n)
        if bytes(self._buf[:n]) != b"USING %b\r\nWATCHING 2\r\nWATCHING 1\r\n" % name:
            raise RawError(f"setup failed: {bytes(self._buf[:n])!r}")

    def close(self) -> None:
        self._view.release()
        self._sock.close()

    def _recv(self, n: int) -> int:
        k = self._recv_into(self._view[n:])
        if not k:
            raise ConnectionError("beanstalkd closed the connection")
        return k

    def _line(self) -> int:
        """Receive a reply that is one line; return its length (CRLF included)."""
        n = self._recv_into(self._view)
        while not self._buf.endswith(b"\r\n", 0, n):
            if not n:
                raise ConnectionError("beanstalkd closed the connection")
            n += self._recv(n)
        return n

    def _with_body(self, status: bytes) -> tuple[int, int]:
        """Receive ``<status> ... <bytes>\\r\\n<body>\\r\\n``; return
        ``(start of body, its size)``."""
        buf = self._buf
        n = self._recv_into(self._view)
        end = buf.find(b"\r\n", 0, n)
        while end < 0:
            if not n:
                raise ConnectionError("beanstalkd closed the connection")
            n += self._recv(n)
            end = buf.find(b"\r\n", 0, n)
        if not buf.startswith(status):
            raise RawError(f"expected {status!r}, got {bytes(buf[:end])!r}")
        size = int(buf[buf.rfind(b" ", 0, end) + 1 : end])
        total = end + 4 + size
        if total > len(buf):
            raise RawError(f"a {size}-byte body does not fit the buffer")
        while n < total:
            n += self._recv(n)
        return end + 2, size

    def put(self, body: bytes) -> int:
        self._sendall(b"put %d %d %d %d\r\n%b\r\n" % (PRIORITY, DELAY, TTR, len(body), body))
        n = self._line()
        buf = self._buf
        if not buf.startswith(b"INSERTED "):
            raise RawError(f"put: {bytes(buf[:n])!r}")
        return int(buf[9 : n - 2])

    def put_big(self, body: bytes) -> int:
        """``put`` written with one vectored write, without joining the body."""
        parts: list[bytes | memoryview] = [
            b"put %d %d %d %d\r\n" % (PRIORITY, DELAY, TTR, len(body)),
            body,
            b"\r\n",
        ]
        total = len(parts[0]) + len(body) + 2
        sent = self._sock.sendmsg(parts)
        if sent < total:  # a short write: finish the rest the simple way
            self._sendall(memoryview(b"".join(parts))[sent:])
        n = self._line()
        buf = self._buf
        if not buf.startswith(b"INSERTED "):
            raise RawError(f"put: {bytes(buf[:n])!r}")
        return int(buf[9 : n - 2])

    def reserve(self) -> tuple[int, bytes]:
        self._sendall(b"reserve\r\n")
        start, size = self._with_body(b"RESERVED ")
        buf = self._buf
        job_id = int(buf[9 : buf.find(b" ", 9, start)])
        return job_id, self._view[start : start + size].tobytes()

    def delete(self, job_id: int) -> None:
        self._sendall(b"delete %d\r\n" % job_id)
        n = self._line()
        if n != 9 or not self._buf.startswith(b"DELETED\r\n"):
            raise RawError(f"delete: {bytes(self._buf[:n])!r}")

    def stats(self) -> bytes:
        """The ``stats`` YAML document, unparsed."""
        self._sendall(b"stats\r\n")
        start, size = self._with_body(b"OK ")
        return self._view[start : start + size].tobytes()


# -- sessions: one connection on one tube, able to run each workload ---------------


class Session(Protocol):
    def run(self, workload: str, n: int) -> None: ...

    def check(self, workload: str) -> None: ...

    def close(self) -> None: ...


class ClientSession:
    """``beanproto_sync.Client`` or ``greenstalk.Client``: the same API, so
    the same loops."""

    def __init__(self, client: Any, big: bool) -> None:
        self.client = client
        self.body: Any = BIG_BYTES if big else SMALL_TEXT

    def run(self, workload: str, n: int) -> None:
        client = self.client
        put, reserve, delete, body = client.put, client.reserve, client.delete, self.body
        if workload == "put":
            for _ in range(n):
                put(body)
        elif workload in ("cycle", "big"):
            for _ in range(n):
                put(body)
                delete(reserve())
        elif workload == "stats":
            stats = client.stats
            for _ in range(n):
                stats()
        else:
            raise ValueError(workload)

    def check(self, workload: str) -> None:
        """One operation, with its result checked (untimed)."""
        client = self.client
        if workload == "stats":
            if client.stats()["current-connections"] < 1:
                raise AssertionError("stats() looks wrong")
            return
        job_id = client.put(self.body)
        job = client.reserve()
        if job.id != job_id or job.body != self.body:
            raise AssertionError(f"reserved {job!r}, expected job {job_id}")
        client.delete(job)

    def close(self) -> None:
        self.client.close()


class RawSession:
    def __init__(self, client: RawClient, big: bool) -> None:
        self.client = client
        self.body = BIG_BYTES if big else SMALL_BYTES

    def run(self, workload: str, n: int) -> None:
        client, body = self.client, self.body
        reserve, delete = client.reserve, client.delete
        if workload == "put":
            put = client.put
            for _ in range(n):
                put(body)
        elif workload == "cycle":
            put = client.put
            for _ in range(n):
                put(body)
                delete(reserve()[0])
        elif workload == "big":
            put = client.put_big
            for _ in range(n):
                put(body)
                delete(reserve()[0])
        elif workload == "stats":
            stats = client.stats
            for _ in range(n):
                stats()
        else:
            raise ValueError(workload)

    def check(self, workload: str) -> None:
        client = self.client
        if workload == "stats":
            if b"\ncurrent-connections: " not in client.stats():
                raise AssertionError("stats looks wrong")
            return
        put = client.put_big if workload == "big" else client.put
        job_id = put(self.body)
        got_id, got_body = client.reserve()
        if got_id != job_id or got_body != self.body:
            raise AssertionError(f"reserved job {got_id}, expected job {job_id}")
        client.delete(got_id)

    def close(self) -> None:
        self.client.close()


def open_session(impl: str, address: Address, tube: str, big: bool) -> Session:
    if impl == "beanproto":
        if big:
            return ClientSession(beanproto_sync.Client(address, None, use=tube, watch=tube), big)
        return ClientSession(beanproto_sync.Client(address, use=tube, watch=tube), big)
    if impl == "greenstalk":
        encoding = None if big else "utf-8"
        return ClientSession(greenstalk.Client(address, encoding, use=tube, watch=tube), big)
    if impl == "raw":
        return RawSession(RawClient(address, tube), big)
    raise ValueError(impl)


# -- batches: put_many and pipeline() (--pipeline) ----------------------------------

#: ``bp_batch`` is beanproto_sync with ``put_many`` and ``pipeline()``; the
#: others make the same calls one at a time.
BATCH_IMPLEMENTATIONS = ("bp_batch", "beanproto", "greenstalk")
BATCH_RATIOS = batch.batch_ratios([("bp_batch", "beanproto")], "greenstalk", batch.PUT_MANY_TARGET)


def has_batch_api(client_class: type) -> bool:
    """Whether the batch API (being written) is there yet."""
    return hasattr(client_class, "put_many") and hasattr(client_class, "pipeline")


class BatchSession:
    """beanproto_sync or greenstalk on the batch workloads: ``run(workload, n)``
    does ``n`` batches, with the batch API when ``batched``."""

    def __init__(self, client: Any, batched: bool, tube: str, workload: str) -> None:
        self.client = client
        self.batched = batched
        self.tube = tube
        self.bodies = [SMALL_TEXT] * batch.PUT_BATCH
        self.positions = batch.put_positions()
        #: The jobs the last mixed batch put: the next one deletes them.
        self.previous: list[int] = []
        if workload == "commands":
            self.previous = [client.put(SMALL_TEXT) for _ in range(batch.PAIRS)]
        self.last: list[Any] = []

    def run(self, workload: str, n: int) -> None:
        client = self.client
        if workload == "puts":
            if self.batched:
                put_many, bodies = client.put_many, self.bodies
                for _ in range(n):
                    put_many(bodies)
            else:
                put, body = client.put, SMALL_TEXT
                for _ in range(n * batch.PUT_BATCH):
                    put(body)
        elif workload == "commands":
            mixed = self._pipelined if self.batched else self._one_by_one
            for _ in range(n):
                self.previous = mixed(self.previous)
        else:
            raise ValueError(workload)

    def _pipelined(self, previous: list[int]) -> list[int]:
        tube, body, every = self.tube, SMALL_TEXT, batch.STATS_EVERY
        with self.client.pipeline() as pipe:
            put, delete, stats_tube = pipe.put, pipe.delete, pipe.stats_tube
            for pair, job_id in enumerate(previous):
                put(body)
                delete(job_id)
                if pair % every == every - 1:
                    stats_tube(tube)
            results = self.last = pipe.execute()
        return [results[i] for i in self.positions]

    def _one_by_one(self, previous: list[int]) -> list[int]:
        client = self.client
        put, delete, stats_tube = client.put, client.delete, client.stats_tube
        tube, body, every = self.tube, SMALL_TEXT, batch.STATS_EVERY
        ids = []
        for pair, job_id in enumerate(previous):
            ids.append(put(body))
            delete(job_id)
            if pair % every == every - 1:
                stats_tube(tube)
        return ids

    def check(self, workload: str) -> None:
        """The batch API's results checked on one batch; one plain put (untimed)."""
        if not self.batched:
            if not isinstance(self.client.put(SMALL_TEXT), int):
                raise AssertionError("put did not return a job id")
        elif workload == "puts":
            ids = self.client.put_many(self.bodies)
            if len(ids) != batch.PUT_BATCH or not all(isinstance(i, int) for i in ids):
                raise AssertionError(f"put_many returned {ids[:3]!r}...")
        else:
            self.run(workload, 1)
            if len(self.previous) != batch.PAIRS or len(set(self.previous)) != batch.PAIRS:
                raise AssertionError("a pipeline did not return one new job per pair")
            if self.last[2 * batch.STATS_EVERY]["name"] != self.tube:
                raise AssertionError(f"stats_tube in a pipeline: {self.last[100]!r}")

    def close(self) -> None:
        self.client.close()


# -- the server side: draining tubes, reading stats (never timed) --------------------


class Helper:
    """A plain blocking connection for housekeeping, pipelined for speed."""

    _BATCH = 512

    def __init__(self, address: Address) -> None:
        self.sock = socket.create_connection(address)
        self.reader = self.sock.makefile("rb")

    def close(self) -> None:
        self.reader.close()
        self.sock.close()

    def _line(self) -> bytes:
        line = self.reader.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionError("beanstalkd closed the connection")
        return line

    def stats(self) -> dict[str, str]:
        self.sock.sendall(b"stats\r\n")
        status, size = self._line().split()
        if status != b"OK":
            raise RawError(f"stats: {status!r}")
        text = self.reader.read(int(size) + 2).decode()
        return dict(re.findall(r"^([\w-]+): \"?([^\"\n]*)\"?$", text, re.MULTILINE))

    def drain(self, tube: str) -> int:
        """Delete every ready job in ``tube``; return how many there were."""
        name = tube.encode("ascii")
        self.sock.sendall(b"watch %b\r\nignore default\r\n" % name)
        self._line()
        self._line()
        deleted = 0
        while True:
            self.sock.sendall(b"reserve-with-timeout 0\r\n" * self._BATCH)
            ids = []
            for _ in range(self._BATCH):
                line = self._line()
                if line.startswith(b"RESERVED "):
                    _, job_id, size = line.split()
                    self.reader.read(int(size) + 2)
                    ids.append(int(job_id))
                elif line != b"TIMED_OUT\r\n":
                    raise RawError(f"drain: {line!r}")
            if ids:
                self.sock.sendall(b"".join(b"delete %d\r\n" % i for i in ids))
                for _ in ids:
                    if self._line() != b"DELETED\r\n":
                        raise RawError("drain: delete failed")
                deleted += len(ids)
            if len(ids) < self._BATCH:
                break
        self.sock.sendall(b"watch default\r\nignore %b\r\n" % name)
        self._line()
        self._line()
        return deleted


# -- measuring ---------------------------------------------------------------------


class Bench:
    def __init__(self, server: Server, ns: dict[str, int], warmup_ops: int) -> None:
        self.address = server.address
        self.ns = ns
        self.warmup_ops = warmup_ops
        self.helper = Helper(self.address)
        self._tubes = 0
        #: Untimed batches before a measurement of batches (0 in smoke runs).
        self.warmup_batches = 1

    def close(self) -> None:
        self.helper.close()

    def _tube(self, impl: str, workload: str) -> str:
        self._tubes += 1
        return f"bench.{impl}.{workload}.{self._tubes}"

    def _open(self, impl: str, tube: str, workload: str) -> Session:
        if workload in batch.WORKLOADS:
            client: Any
            if impl == "greenstalk":
                client = greenstalk.Client(self.address, use=tube, watch=tube)
            else:
                client = beanproto_sync.Client(self.address, use=tube, watch=tube)
            return BatchSession(client, impl == "bp_batch", tube, workload)
        return open_session(impl, self.address, tube, big=workload == "big")

    def measure(self, impl: str, workload: str, n: int) -> Sample:
        """One timed run of ``n`` operations (or batches) on a fresh tube."""
        tube = self._tube(impl, workload)
        session = self._open(impl, tube, workload)
        if workload in batch.WORKLOADS:
            warmup, ops = self.warmup_batches, n * batch.OPS[workload]
        else:
            warmup, ops = warmup_count(workload, n, self.warmup_ops), n
        try:
            session.check(workload)
            session.run(workload, warmup)
            gc.collect()
            faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            cpu0 = time.process_time()
            t0 = time.perf_counter()
            session.run(workload, n)
            wall = time.perf_counter() - t0
            cpu = time.process_time() - cpu0
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults0
        finally:
            session.close()
            self.helper.drain(tube)
        return Sample(
            ops_per_s=ops / wall, cpu_us_per_op=cpu / ops * 1e6, faults_per_op=faults / ops
        )

    def batch_api_problem(self) -> str | None:
        """Why beanproto_sync cannot run the batch workloads (yet), or ``None``:
        the batch API is being written, so it is tried once first."""
        if not has_batch_api(beanproto_sync.Client):
            return "beanproto_sync.Client has no put_many / pipeline yet"
        tube = self._tube("bp_batch", "probe")
        try:
            with beanproto_sync.Client(self.address, use=tube, watch=tube) as client:
                client.put_many([SMALL_TEXT])
                with client.pipeline() as pipe:
                    pipe.put(SMALL_TEXT)
                    pipe.execute()
        except NotImplementedError:
            return "beanproto_sync: put_many / pipeline raise NotImplementedError"
        finally:
            self.helper.drain(tube)
        return None

    def profile(self, workload: str, n: int, top: int) -> str:
        tube = self._tube("beanproto", workload)
        session = open_session("beanproto", self.address, tube, big=workload == "big")
        profiler = cProfile.Profile()
        try:
            session.check(workload)
            session.run(workload, self.warmup_ops)
            profiler.enable()
            session.run(workload, n)
            profiler.disable()
        finally:
            session.close()
            self.helper.drain(tube)
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("tottime").print_stats(top)
        return out.getvalue()


def run_rounds(
    bench: Bench, rounds: int, progress: Callable[[str], None]
) -> dict[str, dict[str, Result]]:
    return run_interleaved(bench.measure, bench.ns, WORKLOADS, IMPLEMENTATIONS, rounds, progress)


# -- reporting ---------------------------------------------------------------------


@dataclass
class Ratios:
    bp_gs: float
    bp_raw: float
    gs_raw: float


def ratios(by_impl: dict[str, Result], stat: str) -> Ratios:
    bp, gs, raw = (by_impl[i].ops(stat) for i in IMPLEMENTATIONS)
    return Ratios(bp_gs=bp / gs, bp_raw=bp / raw, gs_raw=gs / raw)


def report(results: dict[str, dict[str, Result]], stat: str, rounds: int) -> Iterator[str]:
    width = max(len(label) for label in LABELS.values())
    yield f"ops/s, {stat} of {rounds} round(s) (higher is better)"
    yield (
        f"{'workload':<{width}}  {'beanproto':>10} {'greenstalk':>10} {'raw':>10}"
        f"  {'bp/gs':>6} {'bp/raw':>6} {'gs/raw':>6}  {'target':>7}  result"
    )
    for workload in WORKLOADS:
        by_impl = results[workload]
        q = ratios(by_impl, stat)
        target = TARGETS[workload]
        verdict = "PASS" if q.bp_gs >= target else "MISS"
        ops = " ".join(f"{by_impl[i].ops(stat):>10,.0f}" for i in IMPLEMENTATIONS)
        yield (
            f"{LABELS[workload]:<{width}}  {ops}"
            f"  {q.bp_gs:>6.2f} {q.bp_raw:>6.2f} {q.gs_raw:>6.2f}"
            f"  {'>=' + format(target, '.2f'):>7}  {verdict}"
        )
    yield ""
    yield from cpu_lines(results, LABELS, IMPLEMENTATIONS, stat, width)
    yield ""
    yield from spread_lines(results, LABELS, IMPLEMENTATIONS, width)


def to_json(
    results: dict[str, dict[str, Result]], stat: str, config: dict[str, object]
) -> dict[str, object]:
    out: dict[str, object] = {"config": config, "workloads": {}}
    workloads: dict[str, object] = {}
    for workload in WORKLOADS:
        by_impl = results[workload]
        q = ratios(by_impl, stat)
        workloads[workload] = {
            "label": LABELS[workload],
            "implementations": {impl: result_json(by_impl[impl]) for impl in IMPLEMENTATIONS},
            "ratios": {
                "beanproto/greenstalk": q.bp_gs,
                "beanproto/raw": q.bp_raw,
                "greenstalk/raw": q.gs_raw,
            },
            "target_beanproto/greenstalk": TARGETS[workload],
            "pass": q.bp_gs >= TARGETS[workload],
        }
    out["workloads"] = workloads
    return out


# -- CPU placement -----------------------------------------------------------------


def pin(mode: str, server_pid: int) -> str:
    """Place this process and the server on CPUs; return a description.

    ``same`` puts both on one CPU: every round trip is then a plain context
    switch, so the numbers measure CPU work (client, kernel, server) and barely
    vary between runs. With ``split`` or ``none`` each round trip also pays a
    cross-CPU wake-up, which on virtual machines is slow and erratic and
    hides the differences between clients.
    """
    if mode == "none":
        return "not pinned"
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned (no sched_setaffinity here)"
    cpus = sorted(os.sched_getaffinity(0))
    if mode == "split" and len(cpus) >= 2:
        os.sched_setaffinity(server_pid, {cpus[0]})
        os.sched_setaffinity(0, {cpus[1]})
        return f"beanstalkd on CPU {cpus[0]}, client on CPU {cpus[1]}"
    os.sched_setaffinity(0, {cpus[0]})
    os.sched_setaffinity(server_pid, {cpus[0]})
    return f"client and beanstalkd both on CPU {cpus[0]}"


# -- the scenarios: --pipeline and --large ------------------------------------------


def progress(message: str) -> None:
    print(f"  ... {message}", file=sys.stderr, flush=True)


def run_pipeline(
    bench: Bench,
    server_pid: int,
    ns: dict[str, int],
    rounds: int,
    stat: str,
    affinity: set[int] | None,
    quick: bool,
) -> tuple[list[str], dict[str, object]]:
    """The batch workloads on one core, then on split cores; the report and its JSON."""
    measured = list(BATCH_IMPLEMENTATIONS)
    lines = batch.header(ns, "bp_batch = beanproto_sync with", "beanproto, greenstalk")
    problem = bench.batch_api_problem()
    if problem is not None:
        measured.remove("bp_batch")
        lines.append(f"bp_batch: n/a ({problem})")
    more, out = batch.run_placements(
        bench.measure,
        ns,
        BATCH_IMPLEMENTATIONS,
        measured,
        BATCH_RATIOS,
        rounds,
        stat,
        pin,
        server_pid,
        affinity,
        progress,
        quick,
    )
    return lines + more, {"batch_api": "bp_batch" in measured, **out}


#: The most beanproto's CPU per 1 MiB job may be, as a multiple of the raw loop's.
LARGE_CPU_TARGET = 1.25
#: Pages of a 1 MiB body: what mapping a fresh buffer for each one costs in faults.
BODY_PAGES = BIG_SIZE // resource.getpagesize()


def run_large(
    bench: Bench, n: int, rounds: int, placement: str
) -> tuple[list[str], dict[str, object]]:
    """1 MiB put + reserve + delete: client CPU and page faults per job."""
    progress("--large")
    results = run_interleaved(bench.measure, {"big": n}, ["big"], IMPLEMENTATIONS, rounds, progress)
    by_impl = results["big"]
    raw_cpu = by_impl["raw"].cpu("best")
    lines = [
        f"== --large: {LABELS['big']}, bytes bodies (encoding=None), {n} jobs per measurement, "
        f"{rounds} round(s) interleaved; {placement} ==",
        f"{'':12} {'CPU us/job (min)':>17} {'/ raw':>7} {'faults/job (median)':>20} "
        f"{'jobs/s (median)':>16}",
    ]
    for impl in IMPLEMENTATIONS:
        result = by_impl[impl]
        lines.append(
            f"{impl:12} {result.cpu('best'):>17.1f} {result.cpu('best') / raw_cpu:>6.2f}x "
            f"{result.faults('median'):>20.1f} {result.ops('median'):>16,.0f}"
        )
    ratio = by_impl["beanproto"].cpu("best") / raw_cpu
    verdict = "met" if ratio <= LARGE_CPU_TARGET else "missed"
    faults = by_impl["beanproto"].faults("median")
    storm = "a page-fault storm" if faults >= BODY_PAGES / 4 else "no page-fault storm"
    lines += [
        f"target: beanproto CPU per job <= {LARGE_CPU_TARGET:.2f}x raw: {ratio:.2f}x, {verdict}",
        f"page faults: beanproto {faults:.1f} per job, {storm} (a 1 MiB buffer mapped afresh "
        f"per body costs {BODY_PAGES}; counted from a quarter of that)",
    ]
    out = {
        "placement": placement,
        "jobs_per_measurement": n,
        "implementations": {impl: result_json(by_impl[impl]) for impl in IMPLEMENTATIONS},
        "cpu_ratio_to_raw": ratio,
        "cpu_target_at_most": LARGE_CPU_TARGET,
        "met": ratio <= LARGE_CPU_TARGET,
        "faults_per_job": faults,
    }
    return lines, out


# -- main ----------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = build_parser(
        "Benchmark beanproto_sync against greenstalk and a raw socket loop.",
        "instead of benchmarking, cProfile beanproto_sync on WORKLOAD (repeatable)",
        WORKLOADS,
    )
    parser.add_argument(
        "--pipeline",
        action="store_true",
        help="instead of the workloads: put_many and pipeline() against the same calls one "
        "by one, on one core and on split cores (--pin is not used)",
    )
    parser.add_argument(
        "--large",
        action="store_true",
        help="instead of the workloads: client CPU and page faults per 1 MiB job",
    )
    return check_args(parser, argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    base = QUICK_N if args.quick else DEFAULT_N
    ns = {w: max(1, round(base[w] * args.n)) for w in WORKLOADS}
    batches = batch.QUICK_BATCHES if args.quick else batch.DEFAULT_BATCHES
    batch_ns = {w: max(1, round(batches[w] * args.n)) for w in batch.WORKLOADS}
    rounds = args.rounds if args.rounds is not None else (1 if args.quick else 5)
    warmup_ops = 10 if args.quick else 200
    scenario = args.pipeline or args.large

    started = time.perf_counter()
    source = source_state()
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    with running_beanstalkd(max_job_size=MAX_JOB_SIZE) as server:
        placement = pin(args.pin, server.pid)
        bench = Bench(server, ns, warmup_ops)
        bench.warmup_batches = 0 if args.quick else 1
        try:
            version = bench.helper.stats().get("version", "?")
            print(
                f"beanstalkd {version} (pid {server.pid}) on {server.host}:{server.port}, "
                f"-z {MAX_JOB_SIZE}; Python {platform.python_version()}; "
                f"greenstalk {importlib.metadata.version('greenstalk')}; {placement}"
            )
            print(f"beanproto source: {source}")
            if args.profile:
                for workload in args.profile:
                    print(
                        f"\n== cProfile: beanproto_sync, {LABELS[workload]}, {ns[workload]} ops =="
                    )
                    print(bench.profile(workload, ns[workload], args.top))
                return 0
            if scenario:
                lines: list[str] = []
                extra: dict[str, object] = {}
                if args.large:
                    large_lines, extra["large"] = run_large(bench, ns["big"], rounds, placement)
                    lines += ["", *large_lines]
                if args.pipeline:
                    pipeline_lines, extra["pipeline"] = run_pipeline(
                        bench, server.pid, batch_ns, rounds, args.stat, affinity, args.quick
                    )
                    lines += ["", *pipeline_lines]
                leftover = bench.helper.stats()
            else:
                print(
                    "ops per measurement: "
                    + ", ".join(f"{w}={ns[w]}" for w in WORKLOADS)
                    + f"; {rounds} round(s) after a warm-up round; order rotates each round"
                )
                print(
                    "raw = plain socket, no library: sendall + recv_into a preallocated "
                    "buffer; its stats() reads the OK body but does not parse the YAML."
                )
                print(
                    f"clients use encoding='utf-8' and a {SMALL_SIZE}-char str body for "
                    "small jobs, encoding=None for 1 MiB bodies.\n"
                )
                results = run_rounds(bench, rounds, progress)
                leftover = bench.helper.stats()
        finally:
            bench.close()
            if affinity is not None:
                os.sched_setaffinity(0, affinity)
    config: dict[str, object] = {
        "rounds": rounds,
        "ops_per_measurement": {**ns, **batch_ns} if scenario else ns,
        "max_job_size": MAX_JOB_SIZE,
        "beanproto_source": source,
        "placement": placement,
    }
    if scenario:
        finish(lines, leftover, started, args, config, lambda config: {"config": config, **extra})
    else:
        finish(
            report(results, args.stat, rounds),
            leftover,
            started,
            args,
            config,
            lambda config: to_json(results, args.stat, config),
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
