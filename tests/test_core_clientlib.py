"""What the shared client layer (``beanproto.client._outcomes``, ``_async_api``)
makes every client do the same: argument types refused with our errors,
greenstalk's exact no-encoding message, and a job repr that names no client.

Issue 7, items 1.8 (part) and section 2. Each test runs on the three clients
against a real beanstalkd (the ``client_factory`` fixtures).
"""

from __future__ import annotations

import array
import mmap
from typing import Any

import pytest

import beanproto as bp
import beanproto_asyncio
import beanproto_sync
import beanproto_trio
from beanproto.client import _outcomes as lib
from conftest import ClientFactory

BAD_WATCH: list[Any] = [None, 5, 1.5, b"default", bytearray(b"x"), [1], [["a"]], ("ok", None)]
BAD_USE: list[Any] = [None, 5, b"default", ["default"]]


@pytest.mark.parametrize("watch", BAD_WATCH, ids=repr)
def test_a_watch_of_the_wrong_type_is_an_argument_type_error(
    client_factory: ClientFactory, watch: Any
) -> None:
    with pytest.raises(bp.ArgumentTypeError, match="watch") as info:
        client_factory.make(client_factory.address, watch=watch)
    assert isinstance(info.value, TypeError)  # as greenstalk's callers catch it


@pytest.mark.parametrize("use", BAD_USE, ids=repr)
def test_a_use_of_the_wrong_type_is_an_argument_type_error(
    client_factory: ClientFactory, use: Any
) -> None:
    with pytest.raises(bp.ArgumentTypeError, match=r"use|tube"):
        client_factory.make(client_factory.address, use=use)


def test_watch_and_use_methods_refuse_wrong_types(client: beanproto_sync.Client[str]) -> None:
    for call in (client.use, client.watch, client.ignore):
        for bad in (None, 5, b"default"):
            with pytest.raises(bp.ArgumentTypeError):
                call(bad)  # type: ignore[arg-type]
    assert client.watching() == [client.using()]


def test_a_watch_iterator_is_read_once(client_factory: ClientFactory, tube: str) -> None:
    other = tube + "-2"
    client = client_factory.make(client_factory.address, use=tube, watch=iter([tube, other, tube]))
    assert sorted(client.watching()) == sorted([tube, other])


def test_str_body_without_encoding_has_greenstalks_exact_message(
    raw_client: beanproto_sync.Client[bytes],
) -> None:
    with pytest.raises(TypeError) as info:
        raw_client.put("text")  # type: ignore[arg-type]
    assert str(info.value) == "Unable to encode string with no encoding set"
    assert isinstance(info.value, bp.ArgumentTypeError)
    # Nothing was sent: the connection is in step.
    job_id = raw_client.put(b"bytes")
    assert raw_client.reserve(timeout=0).id == job_id


def test_encode_body_message_is_the_constant() -> None:
    with pytest.raises(bp.ArgumentTypeError) as info:
        lib.encode_body("x", None)
    assert str(info.value) == lib.NO_ENCODING_MESSAGE


def test_job_repr_names_no_client_package(
    client: beanproto_sync.Client[str], raw_client: beanproto_sync.Client[bytes]
) -> None:
    job_id = client.put("x")
    job = client.reserve(timeout=0)
    assert repr(job) == f"Job(id={job_id}, body='x')"
    raw_id = raw_client.put(b"\x00y")
    assert repr(raw_client.reserve(timeout=0)) == f"Job(id={raw_id}, body=b'\\x00y')"


def test_every_package_exports_the_same_job_class() -> None:
    assert beanproto_sync.Job is beanproto_trio.Job is beanproto_asyncio.Job
    assert repr(beanproto_trio.Job(id=456, body=b'{"user_id": 123}')) == (
        """Job(id=456, body=b'{"user_id": 123}')"""
    )


def test_subclasses_repr_with_their_package() -> None:
    # A compatibility module (say, ``greenstalk`` built on beanproto) that
    # subclasses Job and Client reprs them under its own name, as greenstalk
    # does; the classes themselves never claim another package.
    namespace: dict[str, object] = {"__name__": "greenstalk"}
    exec(
        "import beanproto_sync\n"
        "class Job(beanproto_sync.Job): pass\n"
        "class Client(beanproto_sync.Client): pass\n",
        namespace,
    )
    job_class: type[beanproto_sync.Job[bytes]] = namespace["Job"]  # type: ignore[assignment]
    assert repr(job_class(id=456, body=b"x")) == "greenstalk.Job(id=456, body=b'x')"
    client_class: Any = namespace["Client"]
    assert client_class.__repr__(_fake_client(client_class)) == (
        "greenstalk.Client(host='127.0.0.1', port=11300)"
    )


def _fake_client(cls: Any) -> Any:
    """An instance with just the address, for the repr (no connection)."""
    client = object.__new__(cls)
    client._address = ("127.0.0.1", 11300)
    return client


@pytest.mark.integration
def test_any_buffer_is_a_body(raw_client: beanproto_sync.Client[bytes]) -> None:
    # greenstalk sends any bytes-like body; so do the clients, counted in bytes.
    words = array.array("I", [1, 2, 3])
    with mmap.mmap(-1, 5) as mapped:
        mapped.write(b"mmap!")
        for body, expected in [(words, words.tobytes()), (mapped, b"mmap!")]:
            job_id = raw_client.put(body)  # type: ignore[arg-type]
            assert raw_client.reserve(timeout=0).body == expected
            raw_client.delete(job_id)
    with pytest.raises(bp.ArgumentTypeError, match="bytes-like"):
        raw_client.put(object())  # type: ignore[arg-type]
