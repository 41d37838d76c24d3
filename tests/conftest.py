"""Fixtures for the integration tests: real beanstalkd servers and clients.

Servers are started once per session (one per transport and ``-z`` size) by
``tools.beanstalkd.running_beanstalkd`` and stopped by pid at the end. Tests
that need a server of their own (drain mode, killing it) start one directly.

Every test gets a fresh tube name, and the ``client`` fixture uses and
watches only that tube, so tests sharing a server never see each other's jobs.
The ``transport`` fixture is parametrized, so everything built on ``client``
or ``client_factory`` runs over TCP and over a unix socket.

The ``flavor`` fixture is parametrized too: everything built on ``clients``,
``client_factory`` or ``client`` runs on ``beanproto_sync.Client`` and on the
trio, asyncio and anyio clients, the async ones behind a blocking proxy
(``tests/async_portal.py``). One set of test cases, four clients. A test
that only makes sense for the blocking client says so with ``@sync_only``.

Every test that uses a shared server is marked ``integration`` here; a test
that starts its own server must carry the marker itself (it fails otherwise),
so ``-m integration`` is exactly the tests that need beanstalkd: the test
command runs those once per server version (``$BEANSTALKD``) and the rest
once per Python.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from tools.beanstalkd import (
    Server,
    beanstalkd_path,
    beanstalkd_version,
    forbid_servers,
    running_beanstalkd,
)

import beanproto_anyio
import beanproto_asyncio
import beanproto_sync
import beanproto_trio
from async_portal import AsyncioPortal, Portal, TrioPortal, open_client
from faults_support import RestartableServer

#: ``-z`` of the shared servers: room for the 1 MiB round trip.
BIG_JOB_SIZE = 2 * 1024 * 1024

#: ``-z`` of the server used to provoke ``JOB_TOO_BIG``.
SMALL_JOB_SIZE = 10

TRANSPORTS = ["tcp", "unix"]

#: The clients every integration test runs on.
FLAVORS = ["sync", "trio", "asyncio", "anyio"]

#: The client class of each async flavor. The anyio client runs on the
#: asyncio portal's loop here (anyio's asyncio backend); tests/test_async_clients.py
#: runs it on trio too.
ASYNC_CLIENTS: dict[str, Any] = {
    "trio": beanproto_trio.Client,
    "asyncio": beanproto_asyncio.Client,
    "anyio": beanproto_anyio.Client,
}

#: For tests that only make sense for the blocking client (say why at the test).
sync_only = pytest.mark.parametrize("flavor", ["sync"])


def pytest_report_header(config: pytest.Config) -> str:
    """Which beanstalkd the integration tests talk to."""
    try:
        binary = beanstalkd_path()
        return f"beanstalkd: {binary} (version {beanstalkd_version(binary)})"
    except RuntimeError as exc:
        return f"beanstalkd: unavailable ({exc})"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses a shared server as ``integration``."""
    for item in items:
        if "server_pool" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True)
def _servers_only_in_integration_tests(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test not marked ``integration`` may not start beanstalkd (see above)."""
    if request.node.get_closest_marker("integration") is not None:
        yield
        return
    with forbid_servers(
        f"{request.node.nodeid} starts beanstalkd but is not marked integration: "
        "add @pytest.mark.integration so it runs against every server version"
    ):
        yield


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


class Clients:
    """Makes clients of one flavor and closes them at teardown.

    ``make(*args, **kwargs)`` calls the flavor's ``Client`` with exactly these
    arguments. An async client is made and entered on an event loop in a
    helper thread (started on first use, stopped at teardown) and comes back
    as a blocking proxy with the blocking client's API, typed as one.
    """

    def __init__(self, flavor: str) -> None:
        if flavor not in FLAVORS:
            raise ValueError(f"unknown flavor {flavor!r}")
        self.flavor = flavor
        self._portal: Portal | None = None
        self._clients: list[Any] = []

    def make(self, *args: Any, **kwargs: Any) -> beanproto_sync.Client[Any]:
        if self.flavor == "sync":
            client: Any = beanproto_sync.Client(*args, **kwargs)
        else:
            if self._portal is None:
                self._portal = TrioPortal() if self.flavor == "trio" else AsyncioPortal()
            cls = ASYNC_CLIENTS[self.flavor]
            client = open_client(self._portal, cls, *args, **kwargs)
        self._clients.append(client)
        return cast("beanproto_sync.Client[Any]", client)

    def close_all(self) -> None:
        try:
            for client in self._clients:
                client.close()
            self._clients.clear()
        finally:
            if self._portal is not None:
                portal, self._portal = self._portal, None
                portal.close()


class ClientFactory:
    """Makes clients connected to one server (closed by ``clients`` at teardown).

    ``factory(...)`` makes a ``Client[str]`` (utf-8 unless told otherwise);
    ``factory.raw(...)`` makes a ``Client[bytes]`` (``encoding=None``).
    ``use`` and ``watch`` default to the test's own tube.
    ``factory.make(...)`` passes its arguments to the constructor as they are.
    """

    def __init__(self, server: Server, tube: str, clients: Clients) -> None:
        self.server = server
        self.address: beanproto_sync.Address = address_of(server)
        self.tube = tube
        self.make = clients.make

    def __call__(
        self,
        *,
        encoding: str = "utf-8",
        use: str | None = None,
        watch: str | Iterable[str] | None = None,
        address: beanproto_sync.ConnectionTarget | None = None,
    ) -> beanproto_sync.Client[str]:
        return self.make(
            self.address if address is None else address,
            encoding=encoding,
            use=self.tube if use is None else use,
            watch=self.tube if watch is None else watch,
        )

    def raw(
        self,
        *,
        use: str | None = None,
        watch: str | Iterable[str] | None = None,
        address: beanproto_sync.ConnectionTarget | None = None,
    ) -> beanproto_sync.Client[bytes]:
        return self.make(
            self.address if address is None else address,
            encoding=None,
            use=self.tube if use is None else use,
            watch=self.tube if watch is None else watch,
        )


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


@pytest.fixture(params=FLAVORS)
def flavor(request: pytest.FixtureRequest) -> str:
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
def clients(flavor: str) -> Iterator[Clients]:
    """Clients of the test's flavor, closed (and their loop stopped) at teardown."""
    made = Clients(flavor)
    try:
        yield made
    finally:
        made.close_all()


@pytest.fixture
def client_factory(server: Server, tube: str, clients: Clients) -> ClientFactory:
    return ClientFactory(server, tube, clients)


@pytest.fixture
def client(client_factory: ClientFactory) -> beanproto_sync.Client[str]:
    """A utf-8 client that uses and watches only the test's tube."""
    return client_factory()


@pytest.fixture
def raw_client(client_factory: ClientFactory) -> beanproto_sync.Client[bytes]:
    """An ``encoding=None`` client on the test's tube."""
    return client_factory.raw()


@pytest.fixture
def binlog_server(tmp_path: Path) -> Iterator[RestartableServer]:
    """A beanstalkd of its own with a binlog, which the test may kill and
    restart on the same port (the fault tests). The test must be marked
    ``integration``."""
    binlog = tmp_path / "binlog"
    binlog.mkdir()
    server = RestartableServer(binlog_dir=binlog)
    server.start()
    try:
        yield server
    finally:
        server.stop()
