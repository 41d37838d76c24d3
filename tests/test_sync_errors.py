"""Every error the clients can raise.

Three parts:

* errors a real beanstalkd can be made to send (integration tests, both
  transports, all three clients: the ``flavor`` fixture);
* bad arguments, refused before a byte reaches the server (checked with the
  server's own ``cmd-*`` counters), and transport failures (all three clients);
* replies no real server can be made to send (``OUT_OF_MEMORY``, garbage,
  truncation…), written by the test into the other end of a socket pair. That
  part is a unit test of the blocking client's reply handling, kept in its own
  class; it stays sync only (the async clients' byte handling is exercised in
  tests/test_async_clients.py).
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tools.beanstalkd import Server, free_port, running_beanstalkd

import beanproto
import beanproto_sync
from beanproto_sync import Client
from conftest import ClientFactory, Clients, address_of, new_tube
from faults_support import command_size

MISSING_ID = 2**62

integration = pytest.mark.integration


def wait_until(check: Callable[[], bool], what: str, deadline: float = 5.0) -> None:
    """Poll ``check`` (a query to the server) until it holds; no sleeping."""
    end = time.monotonic() + deadline
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")


def command_counters(client: Client[Any]) -> dict[str, int]:
    """The server's ``cmd-*`` counters, without ``cmd-stats`` (which this
    very query bumps)."""
    stats: dict[str, Any] = dict(client.stats())
    return {k: v for k, v in stats.items() if k.startswith("cmd-") and k != "cmd-stats"}


# == errors the real server sends ====================================================


@integration
class TestNotFound:
    def test_on_missing_job_ids(self, client: Client[str]) -> None:
        calls: list[Callable[[], object]] = [
            lambda: client.delete(MISSING_ID),
            lambda: client.release(MISSING_ID),
            lambda: client.bury(MISSING_ID),
            lambda: client.touch(MISSING_ID),
            lambda: client.peek(MISSING_ID),
            lambda: client.kick_job(MISSING_ID),
            lambda: client.stats_job(MISSING_ID),
            lambda: client.reserve_job(MISSING_ID),
        ]
        for call in calls:
            with pytest.raises(beanproto_sync.NotFoundError):
                call()
        # The connection is still in step after eight error replies.
        jid = client.put("x")
        assert client.reserve(timeout=0).id == jid

    def test_on_missing_tube(self, client: Client[str]) -> None:
        missing = new_tube()
        with pytest.raises(beanproto_sync.NotFoundError):
            client.stats_tube(missing)
        with pytest.raises(beanproto_sync.NotFoundError):
            client.pause_tube(missing, 10)
        assert missing not in client.tubes()

    def test_peeks_on_empty_tube(self, client: Client[str]) -> None:
        for peek in (client.peek_ready, client.peek_delayed, client.peek_buried):
            with pytest.raises(beanproto_sync.NotFoundError):
                peek()

    def test_on_jobs_in_the_wrong_state(self, client: Client[str]) -> None:
        ready = client.put("ready")
        for action in (client.release, client.bury, client.touch, client.kick_job):
            with pytest.raises(beanproto_sync.NotFoundError):
                action(ready)
        assert client.stats_job(ready)["state"] == "ready"
        job = client.reserve()
        with pytest.raises(beanproto_sync.NotFoundError):
            client.reserve_job(job.id)  # already reserved

    def test_is_a_beanstalkd_error(self, client: Client[str]) -> None:
        with pytest.raises(beanproto_sync.BeanstalkdError) as caught:
            client.delete(MISSING_ID)
        assert isinstance(caught.value, beanproto_sync.Error)
        assert not isinstance(caught.value, ConnectionError)


@integration
def test_timed_out(client: Client[str]) -> None:
    with pytest.raises(beanproto_sync.TimedOutError):
        client.reserve(timeout=0)
    jid = client.put("x")
    assert client.reserve(timeout=0).id == jid


@integration
def test_deadline_soon(client: Client[str]) -> None:
    jid = client.put("hurry", ttr=1)
    job = client.reserve()
    assert job.id == jid
    started = time.monotonic()
    with pytest.raises(beanproto_sync.DeadlineSoonError):
        client.reserve()
    with pytest.raises(beanproto_sync.DeadlineSoonError):
        client.reserve(timeout=10)
    assert time.monotonic() - started < 1.0  # answered at once, not after a wait
    client.delete(job)
    with pytest.raises(beanproto_sync.TimedOutError):
        client.reserve(timeout=0)


@integration
def test_not_ignored(client: Client[str], tube: str) -> None:
    with pytest.raises(beanproto_sync.NotIgnoredError):
        client.ignore(tube)
    assert client.watching() == [tube]


@integration
def test_job_too_big(small_server: Server, tube: str, clients: Clients) -> None:
    with clients.make(address_of(small_server), use=tube, watch=tube) as client:
        assert client.stats()["max-job-size"] == 10
        with pytest.raises(beanproto_sync.JobTooBigError):
            client.put("x" * 11)
        with pytest.raises(beanproto_sync.JobTooBigError):
            client.put("y" * 5000)  # far over the limit
        # The server skipped the body, so the connection is still in step.
        jid = client.put("z" * 10)
        job = client.reserve(timeout=0)
        assert (job.id, job.body) == (jid, "z" * 10)


@integration
@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_draining(transport: str, clients: Clients) -> None:
    with running_beanstalkd(unix_socket=transport == "unix") as server:
        with clients.make(address_of(server)) as client:
            before = client.put("before drain")
            assert client.stats()["draining"] == "false"
            os.kill(server.pid, signal.SIGUSR1)
            wait_until(lambda: client.stats()["draining"] == "true", "drain mode")
            with pytest.raises(beanproto_sync.DrainingError):
                client.put("refused")
            assert client.stats()["current-jobs-ready"] == 1
            # Workers carry on in drain mode.
            job = client.reserve(timeout=0)
            assert job.id == before
            client.delete(job)


# == refused before anything is sent ================================================

BAD_TUBES = [
    pytest.param("a b", id="space"),
    pytest.param("a\rb", id="CR"),
    pytest.param("a\nb", id="LF"),
    pytest.param("a\r\nput 0 0 1 1", id="CRLF-injection"),
    pytest.param("", id="empty"),
    pytest.param("x" * 201, id="201-chars"),
    pytest.param("-leading-hyphen", id="leading-hyphen"),
    pytest.param("t\u00fcbe", id="non-ascii"),
    pytest.param("tab\there", id="tab"),
]

TUBE_METHODS: list[tuple[str, Callable[[Client[str], str], object]]] = [
    ("use", lambda c, t: c.use(t)),
    ("watch", lambda c, t: c.watch(t)),
    ("ignore", lambda c, t: c.ignore(t)),
    ("stats_tube", lambda c, t: c.stats_tube(t)),
    ("pause_tube", lambda c, t: c.pause_tube(t, 1)),
]

U32 = 2**32

BAD_NUMBERS: list[Any] = [
    pytest.param(lambda c: c.put("x", priority=-1), ValueError, id="put-priority--1"),
    pytest.param(lambda c: c.put("x", priority=U32), ValueError, id="put-priority-2**32"),
    pytest.param(lambda c: c.put("x", delay=-1), ValueError, id="put-delay--1"),
    pytest.param(lambda c: c.put("x", delay=U32), ValueError, id="put-delay-2**32"),
    pytest.param(lambda c: c.put("x", ttr=-1), ValueError, id="put-ttr--1"),
    pytest.param(lambda c: c.put("x", ttr=U32), ValueError, id="put-ttr-2**32"),
    pytest.param(lambda c: c.put("x", priority=True), TypeError, id="put-priority-bool"),
    pytest.param(lambda c: c.put("x", priority=1.5), TypeError, id="put-priority-float"),
    pytest.param(lambda c: c.put("x", delay="1"), TypeError, id="put-delay-str"),
    pytest.param(lambda c: c.put(None), TypeError, id="put-body-None"),
    pytest.param(lambda c: c.put(42), TypeError, id="put-body-int"),
    pytest.param(lambda c: c.put("\udcff"), UnicodeEncodeError, id="put-unencodable"),
    pytest.param(lambda c: c.release(1, priority=-1), ValueError, id="release-priority"),
    pytest.param(lambda c: c.release(1, delay=U32), ValueError, id="release-delay"),
    pytest.param(lambda c: c.bury(1, priority=U32), ValueError, id="bury-priority"),
    pytest.param(lambda c: c.reserve(timeout=-1), ValueError, id="reserve-timeout--1"),
    pytest.param(lambda c: c.reserve(timeout=U32), ValueError, id="reserve-timeout-2**32"),
    pytest.param(lambda c: c.kick(-1), ValueError, id="kick--1"),
    pytest.param(lambda c: c.pause_tube("default", -1), ValueError, id="pause-delay--1"),
    pytest.param(lambda c: c.delete(-1), ValueError, id="delete--1"),
    pytest.param(lambda c: c.delete(2**64), ValueError, id="delete-2**64"),
    pytest.param(lambda c: c.peek(-5), ValueError, id="peek--5"),
    pytest.param(lambda c: c.delete(True), TypeError, id="delete-bool"),
]


def assert_refused_silently(
    client: Client[Any], call: Callable[[], object], error: type[Exception]
) -> None:
    """``call`` raises ``error`` (also a beanproto_sync.Error, unless it is a
    codec error), the server counted no command, and the client still works."""
    before = command_counters(client)
    with pytest.raises(error) as caught:
        call()
    if not isinstance(caught.value, UnicodeError):
        assert isinstance(caught.value, beanproto_sync.Error)
        assert isinstance(
            caught.value, (beanproto_sync.ArgumentError, beanproto_sync.ArgumentTypeError)
        )
    assert command_counters(client) == before
    jid = client.put(b"still works" if client.encoding is None else "still works")
    assert client.reserve(timeout=0).id == jid


@integration
class TestRefusedBeforeSending:
    @pytest.mark.parametrize("bad", BAD_TUBES)
    @pytest.mark.parametrize(("method", "call"), TUBE_METHODS, ids=[m for m, _ in TUBE_METHODS])
    def test_bad_tube_names(
        self,
        client: Client[str],
        bad: str,
        method: str,
        call: Callable[[Client[str], str], object],
    ) -> None:
        assert_refused_silently(client, lambda: call(client, bad), ValueError)

    @pytest.mark.parametrize(("call", "error"), BAD_NUMBERS)
    def test_bad_numbers_and_bodies(
        self, client: Client[str], call: Callable[[Client[str]], object], error: type[Exception]
    ) -> None:
        assert_refused_silently(client, lambda: call(client), error)

    def test_str_body_with_encoding_none(self, raw_client: Client[bytes]) -> None:
        assert_refused_silently(raw_client, lambda: raw_client.put("text"), TypeError)  # type: ignore[arg-type]

    @pytest.mark.parametrize("bad", BAD_TUBES)
    def test_constructor_refuses_bad_tubes_before_connecting(
        self, client_factory: ClientFactory, client: Client[str], bad: str
    ) -> None:
        before = client.stats()["total-connections"]
        for kwargs in ({"use": bad}, {"watch": bad}, {"watch": ["ok-tube", bad]}):
            with pytest.raises(ValueError) as caught:
                client_factory.make(client_factory.address, **kwargs)
            assert isinstance(caught.value, beanproto_sync.Error)
        assert client.stats()["total-connections"] == before

    def test_constructor_refuses_empty_watch_list(
        self, client_factory: ClientFactory, client: Client[str]
    ) -> None:
        before = client.stats()["total-connections"]
        with pytest.raises(ValueError):
            client_factory.make(client_factory.address, watch=[])
        assert client.stats()["total-connections"] == before


# == transport failures ==============================================================


@integration
def test_connection_refused(clients: Clients) -> None:
    with pytest.raises(ConnectionRefusedError) as caught:
        clients.make(("127.0.0.1", free_port()))
    assert isinstance(caught.value, ConnectionError)


@integration
def test_missing_unix_socket(tmp_path: Path, clients: Clients) -> None:
    with pytest.raises(FileNotFoundError):
        clients.make(str(tmp_path / "no-such.sock"))


@integration
@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_server_killed_mid_session(transport: str, clients: Clients) -> None:
    with running_beanstalkd(unix_socket=transport == "unix") as server:
        address = address_of(server)
        client = clients.make(address)
        try:
            client.put("x")
            os.kill(server.pid, signal.SIGKILL)

            def gone() -> bool:
                family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
                with socket.socket(family, socket.SOCK_STREAM) as probe:
                    try:
                        probe.connect(address)
                    except OSError:
                        return True
                    return False

            wait_until(gone, "the server to die")
            with pytest.raises(ConnectionError):
                client.stats()
            # Later calls fail too, rather than hang: with a ConnectionError, as
            # greenstalk's do (BrokenPipeError), so ``except ConnectionError``
            # around each call keeps working.
            for _ in range(2):
                with pytest.raises(ConnectionError):
                    client.put("y")
        finally:
            client.close()


# == replies no real server sends: a scripted peer ================================


def ok(yaml: bytes) -> bytes:
    """An ``OK <bytes>`` reply carrying ``yaml``."""
    return b"OK %d\r\n%b\r\n" % (len(yaml), yaml)


class ScriptedPeer:
    """The far end of a socket pair handed to ``Client``: the test scripts the
    replies, and can read back what the client sent.

    A reply is written when the client's next command has fully arrived, as a
    server would (the client treats bytes that come while no reply is owed
    as a broken server). A thread plays the server; everything it does is
    triggered by the bytes it reads, so nothing depends on timing.
    """

    def __init__(self) -> None:
        self.mine, theirs = socket.socketpair()
        theirs.settimeout(5)  # a client that waits for ever fails instead of hanging
        self.mine.settimeout(5)
        self._lock = threading.Lock()
        self._actions: list[bytes | None] = []  # None: hang up
        self._received = bytearray()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        self.client: Client[str] = Client(theirs)

    def reply(self, data: bytes) -> None:
        """Write ``data`` once the client's next command has arrived."""
        with self._lock:
            self._actions.append(data)

    def hang_up(self) -> None:
        """Then shut the peer's sending side (the client reads end of file)."""
        with self._lock:
            self._actions.append(None)

    def sent(self) -> bytes:
        """Everything the client has written so far."""
        with self._lock:
            return bytes(self._received)

    def _serve(self) -> None:
        pending = bytearray()
        while True:
            try:
                chunk = self.mine.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            with self._lock:
                self._received += chunk
            pending += chunk
            while (size := command_size(pending)) is not None:
                del pending[:size]
                with self._lock:
                    actions, self._actions = self._actions, []
                for action in actions:
                    if action is None:
                        self.mine.shutdown(socket.SHUT_WR)
                    else:
                        self.mine.sendall(action)

    def close(self) -> None:
        self.client.close()
        self._thread.join(5)
        self.mine.close()


