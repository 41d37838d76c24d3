"""Benchmark the trio, asyncio and anyio clients against aiostalk and raw event-loop code.

Usage::

    .venv/bin/python bench/bench_async.py                # full run
    .venv/bin/python bench/bench_async.py --quick        # smoke test, a few seconds
    .venv/bin/python bench/bench_async.py --pin split    # client and server on two CPUs
    .venv/bin/python bench/bench_async.py --profile put --profile cycle

A private beanstalkd is started for the run and stopped afterwards. Five
implementations are measured on the four workloads of ``bench_sync.py``:

``bp_trio``      ``beanproto_trio.Client``
``raw_trio``     no library: ``trio.socket`` ``send`` and ``recv_into`` a
                 preallocated buffer, reading exactly the reply. The ceiling
                 for a trio client.
``bp_asyncio``   ``beanproto_asyncio.Client``
``bp_anyio_trio``, ``bp_anyio_aio``  ``beanproto_anyio.Client`` in a trio
                 program and in an asyncio one (anyio's two backends)
``aiostalk``     ``aiostalk.Client`` (greenstalk's API on asyncio streams)
``raw_asyncio``  no library; two raw loops are measured and the faster one
                 on each workload is the ceiling: ``raw_aio_proto``, an
                 ``asyncio.BufferedProtocol`` that the event loop reads
                 straight into a preallocated buffer, and ``raw_aio_sock``,
                 ``loop.sock_sendall`` and ``loop.sock_recv_into`` on a
                 non-blocking socket. Neither wins everywhere.

The raw loops' ``stats`` read the whole ``OK`` body but do not parse the YAML.
Every measurement runs in a fresh event loop (``trio.run`` or ``asyncio.run``)
on a fresh tube, which is drained afterwards (untimed). The method, the
rounds and the output follow ``bench_sync.py``; this is a report, not a test:
the exit status is 0 whether or not the targets are met.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import functools
import gc
import importlib.metadata
import io
import os
import platform
import pstats
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _batch as batch
import aiostalk
import trio
from _common import (
    Result,
    Sample,
    build_parser,
    check_args,
    cpu_lines,
    finish,
    result_json,
    run_rounds,
    source_state,
    spread_lines,
    warmup_count,
)
from bench_sync import (
    BIG_BYTES,
    DEFAULT_N,
    DELAY,
    LABELS,
    MAX_JOB_SIZE,
    PRIORITY,
    QUICK_N,
    SMALL_BYTES,
    SMALL_SIZE,
    SMALL_TEXT,
    TTR,
    WORKLOADS,
    Address,
    Helper,
    RawError,
    pin,
)
from tools.beanstalkd import Server, running_beanstalkd

import beanproto_anyio
import beanproto_asyncio
import beanproto_trio

TRIO_IMPLEMENTATIONS = ("bp_trio", "bp_anyio_trio", "raw_trio")
#: The two raw asyncio loops; ``raw_asyncio`` is the faster of them.
RAW_ASYNCIO = ("raw_aio_proto", "raw_aio_sock")
ASYNCIO_IMPLEMENTATIONS = ("bp_asyncio", "bp_anyio_aio", "aiostalk", *RAW_ASYNCIO)
#: What is measured (``--raw-asyncio`` may leave one raw asyncio loop out).
IMPLEMENTATIONS = (*TRIO_IMPLEMENTATIONS, *ASYNCIO_IMPLEMENTATIONS)

#: The ratios reported, as (numerator, denominator).
RATIOS = (
    ("bp_trio", "raw_trio"),
    ("bp_asyncio", "raw_asyncio"),
    ("bp_asyncio", "aiostalk"),
    ("aiostalk", "raw_asyncio"),
    ("bp_anyio_trio", "raw_trio"),
    ("bp_anyio_aio", "raw_asyncio"),
    ("bp_anyio_aio", "aiostalk"),
)

#: The ops/s ratio each workload should reach, where the issue sets one. The
#: raw loops do not parse the stats YAML, so ``stats`` has no raw target.
TARGETS: dict[tuple[str, str], dict[str, float]] = {
    ("bp_trio", "raw_trio"): {"put": 0.9, "cycle": 0.9, "big": 0.9},
    ("bp_asyncio", "raw_asyncio"): {"put": 0.9, "cycle": 0.9, "big": 0.9},
    ("bp_asyncio", "aiostalk"): {"put": 1.1, "cycle": 1.1, "stats": 1.3, "big": 1.5},
}

T = TypeVar("T")

_NODELAY = (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def ratio_name(pair: tuple[str, str]) -> str:
    return f"{pair[0]}/{pair[1]}"


# -- the raw ceilings ---------------------------------------------------------------


def _setup_exchange(tube: str) -> list[tuple[bytes, bytes]]:
    """The commands that put a raw connection on ``tube``, and their replies."""
    name = tube.encode("ascii")
    return [
        (b"use %b\r\n" % name, b"USING %b\r\n" % name),
        (b"watch %b\r\n" % name, b"WATCHING 2\r\n"),
        (b"ignore default\r\n", b"WATCHING 1\r\n"),
    ]


class RawClient(Protocol):
    """What the raw sessions call: one command, its reply, nothing pipelined."""

    async def put(self, body: bytes) -> int: ...

    async def put_big(self, body: bytes) -> int: ...

    async def reserve(self) -> tuple[int, bytes]: ...

    async def delete(self, job_id: int) -> None: ...

    async def stats(self) -> bytes: ...

    def close(self) -> None: ...


class RawStream:
    """A raw loop over awaitable ``send`` and ``recv_into``: trio's sockets, or
    asyncio's ``loop.sock_*`` calls on a non-blocking socket.

    Replies are received into one preallocated buffer; a reply is complete when
    its line (and, for bodies, the announced bytes and CRLF) are in.
    """

    __slots__ = ("_buf", "_close", "_recv_into", "_send", "_send_parts", "_view")

    def __init__(
        self,
        recv_into: Callable[[memoryview], Awaitable[int]],
        send: Callable[[bytes], Awaitable[None]],
        send_parts: Callable[[list[bytes]], Awaitable[None]],
        close: Callable[[], None],
    ) -> None:
        self._buf = bytearray(MAX_JOB_SIZE + 4096)
        self._view = memoryview(self._buf)
        self._recv_into = recv_into
        self._send = send
        self._send_parts = send_parts
        self._close = close

    async def setup(self, tube: str) -> None:
        for command, expected in _setup_exchange(tube):
            await self._send(command)
            n = await self._line()
            if self._buf[:n] != expected:
                raise RawError(f"setup: {bytes(self._buf[:n])!r}")

    def close(self) -> None:
        self._view.release()
        self._close()

    async def _recv(self, n: int) -> int:
        k = await self._recv_into(self._view[n:])
        if not k:
            raise ConnectionError("beanstalkd closed the connection")
        return k

    async def _line(self) -> int:
        """Receive a reply that is one line; return its length (CRLF included)."""
        n = await self._recv_into(self._view)
        while not self._buf.endswith(b"\r\n", 0, n):
            if not n:
                raise ConnectionError("beanstalkd closed the connection")
            n += await self._recv(n)
        return n

    async def _with_body(self, status: bytes) -> tuple[int, int]:
        """Receive ``<status> ... <bytes>\\r\\n<body>\\r\\n``; return
        ``(start of body, its size)``."""
        buf = self._buf
        n = await self._recv_into(self._view)
        end = buf.find(b"\r\n", 0, n)
        while end < 0:
            if not n:
                raise ConnectionError("beanstalkd closed the connection")
            n += await self._recv(n)
            end = buf.find(b"\r\n", 0, n)
        if not buf.startswith(status):
            raise RawError(f"expected {status!r}, got {bytes(buf[:end])!r}")
        size = int(buf[buf.rfind(b" ", 0, end) + 1 : end])
        total = end + 4 + size
        if total > len(buf):
            raise RawError(f"a {size}-byte body does not fit the buffer")
        while n < total:
            n += await self._recv(n)
        return end + 2, size

    async def put(self, body: bytes) -> int:
        await self._send(b"put %d %d %d %d\r\n%b\r\n" % (PRIORITY, DELAY, TTR, len(body), body))
        n = await self._line()
        buf = self._buf
        if not buf.startswith(b"INSERTED "):
            raise RawError(f"put: {bytes(buf[:n])!r}")
        return int(buf[9 : n - 2])

    async def put_big(self, body: bytes) -> int:
        """``put`` written with vectored writes, without joining the body."""
        await self._send_parts([b"put %d %d %d %d\r\n" % (PRIORITY, DELAY, TTR, len(body)), body])
        n = await self._line()
        buf = self._buf
        if not buf.startswith(b"INSERTED "):
            raise RawError(f"put: {bytes(buf[:n])!r}")
        return int(buf[9 : n - 2])

    async def reserve(self) -> tuple[int, bytes]:
        await self._send(b"reserve\r\n")
        start, size = await self._with_body(b"RESERVED ")
        buf = self._buf
        job_id = int(buf[9 : buf.find(b" ", 9, start)])
        return job_id, self._view[start : start + size].tobytes()

    async def delete(self, job_id: int) -> None:
        await self._send(b"delete %d\r\n" % job_id)
        n = await self._line()
        if n != 9 or not self._buf.startswith(b"DELETED\r\n"):
            raise RawError(f"delete: {bytes(self._buf[:n])!r}")

    async def stats(self) -> bytes:
        """The ``stats`` YAML document, unparsed."""
        await self._send(b"stats\r\n")
        start, size = await self._with_body(b"OK ")
        return self._view[start : start + size].tobytes()


def _advance(views: list[memoryview], sent: int) -> None:
    """Drop ``sent`` bytes from the front of ``views``."""
    while views and sent >= len(views[0]):
        sent -= len(views.pop(0))
    if sent:
        views[0] = views[0][sent:]


async def connect_raw_trio(address: Address, tube: str) -> RawStream:
    """The raw trio loop: ``trio.socket`` ``send``/``sendmsg`` and ``recv_into``."""
    sock = trio.socket.socket()
    try:
        await sock.connect(address)
        sock.setsockopt(*_NODELAY)

        async def send_parts(parts: list[bytes]) -> None:
            views = [memoryview(part) for part in parts]
            views.append(memoryview(b"\r\n"))
            while views:
                _advance(views, await sock.sendmsg(views))

        async def send(data: bytes) -> None:
            sent = await sock.send(data)
            if sent < len(data):  # a short write: finish it the general way
                views = [memoryview(data)[sent:]]
                while views:
                    _advance(views, await sock.sendmsg(views))

        raw = RawStream(sock.recv_into, send, send_parts, sock.close)
        await raw.setup(tube)
    except BaseException:
        sock.close()
        raise
    return raw


async def connect_raw_sock(address: Address, tube: str) -> RawStream:
    """The raw asyncio loop on ``loop.sock_sendall`` and ``loop.sock_recv_into``."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        await loop.sock_connect(sock, address)
        sock.setsockopt(*_NODELAY)

        async def send_parts(parts: list[bytes]) -> None:
            views = [memoryview(part) for part in parts]
            views.append(memoryview(b"\r\n"))
            try:
                sent = sock.sendmsg(views)
            except BlockingIOError:
                sent = 0
            _advance(views, sent)
            for view in views:  # a short write: the loop finishes each part
                await loop.sock_sendall(sock, view)

        raw = RawStream(
            functools.partial(loop.sock_recv_into, sock),
            functools.partial(loop.sock_sendall, sock),
            send_parts,
            sock.close,
        )
        await raw.setup(tube)
    except BaseException:
        sock.close()
        raise
    return raw


