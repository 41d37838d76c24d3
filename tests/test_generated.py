"""The blocking client's methods are generated from the async ones."""

from __future__ import annotations

import inspect

from tools import unasync

import beanproto_sync
from beanproto.client._api import AsyncAPI
from beanproto.client._api import Pipeline as AsyncPipeline
from beanproto_sync._api import Pipeline as SyncPipeline


def test_the_generated_blocking_api_is_current() -> None:
    assert unasync.main(["--check"]) == 0, "run: python tools/unasync.py"


def test_blocking_and_async_apis_have_the_same_methods() -> None:
    def public(cls: type) -> dict[str, inspect.Signature]:
        return {
            name: inspect.signature(member)
            for name, member in inspect.getmembers(cls, inspect.isfunction)
            if not name.startswith("_")
        }

    sync_methods = public(beanproto_sync.Client)
    async_methods = public(AsyncAPI)
    assert set(async_methods) <= set(sync_methods)
    for name, signature in async_methods.items():
        assert str(sync_methods[name]) == str(signature), name
        # pipeline() only makes the pipeline (its ``execute`` is the coroutine).
        plain = name == "pipeline"
        assert inspect.iscoroutinefunction(getattr(AsyncAPI, name)) != plain, name


def test_blocking_and_async_pipelines_have_the_same_methods() -> None:
    def public(cls: type) -> dict[str, inspect.Signature]:
        return {
            name: inspect.signature(member)
            for name, member in inspect.getmembers(cls, inspect.isfunction)
            if not name.startswith("_") or name in ("__aenter__", "__aexit__")
        }

    sync_methods = public(SyncPipeline)
    async_methods = public(AsyncPipeline)
    assert set(sync_methods) == set(async_methods) - {"__aenter__", "__aexit__"}
    for name, signature in sync_methods.items():
        assert str(async_methods[name]) == str(signature), name
        # Queueing is plain on every client; only execute() does I/O.
        assert inspect.iscoroutinefunction(getattr(AsyncPipeline, name)) == (name == "execute")
        assert not inspect.iscoroutinefunction(getattr(SyncPipeline, name))
    assert inspect.iscoroutinefunction(AsyncPipeline.__aexit__)
    assert not inspect.iscoroutinefunction(SyncPipeline.__exit__)