@pytest.fixture
def peer() -> Iterator[ScriptedPeer]:
    p = ScriptedPeer()
    try:
        yield p
    finally:
        p.close()


class TestScriptedReplies:
    """Unit tests of the client against canned replies (not a beanstalkd mock).

    Sync only: the peer is a stdlib socket pair handed to the blocking
    client, read and written in step with its blocking calls.
    """

    @pytest.mark.parametrize(
        ("reply", "error"),
        [
            (b"OUT_OF_MEMORY\r\n", beanproto_sync.OutOfMemoryError),
            (b"INTERNAL_ERROR\r\n", beanproto_sync.InternalError),
            (b"BAD_FORMAT\r\n", beanproto_sync.BadFormatError),
            (b"UNKNOWN_COMMAND\r\n", beanproto_sync.UnknownCommandError),
            (b"EXPECTED_CRLF\r\n", beanproto_sync.ExpectedCrlfError),
            (b"JOB_TOO_BIG\r\n", beanproto_sync.JobTooBigError),
            (b"DRAINING\r\n", beanproto_sync.DrainingError),
        ],
    )
    def test_put_error_replies(
        self, peer: ScriptedPeer, reply: bytes, error: type[Exception]
    ) -> None:
        peer.reply(reply)
        with pytest.raises(error) as caught:
            peer.client.put("hello")
        assert isinstance(caught.value, beanproto_sync.BeanstalkdError)
        assert peer.sent() == b"put 65536 0 60 5\r\nhello\r\n"
        # An error reply is a complete reply: the stream is still in step.
        peer.reply(b"INSERTED 9\r\n")
        assert peer.client.put("again") == 9

    @pytest.mark.parametrize(
        ("call", "reply", "error"),
        [
            (lambda c: c.stats(), b"OUT_OF_MEMORY\r\n", beanproto_sync.OutOfMemoryError),
            (lambda c: c.reserve(), b"INTERNAL_ERROR\r\n", beanproto_sync.InternalError),
            (lambda c: c.delete(1), b"BAD_FORMAT\r\n", beanproto_sync.BadFormatError),
            (
                lambda c: c.reserve_job(1),
                b"UNKNOWN_COMMAND\r\n",
                beanproto_sync.UnknownCommandError,
            ),
            (lambda c: c.watch("a"), b"OUT_OF_MEMORY\r\n", beanproto_sync.OutOfMemoryError),
            (lambda c: c.tubes(), b"INTERNAL_ERROR\r\n", beanproto_sync.InternalError),
        ],
        ids=["stats", "reserve", "delete", "reserve_job", "watch", "tubes"],
    )
    def test_general_errors_on_other_commands(
        self,
        peer: ScriptedPeer,
        call: Callable[[Client[Any]], object],
        reply: bytes,
        error: type[Exception],
    ) -> None:
        peer.reply(reply)
        with pytest.raises(error):
            call(peer.client)

    def test_buried_on_put_carries_the_id(self, peer: ScriptedPeer) -> None:
        peer.reply(b"BURIED 42\r\n")
        with pytest.raises(beanproto_sync.BuriedError) as caught:
            peer.client.put("x", priority=1, delay=2, ttr=3)
        assert caught.value.id == 42
        assert peer.sent() == b"put 1 2 3 1\r\nx\r\n"

    def test_buried_on_release_has_no_id(self, peer: ScriptedPeer) -> None:
        peer.reply(b"BURIED\r\n")
        with pytest.raises(beanproto_sync.BuriedError) as caught:
            peer.client.release(7, priority=1, delay=2)
        assert caught.value.id is None
        assert peer.sent() == b"release 7 1 2\r\n"

    def test_bury_success_is_not_an_error(self, peer: ScriptedPeer) -> None:
        peer.reply(b"BURIED\r\n")
        assert peer.client.bury(7) is None  # type: ignore[func-returns-value]
        assert peer.sent() == b"bury 7 65536\r\n"

    def test_unknown_status(self, peer: ScriptedPeer) -> None:
        peer.reply(b"SOME_ERROR 1 2 3\r\n")
        with pytest.raises(beanproto_sync.UnknownResponseError) as caught:
            peer.client.reserve()
        assert caught.value.status == b"SOME_ERROR"
        assert caught.value.values == [b"1", b"2", b"3"]
        assert isinstance(caught.value, beanproto_sync.Error)
        assert isinstance(caught.value, beanproto.RemoteProtocolError)

    def test_reply_to_some_other_command(self, peer: ScriptedPeer) -> None:
        peer.reply(b"DELETED\r\n")
        with pytest.raises(beanproto_sync.UnknownResponseError) as caught:
            peer.client.put("x")
        assert caught.value.status == b"DELETED"
        assert caught.value.values == []

    @pytest.mark.parametrize(
        ("call", "reply"),
        [
            (lambda c: c.put("x"), b"INSERTED abc\r\n"),
            (lambda c: c.put("x"), b"INSERTED -1\r\n"),
            (lambda c: c.put("x"), b"INSERTED\r\n"),
            (lambda c: c.delete(1), b"DELETED 1\r\n"),
            (lambda c: c.reserve(), b"RESERVED 1\r\n"),
            (lambda c: c.reserve(), b"RESERVED 1 x\r\n"),
            (lambda c: c.reserve(), b"RESERVED 1 3\r\nabcXY"),
            (lambda c: c.reserve(), b"RESERVED 1 3\r\nabcdef\r\n"),
            (lambda c: c.watch("a"), b"WATCHING many\r\n"),
            (lambda c: c.using(), b"USING bad name\r\n"),
            (lambda c: c.stats(), b"OK 4\r\nnope\r\n"),
            (lambda c: c.stats(), ok(b"---\nno colon\n")),
            (lambda c: c.tubes(), ok(b"---\nxyz\n")),
            (lambda c: c.stats(), b"x" * 1000),
            (lambda c: c.stats(), b"\x00\xff\xfe garbage\r\n"),
        ],
    )
    def test_garbage_is_a_remote_protocol_error(
        self, peer: ScriptedPeer, call: Callable[[Client[Any]], object], reply: bytes
    ) -> None:
        peer.reply(reply)
        with pytest.raises(beanproto.RemoteProtocolError):
            call(peer.client)
        # Framing is lost: the client gives the connection up, and every later
        # call fails at once (as a ConnectionError, so callers reconnect)
        # instead of misreading.
        with pytest.raises(ConnectionError):
            peer.client.put("y")

    @pytest.mark.parametrize(
        ("call", "reply"),
        [
            (lambda c: c.put("x"), b""),
            (lambda c: c.put("x"), b"INSERT"),
            (lambda c: c.put("x"), b"INSERTED 5"),
            (lambda c: c.put("x"), b"INSERTED 5\r"),
            (lambda c: c.reserve(), b"RESERVED 1 10\r\nabc"),
            (lambda c: c.reserve(), b"RESERVED 1 3\r\nabc"),
            (lambda c: c.stats(), b"OK 100\r\n---\n"),
        ],
        ids=[
            "nothing",
            "half-status",
            "no-crlf",
            "half-crlf",
            "half-body",
            "no-body-crlf",
            "half-yaml",
        ],
    )
    def test_truncated_reply_is_a_connection_error(
        self, peer: ScriptedPeer, call: Callable[[Client[Any]], object], reply: bytes
    ) -> None:
        peer.reply(reply)
        peer.hang_up()
        with pytest.raises(ConnectionError) as caught:
            call(peer.client)
        assert isinstance(caught.value, beanproto.RemoteProtocolError)

    def test_peer_closed_before_the_command(self, peer: ScriptedPeer) -> None:
        peer.mine.close()
        with pytest.raises(ConnectionError):
            peer.client.put("x")

    def test_reply_written_byte_by_byte(self, peer: ScriptedPeer) -> None:
        for byte in b"RESERVED 12 5\r\nhello\r\n":
            peer.reply(bytes([byte]))
        job = peer.client.reserve()
        assert (job.id, job.body) == (12, "hello")
        assert peer.sent() == b"reserve\r\n"

    def test_scripted_success_replies(self, peer: ScriptedPeer) -> None:
        client = peer.client
        peer.reply(b"USING foo\r\n")
        client.use("foo")
        peer.reply(b"WATCHING 2\r\n")
        assert client.watch("bar") == 2
        peer.reply(b"KICKED 3\r\n")
        assert client.kick(10) == 3
        peer.reply(b"KICKED\r\n")
        assert client.kick_job(4) is None  # type: ignore[func-returns-value]
        peer.reply(b"TOUCHED\r\n")
        client.touch(1)
        peer.reply(b"RELEASED\r\n")
        client.release(1)
        peer.reply(b"DELETED\r\n")
        client.delete(1)
        peer.reply(b"PAUSED\r\n")
        client.pause_tube("foo", 5)
        peer.reply(b"FOUND 3 2\r\nhi\r\n")
        assert client.peek(3).body == "hi"
        peer.reply(ok(b"---\nname: 123\npause: 4\n"))
        stats = client.stats_tube("123")
        assert stats == {"name": "123", "pause": 4}
        peer.reply(ok(b'---\nversion: "1.13"\ndraining: true\nrusage-utime: 0.5\npid: 7\n'))
        assert client.stats() == {
            "version": "1.13",
            "draining": "true",
            "rusage-utime": "0.5",
            "pid": 7,
        }
        assert peer.sent() == (
            b"use foo\r\nwatch bar\r\nkick 10\r\nkick-job 4\r\ntouch 1\r\n"
            b"release 1 65536 0\r\ndelete 1\r\npause-tube foo 5\r\npeek 3\r\n"
            b"stats-tube 123\r\nstats\r\n"
        )

    def test_bytes_read_ahead_of_a_command_are_a_protocol_error(self, peer: ScriptedPeer) -> None:
        # Two replies where one was owed: the second arrived unasked.
        peer.reply(b"TOUCHED\r\nDELETED\r\n")
        peer.client.touch(1)
        with pytest.raises(beanproto.RemoteProtocolError, match="no reply was owed"):
            peer.client.delete(1)
        assert peer.sent() == b"touch 1\r\n"

    def test_constructor_setup_errors_close_the_socket(self) -> None:
        mine, theirs = socket.socketpair()
        with mine:
            theirs.settimeout(5)
            mine.sendall(b"USING t\r\nWATCHING 2\r\nNOT_IGNORED\r\n")
            with pytest.raises(beanproto_sync.NotIgnoredError):
                Client(theirs, use="t", watch="t")
            assert theirs.fileno() == -1
            mine.settimeout(5)
            assert mine.recv(1024) == b"use t\r\nwatch t\r\nignore default\r\n"
