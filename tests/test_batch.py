"""Batches: ``put_many`` and pipelines, on the three clients.

Every test runs on ``beanproto_sync`` and, behind the blocking proxy of
tests/async_portal.py, on the trio and asyncio clients (the ``flavor``
fixture), over TCP and a unix socket where a shared server is used. What
they check:

* results in order, exactly what the single calls return (every command
  kind, failures included), for batches of 0 to 100,000 commands and of
  1 MiB bodies;
* no deadlock where a naive pipeline deadlocks (many puts, then peeks of
  large bodies, on a socket with a small receive buffer: the naive version
  is shown to deadlock too);
* failure replies from a real server (``JOB_TOO_BIG`` with ``-z``,
  ``DRAINING`` after SIGUSR1) and from a scripted peer (``BURIED``,
  ``OUT_OF_MEMORY``): :class:`~beanproto.BatchError`, every other id kept;
* a connection lost or timed out part-way (scripted peers):
  :class:`~beanproto.BatchLostError` with the answered results, a
  ``ReplyLostError`` per command sent and unanswered, the unsent indices;
  the next call reconnects;
* bad arguments refused before a byte is sent (the scripted peer sees
  nothing), and ``use``/``watch`` queued in a pipeline restored after a
  reconnect.
"""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import trio
from tools.beanstalkd import Server, running_beanstalkd

import async_portal
import beanproto
import beanproto_sync
from beanproto import _batch as batch
from beanproto_sync import Client
from beanproto_sync._api import Pipeline
from conftest import ClientFactory, Clients, address_of, new_tube
from faults_support import BOUND, PeerConnection, RestartableServer, _TcpPeer, wait_until

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
MISSING_ID = 2**62


@pytest.fixture
def long_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    """Give each proxied call of an async client two minutes, not ten
    seconds: 100,000 puts take a while under coverage on a busy machine."""
    monkeypatch.setattr(async_portal, "CALL_TIMEOUT", 120.0)


# -- put_many ----------------------------------------------------------------------------


def test_put_many_returns_the_ids_in_order(client: Client[str]) -> None:
    ids = client.put_many(["first", "second", "third"], priority=7, ttr=30)
    assert ids == sorted(ids) and len(set(ids)) == 3
    for jid, body in zip(ids, ["first", "second", "third"], strict=True):
        assert client.peek(jid).body == body
        stats = client.stats_job(jid)
        assert (stats["pri"], stats["ttr"], stats["delay"]) == (7, 30, 0)
    jobs = [client.reserve(timeout=0) for _ in ids]
    assert [job.id for job in jobs] == ids  # same priority: put order


@pytest.mark.parametrize("count", [0, 1, 1000])
def test_put_many_of_any_count(client: Client[str], tube: str, count: int) -> None:
    ids = client.put_many(f"job {n}" for n in range(count))  # any iterable
    assert len(ids) == len(set(ids)) == count
    assert ids == sorted(ids)
    assert client.stats_tube(tube)["current-jobs-ready"] == count
    if count:
        assert client.peek(ids[0]).body == "job 0"
        assert client.peek(ids[-1]).body == f"job {count - 1}"
    assert client.put("after") > (ids[-1] if ids else 0)  # still in step


@pytest.mark.timeout(300)
@pytest.mark.usefixtures("long_calls")
def test_put_many_of_100000_small_bodies(client: Client[str], tube: str) -> None:
    ids = client.put_many(["x" * 20] * 100_000)
    assert len(set(ids)) == 100_000
    assert ids == sorted(ids)
    assert client.stats_tube(tube)["current-jobs-ready"] == 100_000
    assert client.peek(ids[-1]).body == "x" * 20


