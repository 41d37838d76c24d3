"""Run one scenario on greenstalk 2.1.1 and on ``beanproto_sync``, and compare.

A scenario is a function of a :class:`Side`. It makes clients with
``side.client(...)``, checks what it expects (errors looked up by name in the
side's own module, so ``side.raises("NotFoundError")`` means
``greenstalk.NotFoundError`` on one side and ``beanproto_sync.NotFoundError``
on the other) and returns what it observed. :meth:`SideBySide.same` runs it
once per module and insists both observed the same thing: a passing test
shows that beanproto_sync behaves like greenstalk, not merely like our own
reading of the protocol.

By default both sides share the test's server and get tube names of their
own. A scenario that looks at server-wide state (global stats, the list of
tubes, drain mode) asks for ``fresh=True``: each side then gets a private
beanstalkd, as greenstalk's suite does for every test.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import types
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import greenstalk
import pytest
from tools.beanstalkd import Server, running_beanstalkd

import beanproto_sync
from conftest import address_of, new_tube

T = TypeVar("T")

#: The reference first, then the module that must behave the same.
MODULES: tuple[types.ModuleType, ...] = (greenstalk, beanproto_sync)

#: Upper bound for one side of a scenario run in a helper thread.
SIDE_TIMEOUT = 30.0


def strip_module(module: types.ModuleType, text: str) -> str:
    """A repr without its ``<module>.`` prefix: each package names itself
    (``greenstalk.Job(...)``, ``beanproto_sync.Job(...)``), the rest must match."""
    prefix = module.__name__ + "."
    assert text.startswith(prefix), (text, prefix)
    return text[len(prefix) :]


class Side:
    """One module's run of a scenario: its clients, its server, its errors."""

    def __init__(self, module: types.ModuleType, server: Server, stack: contextlib.ExitStack):
        self.module = module
        self.server = server
        self.address: Any = address_of(server)
        self._stack = stack

    @property
    def name(self) -> str:
        return self.module.__name__

    def client(self, *args: Any, **kwargs: Any) -> Any:
        """``module.Client(address, *args, **kwargs)``, closed when the run ends.

        Typed ``Any``: the two modules' clients are different classes with one API.
        """
        client = self.module.Client(self.address, *args, **kwargs)
        self._stack.callback(client.close)
        return client

    def error(self, name: str) -> type[BaseException]:
        """The side's own exception class called ``name``."""
        cls = getattr(self.module, name)
        assert isinstance(cls, type) and issubclass(cls, BaseException), name
        return cls

    def raises(self, name: str) -> Any:
        """``pytest.raises`` for the side's own exception class ``name``."""
        return pytest.raises(self.error(name))

    def strip(self, text: str) -> str:
        """``text`` without this side's ``<module>.`` prefix (for reprs)."""
        return strip_module(self.module, text)

    @staticmethod
    def tube() -> str:
        """A tube name no other test (and not the other side) uses."""
        return new_tube()


class SideBySide:
    """Runs scenarios on every module of :data:`MODULES` against ``server``."""

    def __init__(self, server: Server) -> None:
        self.server = server

    @contextlib.contextmanager
    def _side(
        self, module: types.ModuleType, fresh: bool, max_job_size: int | None
    ) -> Iterator[Side]:
        with contextlib.ExitStack() as stack:
            server = self.server
            if fresh:
                server = stack.enter_context(
                    running_beanstalkd(
                        unix_socket=self.server.unix_path is not None, max_job_size=max_job_size
                    )
                )
            yield Side(module, server, stack)

    def _run(
        self, module: types.ModuleType, scenario: Callable[[Side], T], fresh: bool, size: int | None
    ) -> T:
        with self._side(module, fresh, size) as side:
            return scenario(side)

    def run(
        self,
        scenario: Callable[[Side], T],
        *,
        fresh: bool = False,
        max_job_size: int | None = None,
        parallel: bool = False,
    ) -> list[T]:
        """``scenario``'s result on each module, in :data:`MODULES` order.

        Args:
            fresh: give each side a private beanstalkd (same transport as the
                test's server) instead of the shared one.
            max_job_size: the private servers' ``-z`` (only with ``fresh``;
                ``None`` keeps beanstalkd's default of 65,535 bytes).
            parallel: run the sides in two threads, for scenarios that wait on
                the server's clock (delays, TTRs, timeouts), so a test waits
                once rather than once per module.
        """
        assert fresh or max_job_size is None, "max_job_size needs a private server"
        if not parallel:
            return [self._run(m, scenario, fresh, max_job_size) for m in MODULES]
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(MODULES)) as pool:
            futures = [pool.submit(self._run, m, scenario, fresh, max_job_size) for m in MODULES]
            return [f.result(timeout=SIDE_TIMEOUT) for f in futures]

    def same(self, scenario: Callable[[Side], T], **options: Any) -> T:
        """Run ``scenario`` on every module and return the one result they all
        observed (``AssertionError`` naming the modules if they differ)."""
        theirs, *others = self.run(scenario, **options)
        for module, ours in zip(MODULES[1:], others, strict=True):
            assert ours == theirs, f"{module.__name__} observed {ours!r}, greenstalk {theirs!r}"
        return theirs