class RawProtocol(asyncio.BufferedProtocol):
    """The raw asyncio loop as a buffered protocol: the event loop reads straight
    into one preallocated buffer; ``buffer_updated`` finds where the reply ends
    (for a body, from the size on its line) and then wakes the caller.
    """

    def __init__(self) -> None:
        self._buf = bytearray(MAX_JOB_SIZE + 4096)
        self._view = memoryview(self._buf)
        self._n = 0
        #: The status of a reply with a body, or ``None`` for a one-line reply.
        self._status: bytes | None = None
        self._total = 0
        self._start = 0
        self._size = 0
        self._waiter: asyncio.Future[int] | None = None
        self._transport: asyncio.Transport | None = None
        self._write: Callable[[bytes], None] = self._not_connected

    @staticmethod
    def _not_connected(data: bytes) -> None:
        raise ConnectionError("not connected")

    @classmethod
    async def connect(cls, address: Address, tube: str) -> RawProtocol:
        loop = asyncio.get_running_loop()
        _, raw = await loop.create_connection(cls, *address)  # asyncio sets TCP_NODELAY
        try:
            for command, expected in _setup_exchange(tube):
                raw._write(command)
                n = await raw._reply(None)
                if raw._buf[:n] != expected:
                    raise RawError(f"setup: {bytes(raw._buf[:n])!r}")
        except BaseException:
            raw.close()
            raise
        return raw

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    # -- asyncio.BufferedProtocol --------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._write = transport.write

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view[self._n :]

    def buffer_updated(self, nbytes: int) -> None:
        n = self._n = self._n + nbytes
        buf = self._buf
        status = self._status
        if status is None:
            if buf.endswith(b"\r\n", 0, n):
                self._done(n)
            return
        total = self._total
        if not total:
            end = buf.find(b"\r\n", 0, n)
            if end < 0:
                return
            if not buf.startswith(status):
                self._done(n)  # the caller reports it
                return
            size = int(buf[buf.rfind(b" ", 0, end) + 1 : end])
            total = self._total = end + 4 + size
            self._start, self._size = end + 2, size
            if total > len(buf):
                self._fail(RawError(f"a {size}-byte body does not fit the buffer"))
                return
        if n >= total:
            self._done(n)

    def eof_received(self) -> bool:
        self._fail(ConnectionError("beanstalkd closed the connection"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exc or ConnectionError("the connection was closed"))

    # -- the caller's side ---------------------------------------------------------

    def _done(self, n: int) -> None:
        self._n = 0
        waiter = self._waiter
        self._waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_result(n)

    def _fail(self, error: BaseException) -> None:
        waiter = self._waiter
        self._waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)

    def _reply(self, status: bytes | None) -> asyncio.Future[int]:
        """A future for the next reply's length: a line, or with ``status`` a
        line and its body."""
        self._status = status
        self._total = 0
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        return waiter

    async def put(self, body: bytes) -> int:
        self._write(b"put %d %d %d %d\r\n%b\r\n" % (PRIORITY, DELAY, TTR, len(body), body))
        n = await self._reply(None)
        buf = self._buf
        if not buf.startswith(b"INSERTED "):
            raise RawError(f"put: {bytes(buf[:n])!r}")
        return int(buf[9 : n - 2])

    async def put_big(self, body: bytes) -> int:
        """``put`` as three writes; each goes to the socket at once if it can."""
        write = self._write
        write(b"put %d %d %d %d\r\n" % (PRIORITY, DELAY, TTR, len(body)))
        write(body)
        write(b"\r\n")
        n = await self._reply(None)
        buf = self._buf
        if not buf.startswith(b"INSERTED "):
            raise RawError(f"put: {bytes(buf[:n])!r}")
        return int(buf[9 : n - 2])

    async def reserve(self) -> tuple[int, bytes]:
        self._write(b"reserve\r\n")
        n = await self._reply(b"RESERVED ")
        buf = self._buf
        if not buf.startswith(b"RESERVED "):
            raise RawError(f"reserve: {bytes(buf[:n])!r}")
        start = self._start
        job_id = int(buf[9 : buf.find(b" ", 9, start)])
        return job_id, self._view[start : start + self._size].tobytes()

    async def delete(self, job_id: int) -> None:
        self._write(b"delete %d\r\n" % job_id)
        n = await self._reply(None)
        if n != 9 or not self._buf.startswith(b"DELETED\r\n"):
            raise RawError(f"delete: {bytes(self._buf[:n])!r}")

    async def stats(self) -> bytes:
        """The ``stats`` YAML document, unparsed."""
        self._write(b"stats\r\n")
        n = await self._reply(b"OK ")
        if not self._buf.startswith(b"OK "):
            raise RawError(f"stats: {bytes(self._buf[:n])!r}")
        start = self._start
        return self._view[start : start + self._size].tobytes()


