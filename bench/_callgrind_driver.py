"""The client side of ``callgrind.py``: one implementation, one workload, N operations.

``callgrind.py`` runs this under valgrind as::

    python bench/_callgrind_driver.py IMPL WORKLOAD N HOST PORT

and subtracts the instructions of a run of N from those of a run of 3N, so
everything this script does once (starting the interpreter, importing, the
event loop, connecting) cancels out and only the loop over the operations is
left. On x86-64 callgrind.py also starts valgrind with instrumentation off
and the driver turns it on just before the loop (:func:`start_counting`), so
the start-up runs several times faster; the imports are inside the branches,
so a run pays only for the modules its implementation needs.

The raw loops are the floor each client is compared with: commands built
once before the loop, replies received into one preallocated buffer, and only
what a client must do with a reply (check the status, read the id, copy a
body out; the stats YAML is copied, not parsed). They never pipeline: one
command, then its reply, like the clients' plain calls.

Exit status 3 means the implementation cannot run the workload (``put_many``
on a beanproto without it): ``callgrind.py`` reports "n/a" for it.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import socket
import sys
from collections.abc import Callable
from typing import Any

#: Job parameters every client sends by default (greenstalk's defaults).
PRIORITY, DELAY, TTR = 2**16, 0, 60
BODY = "x" * 100
#: Bodies per ``put_many`` call; a run of N puts makes N // BATCH calls.
BATCH = 1000
#: Exit status for "this implementation has no such operation".
UNSUPPORTED = 3

PUT = b"put %d %d %d %d\r\n%b\r\n" % (PRIORITY, DELAY, TTR, len(BODY), BODY.encode())
RESERVE = b"reserve\r\n"
STATS = b"stats\r\n"
#: Room for any reply of these workloads (a stats document is about 1 KiB).
BUFFER = 65536


#: Set by callgrind.py when it runs valgrind with ``--instr-atstart=no``.
START_COUNTING = "BEANPROTO_CALLGRIND_START_COUNTING"
#: valgrind's client request on amd64 as a function ``f(args, default)``: its
#: "special instruction" preamble (rotations of rdi by 128 bits in all) and
#: ``xchg rbx, rbx``, with the request's arguments at rax and the result in rdx.
#: Outside valgrind the sequence does nothing and returns ``default``.
_CLIENT_REQUEST = bytes.fromhex(
    "4889f8"  # mov rax, rdi
    "4889f2"  # mov rdx, rsi
    "48c1c703 48c1c70d 48c1c73d 48c1c733"  # rol rdi, 3; 13; 61; 51
    "4887db"  # xchg rbx, rbx
    "4889d0"  # mov rax, rdx
    "c3"  # ret
)
#: callgrind.h: VG_USERREQ_TOOL_BASE('C', 'T') + 4.
_START_INSTRUMENTATION = (ord("C") << 24 | ord("T") << 16) + 4


def start_counting() -> None:
    """Have callgrind instrument (and count) from here on, if callgrind.py
    started it without (CALLGRIND_START_INSTRUMENTATION, without a compiler:
    the request's machine code is run from an executable page)."""
    if os.environ.get(START_COUNTING) != "1":
        return
    page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    page.write(_CLIENT_REQUEST)
    request = ctypes.CFUNCTYPE(ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t)(
        ctypes.addressof(ctypes.c_char.from_buffer(page))
    )
    args = (ctypes.c_size_t * 6)(_START_INSTRUMENTATION, 0, 0, 0, 0, 0)
    if request(ctypes.addressof(args), 1) != 0:
        raise RuntimeError("not running under callgrind: the request was not taken")


def setup_commands(tube: str) -> bytes:
    """What puts a raw connection on ``tube``; three one-line replies follow."""
    name = tube.encode("ascii")
    return b"use %b\r\nwatch %b\r\nignore default\r\n" % (name, name)


def complete(buf: bytearray, n: int) -> int:
    """The length of the reply at the start of ``buf[:n]`` once all of it is
    in, else 0. Replies with a body (``RESERVED``, ``OK``) announce its size."""
    end = buf.find(b"\r\n", 0, n)
    if end < 0:
        return 0
    if buf.startswith((b"RESERVED ", b"OK ")):
        total = end + 4 + int(buf[buf.rfind(b" ", 0, end) + 1 : end])
        return total if n >= total else 0
    return end + 2


# -- what a client must do with each reply -----------------------------------------


def inserted(buf: bytearray, n: int) -> int:
    if not buf.startswith(b"INSERTED "):
        raise RuntimeError(f"put: {bytes(buf[:n])!r}")
    return int(buf[9 : n - 2])


def reserved(buf: bytearray, view: memoryview, n: int) -> tuple[int, bytes]:
    if not buf.startswith(b"RESERVED "):
        raise RuntimeError(f"reserve: {bytes(buf[:n])!r}")
    space = buf.find(b" ", 9)
    start = buf.find(b"\r\n", space) + 2
    return int(buf[9:space]), view[start : n - 2].tobytes()


def deleted(buf: bytearray, n: int) -> None:
    if n != 9 or not buf.startswith(b"DELETED\r\n"):
        raise RuntimeError(f"delete: {bytes(buf[:n])!r}")


def stats_body(buf: bytearray, view: memoryview, n: int) -> bytes:
    if not buf.startswith(b"OK "):
        raise RuntimeError(f"stats: {bytes(buf[:n])!r}")
    return view[buf.find(b"\r\n") + 2 : n - 2].tobytes()


# -- raw loops ---------------------------------------------------------------------


class RawSync:
    """A blocking socket: ``sendall`` a command, ``recv_into`` until the reply is in."""

    def __init__(self, address: tuple[str, int], tube: str) -> None:
        self.sock = socket.create_connection(address)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray(BUFFER)
        self.view = memoryview(self.buf)
        self._sendall = self.sock.sendall
        self._recv_into = self.sock.recv_into
        self._sendall(setup_commands(tube))
        n = 0
        while self.buf.count(b"\r\n", 0, n) < 3:
            n += self._recv_into(self.view[n:])

    def call(self, command: bytes) -> int:
        """Send ``command``; the length of its reply, which is at the start of ``buf``."""
        self._sendall(command)
        buf, view, recv_into = self.buf, self.view, self._recv_into
        n = recv_into(view)
        while not (total := complete(buf, n)):
            got = recv_into(view[n:])
            if not got:
                raise ConnectionError("beanstalkd closed the connection")
            n += got
        return total


def run_raw_sync(address: tuple[str, int], tube: str, workload: str, n: int) -> None:
    raw = RawSync(address, tube)
    call, buf, view = raw.call, raw.buf, raw.view
    start_counting()
    if workload in ("put", "put_many"):
        for _ in range(n):
            inserted(buf, call(PUT))
    elif workload == "cycle":
        for _ in range(n):
            inserted(buf, call(PUT))
            job_id, _ = reserved(buf, view, call(RESERVE))
            deleted(buf, call(b"delete %d\r\n" % job_id))
    else:
        for _ in range(n):
            stats_body(buf, view, call(STATS))
    raw.sock.close()


async def run_raw_trio(address: tuple[str, int], tube: str, workload: str, n: int) -> None:
    """The same on ``trio.socket``: ``send`` and ``recv_into``, both awaited."""
    import trio

    sock = trio.socket.socket()
    await sock.connect(address)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = bytearray(BUFFER)
    view = memoryview(buf)
    send, recv_into = sock.send, sock.recv_into

    async def call(command: bytes) -> int:
        if await send(command) != len(command):
            raise RuntimeError("a short write (never happens with these commands)")
        got = await recv_into(view)
        while not (total := complete(buf, got)):
            more = await recv_into(view[got:])
            if not more:
                raise ConnectionError("beanstalkd closed the connection")
            got += more
        return total

    await sock.send(setup_commands(tube))
    got = 0
    while buf.count(b"\r\n", 0, got) < 3:
        got += await recv_into(view[got:])
    await raw_async_loop(call, buf, view, workload, n)
    sock.close()


async def raw_async_loop(
    call: Callable[[bytes], Any], buf: bytearray, view: memoryview, workload: str, n: int
) -> None:
    """The raw async loops' operations, given their ``await call(command)``."""
    start_counting()
    if workload in ("put", "put_many"):
        for _ in range(n):
            inserted(buf, await call(PUT))
    elif workload == "cycle":
        for _ in range(n):
            inserted(buf, await call(PUT))
            job_id, _ = reserved(buf, view, await call(RESERVE))
            deleted(buf, await call(b"delete %d\r\n" % job_id))
    else:
        for _ in range(n):
            stats_body(buf, view, await call(STATS))


async def run_raw_asyncio(address: tuple[str, int], tube: str, workload: str, n: int) -> None:
    """An ``asyncio.BufferedProtocol``: the event loop reads straight into the
    buffer, ``buffer_updated`` wakes the caller through a future once the
    reply is complete; commands go out with ``transport.write``."""
    import asyncio

    class Raw(asyncio.BufferedProtocol):
        def __init__(self) -> None:
            self.buf = bytearray(BUFFER)
            self.view = memoryview(self.buf)
            self.n = 0
            self.waiter: asyncio.Future[int] | None = None

        def get_buffer(self, sizehint: int) -> memoryview:
            return self.view[self.n :]

        def buffer_updated(self, nbytes: int) -> None:
            self.n += nbytes
            total = complete(self.buf, self.n)
            if total and self.waiter is not None:
                self.n = 0
                self.waiter.set_result(total)
                self.waiter = None

        def connection_lost(self, exc: Exception | None) -> None:
            if self.waiter is not None:
                self.waiter.set_exception(exc or ConnectionError("connection lost"))

    loop = asyncio.get_running_loop()
    transport, raw = await loop.create_connection(Raw, *address)  # TCP_NODELAY is set
    write, create_future = transport.write, loop.create_future

    def call(command: bytes) -> asyncio.Future[int]:
        write(command)
        waiter = raw.waiter = create_future()
        return waiter

    for line in setup_commands(tube).splitlines(keepends=True):
        await call(line)
    await raw_async_loop(call, raw.buf, raw.view, workload, n)
    transport.close()


# -- the clients -------------------------------------------------------------------


def has_put_many(impl: str, client: Any) -> bool:
    """Whether ``client`` (of ``impl``) is to be measured with ``put_many``;
    exits with ``UNSUPPORTED`` for a beanproto without it."""
    if not impl.startswith("bp_"):
        return False
    if not hasattr(client, "put_many"):
        sys.exit(UNSUPPORTED)
    return True


def run_sync(impl: str, client: Any, workload: str, n: int) -> None:
    start_counting()
    if workload == "put_many" and has_put_many(impl, client):
        bodies = [BODY] * min(n, BATCH)
        for _ in range(n // len(bodies)):
            client.put_many(bodies)
    elif workload in ("put", "put_many"):
        for _ in range(n):
            client.put(BODY)
    elif workload == "cycle":
        for _ in range(n):
            client.put(BODY)
            client.delete(client.reserve())
    else:
        for _ in range(n):
            client.stats()


async def run_async(impl: str, client: Any, workload: str, n: int) -> None:
    start_counting()
    if workload == "put_many" and has_put_many(impl, client):
        bodies = [BODY] * min(n, BATCH)
        for _ in range(n // len(bodies)):
            await client.put_many(bodies)
    elif workload in ("put", "put_many"):
        for _ in range(n):
            await client.put(BODY)
    elif workload == "cycle":
        for _ in range(n):
            await client.put(BODY)
            await client.delete(await client.reserve())
    else:
        for _ in range(n):
            await client.stats()


async def run_asyncio_client(
    impl: str, address: tuple[str, int], tube: str, workload: str, n: int
) -> None:
    client: Any
    if impl == "bp_asyncio":
        import beanproto_asyncio

        client = beanproto_asyncio.Client(address, use=tube, watch=tube)
    else:
        import aiostalk

        client = aiostalk.Client(address, use=tube, watch=tube)
    async with client:
        await run_async(impl, client, workload, n)


async def run_trio_client(address: tuple[str, int], tube: str, workload: str, n: int) -> None:
    import beanproto_trio

    async with beanproto_trio.Client(address, use=tube, watch=tube) as client:
        await run_async("bp_trio", client, workload, n)


def main(argv: list[str]) -> None:
    impl, workload, count, host, port = argv
    n, address = int(count), (host, int(port))
    tube = f"cg-{impl}-{workload}-{n}"
    if impl in ("bp_sync", "greenstalk"):
        client: Any
        if impl == "bp_sync":
            import beanproto_sync

            client = beanproto_sync.Client(address, use=tube, watch=tube)
        else:
            import greenstalk

            client = greenstalk.Client(address, use=tube, watch=tube)
        run_sync(impl, client, workload, n)
        client.close()
    elif impl == "raw_sync":
        run_raw_sync(address, tube, workload, n)
    elif impl in ("bp_trio", "raw_trio"):
        import trio

        if impl == "bp_trio":
            trio.run(run_trio_client, address, tube, workload, n)
        else:
            trio.run(run_raw_trio, address, tube, workload, n)
    elif impl in ("bp_asyncio", "aiostalk", "raw_asyncio"):
        import asyncio

        if impl == "raw_asyncio":
            asyncio.run(run_raw_asyncio(address, tube, workload, n))
        else:
            asyncio.run(run_asyncio_client(impl, address, tube, workload, n))
    else:
        raise SystemExit(f"unknown implementation {impl!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
