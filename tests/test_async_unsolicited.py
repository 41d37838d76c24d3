"""Replies nobody asked for, and a server that closes an idle connection
(issue 7, item 1.5), on both async clients.

A real beanstalkd never sends a reply nobody asked for, so these tests talk to
a scripted peer: a unix socket server in a thread that plays one script per
connection it accepts. On a unix socket, once ``sendall`` (or ``close``) has
returned, the bytes (or the end of file) are in the client's receive queue,
so the peer tells the test "sent" with a :class:`threading.Event` and the
test needs no sleep.

What the clients must do: the trio client, before sending on a connection
that owes no reply, notices bytes that arrived meanwhile
(:class:`beanproto.RemoteProtocolError`; the next call connects again); the
asyncio client notices them as they arrive and gives the connection up, so
the next call goes out on a new one. Neither lets the stray reply become
the result of a later call. A close while idle is no error for either: the
next call goes out on a new connection (a socket passed in cannot be
replaced: :class:`ConnectionError`).
"""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import trio

import beanproto
from test_async_clients import POLL_DEADLINE, Backend, backend

__all__ = ["backend"]  # the fixture, imported to be used here

#: What a script does with one accepted connection.
Script = Callable[["PeerConnection"], None]


class PeerConnection:
    """The peer's end of one connection, with a small command reader."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._file = sock.makefile("rb")

    def command(self) -> bytes | None:
        """The next command (its line, and body for a ``put``); ``None`` at
        end of file."""
        line = self._file.readline()
        if not line:
            return None
        if line.startswith(b"put "):
            size = int(line.split()[4])
            return line + self._file.read(size + 2)
        return line

    def reply(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        self._file.close()
        self.sock.close()


class ScriptedPeer:
    """A unix socket server that plays ``scripts[n]`` on the n-th connection.

    ``received[n]`` lists the commands read on connection ``n``; a script
    ends by reading to the end of file (``drain``) or closing. ``errors``
    collects whatever a script raised, for the test to check.
    """

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="beanproto-peer-")
        self.path = os.path.join(self._dir.name, "peer.sock")
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(self.path)
        self._listener.listen()
        self._listener.settimeout(POLL_DEADLINE)
        self.received: list[list[bytes]] = []
        self.errors: list[BaseException] = []
        self._thread: threading.Thread | None = None

    def play(self, scripts: list[Script]) -> None:
        """Start serving: ``scripts[n]`` for the n-th connection."""
        self._thread = threading.Thread(
            target=self._serve, args=(scripts,), name="scripted-peer", daemon=True
        )
        self._thread.start()

    def _serve(self, scripts: list[Script]) -> None:
        try:
            for script in scripts:
                sock, _ = self._listener.accept()
                sock.settimeout(POLL_DEADLINE)
                self.received.append([])
                peer = PeerConnection(sock)
                try:
                    script(peer)
                finally:
                    peer.close()
        except BaseException as exc:  # reported by close()
            self.errors.append(exc)

    def expect(self, peer: PeerConnection) -> bytes:
        """Read the next command, which must come, and record it."""
        command = peer.command()
        assert command is not None, "the client closed instead of sending"
        self.received[-1].append(command)
        return command

    def drain(self, peer: PeerConnection) -> None:
        """Record every command until the client closes the connection."""
        while (command := peer.command()) is not None:
            self.received[-1].append(command)

    def close(self) -> None:
        if self._thread is not None:
            self._thread.join(POLL_DEADLINE)
        self._listener.close()
        self._dir.cleanup()
        assert self._thread is None or not self._thread.is_alive(), "the peer did not finish"
        assert not self.errors, f"the scripted peer failed: {self.errors!r}"


@pytest.fixture
def peer() -> Iterator[ScriptedPeer]:
    made = ScriptedPeer()
    try:
        yield made
    finally:
        made.close()


async def wait_for_event(backend: Backend, event: threading.Event) -> None:
    """Wait (in a worker thread, so the loop runs) for the peer's signal."""
    if backend.loop == "trio":
        done = await trio.to_thread.run_sync(event.wait, POLL_DEADLINE)
    else:
        loop = asyncio.get_running_loop()
        done = await loop.run_in_executor(None, event.wait, POLL_DEADLINE)
    assert done, "the scripted peer did not get there in time"


def put_reply(peer: ScriptedPeer, reply: bytes) -> Script:
    """A script: answer one put with ``reply``, then read to the end."""

    def script(conn: PeerConnection) -> None:
        assert peer.expect(conn).startswith(b"put ")
        conn.reply(reply)
        peer.drain(conn)

    return script