def test_put_many_of_50_bodies_of_1_mib(raw_client: Client[bytes], tube: str) -> None:
    bodies = [bytes([n]) * MiB for n in range(50)]
    ids = raw_client.put_many(bodies)
    assert len(ids) == 50
    assert raw_client.stats_tube(tube)["current-jobs-ready"] == 50
    for n in (0, 17, 49):
        assert raw_client.peek(ids[n]).body == bodies[n]
    assert raw_client.stats_job(ids[1])["pri"] == beanproto.DEFAULT_PRIORITY


def test_put_many_and_a_pipeline_take_the_clients_body_types(
    raw_client: Client[bytes], client: Client[str]
) -> None:
    ids = raw_client.put_many(
        [b"bytes", bytearray(b"bytearray"), memoryview(b"memoryview")]  # type: ignore[list-item]
    )
    assert [raw_client.peek(jid).body for jid in ids] == [b"bytes", b"bytearray", b"memoryview"]
    with client.pipeline() as pipe:
        pipe.put("text").put(b"raw")  # type: ignore[arg-type]
        text_id, raw_id = pipe.execute()
    assert raw_client.peek(text_id).body == b"text"
    assert raw_client.peek(raw_id).body == b"raw"


# -- no deadlock ---------------------------------------------------------------------------


def _big_jobs(server: Server, tube: str, jobs: int = 6) -> tuple[list[int], list[bytes]]:
    """``jobs`` jobs of 1 MiB in ``tube``, put by a client of their own (so
    that the connection under test has not grown its buffers putting them)."""
    bodies = [bytes([65 + n]) * MiB for n in range(jobs)]
    with beanproto_sync.Client(address_of(server), encoding=None, use=tube) as setup:
        return setup.put_many(bodies), bodies


#: Per 1 MiB job: small puts, a peek of the job, and a put of a large body.
_RUN = 302