# -- sessions: one connection on one tube, able to run each workload ---------------


class Session(Protocol):
    async def run(self, workload: str, n: int) -> None: ...

    async def check(self, workload: str) -> None: ...


class ClientSession:
    """``beanproto_trio``, ``beanproto_asyncio`` or ``aiostalk``: one API, so
    one loop."""

    def __init__(self, client: Any, big: bool) -> None:
        self.client = client
        self.body: Any = BIG_BYTES if big else SMALL_TEXT

    async def run(self, workload: str, n: int) -> None:
        client = self.client
        put, reserve, delete, body = client.put, client.reserve, client.delete, self.body
        if workload == "put":
            for _ in range(n):
                await put(body)
        elif workload in ("cycle", "big"):
            for _ in range(n):
                await put(body)
                await delete(await reserve())
        elif workload == "stats":
            stats = client.stats
            for _ in range(n):
                await stats()
        else:
            raise ValueError(workload)

    async def check(self, workload: str) -> None:
        """One operation, with its result checked (untimed)."""
        client = self.client
        if workload == "stats":
            if (await client.stats())["current-connections"] < 1:
                raise AssertionError("stats() looks wrong")
            return
        job_id = await client.put(self.body)
        job = await client.reserve()
        if job.id != job_id or job.body != self.body:
            raise AssertionError(f"reserved {job!r}, expected job {job_id}")
        await client.delete(job)


