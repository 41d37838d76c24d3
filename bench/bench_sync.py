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
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import greenstalk
from _common import (
    Result,
    Sample,
    build_parser,
    check_args,
    cpu_lines,
    finish,
    result_json,
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

    def close(self) -> None:
        self.helper.close()

    def _tube(self, impl: str, workload: str) -> str:
        self._tubes += 1
        return f"bench.{impl}.{workload}.{self._tubes}"

    def measure(self, impl: str, workload: str, n: int) -> Sample:
        """One timed run of ``n`` operations on a fresh tube."""
        tube = self._tube(impl, workload)
        session = open_session(impl, self.address, tube, big=workload == "big")
        try:
            session.check(workload)
            session.run(workload, warmup_count(workload, n, self.warmup_ops))
            gc.collect()
            cpu0 = time.process_time()
            t0 = time.perf_counter()
            session.run(workload, n)
            wall = time.perf_counter() - t0
            cpu = time.process_time() - cpu0
        finally:
            session.close()
            self.helper.drain(tube)
        return Sample(ops_per_s=n / wall, cpu_us_per_op=cpu / n * 1e6)

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


def source_state() -> str:
    """The commit measured, and whether ``src/`` had uncommitted changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git)"
    return f"{head} + uncommitted changes in src/" if dirty else head


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
        os.sched_setaffinity(0, {cpus[0]})
        os.sched_setaffinity(server_pid, {cpus[1]})
        return f"client on CPU {cpus[0]}, beanstalkd on CPU {cpus[1]}"
    os.sched_setaffinity(0, {cpus[0]})
    os.sched_setaffinity(server_pid, {cpus[0]})
    return f"client and beanstalkd both on CPU {cpus[0]}"


# -- main ----------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = build_parser(
        "Benchmark beanproto_sync against greenstalk and a raw socket loop.",
        "instead of benchmarking, cProfile beanproto_sync on WORKLOAD (repeatable)",
        WORKLOADS,
    )
    return check_args(parser, argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    base = QUICK_N if args.quick else DEFAULT_N
    ns = {w: max(1, round(base[w] * args.n)) for w in WORKLOADS}
    rounds = args.rounds if args.rounds is not None else (1 if args.quick else 5)
    warmup_ops = 10 if args.quick else 200

    def progress(message: str) -> None:
        print(f"  ... {message}", file=sys.stderr, flush=True)

    started = time.perf_counter()
    source = source_state()
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    with running_beanstalkd(max_job_size=MAX_JOB_SIZE) as server:
        placement = pin(args.pin, server.pid)
        bench = Bench(server, ns, warmup_ops)
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
    finish(
        report(results, args.stat, rounds),
        leftover,
        started,
        args,
        {
            "rounds": rounds,
            "ops_per_measurement": ns,
            "max_job_size": MAX_JOB_SIZE,
            "beanproto_source": source,
            "placement": placement,
        },
        lambda config: to_json(results, args.stat, config),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