def test_extra_reply_in_the_same_segment(backend: Backend, peer: ScriptedPeer) -> None:

    def first(conn: PeerConnection) -> None:
        assert peer.expect(conn).startswith(b"put ")
        conn.reply(b"INSERTED 1\r\nINSERTED 2\r\n")  # one write, one segment
        peer.drain(conn)

    peer.play([first, put_reply(peer, b"INSERTED 3\r\n")])

    async def body() -> None:
        async with backend.client(peer.path) as client:
            assert await client.put("a") == 1
            if backend.checks_before_sending:
                # Noticed before the next command goes out...
                with pytest.raises(beanproto.RemoteProtocolError, match="no reply was owed"):
                    await client.put("b")
            # ...(asyncio's client: as it arrived); the call goes out on a new
            # connection.
            assert await client.put("c") == 3

    backend.run(body)
    peer.close()
    assert len(peer.received[0]) == 1, "a command went out after the stray reply"
    assert peer.received[1][0].endswith(b"\r\nc\r\n")


def test_extra_reply_arriving_later(backend: Backend, peer: ScriptedPeer) -> None:
    go, sent = threading.Event(), threading.Event()

    def first(conn: PeerConnection) -> None:
        assert peer.expect(conn).startswith(b"put ")
        conn.reply(b"INSERTED 1\r\n")
        assert go.wait(POLL_DEADLINE)
        conn.reply(b"INSERTED 2\r\n")  # on a unix socket: in the client's queue now
        sent.set()
        peer.drain(conn)

    peer.play([first, put_reply(peer, b"INSERTED 3\r\n")])

    async def body() -> None:
        async with backend.client(peer.path) as client:
            assert await client.put("a") == 1
            go.set()
            await wait_for_event(backend, sent)
            if backend.checks_before_sending:
                with pytest.raises(beanproto.RemoteProtocolError, match="no reply was owed"):
                    await client.put("b")
            assert await client.put("c") == 3

    backend.run(body)
    peer.close()
    assert len(peer.received[0]) == 1, "a command went out after the stray reply"
    assert peer.received[1][0].endswith(b"\r\nc\r\n")


def test_server_closed_while_idle_then_the_next_call_reconnects(
    backend: Backend, peer: ScriptedPeer
) -> None:
    closed = threading.Event()

    def first(conn: PeerConnection) -> None:
        assert peer.expect(conn).startswith(b"put ")
        conn.reply(b"INSERTED 1\r\n")
        conn.close()  # as a restarting server does: end of file, while idle
        closed.set()

    peer.play([first, put_reply(peer, b"INSERTED 2\r\n")])

    async def body() -> None:
        async with backend.client(peer.path) as client:
            assert await client.put("a") == 1
            await wait_for_event(backend, closed)
            assert await client.put("b") == 2  # no error: it never left

    backend.run(body)
    peer.close()
    assert [len(commands) for commands in peer.received] == [1, 1]


def test_server_closed_while_idle_on_a_socket_passed_in(
    backend: Backend, peer: ScriptedPeer
) -> None:
    closed = threading.Event()

    def first(conn: PeerConnection) -> None:
        assert peer.expect(conn).startswith(b"put ")
        conn.reply(b"INSERTED 1\r\n")
        conn.close()
        closed.set()

    peer.play([first])

    async def body() -> None:
        given: object
        if backend.name == "trio":
            given = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            await given.connect(peer.path)
        else:
            given = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            given.connect(peer.path)
        async with backend.client(given) as client:
            assert await client.put("a") == 1
            await wait_for_event(backend, closed)
            with pytest.raises(ConnectionError, match="not replaced"):
                await client.put("b")

    backend.run(body)
    peer.close()
    assert [len(commands) for commands in peer.received] == [1]


def test_a_server_closing_every_new_connection_is_not_retried_for_ever(
    backend: Backend, peer: ScriptedPeer, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed = [threading.Event(), threading.Event()]

    def first(conn: PeerConnection) -> None:
        assert peer.expect(conn).startswith(b"put ")
        conn.reply(b"INSERTED 1\r\n")
        conn.close()
        closed[0].set()

    def hang_up(conn: PeerConnection) -> None:
        conn.close()  # a server (or a proxy with its backend down) that accepts and closes
        closed[1].set()

    peer.play([first, hang_up])
    cls: Any = type(backend.client(peer.path))
    connect = cls._connect
    made = 0

    async def slow_connect(self: Any) -> Any:
        # The new connection's end of file arrives before the command is
        # sent (on a real network: latency between connect and send).
        nonlocal made
        made += 1
        if made > 1:
            raise AssertionError("the client connected again, and would for ever")
        link = await connect(self)
        await wait_for_event(backend, closed[1])
        return link

    async def body() -> None:
        async with backend.client(peer.path) as client:
            assert await client.put("a") == 1
            await wait_for_event(backend, closed[0])
            monkeypatch.setattr(cls, "_connect", slow_connect)
            with pytest.raises(ConnectionError, match="new connection"):
                await client.put("b")

    backend.run(body)
    assert made == 1