class RawSession:
    def __init__(self, client: RawClient, big: bool) -> None:
        self.client = client
        self.body = BIG_BYTES if big else SMALL_BYTES

    async def run(self, workload: str, n: int) -> None:
        client, body = self.client, self.body
        reserve, delete = client.reserve, client.delete
        if workload == "put":
            put = client.put
            for _ in range(n):
                await put(body)
        elif workload in ("cycle", "big"):
            put = client.put_big if workload == "big" else client.put
            for _ in range(n):
                await put(body)
                await delete((await reserve())[0])
        elif workload == "stats":
            stats = client.stats
            for _ in range(n):
                await stats()
        else:
            raise ValueError(workload)

    async def check(self, workload: str) -> None:
        client = self.client
        if workload == "stats":
            if b"\ncurrent-connections: " not in await client.stats():
                raise AssertionError("stats looks wrong")
            return
        put = client.put_big if workload == "big" else client.put
        job_id = await put(self.body)
        got_id, got_body = await client.reserve()
        if got_id != job_id or got_body != self.body:
            raise AssertionError(f"reserved job {got_id}, expected job {job_id}")
        await client.delete(got_id)


@contextlib.asynccontextmanager
async def open_session(impl: str, address: Address, tube: str, big: bool) -> AsyncIterator[Session]:
    """A connected session of ``impl``; closed on exit. Call it in the event
    loop ``impl`` is written for."""
    client: Any
    if impl in ("bp_trio", "bp_asyncio", "bp_anyio_trio", "bp_anyio_aio"):
        module: Any = {
            "bp_trio": beanproto_trio,
            "bp_asyncio": beanproto_asyncio,
            "bp_anyio_trio": beanproto_anyio,
            "bp_anyio_aio": beanproto_anyio,
        }[impl]
        if big:
            client = module.Client(address, None, use=tube, watch=tube)
        else:
            client = module.Client(address, use=tube, watch=tube)
        async with client:
            yield ClientSession(client, big)
    elif impl == "aiostalk":
        client = aiostalk.Client(address, None if big else "utf-8", use=tube, watch=tube)
        async with client:
            yield ClientSession(client, big)
    elif impl in ("raw_trio", *RAW_ASYNCIO):
        raw: RawClient
        if impl == "raw_trio":
            raw = await connect_raw_trio(address, tube)
        elif impl == "raw_aio_proto":
            raw = await RawProtocol.connect(address, tube)
        else:
            raw = await connect_raw_sock(address, tube)
        try:
            yield RawSession(raw, big)
        finally:
            raw.close()
    else:
        raise ValueError(impl)


# -- batches: put_many and pipeline() (--pipeline) ----------------------------------

#: ``*_batch`` are the beanproto clients with ``put_many`` and ``pipeline()``;
#: the others make the same calls one at a time.
BATCH_IMPLEMENTATIONS = ("bp_trio_batch", "bp_trio", "bp_asyncio_batch", "bp_asyncio", "aiostalk")
#: The issue's 2x target is for the blocking client against greenstalk: none here.
BATCH_RATIOS = batch.batch_ratios(
    [("bp_trio_batch", "bp_trio"), ("bp_asyncio_batch", "bp_asyncio")], "aiostalk", None
)


def has_batch_api(client_class: type) -> bool:
    """Whether the batch API (being written) is there yet."""
    return hasattr(client_class, "put_many") and hasattr(client_class, "pipeline")


def is_trio(impl: str) -> bool:
    return impl in TRIO_IMPLEMENTATIONS or impl == "bp_trio_batch"


