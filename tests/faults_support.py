"""Fault injection for the fault tests (tests/test_faults.py, tests/test_faults_load.py).

What a client must survive, made on purpose and on cue:

* :class:`RestartableServer`: a real beanstalkd (optionally with a binlog)
  on a fixed loopback port, SIGKILLed and started again on the same port and
  binlog, which is what a crash and a supervisor's restart look like to a
  client.
* Scripted TCP peers (:class:`SilentServer`, :class:`LosingServer`): a
  server that accepts and never answers, and one that reads a whole ``put``
  and hangs up without a reply. No real beanstalkd can be made to do either.
* :class:`CuttingProxy`: forwards to a real server and cuts every connection
  through it on demand (a NAT or load balancer dropping connections), so the
  server sees the client go away while the client's process lives on.
* :class:`NetnsPair`: two network namespaces joined by a veth pair, whose
  link the test can pull, for a peer that vanishes without a FIN or a RST.

The observers here (:func:`stats`, :func:`stats_tube`, :func:`stats_job`)
talk to the server over raw sockets, not through any client under test, so
what a test asserts about the server does not depend on the code it tests.
Every wait is bounded; conditions are polled with a deadline, never slept on.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from tools.beanstalkd import Server, free_port, running_beanstalkd

__all__ = [
    "BOUND",
    "Background",
    "CuttingProxy",
    "LosingServer",
    "NetnsPair",
    "PeerConnection",
    "RestartableServer",
    "SilentServer",
    "open_fds",
    "query",
    "stats",
    "stats_job",
    "stats_tube",
    "wait_until",
]

T = TypeVar("T")

#: The longest any single helper wait may take before the test fails.
BOUND = 10.0

Address = tuple[str, int]


def wait_until(
    check: Callable[[], bool], what: str, timeout: float = BOUND, interval: float = 0.0
) -> None:
    """Poll ``check`` until it holds, failing after ``timeout`` seconds.

    ``interval`` spaces out checks that are expensive (a subprocess); a
    check that is a query to a server runs back to back.
    """
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        if interval:
            time.sleep(interval)  # pacing a bounded poll, not synchronising


# == raw observers =====================================================================


def query(address: Address, command: bytes, timeout: float = BOUND) -> tuple[bytes, bytes]:
    """Send one command on a fresh connection; return (reply line, body).

    The body is the ``<bytes>`` of an ``OK``/``RESERVED``/``FOUND`` reply,
    else empty.
    """
    with socket.create_connection(address, timeout=timeout) as sock:
        sock.sendall(command + b"\r\n")
        data = bytearray()
        while b"\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"server closed before replying to {command!r}")
            data += chunk
        line, _, rest = bytes(data).partition(b"\r\n")
        words = line.split()
        if words[0] not in (b"OK", b"RESERVED", b"FOUND"):
            return line, b""
        size = int(words[-1])
        body = bytearray(rest)
        while len(body) < size + 2:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed in the middle of a body")
            body += chunk
        return line, bytes(body[:size])


def _yaml_dict(body: bytes) -> dict[str, str]:
    result: dict[str, str] = {}
    for raw in body.decode().splitlines():
        if ":" not in raw or raw.startswith("---"):
            continue
        key, _, value = raw.partition(":")
        result[key.strip()] = value.strip().strip('"')
    return result


def stats(address: Address) -> dict[str, str]:
    """The server's ``stats``, as text."""
    line, body = query(address, b"stats")
    assert line.startswith(b"OK"), line
    return _yaml_dict(body)


def stats_tube(address: Address, tube: str) -> dict[str, str] | None:
    """``stats-tube``, or ``None`` if the tube does not exist."""
    line, body = query(address, b"stats-tube " + tube.encode())
    if line == b"NOT_FOUND":
        return None
    assert line.startswith(b"OK"), line
    return _yaml_dict(body)


def stats_job(address: Address, job_id: int) -> dict[str, str] | None:
    """``stats-job``, or ``None`` if the server has no such job."""
    line, body = query(address, b"stats-job %d" % job_id)
    if line == b"NOT_FOUND":
        return None
    assert line.startswith(b"OK"), line
    return _yaml_dict(body)