def _queue_puts_and_peeks(pipe: Any, big_ids: list[int]) -> None:
    """Many puts, each run followed by a peek of a 1 MiB job and a put of a
    large body: written all at once, the peek replies fill every buffer
    while the puts still go out."""
    for jid in big_ids:
        for n in range(300):
            pipe.put(b"%d" % n * 100)
        pipe.peek(jid)
        pipe.put(b"L" * (MiB // 2))


def _check_puts_and_peeks(results: list[Any], big_ids: list[int], bodies: list[bytes]) -> None:
    assert len(results) == len(big_ids) * _RUN
    for k, (jid, body) in enumerate(zip(big_ids, bodies, strict=True)):
        run = results[k * _RUN : (k + 1) * _RUN]
        assert all(type(r) is int for r in run[:300])
        assert (run[300].id, run[300].body) == (jid, body)
        assert type(run[301]) is int
    ids = [r for r in results if type(r) is int]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_pipeline_of_puts_then_large_peeks(
    raw_client: Client[bytes], server: Server, tube: str
) -> None:
    big_ids, bodies = _big_jobs(server, tube)
    with raw_client.pipeline() as pipe:
        _queue_puts_and_peeks(pipe, big_ids)
        results = pipe.execute()
    _check_puts_and_peeks(results, big_ids, bodies)


def _small_buffer_socket(server: Server) -> socket.socket:
    """A socket connected to ``server`` with a tiny receive buffer (and a
    fixed, small send buffer, so the kernel cannot grow its way out)."""
    family = socket.AF_UNIX if server.unix_path is not None else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    sock.connect(address_of(server))
    return sock


@pytest.mark.timeout(300)
@pytest.mark.usefixtures("long_calls")
def test_pipeline_of_puts_then_large_peeks_on_a_small_receive_buffer(
    client_factory: ClientFactory, clients: Clients, tube: str
) -> None:
    sock = _small_buffer_socket(client_factory.server)
    target: Any = trio.socket.from_stdlib_socket(sock) if clients.flavor == "trio" else sock
    client = clients.make(target, encoding=None, use=tube, watch=tube, io_timeout=5)
    big_ids, bodies = _big_jobs(client_factory.server, tube)
    with client.pipeline() as pipe:
        _queue_puts_and_peeks(pipe, big_ids)
        results = pipe.execute()
    _check_puts_and_peeks(results, big_ids, bodies)
    # And many small puts in one batch on the same socket.
    assert len(client.put_many([b"y"] * 20_000)) == 20_000


def test_a_naive_pipeline_of_the_same_batch_deadlocks(tcp_server: Server, tube: str) -> None:
    """What the test above guards against: every command written before any
    reply is read stops dead (the server stops reading while its replies
    cannot be written; the client never reads them)."""
    big_ids, _ = _big_jobs(tcp_server, tube)
    conn = beanproto.Connection()
    commands: list[beanproto.Command] = [beanproto.Use(tube=tube)]
    for jid in big_ids:
        commands += [beanproto.Put(body=b"%d" % n * 100) for n in range(300)]
        commands.append(beanproto.Peek(id=jid))
    data = memoryview(b"".join(conn.send(command) for command in commands))
    with _small_buffer_socket(tcp_server) as sock:
        sock.setblocking(False)
        sent = 0
        progress = time.monotonic()
        while time.monotonic() - progress < 2:  # no byte out for 2 s: stuck for good
            try:
                sent += sock.send(data[sent : sent + 65536])
            except BlockingIOError:
                select.select([], [sock], [], 0.1)
            else:
                progress = time.monotonic()
            assert sent < len(data), "the naive pipeline got through"


# -- failure replies ---------------------------------------------------------------------


@pytest.fixture
def small_client(small_server: Server, tube: str, clients: Clients) -> Client[str]:
    """A client of the ``-z 10`` server, on the test's tube."""
    return clients.make(address_of(small_server), use=tube, watch=tube)


def test_job_too_big_in_put_many_keeps_the_other_ids(small_client: Client[str]) -> None:
    bodies = ["short", "x" * 11, "fits", "y" * 50, "last"]
    with pytest.raises(beanproto_sync.BatchError) as caught:
        small_client.put_many(bodies)
    error = caught.value
    assert not isinstance(error, ConnectionError)
    assert sorted(error.failures) == [1, 3]
    assert all(type(e) is beanproto_sync.JobTooBigError for e in error.failures.values())
    assert len(error.ids) == 3
    assert error.results == [
        error.ids[0],
        error.failures[1],
        error.ids[1],
        error.failures[3],
        error.ids[2],
    ]
    assert "2 of 5 commands failed" in str(error)
    assert "#1: JobTooBigError" in str(error)
    # Those jobs really exist, with their bodies.
    for jid, body in zip(error.ids, ["short", "fits", "last"], strict=True):
        assert small_client.peek(jid).body == body
    # The same message as the single call's.
    with pytest.raises(beanproto_sync.JobTooBigError) as single:
        small_client.put("x" * 11)
    assert str(single.value) == str(error.failures[1])


def test_job_too_big_in_a_pipeline(small_client: Client[str], tube: str) -> None:
    with small_client.pipeline() as pipe:
        pipe.put("ok").put("much too big").using()
        with pytest.raises(beanproto_sync.BatchError) as caught:
            pipe.execute()
        assert len(pipe) == 0  # executed, whatever happened
    error = caught.value
    assert list(error.failures) == [1]
    assert error.results[2] == tube
    with small_client.pipeline() as pipe:
        pipe.put("ok").put("much too big").using()
        results = pipe.execute(raise_on_error=False)
    assert type(results[0]) is int
    assert type(results[1]) is beanproto_sync.JobTooBigError
    assert results[2] == tube


def test_draining_in_put_many_and_a_pipeline(transport: str, clients: Clients) -> None:
    with running_beanstalkd(unix_socket=transport == "unix") as server:
        client = clients.make(address_of(server))
        before = client.put_many(["before", "drain"])
        os.kill(server.pid, signal.SIGUSR1)
        wait_until(lambda: client.stats()["draining"] == "true", "drain mode")
        with pytest.raises(beanproto_sync.BatchError) as caught:
            client.put_many(["refused"] * 3)
        assert caught.value.ids == []
        assert sorted(caught.value.failures) == [0, 1, 2]
        assert all(type(e) is beanproto_sync.DrainingError for e in caught.value.results)
        with client.pipeline() as pipe:
            pipe.peek(before[0]).put("refused").using()
            results = pipe.execute(raise_on_error=False)
        assert results[0].body == "before"
        assert type(results[1]) is beanproto_sync.DrainingError
        assert results[2] == "default"
        assert client.stats()["current-jobs-ready"] == 2


# -- scripted peers ----------------------------------------------------------------------


class BatchPeer(_TcpPeer):
    """Answers like beanstalkd (``INSERTED <n>`` to every put, ``USING``,
    ``WATCHING``), except as scripted:

    * ``reply(n)``: the reply to the ``n``-th put of a connection, in place
      of ``INSERTED`` (``None``: the usual one);
    * ``answer``: on the first connection, after this many puts are
      answered, answer nothing more, and with ``hang_up`` close the
      sending side (a FIN) too; read on until the client closes.
    """

    def __init__(
        self,
        *,
        reply: Callable[[int], bytes | None] | None = None,
        answer: int | None = None,
        hang_up: bool = True,
    ) -> None:
        self.reply = reply
        self.answer = answer
        self.hang_up = hang_up
        self.next_id = 1
        self.stopped = threading.Event()
        super().__init__()

    def puts(self) -> list[bytes]:
        return [c for conn in self.commands() for c in conn if c.startswith(b"put ")]

    def handle(self, conn: PeerConnection) -> None:
        first = conn is self.connections[0]
        using = b"default"
        watching = {b"default"}
        puts = 0
        answering = True
        for command in self.read_commands(conn):
            if not answering:
                continue
            words = command.split(b"\r\n", 1)[0].split()
            if words[0] == b"put":
                if first and self.answer is not None and puts >= self.answer:
                    answering = False
                    if self.hang_up:
                        conn.sock.shutdown(socket.SHUT_WR)
                    self.stopped.set()
                    continue
                scripted = self.reply(puts) if self.reply is not None else None
                puts += 1
                if scripted is None:
                    scripted = b"INSERTED %d" % self.next_id
                    self.next_id += 1
                reply = scripted
            elif words[0] == b"use":
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


@pytest.fixture
def make_peer() -> Iterator[Callable[..., BatchPeer]]:
    made: list[BatchPeer] = []

    def make(**kwargs: Any) -> BatchPeer:
        peer = BatchPeer(**kwargs)
        made.append(peer)
        return peer

    yield make
    for peer in made:
        peer.close()


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (b"BURIED 77", beanproto_sync.BuriedError),
        (b"OUT_OF_MEMORY", beanproto_sync.OutOfMemoryError),
        (b"INTERNAL_ERROR", beanproto_sync.InternalError),
        (b"EXPECTED_CRLF", beanproto_sync.ExpectedCrlfError),
    ],
)
def test_failure_replies_no_real_server_gives(
    clients: Clients, make_peer: Callable[..., BatchPeer], reply: bytes, error: type[Exception]
) -> None:
    peer = make_peer(reply=lambda n: reply if n in (2, 5) else None)
    client = clients.make(peer.address)
    with pytest.raises(beanproto_sync.BatchError) as caught:
        client.put_many(["a"] * 8)
    assert sorted(caught.value.failures) == [2, 5]
    assert all(type(e) is error for e in caught.value.failures.values())
    assert caught.value.ids == [1, 2, 3, 4, 5, 6]
    if error is beanproto_sync.BuriedError:
        assert caught.value.failures[2].id == 77  # type: ignore[attr-defined]
    assert client.using() == "default"  # still in step