class BatchSession:
    """A beanproto async client or aiostalk on the batch workloads:
    ``run(workload, n)`` does ``n`` batches, with the batch API when ``batched``.
    ``seed()`` before use."""

    def __init__(self, client: Any, batched: bool, tube: str) -> None:
        self.client = client
        self.batched = batched
        self.tube = tube
        self.bodies = [SMALL_TEXT] * batch.PUT_BATCH
        self.positions = batch.put_positions()
        #: The jobs the last mixed batch put: the next one deletes them.
        self.previous: list[int] = []
        self.last: list[Any] = []

    async def seed(self, workload: str) -> None:
        """Put the jobs the first mixed batch deletes."""
        if workload == "commands":
            self.previous = [await self.client.put(SMALL_TEXT) for _ in range(batch.PAIRS)]

    async def run(self, workload: str, n: int) -> None:
        client = self.client
        if workload == "puts":
            if self.batched:
                put_many, bodies = client.put_many, self.bodies
                for _ in range(n):
                    await put_many(bodies)
            else:
                put, body = client.put, SMALL_TEXT
                for _ in range(n * batch.PUT_BATCH):
                    await put(body)
        elif workload == "commands":
            mixed = self._pipelined if self.batched else self._one_by_one
            for _ in range(n):
                self.previous = await mixed(self.previous)
        else:
            raise ValueError(workload)

    async def _pipelined(self, previous: list[int]) -> list[int]:
        tube, body, every = self.tube, SMALL_TEXT, batch.STATS_EVERY
        async with self.client.pipeline() as pipe:
            put, delete, stats_tube = pipe.put, pipe.delete, pipe.stats_tube
            for pair, job_id in enumerate(previous):
                put(body)
                delete(job_id)
                if pair % every == every - 1:
                    stats_tube(tube)
            results = self.last = await pipe.execute()
        return [results[i] for i in self.positions]

    async def _one_by_one(self, previous: list[int]) -> list[int]:
        client = self.client
        put, delete, stats_tube = client.put, client.delete, client.stats_tube
        tube, body, every = self.tube, SMALL_TEXT, batch.STATS_EVERY
        ids = []
        for pair, job_id in enumerate(previous):
            ids.append(await put(body))
            await delete(job_id)
            if pair % every == every - 1:
                await stats_tube(tube)
        return ids

    async def check(self, workload: str) -> None:
        """The batch API's results checked on one batch; one plain put (untimed)."""
        if not self.batched:
            if not isinstance(await self.client.put(SMALL_TEXT), int):
                raise AssertionError("put did not return a job id")
        elif workload == "puts":
            ids = await self.client.put_many(self.bodies)
            if len(ids) != batch.PUT_BATCH or not all(isinstance(i, int) for i in ids):
                raise AssertionError(f"put_many returned {ids[:3]!r}...")
        else:
            await self.run(workload, 1)
            if len(self.previous) != batch.PAIRS or len(set(self.previous)) != batch.PAIRS:
                raise AssertionError("a pipeline did not return one new job per pair")
            if self.last[2 * batch.STATS_EVERY]["name"] != self.tube:
                raise AssertionError(f"stats_tube in a pipeline: {self.last[100]!r}")


@contextlib.asynccontextmanager
async def open_batch_session(
    impl: str, address: Address, tube: str, workload: str
) -> AsyncIterator[Session]:
    client: Any
    if impl == "aiostalk":
        client = aiostalk.Client(address, use=tube, watch=tube)
    else:
        module: Any = beanproto_trio if is_trio(impl) else beanproto_asyncio
        client = module.Client(address, use=tube, watch=tube)
    async with client:
        session = BatchSession(client, impl.endswith("_batch"), tube)
        await session.seed(workload)
        yield session


# -- many tasks, one client (--shared) ----------------------------------------------

#: Tasks putting at once.
TASKS = 100
SHARED_IMPLEMENTATIONS = ("bp_asyncio", "aiostalk")
SHARED_LABELS = {"shared": f"{TASKS} tasks putting {SMALL_SIZE} B"}
#: Puts per task per measurement at ``--n 1``, and with ``--quick``.
SHARED_N, SHARED_QUICK_N = 200, 5


class SharedSession:
    """``TASKS`` asyncio tasks putting at once, on the clients given: one shared
    by all, or one each. ``run("shared", n)``: ``n`` puts per task."""

    def __init__(self, clients: list[Any]) -> None:
        self.clients = clients

    async def run(self, workload: str, n: int) -> None:
        async def task(client: Any) -> None:
            put, body = client.put, SMALL_TEXT
            for _ in range(n):
                await put(body)

        clients = self.clients
        await asyncio.gather(*(task(clients[i % len(clients)]) for i in range(TASKS)))

    async def check(self, workload: str) -> None:
        clients = self.clients
        ids = await asyncio.gather(
            *(clients[i % len(clients)].put(SMALL_TEXT) for i in range(TASKS))
        )
        if len(set(ids)) != TASKS:
            raise AssertionError(f"{TASKS} tasks' puts returned {len(set(ids))} job ids")


