"""Fixtures for the integration tests: real beanstalkd servers and clients.

Servers are started once per session (one per transport and ``-z`` size) by
``tools.beanstalkd.running_beanstalkd`` and stopped by pid at the end. Tests
that need a server of their own (drain mode, killing it) start one directly.

Every test gets a fresh tube name, and the ``client`` fixture uses and
watches only that tube, so tests sharing a server never see each other's jobs.
The ``transport`` fixture is parametrized, so everything built on ``client``
or ``client_factory`` runs over TCP and over a unix socket.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from tools.beanstalkd import Server, running_beanstalkd

import beanproto_sync

#: ``-z`` of the shared servers: room for the 1 MiB round trip.
BIG_JOB_SIZE = 2 * 1024 * 1024

#: ``-z`` of the server used to provoke ``JOB_TOO_BIG``.
SMALL_JOB_SIZE = 10

TRANSPORTS = ["tcp", "unix"]


class ServerPool:
    """Starts beanstalkd servers on demand, one per (transport, max job size),
    and stops them all when the session ends."""

    def __init__(self) -> None:
        self._stack = contextlib.ExitStack()
        self._servers: dict[tuple[str, int | None], Server] = {}

    def get(self, transport: str, max_job_size: int | None = BIG_JOB_SIZE) -> Server:
        key = (transport, max_job_size)
        if key not in self._servers:
            if transport not in TRANSPORTS:
                raise ValueError(f"unknown transport {transport!r}")
            self._servers[key] = self._stack.enter_context(
                running_beanstalkd(unix_socket=transport == "unix", max_job_size=max_job_size)
            )
        return self._servers[key]

    def close(self) -> None:
        self._stack.close()


def address_of(server: Server) -> beanproto_sync.Address:
    """Where a client connects to ``server``: its unix path, else (host, port)."""
    return server.unix_path if server.unix_path is not None else server.address


def new_tube() -> str:
    """A tube name no other test uses."""
    return f"t-{uuid.uuid4().hex}"


class ClientFactory:
    """Makes clients connected to one server and closes them at teardown.

    ``factory(...)`` makes a ``Client[str]`` (utf-8 unless told otherwise);
    ``factory.raw(...)`` makes a ``Client[bytes]`` (``encoding=None``).
    ``use`` and ``watch`` default to the test's own tube.
    """

    def __init__(self, server: Server, tube: str) -> None:
        self.server = server
        self.address: beanproto_sync.Address = address_of(server)
        self.tube = tube
        self._clients: list[beanproto_sync.Client[Any]] = []

    def __call__(
        self,
        *,
        encoding: str = "utf-8",
        use: str | None = None,
        watch: str | Iterable[str] | None = None,
        address: beanproto_sync.ConnectionTarget | None = None,
    ) -> beanproto_sync.Client[str]:
        client: beanproto_sync.Client[str] = beanproto_sync.Client(
            self.address if address is None else address,
            encoding=encoding,
            use=self.tube if use is None else use,
            watch=self.tube if watch is None else watch,
        )
        self._clients.append(client)
        return client

    def raw(
        self,
        *,
        use: str | None = None,
        watch: str | Iterable[str] | None = None,
        address: beanproto_sync.ConnectionTarget | None = None,
    ) -> beanproto_sync.Client[bytes]:
        client: beanproto_sync.Client[bytes] = beanproto_sync.Client(
            self.address if address is None else address,
            encoding=None,
            use=self.tube if use is None else use,
            watch=self.tube if watch is None else watch,
        )
        self._clients.append(client)
        return client

    def close_all(self) -> None:
        for client in self._clients:
            client.close()
        self._clients.clear()


@pytest.fixture(scope="session")
def server_pool() -> Iterator[ServerPool]:
    pool = ServerPool()
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    param: str = request.param
    return param


@pytest.fixture
def server(server_pool: ServerPool, transport: str) -> Server:
    """The shared server for ``transport`` (``-z`` 2 MiB)."""
    return server_pool.get(transport)


@pytest.fixture
def small_server(server_pool: ServerPool, transport: str) -> Server:
    """A shared server for ``transport`` with ``-z 10``."""
    return server_pool.get(transport, SMALL_JOB_SIZE)


@pytest.fixture
def tcp_server(server_pool: ServerPool) -> Server:
    """The shared TCP server, for tests that need no transport matrix."""
    return server_pool.get("tcp")


@pytest.fixture
def tube() -> str:
    return new_tube()


@pytest.fixture
def client_factory(server: Server, tube: str) -> Iterator[ClientFactory]:
    factory = ClientFactory(server, tube)
    try:
        yield factory
    finally:
        factory.close_all()


@pytest.fixture
def client(client_factory: ClientFactory) -> beanproto_sync.Client[str]:
    """A utf-8 client that uses and watches only the test's tube."""
    return client_factory()


@pytest.fixture
def raw_client(client_factory: ClientFactory) -> beanproto_sync.Client[bytes]:
    """An ``encoding=None`` client on the test's tube."""
    return client_factory.raw()