def open_fds() -> dict[int, str]:
    """This process's open file descriptors and what each is (``socket:[…]``,
    ``anon_inode:[eventpoll]``, a path)."""
    result: dict[int, str] = {}
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the fd of the listing itself is gone
            result[int(name)] = os.readlink(f"/proc/self/fd/{name}")
    return result


# == a real server that crashes and comes back =========================================


class RestartableServer:
    """beanstalkd on a fixed loopback port, SIGKILLed and started again on
    the same port (and the same binlog, if it has one) on demand.

    The port never changes, so a client's address stays valid across
    restarts: exactly what a client sees when a supervisor restarts a
    crashed server. With a binlog the jobs come back too (reserved ones as
    ready); without one the new server is empty.
    """

    def __init__(self, binlog_dir: Path | None = None, extra_args: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        self.binlog_dir = binlog_dir
        self.extra_args = extra_args
        self.restarts = 0
        self._stack: contextlib.ExitStack | None = None
        self._server: Server | None = None

    @property
    def address(self) -> Address:
        return ("127.0.0.1", self.port)

    @property
    def pid(self) -> int:
        assert self._server is not None, "the server is not running"
        return self._server.pid

    def start(self) -> None:
        assert self._stack is None, "already running"
        stack = contextlib.ExitStack()
        self._server = stack.enter_context(
            running_beanstalkd(
                port=self.port, binlog_dir=self.binlog_dir, extra_args=self.extra_args
            )
        )
        self._stack = stack

    def kill(self) -> None:
        """SIGKILL the server (no chance to tidy up) and reap it."""
        assert self._stack is not None, "not running"
        os.kill(self.pid, signal.SIGKILL)
        # Closing the stack reaps the process (its SIGTERM to a dead child is
        # harmless); once reaped, its sockets are closed and the clients'
        # kernels have the FIN or RST.
        stack, self._stack, self._server = self._stack, None, None
        stack.close()

    def restart(self) -> None:
        """A crash and a restart: SIGKILL, then a new server on the same port."""
        self.kill()
        self.start()
        self.restarts += 1

    def stop(self) -> None:
        if self._stack is not None:
            stack, self._stack, self._server = self._stack, None, None
            stack.close()


# == scripted peers ====================================================================


def command_size(data: bytes | bytearray) -> int | None:
    """The length of the first complete command in ``data`` (a ``put``'s
    body included), or ``None`` while it is incomplete."""
    end = data.find(b"\r\n")
    if end < 0:
        return None
    if data.startswith(b"put "):
        total = end + 2 + int(data[:end].split()[-1]) + 2
        return total if len(data) >= total else None
    return end + 2


@dataclass
class PeerConnection:
    """One connection a scripted peer accepted: the commands it read, in
    order (a ``put`` with its body), and whether the client closed it."""

    sock: socket.socket
    commands: list[bytes] = field(default_factory=list)
    client_closed: threading.Event = field(default_factory=threading.Event)


class _TcpPeer:
    """A loopback listener with a thread per accepted connection, which runs
    :meth:`handle`. :meth:`close` ends every thread (a shutdown wakes a
    blocked ``accept``/``recv`` on Linux) and joins it."""

    def __init__(self) -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.address: Address = self._listener.getsockname()
        self.connections: list[PeerConnection] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._closing = False
        self._spawn(self._accept_loop)

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            conn = PeerConnection(sock)
            with self._lock:
                if self._closing:
                    sock.close()
                    return
                self.connections.append(conn)
            self._spawn(self._run, conn)

    def _run(self, conn: PeerConnection) -> None:
        try:
            self.handle(conn)
        except OSError:
            pass
        finally:
            conn.sock.close()

    def read_commands(self, conn: PeerConnection) -> Iterator[bytes]:
        """The commands arriving on ``conn`` as they complete; ends (setting
        ``client_closed``) when the client closes or resets it."""
        pending = bytearray()
        while True:
            try:
                chunk = conn.sock.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                conn.client_closed.set()
                return
            pending += chunk
            while (size := command_size(pending)) is not None:
                command = bytes(pending[:size])
                del pending[:size]
                with self._lock:
                    conn.commands.append(command)
                yield command

    def handle(self, conn: PeerConnection) -> None:
        raise NotImplementedError

    def commands(self) -> list[list[bytes]]:
        """Every connection's commands so far, in the order they were accepted."""
        with self._lock:
            return [list(c.commands) for c in self.connections]

    def close(self) -> None:
        with self._lock:
            self._closing = True
            connections = list(self.connections)
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(BOUND)
            assert not thread.is_alive(), "a scripted peer's thread did not stop"

    def __enter__(self: _P) -> _P:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


_P = TypeVar("_P", bound=_TcpPeer)


class SilentServer(_TcpPeer):
    """Accepts every connection and reads every command, and never answers:
    a server that hangs (stopped with SIGSTOP, stuck in a disk write, a
    half-dead middlebox), as a client sees it."""

    def handle(self, conn: PeerConnection) -> None:
        for _ in self.read_commands(conn):
            pass


class LosingServer(_TcpPeer):
    """Answers the set-up commands like beanstalkd, and on every ``put``
    reads the whole command and hangs up without replying: the put reached
    the server, its reply is lost.

    ``reset``: hang up with a RST (``SO_LINGER`` 0) rather than a FIN.
    """

    def __init__(self, *, reset: bool = False) -> None:
        self.reset = reset
        super().__init__()

    def puts(self) -> list[bytes]:
        """Every ``put`` received, on any connection."""
        return [c for conn in self.commands() for c in conn if c.startswith(b"put ")]

    def handle(self, conn: PeerConnection) -> None:
        using = b"default"
        watching = {b"default"}
        for command in self.read_commands(conn):
            words = command.split(b"\r\n", 1)[0].split()
            if words[0] == b"put":
                if self.reset:
                    conn.sock.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                return  # _run closes the socket: the reply never comes
            if words[0] == b"use":
                using = words[1]
                reply = b"USING " + using
            elif words[0] == b"list-tube-used":
                reply = b"USING " + using
            elif words[0] == b"watch":
                watching.add(words[1])
                reply = b"WATCHING %d" % len(watching)
            elif words[0] == b"ignore":
                watching.discard(words[1])
                reply = b"WATCHING %d" % len(watching)
            else:
                reply = b"UNKNOWN_COMMAND"
            conn.sock.sendall(reply + b"\r\n")


class CuttingProxy:
    """A TCP proxy to a real server whose connections can be cut.

    Clients connect to :attr:`address`; each connection is forwarded to
    ``target`` by two pump threads. :meth:`cut` shuts down both sides of
    every connection open through it: the server sees its client leave (and
    puts back the jobs that connection had reserved) while the client sees
    its server hang up. New connections go through as before.
    """

    def __init__(self, target: Address) -> None:
        self.target = target
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.address: Address = self._listener.getsockname()
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._threads: list[threading.Thread] = []
        self.accepted = 0
        self._start(self._accept_loop)

    def _start(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while True:
            try:
                downstream, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=BOUND)
                upstream.settimeout(None)
            except OSError:
                downstream.close()
                continue
            with self._lock:
                self._pairs.append((downstream, upstream))
                self.accepted += 1
            done = threading.Semaphore(0)
            self._start(self._pump, downstream, upstream, done)
            self._start(self._pump, upstream, downstream, done)
            self._start(self._reap, downstream, upstream, done)

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket, done: threading.Semaphore) -> None:
        try:
            while chunk := src.recv(65536):
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)  # pass the end of file on
            done.release()

    def _reap(self, a: socket.socket, b: socket.socket, done: threading.Semaphore) -> None:
        """Close a pair once both its pumps have ended."""
        for _ in range(2):
            done.acquire()
        with self._lock:
            with contextlib.suppress(ValueError):
                self._pairs.remove((a, b))
        a.close()
        b.close()

    def open_connections(self) -> int:
        with self._lock:
            return len(self._pairs)

    def cut(self) -> int:
        """Cut every connection open now; return how many there were."""
        with self._lock:
            pairs = list(self._pairs)
        for pair in pairs:
            for sock in pair:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        return len(pairs)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self.cut()
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(BOUND)
            assert not thread.is_alive(), "a proxy thread did not stop"

    def __enter__(self) -> CuttingProxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# == a call running in a thread ========================================================


