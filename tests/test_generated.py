"""The blocking client's methods are generated from the async ones."""

from __future__ import annotations

import inspect

from tools import unasync

import beanproto_sync
from beanproto._async_api import AsyncAPI


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
        assert inspect.iscoroutinefunction(getattr(AsyncAPI, name)), name
