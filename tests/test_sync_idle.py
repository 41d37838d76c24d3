"""What the blocking client does with bytes that arrive while it is idle.

Before sending, the client looks for bytes that came since the last reply.
Bytes are a broken server: taken for the next call's reply they would be a
wrong value, so they raise ``RemoteProtocolError`` and nothing is sent. An
end of file means the server closed the idle connection (a restart): the
command has not left, so it goes out on a new connection set up with the
same ``use`` and ``watch`` tubes, and the caller sees nothing.
"""

from __future__ import annotations

import select
import signal
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest
from tools.beanstalkd import beanstalkd_path, free_port

import beanproto
from beanproto_sync import Client
from test_sync_errors import ScriptedPeer

pytestmark = pytest.mark.integration

BOUND = 10.0


def wait_readable(sock: socket.socket) -> None:
    """Wait (boundedly) until ``sock`` has bytes or an end of file to read."""
    ready, _, _ = select.select([sock], [], [], BOUND)
    assert ready, "nothing arrived"


@pytest.fixture
def scripted() -> Iterator[ScriptedPeer]:
    peer = ScriptedPeer()
    try:
        yield peer
    finally:
        peer.close()


def client_socket(client: Client[str]) -> socket.socket:
    link = client._link
    assert link is not None
    return link.sock


def test_a_reply_nobody_asked_for_is_a_protocol_error(scripted: ScriptedPeer) -> None:
    client = scripted.client
    scripted.reply(b"INSERTED 1\r\n")
    assert client.put("one") == 1
    # The server sends a second reply, for no command; it arrives while the
    # client is idle.
    scripted.mine.sendall(b"INSERTED 99\r\n")
    wait_readable(client_socket(client))
    with pytest.raises(beanproto.RemoteProtocolError, match="no reply was owed"):
        client.put("two")
    # It was refused before sending: the server got one put only.
    assert scripted.sent() == b"put 65536 0 60 3\r\none\r\n"
    with pytest.raises(ConnectionError):
        client.put("three")


def test_a_given_socket_closed_while_idle_is_not_replaced(scripted: ScriptedPeer) -> None:
    client = scripted.client
    scripted.reply(b"INSERTED 1\r\n")
    assert client.put("one") == 1
    scripted.mine.shutdown(socket.SHUT_WR)
    wait_readable(client_socket(client))
    with pytest.raises(ConnectionError, match="not replaced"):
        client.put("two")
    assert scripted.sent() == b"put 65536 0 60 3\r\none\r\n"


class Restartable:
    """A beanstalkd on a fixed loopback port that can be stopped and started
    again on the same port (a server restart, as clients see one)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [beanstalkd_path(), "-l", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + BOUND
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=BOUND).close()
                return
            except OSError:
                assert self.proc.poll() is None, "beanstalkd exited"
                assert time.monotonic() < deadline, "beanstalkd did not start listening"
                time.sleep(0.005)  # polling the port, bounded by the deadline

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(BOUND)
            self.proc = None


@pytest.fixture
def restartable() -> Iterator[Restartable]:
    server = Restartable()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_an_idle_client_survives_a_server_restart(restartable: Restartable) -> None:
    with Client(("127.0.0.1", restartable.port), use="jobs", watch=["work", "more"]) as client:
        client.put("before")
        restartable.stop()
        restartable.start()
        wait_readable(client_socket(client))  # the old connection's FIN
        second = client.put("after")  # no error: the put went out on a new connection
        assert client.using() == "jobs"
        assert sorted(client.watching()) == ["more", "work"]
        assert client.peek(second).body == "after"
        assert client.stats()["total-jobs"] == 1  # a new server: the old job is gone
        with Client(("127.0.0.1", restartable.port), watch="jobs") as worker:
            assert worker.reserve(timeout=0).body == "after"


def test_a_server_that_stays_down_gives_a_connection_error(restartable: Restartable) -> None:
    client: Client[str] = Client(("127.0.0.1", restartable.port))
    client.put("before")
    restartable.stop()
    wait_readable(client_socket(client))
    with pytest.raises(ConnectionRefusedError):
        client.put("after")
    with pytest.raises(ConnectionError):
        client.put("later")
    client.close()