class Background(Generic[T]):
    """``fn()`` in a thread of its own: for a call that blocks (a reserve)
    while the test does something to its connection.

    :meth:`outcome` joins it (boundedly) and returns the exception it raised,
    or its result; :attr:`ended_at` is when it ended (``time.monotonic``).
    """

    def __init__(self, fn: Callable[[], T], name: str = "background-call") -> None:
        self._fn = fn
        self.result: T | None = None
        self.error: BaseException | None = None
        self.ended_at: float | None = None
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.result = self._fn()
        except BaseException as exc:
            self.error = exc
        finally:
            self.ended_at = time.monotonic()

    def done(self) -> bool:
        return self.ended_at is not None

    def outcome(self, timeout: float = BOUND) -> BaseException | T | None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"the call still runs after {timeout} s"
        return self.error if self.error is not None else self.result


# == network namespaces ================================================================


def netns_unavailable() -> str | None:
    """Why :class:`NetnsPair` cannot work here, or ``None`` if it can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "no 'ip' command (iproute2)"
    return None


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=BOUND, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


class NetnsPair:
    """Two network namespaces, a server's and a client's, joined by a veth
    pair (10.211.0.1/30 on the server's side, .2 on the client's). Those
    addresses exist only inside the two namespaces.

    Names carry the pid and a tag, so concurrent runs never collide. Entering
    creates everything; leaving deletes both namespaces (which destroys the
    veth pair), also after a failure half-way through creating them.
    """

    SERVER_IP = "10.211.0.1"
    CLIENT_IP = "10.211.0.2"

    def __init__(self, tag: str) -> None:
        base = f"bp{os.getpid()}{tag}"
        self.server_ns = f"{base}-srv"
        self.client_ns = f"{base}-cli"
        # Interface names are limited to 15 characters.
        self.server_if = f"v{os.getpid() % 10**8}{tag[:2]}s"
        self.client_if = f"v{os.getpid() % 10**8}{tag[:2]}c"
        self._made: list[str] = []

    def __enter__(self) -> NetnsPair:
        try:
            for ns in (self.server_ns, self.client_ns):
                _ip("netns", "add", ns)
                self._made.append(ns)
            _ip(
                "link", "add", self.server_if, "netns", self.server_ns, "type", "veth",
                "peer", "name", self.client_if, "netns", self.client_ns,
            )  # fmt: skip
            for ns, ifname, addr in (
                (self.server_ns, self.server_if, self.SERVER_IP),
                (self.client_ns, self.client_if, self.CLIENT_IP),
            ):
                _ip("-n", ns, "addr", "add", f"{addr}/30", "dev", ifname)
                _ip("-n", ns, "link", "set", ifname, "up")
                _ip("-n", ns, "link", "set", "lo", "up")
        except BaseException:
            self.__exit__()
            raise
        return self

    def in_server(self, *argv: str) -> list[str]:
        """``argv`` run inside the server's namespace."""
        return ["ip", "netns", "exec", self.server_ns, *argv]

    def in_client(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.client_ns, *argv]

    def pull_server_link(self) -> None:
        """Set the server's veth down: from then on nothing gets through in
        either direction, and neither side is told."""
        _ip("-n", self.server_ns, "link", "set", self.server_if, "down")

    def __exit__(self, *exc_info: object) -> None:
        errors = []
        for ns in reversed(self._made):
            try:
                _ip("netns", "del", ns)
            except RuntimeError as exc:
                errors.append(str(exc))
        self._made.clear()
        failing = bool(exc_info) and exc_info[0] is not None
        if errors and not failing:  # never mask the failure that got us here
            raise RuntimeError("; ".join(errors))