@contextlib.asynccontextmanager
async def open_shared_session(impl: str, address: Address, tube: str) -> AsyncIterator[Session]:
    """bp_asyncio: one client for every task; aiostalk: one client per task,
    as it cannot share one (see :meth:`Bench.aiostalk_sharing`)."""
    async with contextlib.AsyncExitStack() as stack:
        if impl == "bp_asyncio":
            client = beanproto_asyncio.Client(address, use=tube, watch=tube)
            clients = [await stack.enter_async_context(client)]
        elif impl == "aiostalk":
            clients = [
                await stack.enter_async_context(aiostalk.Client(address, use=tube, watch=tube))
                for _ in range(TASKS)
            ]
        else:
            raise ValueError(impl)
        yield SharedSession(clients)


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

    @staticmethod
    def _in_loop(impl: str, main: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run ``main`` in a fresh event loop of the kind ``impl`` needs."""
        if is_trio(impl):
            return trio.run(main)
        return asyncio.run(main())

    def _open(
        self, impl: str, tube: str, workload: str
    ) -> contextlib.AbstractAsyncContextManager[Session]:
        if workload in batch.WORKLOADS:
            return open_batch_session(impl, self.address, tube, workload)
        if workload == "shared":
            return open_shared_session(impl, self.address, tube)
        return open_session(impl, self.address, tube, workload == "big")

    def measure(self, impl: str, workload: str, n: int) -> Sample:
        """One timed run of ``n`` operations (batches, puts per task) on a fresh
        tube, in a fresh loop."""
        tube = self._tube(impl, workload)
        if workload in batch.WORKLOADS:
            warmup, ops = self.warmup_batches, n * batch.OPS[workload]
        elif workload == "shared":
            warmup, ops = 1, n * TASKS
        else:
            warmup, ops = warmup_count(workload, n, self.warmup_ops), n

        async def timed() -> Sample:
            async with self._open(impl, tube, workload) as session:
                await session.check(workload)
                await session.run(workload, warmup)
                gc.collect()
                cpu0 = time.process_time()
                t0 = time.perf_counter()
                await session.run(workload, n)
                wall = time.perf_counter() - t0
                cpu = time.process_time() - cpu0
            return Sample(ops_per_s=ops / wall, cpu_us_per_op=cpu / ops * 1e6)

        try:
            sample = self._in_loop(impl, timed)
        finally:
            self.helper.drain(tube)
        return sample

    def batch_api_problem(self, impl: str) -> str | None:
        """Why ``impl`` cannot run the batch workloads (yet), or ``None``: the
        batch API is being written, so it is tried once first."""
        module: Any = beanproto_trio if is_trio(impl) else beanproto_asyncio
        if not has_batch_api(module.Client):
            return f"{module.__name__}.Client has no put_many / pipeline yet"
        tube = self._tube(impl, "probe")

        async def probe() -> None:
            async with module.Client(self.address, use=tube, watch=tube) as client:
                await client.put_many([SMALL_TEXT])
                async with client.pipeline() as pipe:
                    pipe.put(SMALL_TEXT)
                    await pipe.execute()

        try:
            self._in_loop(impl, probe)
        except NotImplementedError:
            return f"{module.__name__}: put_many / pipeline raise NotImplementedError"
        finally:
            self.helper.drain(tube)
        return None

    def aiostalk_sharing(self) -> str:
        """What happens when two tasks put on one aiostalk client."""
        tube = self._tube("aiostalk", "sharing")

        async def main() -> list[BaseException | int]:
            async with aiostalk.Client(self.address, use=tube) as client:
                results: list[BaseException | int] = await asyncio.gather(
                    client.put(SMALL_TEXT), client.put(SMALL_TEXT), return_exceptions=True
                )
            return results

        try:
            errors = [r for r in asyncio.run(main()) if isinstance(r, BaseException)]
        finally:
            self.helper.drain(tube)
        if not errors:
            return "two tasks putting on one aiostalk.Client both succeeded"
        return (
            f"two tasks putting on one aiostalk.Client: {type(errors[0]).__name__}: "
            f"{errors[0]} -- so aiostalk gets one client per task"
        )

    def profile(self, impl: str, workload: str, n: int, top: int) -> str:
        """cProfile ``n`` operations of ``impl``: the top functions overall, then
        the top ones in beanproto's own code."""
        tube = self._tube(impl, workload)
        profiler = cProfile.Profile()

        async def profiled() -> None:
            big = workload == "big"
            async with open_session(impl, self.address, tube, big) as session:
                await session.check(workload)
                await session.run(workload, self.warmup_ops)
                profiler.enable()
                try:
                    await session.run(workload, n)
                finally:
                    profiler.disable()

        try:
            self._in_loop(impl, profiled)
        finally:
            self.helper.drain(tube)
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("tottime").print_stats(top)
        print("-- the same, only beanproto's code --", file=out)
        stats.print_stats(r"beanproto", top)
        return out.getvalue()


# -- reporting ---------------------------------------------------------------------


def with_raw_asyncio(by_impl: dict[str, Result], stat: str) -> tuple[dict[str, Result], str]:
    """``by_impl`` and ``raw_asyncio``, the faster of the raw asyncio loops
    measured; and which one that is."""
    best = max(
        (name for name in RAW_ASYNCIO if name in by_impl), key=lambda i: by_impl[i].ops(stat)
    )
    return {**by_impl, "raw_asyncio": by_impl[best]}, best


@dataclass
class Verdict:
    ratio: float
    target: float | None

    @property
    def passed(self) -> bool | None:
        return None if self.target is None else self.ratio >= self.target

    def cell(self) -> str:
        if self.target is None:
            return f"{self.ratio:.3f}"
        return f"{self.ratio:.3f} >={self.target:.2f} {'PASS' if self.passed else 'MISS'}"


def verdicts(by_impl: dict[str, Result], workload: str, stat: str) -> dict[str, Verdict]:
    """The ratios of ``workload`` (``by_impl`` includes ``raw_asyncio``)."""
    return {
        ratio_name(pair): Verdict(
            by_impl[pair[0]].ops(stat) / by_impl[pair[1]].ops(stat),
            TARGETS.get(pair, {}).get(workload),
        )
        for pair in RATIOS
    }


def report(
    results: dict[str, dict[str, Result]], implementations: Sequence[str], stat: str, rounds: int
) -> Iterator[str]:
    width = max(len(label) for label in LABELS.values())
    columns = [max(10, len(impl)) for impl in implementations]
    yield f"ops/s, {stat} of {rounds} round(s) (higher is better)"
    header = " ".join(f"{impl:>{w}}" for impl, w in zip(implementations, columns, strict=True))
    yield f"{'workload':<{width}}  {header}"
    for workload in WORKLOADS:
        ops = " ".join(
            f"{results[workload][impl].ops(stat):>{w},.0f}"
            for impl, w in zip(implementations, columns, strict=True)
        )
        yield f"{LABELS[workload]:<{width}}  {ops}"
    yield ""
    yield (
        "ratios of ops/s, with the target and PASS/MISS where there is one; "
        "raw_asyncio = the faster raw asyncio loop"
    )
    names = [ratio_name(pair) for pair in RATIOS]
    cells = [max(17, len(name)) for name in names]
    header = "  ".join(f"{name:<{w}}" for name, w in zip(names, cells, strict=True))
    yield f"{'workload':<{width}}  {header}  raw_asyncio"
    met = total = 0
    for workload in WORKLOADS:
        by_impl, fastest = with_raw_asyncio(results[workload], stat)
        row = verdicts(by_impl, workload, stat)
        line = "  ".join(f"{row[name].cell():<{w}}" for name, w in zip(names, cells, strict=True))
        yield f"{LABELS[workload]:<{width}}  {line}  {fastest}"
        for verdict in row.values():
            if verdict.passed is not None:
                total += 1
                met += verdict.passed
    yield f"targets met: {met} of {total}"
    yield ""
    yield from cpu_lines(results, LABELS, implementations, stat, width)
    yield ""
    yield from spread_lines(results, LABELS, implementations, width)


def to_json(
    results: dict[str, dict[str, Result]],
    implementations: Sequence[str],
    stat: str,
    config: dict[str, object],
) -> dict[str, object]:
    workloads: dict[str, object] = {}
    for workload in WORKLOADS:
        by_impl, fastest = with_raw_asyncio(results[workload], stat)
        row = verdicts(by_impl, workload, stat)
        workloads[workload] = {
            "label": LABELS[workload],
            "implementations": {impl: result_json(by_impl[impl]) for impl in implementations},
            "raw_asyncio": fastest,
            "ratios": {name: verdict.ratio for name, verdict in row.items()},
            "targets": {name: v.target for name, v in row.items() if v.target is not None},
            "pass": {name: v.passed for name, v in row.items() if v.passed is not None},
        }
    return {"config": config, "workloads": workloads}


# -- the scenarios: --pipeline and --shared -----------------------------------------


def run_pipeline(
    bench: Bench,
    server_pid: int,
    ns: dict[str, int],
    rounds: int,
    stat: str,
    affinity: set[int] | None,
    quick: bool,
    progress: Callable[[str], None],
) -> tuple[list[str], dict[str, object]]:
    """The batch workloads on one core, then on split cores; the report and its JSON."""
    measured = list(BATCH_IMPLEMENTATIONS)
    lines = batch.header(
        ns, "bp_trio_batch, bp_asyncio_batch = the beanproto clients with", "the others"
    )
    for impl in ("bp_trio_batch", "bp_asyncio_batch"):
        problem = bench.batch_api_problem(impl)
        if problem is not None:
            measured.remove(impl)
            lines.append(f"{impl}: n/a ({problem})")
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
    return lines + more, {"batch_api": [i for i in measured if i.endswith("_batch")], **out}


def run_shared(
    bench: Bench,
    n: int,
    rounds: int,
    stat: str,
    placement: str,
    progress: Callable[[str], None],
    quick: bool,
) -> tuple[list[str], dict[str, object]]:
    """``TASKS`` tasks putting: one shared bp_asyncio client against one aiostalk
    client per task."""
    note = bench.aiostalk_sharing()
    progress("--shared")
    results = run_rounds(
        bench.measure,
        {"shared": n},
        ["shared"],
        SHARED_IMPLEMENTATIONS,
        rounds,
        progress,
        not quick,
    )
    by_impl = results["shared"]
    ratio = by_impl["bp_asyncio"].ops(stat) / by_impl["aiostalk"].ops(stat)
    width = len(SHARED_LABELS["shared"])
    lines = [
        f"== --shared: {TASKS} asyncio tasks, {n} puts each per measurement, {rounds} round(s) "
        f"interleaved; {placement} ==",
        f"bp_asyncio: one beanproto_asyncio.Client shared by the {TASKS} tasks; aiostalk: "
        f"{TASKS} clients, one per task",
        f"note: {note}",
        f"puts/s, {stat} of {rounds} round(s)",
        f"{'':<{width}}  {'bp_asyncio':>10} {'aiostalk':>10}  bp_asyncio/aiostalk",
        f"{SHARED_LABELS['shared']:<{width}}  {by_impl['bp_asyncio'].ops(stat):>10,.0f} "
        f"{by_impl['aiostalk'].ops(stat):>10,.0f}  {ratio:.2f}x",
        *cpu_lines(results, SHARED_LABELS, SHARED_IMPLEMENTATIONS, stat, width),
        *spread_lines(results, SHARED_LABELS, SHARED_IMPLEMENTATIONS, width),
    ]
    out = {
        "tasks": TASKS,
        "puts_per_task": n,
        "placement": placement,
        "aiostalk_sharing": note,
        "implementations": {i: result_json(by_impl[i]) for i in SHARED_IMPLEMENTATIONS},
        "ratio_bp_asyncio/aiostalk": ratio,
    }
    return lines, out


# -- main ----------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = build_parser(
        "Benchmark beanproto_trio and beanproto_asyncio against aiostalk and raw "
        "trio and asyncio loops.",
        "instead of benchmarking, cProfile beanproto_trio and beanproto_asyncio on "
        "WORKLOAD (repeatable)",
        WORKLOADS,
    )
    parser.add_argument(
        "--raw-asyncio",
        choices=("both", "proto", "sock"),
        default="both",
        help="the raw asyncio loops to measure: a BufferedProtocol (proto), "
        "loop.sock_sendall + loop.sock_recv_into (sock), or both (default; "
        "raw_asyncio is then the faster on each workload)",
    )
    parser.add_argument(
        "--pipeline",
        action="store_true",
        help="instead of the workloads: put_many and pipeline() against the same calls one "
        "by one, on one core and on split cores (--pin is not used)",
    )
    parser.add_argument(
        "--shared",
        action="store_true",
        help=f"instead of the workloads: {TASKS} tasks putting on one shared bp_asyncio "
        "client against aiostalk with a client per task",
    )
    return check_args(parser, argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    base = QUICK_N if args.quick else DEFAULT_N
    ns = {w: max(1, round(base[w] * args.n)) for w in WORKLOADS}
    rounds = args.rounds if args.rounds is not None else (1 if args.quick else 5)
    warmup_ops = 10 if args.quick else 200
    batches = batch.QUICK_BATCHES if args.quick else batch.DEFAULT_BATCHES
    batch_ns = {w: max(1, round(batches[w] * args.n)) for w in batch.WORKLOADS}
    shared_n = max(1, round((SHARED_QUICK_N if args.quick else SHARED_N) * args.n))
    scenario = args.pipeline or args.shared
    raw_left_out = {"proto": "raw_aio_sock", "sock": "raw_aio_proto"}.get(args.raw_asyncio)
    implementations = [impl for impl in IMPLEMENTATIONS if impl != raw_left_out]

    def progress(message: str) -> None:
        print(f"  ... {message}", file=sys.stderr, flush=True)

    started = time.perf_counter()
    source = source_state()
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    versions = {name: importlib.metadata.version(name) for name in ("trio", "aiostalk")}
    with running_beanstalkd(max_job_size=MAX_JOB_SIZE) as server:
        placement = pin(args.pin, server.pid)
        bench = Bench(server, ns, warmup_ops)
        bench.warmup_batches = 0 if args.quick else 1
        try:
            version = bench.helper.stats().get("version", "?")
            print(
                f"beanstalkd {version} (pid {server.pid}) on {server.host}:{server.port}, "
                f"-z {MAX_JOB_SIZE}; Python {platform.python_version()}; "
                f"trio {versions['trio']}; aiostalk {versions['aiostalk']}; {placement}"
            )
            print(f"beanproto source: {source}")
            if args.profile:
                for workload in args.profile:
                    for impl in ("bp_trio", "bp_asyncio"):
                        print(f"\n== cProfile: {impl}, {LABELS[workload]}, {ns[workload]} ops ==")
                        print(bench.profile(impl, workload, ns[workload], args.top))
                return 0
            if scenario:
                print(
                    "each measurement: a fresh trio.run / asyncio.run (default event loop), "
                    "new connections, a fresh tube."
                )
                lines: list[str] = []
                extra: dict[str, object] = {}
                if args.shared:
                    shared_lines, extra["shared"] = run_shared(
                        bench, shared_n, rounds, args.stat, placement, progress, args.quick
                    )
                    lines += ["", *shared_lines]
                if args.pipeline:
                    pipeline_lines, extra["pipeline"] = run_pipeline(
                        bench,
                        server.pid,
                        batch_ns,
                        rounds,
                        args.stat,
                        affinity,
                        args.quick,
                        progress,
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
                    "each measurement: a fresh trio.run / asyncio.run (default event loop), "
                    "a new connection, a fresh tube."
                )
                print(
                    "raw = no library, recv into a preallocated buffer: raw_trio = trio.socket "
                    "send + recv_into; raw_aio_proto = asyncio.BufferedProtocol; raw_aio_sock = "
                    "loop.sock_sendall + loop.sock_recv_into. Their stats() read the OK body "
                    "but do not parse the YAML."
                )
                print(
                    f"clients use encoding='utf-8' and a {SMALL_SIZE}-char str body for "
                    "small jobs, encoding=None for 1 MiB bodies.\n"
                )
                results = run_rounds(
                    bench.measure, ns, WORKLOADS, implementations, rounds, progress
                )
                leftover = bench.helper.stats()
        finally:
            bench.close()
            if affinity is not None:
                os.sched_setaffinity(0, affinity)
    config: dict[str, object] = {
        "rounds": rounds,
        "ops_per_measurement": ({**batch_ns, "shared_puts_per_task": shared_n} if scenario else ns),
        **versions,
        "max_job_size": MAX_JOB_SIZE,
        "beanproto_source": source,
        "placement": placement,
        "raw_asyncio_loops": args.raw_asyncio,
    }
    if scenario:
        finish(lines, leftover, started, args, config, lambda config: {"config": config, **extra})
    else:
        finish(
            report(results, implementations, args.stat, rounds),
            leftover,
            started,
            args,
            config,
            lambda config: to_json(results, implementations, args.stat, config),
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