@pytest.mark.parametrize("count", [3, 1000])
def test_connection_lost_part_way(
    clients: Clients, make_peer: Callable[..., BatchPeer], count: int
) -> None:
    answered = 2
    peer = make_peer(answer=answered)
    client = clients.make(peer.address)
    with pytest.raises(beanproto_sync.BatchLostError) as caught:
        client.put_many([f"job {n}" for n in range(count)])
    error = caught.value
    assert isinstance(error, beanproto_sync.ReplyLostError)
    assert isinstance(error, ConnectionError)
    assert isinstance(error, beanproto_sync.BatchError)
    # The first write: one window (TCP: the byte budget's, of small replies).
    sent = min(count, batch.REPLY_BUDGET // batch.LINE_REPLY)
    assert error.results[:answered] == [1, 2] == error.ids
    for lost in error.results[answered:sent]:
        assert isinstance(lost, beanproto_sync.ReplyLostError), repr(lost)
    assert error.unsent == list(range(sent, count))
    for unsent in error.results[sent:]:
        assert type(unsent) is ConnectionError
        assert "not sent" in str(unsent)
    assert isinstance(error.__cause__, ConnectionError)
    assert f"{answered} answered" in str(error)
    assert f"{count - sent} not sent" in str(error)
    # What the server got: exactly the sent ones.
    wait_until(lambda: len(peer.puts()) == sent, "the peer to read what was sent")
    # The next call connects again and gets its own reply.
    assert client.put_many(["again"]) == [3]
    assert len(peer.connections) == 2


def test_io_timeout_part_way(clients: Clients, make_peer: Callable[..., BatchPeer]) -> None:
    peer = make_peer(answer=3, hang_up=False)
    client = clients.make(peer.address, io_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(beanproto_sync.BatchLostError) as caught:
        client.put_many(["x"] * 10)
    assert time.monotonic() - started < BOUND
    error = caught.value
    assert isinstance(error.__cause__, TimeoutError)
    assert error.ids == [1, 2, 3]
    assert all(isinstance(r, beanproto_sync.ReplyLostError) for r in error.results[3:])
    assert error.unsent == []
    assert client.put("again") == 4  # a new connection
    assert len(peer.connections) == 2


def test_arguments_are_refused_before_a_byte_is_sent(
    clients: Clients, make_peer: Callable[..., BatchPeer]
) -> None:
    peer = make_peer()
    client = clients.make(peer.address)
    raw = clients.make(peer.address, encoding=None)
    attempts: list[tuple[type[Exception], Callable[[], object]]] = [
        (beanproto_sync.ArgumentTypeError, lambda: client.put_many(["a", 5, "c"])),
        (beanproto_sync.ArgumentError, lambda: client.put_many(["a", "b"], priority=2**32)),
        (beanproto_sync.ArgumentError, lambda: client.put_many(["a"], ttr=-1)),
        (beanproto_sync.ArgumentTypeError, lambda: raw.put_many([b"a", "text"])),
        (beanproto_sync.ArgumentTypeError, lambda: client.put_many("abc")),
        (UnicodeEncodeError, lambda: client.put_many(["ok", "\udcff"])),
    ]
    for kind, attempt in attempts:
        with pytest.raises(kind):
            attempt()
    with client.pipeline() as pipe:
        pipe.put("queued")
        queueing: list[tuple[type[Exception], Callable[[], object]]] = [
            (beanproto_sync.ArgumentError, lambda: pipe.reserve()),
            (beanproto_sync.ArgumentError, lambda: pipe.use("a b")),
            (beanproto_sync.ArgumentTypeError, lambda: pipe.put(7)),
            (beanproto_sync.ArgumentError, lambda: pipe.delete(-1)),
            (beanproto_sync.ArgumentError, lambda: pipe.kick(2**32)),
            (beanproto_sync.ArgumentTypeError, lambda: pipe.release(None)),  # type: ignore[arg-type]
            (beanproto_sync.ArgumentError, lambda: pipe.pause_tube("t", -1)),
        ]
        for kind, queue in queueing:
            with pytest.raises(kind):
                queue()
        assert len(pipe) == 1  # only the good one
        pipe.reset()
        assert len(pipe) == 0
    # Nothing went out: the first bytes the server sees are this call's.
    assert client.using() == "default"
    wait_until(lambda: len(peer.connections) == 2, "the peer to accept both connections")
    assert peer.commands()[0] == [b"list-tube-used\r\n"]
    assert peer.commands()[1] == []


# -- pipelines -------------------------------------------------------------------------------


def test_leaving_the_with_block_executes_what_is_queued(client: Client[str], tube: str) -> None:
    with client.pipeline() as pipe:
        assert pipe  # true even when empty
        assert len(pipe) == 0
        assert pipe.put("a").put("b") is pipe
        assert len(pipe) == 2
    assert client.stats_tube(tube)["current-jobs-ready"] == 2
    with pytest.raises(KeyError):
        with client.pipeline() as pipe:
            pipe.put("never")
            raise KeyError("out")
    with client.pipeline() as pipe:
        pipe.put("dropped")
        pipe.reset()
    assert client.stats_tube(tube)["current-jobs-ready"] == 2
    with client.pipeline() as pipe:
        assert pipe.execute() == []


#: Placeholders in :data:`SCENARIO`: each run gets its own tubes and ids.
TUBE, TUBE2, ID0, ID1 = "<tube>", "<tube2>", "<id0>", "<id1>"

#: Every command kind, with failures, in an order whose results depend only
#: on the tube's own state (``reserve`` takes the timeout-0 form).
SCENARIO: list[tuple[str, tuple[Any, ...]]] = [
    ("put", ("a",)),
    ("put", ("b", 5, 0, 30)),
    ("put", ("c", 10, 100, 60)),
    ("use", (TUBE,)),
    ("using", ()),
    ("watching", ()),
    ("watch", (TUBE2,)),
    ("ignore", (TUBE2,)),
    ("ignore", (TUBE,)),
    ("peek", (ID0,)),
    ("peek_ready", ()),
    ("peek_delayed", ()),
    ("peek_buried", ()),
    ("reserve", (0,)),
    ("touch", (ID1,)),
    ("release", (ID1, 7, 0)),
    ("reserve_job", (ID1,)),
    ("bury", (ID1, 3)),
    ("peek_buried", ()),
    ("touch", (MISSING_ID,)),
    ("release", (MISSING_ID,)),
    ("bury", (MISSING_ID,)),
    ("kick_job", (ID1,)),
    ("kick_job", (MISSING_ID,)),
    ("kick", (10,)),
    ("stats_job", (ID0,)),
    ("stats_tube", (TUBE,)),
    ("stats", ()),
    ("tubes", ()),
    ("pause_tube", (TUBE, 0)),
    ("delete", (ID0,)),
    ("delete", (MISSING_ID,)),
    ("reserve", (0,)),
    ("reserve", (0,)),
    ("reserve", (0,)),
    ("reserve_job", (MISSING_ID,)),
    ("peek", (MISSING_ID,)),
    ("stats_job", (MISSING_ID,)),
    ("stats_tube", ("no-such-tube-" + "z" * 20,)),
    ("pause_tube", ("no-such-tube-" + "z" * 20, 1)),
]

#: Values that change between two runs of the scenario however alike.
_VOLATILE = {
    "age",
    "time-left",
    "pause-time-left",
    "pause",
    "uptime",
    "pid",
    "id",
    "total-connections",
    "current-connections",
    "current-producers",
    "current-workers",
    "current-waiting",
    "current-tubes",
    "total-jobs",
    "current-jobs-urgent",
    "current-jobs-ready",
    "current-jobs-reserved",
    "current-jobs-delayed",
    "current-jobs-buried",
    "job-timeouts",
    "binlog-current-index",
    "binlog-oldest-index",
    "binlog-records-written",
    "hostname",
    "os",
    "platform",
}


def _normalize(value: Any, tubes: dict[str, str], ids: dict[int, str]) -> Any:
    """``value`` with this run's tubes and job ids written as placeholders
    (ids only where a value is an id: a count may equal one)."""

    def text(s: str) -> str:
        for real, placeholder in tubes.items():
            s = s.replace(real, placeholder)
        return s

    if isinstance(value, BaseException):
        return (type(value), text(str(value)))
    if isinstance(value, beanproto_sync.Job):
        return ("job", ids.get(value.id, value.id), value.body)
    if isinstance(value, dict):
        return {
            k: (type(v), None if k.startswith("cmd-") or k in _VOLATILE else text(str(v)))
            for k, v in value.items()
            if not k.startswith("rusage")
        }
    if isinstance(value, list):
        return sorted(text(v) for v in value if v in tubes or v == "default")
    if isinstance(value, str):
        return text(value)
    return value


def _run_scenario(client_factory: ClientFactory, *, pipelined: bool) -> list[Any]:
    """:data:`SCENARIO` on a client of its own (using and watching a tube of
    its own), by single calls or in pipelines; the normalized results."""
    tube, tube2 = new_tube(), new_tube()
    client = client_factory(use=tube, watch=tube)
    tubes = {tube: TUBE, tube2: TUBE2}
    placeholders = {TUBE: tube, TUBE2: tube2}
    ids: list[int] = []

    def resolve(args: tuple[Any, ...]) -> tuple[Any, ...]:
        out = []
        for arg in args:
            if arg in (ID0, ID1):
                arg = ids[0 if arg == ID0 else 1]
            elif isinstance(arg, str):
                arg = placeholders.get(arg, arg)
            out.append(arg)
        return tuple(out)

    # The puts first: their ids are arguments of the commands after them.
    puts = [step for step in SCENARIO if step[0] == "put"]
    rest = [step for step in SCENARIO if step[0] != "put"]
    for _, args in puts:
        if pipelined:
            with client.pipeline() as pipe:
                ids += pipe.put(*args).execute()
        else:
            ids.append(client.put(*args))
    assert all(type(jid) is int for jid in ids)
    results: list[Any] = [f"<id{n}>" for n in range(len(ids))]
    if pipelined:
        with client.pipeline() as pipe:
            for name, args in rest:
                getattr(pipe, name)(*resolve(args))
            results += pipe.execute(raise_on_error=False)
    else:
        for name, args in rest:
            try:
                results.append(getattr(client, name)(*resolve(args)))
            except beanproto.Error as exc:
                results.append(exc)
    names = {jid: f"<id{n}>" for n, jid in enumerate(ids)}
    return [_normalize(r, tubes, names) for r in results]


def test_pipeline_results_equal_the_single_calls(client_factory: ClientFactory) -> None:
    singles = _run_scenario(client_factory, pipelined=False)
    pipelined = _run_scenario(client_factory, pipelined=True)
    assert len(pipelined) == len(SCENARIO)
    for step, single, piped in zip(SCENARIO, singles, pipelined, strict=True):
        assert piped == single, step
    # The scenario has both outcomes and every queueing method.
    kinds = {r[0] for r in singles if isinstance(r, tuple)}
    assert {
        beanproto_sync.NotFoundError,
        beanproto_sync.NotIgnoredError,
        beanproto_sync.TimedOutError,
    } <= kinds
    queueing = {n for n in dir(Pipeline) if not n.startswith("_")} - {"reset", "execute"}
    assert {name for name, _ in SCENARIO} == queueing
    assert queueing <= set(dir(beanproto_sync.Client))


def test_pipeline_jobs_that_do_not_decode(client: Client[str], raw_client: Client[bytes]) -> None:
    jid = raw_client.put(b"\xff\xfe")
    with client.pipeline() as pipe:
        pipe.peek(jid).reserve(timeout=0).using()
        results = pipe.execute(raise_on_error=False)
    for result in results[:2]:
        assert isinstance(result, beanproto_sync.JobDecodeError)
        assert (result.id, result.body) == (jid, b"\xff\xfe")
    with pytest.raises(beanproto_sync.JobDecodeError) as single:
        client.peek(jid)
    assert str(single.value) == str(results[0])
    client.delete(jid)


def test_pipeline_use_and_watch_survive_a_reconnect(
    binlog_server: RestartableServer, clients: Clients
) -> None:
    address = binlog_server.address
    used, watched = new_tube(), new_tube()
    client = clients.make(address)
    with client.pipeline() as pipe:
        pipe.use(used).watch(used).watch(watched).ignore("default").put("kept")
    old_pid = binlog_server.pid
    binlog_server.restart()
    assert binlog_server.pid != old_pid
    # The next call goes out on a new connection, set up from the pipeline's tubes.
    assert client.using() == used
    assert sorted(client.watching()) == sorted([used, watched])
    assert int(client.stats()["pid"]) == binlog_server.pid  # really the new server
    assert client.reserve(timeout=0).body == "kept"  # from the binlog, in the used tube
    with client.pipeline() as pipe:
        pipe.ignore(used).use(watched)
    binlog_server.restart()
    assert client.watching() == [watched]
    assert client.using() == watched


def test_reserve_in_a_pipeline_waits_its_timeout(client: Client[str]) -> None:
    with client.pipeline() as pipe:
        pipe.reserve(timeout=1).put("after the wait")
        results = pipe.execute(raise_on_error=False)
    assert type(results[0]) is beanproto_sync.TimedOutError
    assert type(results[1]) is int


def test_messages_name_the_commands(client: Client[str]) -> None:
    with pytest.raises(beanproto_sync.BatchError) as caught:
        with client.pipeline() as pipe:
            pipe.delete(MISSING_ID).kick_job(MISSING_ID).using()
    assert re.search(
        r"2 of 3 commands failed; the first, #0: NotFoundError: NOT_FOUND", str(caught.value)
    )


def test_a_reserve_in_a_batch_waits_longer_than_io_timeout(
    client_factory: ClientFactory, clients: Clients, tube: str
) -> None:
    """io_timeout bounds the replies due now, never the wait a reserve asks
    the server for, in a batch as in a single call."""
    client = clients.make(client_factory.address, use=tube, watch=tube, io_timeout=1)
    started = time.monotonic()
    with client.pipeline() as pipe:
        pipe.put("first").reserve(timeout=2).delete(MISSING_ID).reserve(timeout=2)
        results = pipe.execute(raise_on_error=False)
    assert time.monotonic() - started >= 2
    assert type(results[0]) is int
    assert results[1].id == results[0]
    assert type(results[2]) is beanproto_sync.NotFoundError
    assert type(results[3]) is beanproto_sync.TimedOutError
    client.delete(results[0])


def test_a_batch_after_the_server_restarted_goes_out_on_a_new_connection(
    binlog_server: RestartableServer, clients: Clients
) -> None:
    used = new_tube()
    client = clients.make(binlog_server.address, use=used)
    first = client.put_many(["before"])
    binlog_server.restart()
    # Nothing of the batch had left: no error, the set-up restored.
    ids = client.put_many(["after 1", "after 2"])
    assert ids[0] > first[0]
    with client.pipeline() as pipe:
        pipe.using()
        assert pipe.execute() == [used]


def test_a_batch_on_a_closed_client(client: Client[str]) -> None:
    client.close()
    with pytest.raises(ConnectionError):
        client.put_many(["never"])
    with pytest.raises(ConnectionError):
        with client.pipeline() as pipe:
            pipe.stats()
