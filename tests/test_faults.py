"""Faults: what each client does when the network or the server misbehaves.

Every test runs on the three clients (the ``flavor`` fixture: the blocking
client, and the trio and asyncio ones behind the blocking proxy of
tests/async_portal.py, or, where the client must live in another process,
run directly on its own event loop), because an application must be able to
count on the same answer whichever it uses:

* the time limits: ``connect_timeout`` bounds opening a connection and
  setting it up, ``io_timeout`` bounds waiting for bytes that should come now
  but never a wait the server was asked for (``reserve(timeout=...)``);
  either raises the built-in :class:`TimeoutError`;
* a server that crashes and comes back (SIGKILL, then a new beanstalkd on the
  same port and binlog): an idle client carries on, use and watch restored;
  a call cut off raises a :class:`ConnectionError`; with ``reconnect=False``
  the client stays broken, as greenstalk's does;
* a reply lost after the command left: :class:`beanproto.ReplyLostError`,
  and the command is never sent twice behind the caller's back;
* ``close()`` from another thread, reservations that die with their
  connection, and a peer that vanishes without a FIN (a pulled link, in
  network namespaces), which only TCP keepalive can detect.

Timings are asserted with slack (the test machines are small and busy), and
the measured detection times are printed (``pytest -s`` shows them).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tools.beanstalkd import Server, beanstalkd_path

import beanproto
import beanproto_asyncio
import beanproto_sync
import beanproto_trio
from conftest import FLAVORS, Clients, new_tube, sync_only
from faults_support import (
    BOUND,
    Background,
    CuttingProxy,
    LosingServer,
    NetnsPair,
    RestartableServer,
    SilentServer,
    netns_unavailable,
    open_fds,
    stats,
    stats_job,
    stats_tube,
    wait_until,
)

integration = pytest.mark.integration

#: Added to every expected duration: a loaded 2-core machine runs late.
SLACK = 1.5

SRC = str(Path(__file__).resolve().parent.parent / "src")


def report(what: str, seconds: float) -> None:
    """Print a measured time (shown with ``pytest -s``; kept in the log)."""
    print(f"\n[fault timing] {what}: {seconds:.3f} s")


def timed(call: Callable[[], object], bound: float = BOUND) -> tuple[BaseException | None, float]:
    """Run ``call``; return what it raised (or ``None``) and how long it took.

    It runs in a thread of its own, so that a client that hangs (no timeout
    where one is due) fails the test after ``bound`` seconds instead of
    hanging it; the clients fixture closes the client at teardown, which
    ends the call.
    """
    start = time.monotonic()
    call_ = Background(call, name="timed-call")
    call_.thread.join(bound)
    if not call_.done():
        raise AssertionError(f"the call still runs after {bound} s: a timeout did not fire")
    assert call_.ended_at is not None
    return call_.error, call_.ended_at - start


def waiting_on(address: tuple[str, int], tube: str, count: int = 1) -> Callable[[], bool]:
    """A check: the server has ``count`` clients waiting in a reserve on ``tube``."""

    def check() -> bool:
        tube_stats = stats_tube(address, tube)
        # beanstalkd drops a tube nobody watches and no job is in.
        waiting = 0 if tube_stats is None else int(tube_stats["current-waiting"])
        return waiting == count

    return check


@pytest.fixture
def plain_server() -> Iterator[RestartableServer]:
    """A restartable beanstalkd without a binlog (a restart loses every job)."""
    server = RestartableServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


# == 1. connect_timeout: a listener that never completes the handshake ===============


def _accept_queue_length(port: int) -> int | None:
    """The accept queue length of the loopback listener on ``port``, from
    /proc/net/tcp (a listener's rx_queue column is its accept backlog)."""
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            local, state, queues = fields[1], fields[3], fields[4]
            if state == "0A" and int(local.split(":")[1], 16) == port:
                return int(queues.split(":")[1], 16)
    return None


@pytest.fixture
def full_listener() -> Iterator[tuple[str, int]]:
    """A loopback listener with ``listen(0)`` that never accepts, its accept
    queue filled first: the kernel then drops every further SYN, so a
    connect neither succeeds nor fails, it hangs (a server overloaded or
    behind a black-holing firewall, as the client sees it)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    fillers: list[socket.socket] = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        address = listener.getsockname()
        for _ in range(3):
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            fillers.append(filler)
            filler.setblocking(False)
            filler.connect_ex(address)
        # With a backlog of 0, one completed handshake fills the queue.
        wait_until(lambda: (_accept_queue_length(address[1]) or 0) >= 1, "the accept queue to fill")
        yield address
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def test_connect_timeout_when_the_handshake_never_completes(
    clients: Clients, full_listener: tuple[str, int]
) -> None:
    error, elapsed = timed(lambda: clients.make(full_listener, connect_timeout=1))
    report(f"{clients.flavor}: connect to a full accept queue, connect_timeout=1", elapsed)
    assert isinstance(error, TimeoutError), repr(error)
    assert 0.8 <= elapsed <= 1 + SLACK


# == 2. a server that accepts and never answers ========================================


def test_io_timeout_bounds_an_ordinary_call(clients: Clients) -> None:
    with SilentServer() as silent:
        client = clients.make(silent.address, io_timeout=1)
        error, elapsed = timed(lambda: client.put("x"))
        report(f"{clients.flavor}: put to a silent server, io_timeout=1", elapsed)
        assert isinstance(error, TimeoutError), repr(error)
        assert 0.8 <= elapsed <= 1 + SLACK
        # The connection was given up (a late reply could only be misread)…
        first = silent.connections[0]
        wait_until(first.client_closed.is_set, "the client to close the timed-out connection")
        # … and the put is not sent again: the next call opens a connection
        # of its own and sends only its own command (which times out too).
        error, elapsed = timed(client.stats)
        assert isinstance(error, TimeoutError), repr(error)
        assert elapsed <= 1 + SLACK
        wait_until(lambda: sum(map(len, silent.commands())) >= 2, "both commands to arrive")
        assert silent.commands() == [[b"put 65536 0 60 1\r\nx\r\n"], [b"stats\r\n"]]


def test_connect_timeout_bounds_the_set_up(clients: Clients) -> None:
    with SilentServer() as silent:
        # io_timeout stays at its default (30 s): connect_timeout alone bounds
        # the use/watch set-up, which is part of connecting.
        error, elapsed = timed(lambda: clients.make(silent.address, use="x", connect_timeout=1))
        report(f"{clients.flavor}: set-up on a silent server, connect_timeout=1", elapsed)
        assert isinstance(error, TimeoutError), repr(error)
        assert 0.8 <= elapsed <= 1 + SLACK
        wait_until(lambda: sum(map(len, silent.commands())) >= 1, "the set-up to arrive")
        assert silent.commands() == [[b"use x\r\n"]]
        wait_until(
            silent.connections[0].client_closed.is_set, "the half set-up connection to be closed"
        )


# == 3. io_timeout never cuts a wait the server was asked for ==========================


@integration
def test_io_timeout_does_not_cut_reserve_with_timeout(
    tcp_server: Server, tube: str, clients: Clients
) -> None:
    client = clients.make(tcp_server.address, use=tube, watch=tube, io_timeout=1)
    error, elapsed = timed(lambda: client.reserve(timeout=3))
    report(f"{clients.flavor}: reserve(timeout=3) with io_timeout=1", elapsed)
    assert isinstance(error, beanproto_sync.TimedOutError), repr(error)
    assert 2.5 <= elapsed <= 3 + SLACK
    # TIMED_OUT is an ordinary reply: the same connection carries on.
    connections = int(stats(tcp_server.address)["total-connections"])
    jid = client.put("after the wait")
    job = client.reserve(timeout=0)
    assert (job.id, job.body) == (jid, "after the wait")
    client.delete(job)
    assert int(stats(tcp_server.address)["total-connections"]) == connections + 1  # ours only


@integration
def test_io_timeout_does_not_cut_reserve_without_timeout(
    tcp_server: Server, tube: str, clients: Clients
) -> None:
    client = clients.make(tcp_server.address, use=tube, watch=tube, io_timeout=1)
    waiting = Background(client.reserve)
    wait_until(waiting_on(tcp_server.address, tube), "the reserve to reach the server")
    waiting.thread.join(1.5)  # well past io_timeout
    assert not waiting.done(), f"reserve() ended after io_timeout: {waiting.outcome()!r}"
    producer = clients.make(tcp_server.address, use=tube, watch=tube)
    jid = producer.put("worth the wait")
    job = waiting.outcome()
    assert isinstance(job, beanproto_sync.Job), repr(job)
    assert (job.id, job.body) == (jid, "worth the wait")
    client.delete(job)


# == 4. a crash and a restart (SIGKILL; the same port and binlog) ======================


@integration
def test_an_idle_client_survives_a_crash_and_restart(
    binlog_server: RestartableServer, clients: Clients
) -> None:
    address = binlog_server.address
    used, other = new_tube(), new_tube()
    client = clients.make(address, use=used, watch=[used, other])
    before = [client.put(f"before-{n}") for n in range(3)]
    old_pid = binlog_server.pid
    binlog_server.restart()
    assert binlog_server.pid != old_pid
    # The first call after the crash: no exception (the command had not
    # left; it goes out on a new connection, set up as the old one was).
    error, elapsed = timed(lambda: client.put("after"))
    report(f"{clients.flavor}: first call after a restart (reconnect included)", elapsed)
    assert error is None, repr(error)
    assert int(client.stats()["pid"]) == binlog_server.pid  # really the new server
    assert client.using() == used
    assert sorted(client.watching()) == sorted([used, other])
    # The binlog kept every job put before the crash, in order.
    tube_stats = stats_tube(address, used)
    assert tube_stats is not None and tube_stats["current-jobs-ready"] == "4"
    got = []
    for _ in range(4):
        job = client.reserve(timeout=0)
        got.append((job.id, job.body))
        client.delete(job)
    assert got[:3] == [(jid, f"before-{n}") for n, jid in enumerate(before)]
    assert got[3][1] == "after"
    # The second watched tube is watched on the new connection too.
    producer = clients.make(address, use=other)
    jid = producer.put("other tube")
    assert client.reserve(timeout=0).id == jid


@integration
def test_a_crash_during_reserve_ends_it_and_the_next_reserve_works(
    binlog_server: RestartableServer, clients: Clients
) -> None:
    address = binlog_server.address
    watched = [new_tube(), new_tube()]
    client = clients.make(address, use=watched[0], watch=watched)
    waiting = Background(client.reserve)
    wait_until(
        lambda: waiting_on(address, watched[0])() and waiting_on(address, watched[1])(),
        "the reserve to reach the server",
    )
    killed_at = time.monotonic()
    binlog_server.kill()
    error = waiting.outcome()
    assert waiting.ended_at is not None
    detected = waiting.ended_at - killed_at
    report(f"{clients.flavor}: server killed during reserve() -> error", detected)
    assert isinstance(error, ConnectionError), repr(error)
    assert detected < 1.0
    binlog_server.start()
    producer = clients.make(address, use=watched[1])
    jid = producer.put("after the crash")
    job = client.reserve(timeout=2)
    assert (job.id, job.body) == (jid, "after the crash")


# == 5. a reply lost after the command left ============================================


def test_reply_lost_error_is_one_class_everywhere() -> None:
    for module in (beanproto_sync, beanproto_trio, beanproto_asyncio):
        assert module.ReplyLostError is beanproto.ReplyLostError, module.__name__
    assert issubclass(beanproto.ReplyLostError, ConnectionError)
    assert issubclass(beanproto.ConnectionClosedError, beanproto.ReplyLostError)


@pytest.mark.parametrize("hang_up", ["fin", "rst"])
def test_a_lost_put_reply_is_reported_and_never_resent(clients: Clients, hang_up: str) -> None:
    with LosingServer(reset=hang_up == "rst") as server:
        client = clients.make(server.address, use="jobs")
        with pytest.raises(beanproto.ReplyLostError):
            client.put("once")
        # The next call reconnects (use restored) and sends its own command only.
        assert client.using() == "jobs"
        put = b"put 65536 0 60 4\r\nonce\r\n"
        assert server.puts() == [put]
        assert server.commands() == [
            [b"use jobs\r\n", put],
            [b"use jobs\r\n", b"list-tube-used\r\n"],
        ]


# == 6. reconnect=False ================================================================


@integration
def test_without_reconnect_a_lost_connection_stays_lost(
    plain_server: RestartableServer, clients: Clients
) -> None:
    address = plain_server.address
    tube = new_tube()
    client = clients.make(address, use=tube, watch=tube, reconnect=False)
    client.put("before")
    plain_server.restart()
    connections = int(stats(address)["total-connections"])
    for _ in range(3):  # greenstalk's behaviour: every later call fails
        with pytest.raises(ConnectionError):
            client.put("after")
    # Not one connection attempt reached the new server (only our two queries).
    assert int(stats(address)["total-connections"]) == connections + 1
    assert stats_tube(address, tube) is None


@sync_only  # a connected socket is a stdlib socket only for the blocking client
@integration
def test_a_socket_passed_in_is_not_replaced(
    plain_server: RestartableServer, clients: Clients
) -> None:
    sock = socket.create_connection(plain_server.address, timeout=BOUND)
    sock.settimeout(None)
    client = clients.make(sock)
    client.put("before")
    plain_server.restart()
    with pytest.raises(ConnectionError, match="replace"):
        client.put("after")
    with pytest.raises(ConnectionError):
        client.put("later")


# == 7. close() from another thread ====================================================


def _sockets(fds: dict[int, str]) -> set[str]:
    return {what for what in fds.values() if what.startswith("socket:")}


@integration
def test_close_from_another_thread_ends_a_waiting_reserve(
    tcp_server: Server, tube: str, clients: Clients
) -> None:
    address = tcp_server.address
    client = clients.make(address, use=tube, watch=tube)
    assert client.using() == tube  # connected and set up before counting
    threads_before = set(threading.enumerate())
    sockets_before = _sockets(open_fds())
    waiting = Background(client.reserve, name="reserving")
    wait_until(waiting_on(address, tube), "the reserve to reach the server")
    closed_at = time.monotonic()
    client.close()
    error = waiting.outcome()
    assert waiting.ended_at is not None
    report(
        f"{clients.flavor}: close() from another thread -> reserve ends",
        waiting.ended_at - closed_at,
    )
    assert isinstance(error, ConnectionError), repr(error)
    assert waiting.ended_at - closed_at < 1.0
    assert set(threading.enumerate()) <= threads_before, "a thread was left behind"
    # The client's socket is closed (the event loop may take a moment) and
    # none was opened in its place.
    wait_until(
        lambda: _sockets(open_fds()) < sockets_before, "the client's socket to be closed", 2.0
    )
    assert not _sockets(open_fds()) - sockets_before
    wait_until(waiting_on(address, tube, 0), "the server to see the connection go")
    with pytest.raises(ConnectionError):  # closed means closed: no reconnect
        client.put("after close")


# == 8. reservations do not survive their connection ===================================


def _assert_reservation_gone(
    client: beanproto_sync.Client[str],
    jid: int,
    address: tuple[str, int],
    tube: str,
    clients: Clients,
) -> None:
    """``jid`` was reserved by ``client`` on a connection since lost: it can
    no longer touch, bury or release it, and the job is ready for anyone."""
    for action in (client.touch, client.bury, client.release):
        with pytest.raises(beanproto_sync.NotFoundError):
            action(jid)
    job_stats = stats_job(address, jid)
    assert job_stats is not None and job_stats["state"] == "ready"
    other = clients.make(address, watch=tube)
    job = other.reserve(timeout=0)
    assert job.id == jid
    other.delete(job)


@integration
def test_a_reservation_does_not_survive_a_restart(
    binlog_server: RestartableServer, clients: Clients
) -> None:
    address = binlog_server.address
    tube = new_tube()
    client = clients.make(address, use=tube, watch=tube)
    jid = client.put("work")
    assert client.reserve(timeout=0).id == jid
    binlog_server.restart()
    _assert_reservation_gone(client, jid, address, tube, clients)


@integration
def test_a_reservation_does_not_survive_its_connection(
    tcp_server: Server, tube: str, clients: Clients
) -> None:
    with CuttingProxy(tcp_server.address) as proxy:
        client = clients.make(proxy.address, use=tube, watch=tube)
        jid = client.put("work")
        assert client.reserve(timeout=0).id == jid
        assert proxy.cut() == 1

        def released() -> bool:
            job_stats = stats_job(tcp_server.address, jid)
            return job_stats is not None and job_stats["state"] == "ready"

        wait_until(released, "the server to put the job back")
        _assert_reservation_gone(client, jid, tcp_server.address, tube, clients)
        assert proxy.accepted == 2  # the calls after the cut went out on a new connection


# == 9. a peer that vanishes without a word (network namespaces) =======================

#: The client of test 9, run inside the client's namespace: connect with
#: keepalive=4, wait in reserve() (no timeout), print one JSON line with
#: what ended the wait and when (CLOCK_MONOTONIC is shared by all processes).
VANISH_CLIENT = r"""
import json, sys, time

flavor, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
options = dict(watch="vanish", keepalive=4, connect_timeout=5)


def outcome(exc):
    family = isinstance(exc, (ConnectionError, TimeoutError))
    return {
        "at": time.monotonic(),
        "error": type(exc).__name__ if exc is not None else None,
        "mro": [cls.__name__ for cls in type(exc).__mro__] if exc is not None else [],
        "connection_or_timeout": family,
        "message": str(exc),
    }


def waiting():
    print("WAITING", flush=True)


if flavor == "sync":
    import beanproto_sync

    client = beanproto_sync.Client((host, port), **options)
    waiting()
    try:
        client.reserve()
        result = outcome(None)
    except Exception as exc:
        result = outcome(exc)
    client.close()
elif flavor == "trio":
    import trio
    import beanproto_trio

    async def main():
        async with beanproto_trio.Client((host, port), **options) as client:
            waiting()
            try:
                await client.reserve()
                return outcome(None)
            except Exception as exc:
                return outcome(exc)

    result = trio.run(main)
else:
    import asyncio
    import beanproto_asyncio

    async def main():
        async with beanproto_asyncio.Client((host, port), **options) as client:
            waiting()
            try:
                await client.reserve()
                return outcome(None)
            except Exception as exc:
                return outcome(exc)

    result = asyncio.run(main())
print(json.dumps(result), flush=True)
"""

#: Run inside the server's namespace: wait (boundedly) until beanstalkd
#: listens, or until ``current-waiting`` reaches 1.
SERVER_PROBE = r"""
import socket, sys, time

host, port, what = sys.argv[1], int(sys.argv[2]), sys.argv[3]
deadline = time.monotonic() + 10
while time.monotonic() < deadline:
    try:
        with socket.create_connection((host, port), timeout=2) as sock:
            if what == "listening":
                sys.exit(0)
            sock.sendall(b"stats\r\n")
            data = b""
            while b"current-waiting" not in data or not data.endswith(b"\r\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
            for line in data.decode().splitlines():
                if line.startswith("current-waiting:") and int(line.split(":")[1]) >= 1:
                    sys.exit(0)
    except OSError:
        pass
    time.sleep(0.02)  # pacing a bounded poll
sys.exit(f"timed out waiting for {what}")
"""


def _read_line(proc: subprocess.Popen[str], deadline: float, log: Path, what: str) -> str:
    """The next line of ``proc``'s stdout, waiting no later than ``deadline``."""
    assert proc.stdout is not None
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{what}; the client's stderr: {log.read_text()!r}")
        ready, _, _ = select.select([proc.stdout], [], [], left)
        if ready:
            line = proc.stdout.readline()
            if not line:
                proc.wait(BOUND)
                raise AssertionError(
                    f"the client exited ({proc.returncode}) without a result: {log.read_text()}"
                )
            return line.strip()


@contextlib.contextmanager
def _process(argv: list[str], **kwargs: Any) -> Iterator[subprocess.Popen[str]]:
    """``argv`` running for the block; killed (if still running) and reaped after."""
    proc = subprocess.Popen(argv, text=True, **kwargs)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(BOUND)
        if proc.stdout is not None:
            proc.stdout.close()


@integration
@pytest.mark.parametrize("flavor", FLAVORS)
def test_keepalive_detects_a_vanished_peer(flavor: str, tmp_path: Path) -> None:
    """The server's link goes down while the client waits in reserve() with
    no timeout: no FIN, no RST, no reply will ever come. Only keepalive
    probes (TCP_KEEPIDLE/INTVL/CNT, TCP_USER_TIMEOUT) can tell the client."""
    reason = netns_unavailable()
    if reason is not None:
        pytest.skip(reason)
    port = 11300
    with contextlib.ExitStack() as stack:
        try:
            netns = stack.enter_context(NetnsPair(f"{FLAVORS.index(flavor)}{flavor[0]}"))
        except RuntimeError as exc:
            pytest.skip(f"cannot create network namespaces here: {exc}")
        stack.enter_context(
            _process(
                netns.in_server(beanstalkd_path(), "-l", netns.SERVER_IP, "-p", str(port)),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        probe = [sys.executable, "-c", SERVER_PROBE, netns.SERVER_IP, str(port)]
        subprocess.run(netns.in_server(*probe, "listening"), check=True, timeout=15)
        log = tmp_path / "client.log"
        stderr = stack.enter_context(log.open("w"))
        client = stack.enter_context(
            _process(
                netns.in_client(
                    sys.executable, "-c", VANISH_CLIENT, flavor, netns.SERVER_IP, str(port)
                ),
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=dict(os.environ, PYTHONPATH=SRC),
            )
        )
        line = _read_line(
            client, time.monotonic() + 15, log, "the client did not reach reserve() within 15 s"
        )
        assert line == "WAITING", line
        subprocess.run(netns.in_server(*probe, "waiting"), check=True, timeout=15)
        pulled_at = time.monotonic()
        netns.pull_server_link()
        result = json.loads(
            _read_line(
                client,
                time.monotonic() + 15,
                log,
                "reserve() had not ended 15 s after the link went down",
            )
        )
        detected = result["at"] - pulled_at
        report(f"{flavor}: peer vanished in reserve(), keepalive=4 -> {result['error']}", detected)
        assert result["connection_or_timeout"], result
        assert detected <= 8.0, result
        assert client.wait(BOUND) == 0, log.read_text()
