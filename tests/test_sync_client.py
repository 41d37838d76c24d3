"""Every method of the client API against a real beanstalkd.

Each test runs on the three clients (``beanproto_sync``, and ``beanproto_trio``
and ``beanproto_asyncio`` behind a blocking proxy: the ``flavor`` fixture),
over TCP and over a unix socket (the ``transport`` fixture), and works in a
tube of its own.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import pytest
from tools.beanstalkd import Server, beanstalkd_version

import beanproto_sync
from beanproto_sync import Client, Job
from conftest import ClientFactory, new_tube, sync_only

pytestmark = pytest.mark.integration


def wait_until(check: Callable[[], bool], what: str, deadline: float = 5.0) -> None:
    """Poll ``check`` (a query to the server) until it holds, for at most
    ``deadline`` seconds. No sleeping: every poll is a round trip."""
    end = time.monotonic() + deadline
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")


# -- put / use / using -------------------------------------------------------------


def test_put_str_returns_new_id_and_body_round_trips(client: Client[str]) -> None:
    first = client.put("hello")
    second = client.put("world")
    assert isinstance(first, int)
    assert second > first
    job = client.reserve()
    assert (job.id, job.body) == (first, "hello")
    assert isinstance(job, Job)
    client.delete(job)
    assert client.reserve().body == "world"


def test_put_bytes_on_a_text_client(client: Client[str], raw_client: Client[bytes]) -> None:
    # greenstalk passes bytes bodies through even when an encoding is set.
    jid = client.put(b"\x00\x01raw")  # type: ignore[arg-type]
    job = raw_client.reserve()
    assert job.id == jid
    assert job.body == b"\x00\x01raw"


def test_put_bytes_like_bodies(raw_client: Client[bytes]) -> None:
    a = raw_client.put(bytearray(b"from bytearray"))  # type: ignore[arg-type]
    b = raw_client.put(memoryview(b"from memoryview"))  # type: ignore[arg-type]
    assert raw_client.peek(a).body == b"from bytearray"
    assert raw_client.peek(b).body == b"from memoryview"


def test_put_empty_body(client: Client[str]) -> None:
    jid = client.put("")
    job = client.reserve(timeout=0)
    assert (job.id, job.body) == (jid, "")


def test_put_priority_delay_ttr_visible_in_stats_job(client: Client[str], tube: str) -> None:
    jid = client.put("x", priority=7, delay=30, ttr=45)
    stats = client.stats_job(jid)
    assert stats["id"] == jid
    assert stats["tube"] == tube
    assert stats["pri"] == 7
    assert stats["delay"] == 30
    assert stats["ttr"] == 45
    assert stats["state"] == "delayed"
    assert 0 < stats["time-left"] <= 30


def test_put_defaults_visible_in_stats_job(client: Client[str]) -> None:
    jid = client.put("x")
    stats = client.stats_job(jid)
    assert stats["pri"] == beanproto_sync.DEFAULT_PRIORITY == 2**16
    assert stats["delay"] == beanproto_sync.DEFAULT_DELAY == 0
    assert stats["ttr"] == beanproto_sync.DEFAULT_TTR == 60
    assert stats["state"] == "ready"


def test_put_extreme_priorities(client: Client[str]) -> None:
    low = client.put("least urgent", priority=2**32 - 1)
    high = client.put("most urgent", priority=0)
    assert client.stats_job(low)["pri"] == 2**32 - 1
    assert client.reserve(timeout=0).id == high
    assert client.reserve(timeout=0).id == low


def test_use_and_using(client: Client[str], tube: str) -> None:
    assert client.using() == tube
    other = new_tube()
    assert client.use(other) is None  # type: ignore[func-returns-value]
    assert client.using() == other
    jid = client.put("into the other tube")
    assert client.stats_job(jid)["tube"] == other
    assert client.stats_tube(other)["current-jobs-ready"] == 1
    assert client.stats_tube(tube)["current-jobs-ready"] == 0


def test_tube_name_of_200_characters(client: Client[str]) -> None:
    name = new_tube().ljust(200, "x")
    client.use(name)
    assert client.using() == name
    assert client.watch(name) == 2
    assert name in client.watching()
    assert client.stats_tube(name)["name"] == name


def test_every_allowed_name_character(client: Client[str]) -> None:
    name = "Az09+/;.$_()-" + new_tube()
    client.use(name)
    assert client.using() == name
    assert name in client.tubes()


# -- reserve / reserve_job -----------------------------------------------------------


def test_reserve_without_timeout_when_a_job_is_ready(client: Client[str]) -> None:
    jid = client.put("ready")
    job = client.reserve()
    assert job.id == jid
    assert client.stats_job(job)["state"] == "reserved"
    assert client.stats_job(job)["reserves"] == 1


def test_reserve_with_timeout(client: Client[str]) -> None:
    jid = client.put("ready")
    job = client.reserve(timeout=5)
    assert (job.id, job.body) == (jid, "ready")
    with pytest.raises(beanproto_sync.TimedOutError):
        client.reserve(timeout=0)


def test_reserve_only_from_watched_tubes(client_factory: ClientFactory, tube: str) -> None:
    other = new_tube()
    producer = client_factory(use=other)
    producer.put("not for the worker")
    worker = client_factory()
    with pytest.raises(beanproto_sync.TimedOutError):
        worker.reserve(timeout=0)
    assert worker.watch(other) == 2
    assert worker.reserve(timeout=0).body == "not for the worker"


def test_reserve_job(client: Client[str]) -> None:
    first = client.put("first")
    second = client.put("second")
    job = client.reserve_job(second)
    assert (job.id, job.body) == (second, "second")
    assert client.stats_job(second)["state"] == "reserved"
    assert client.stats_job(first)["state"] == "ready"


def test_reserve_job_takes_delayed_and_buried_jobs(client: Client[str]) -> None:
    delayed = client.put("later", delay=100)
    assert client.reserve_job(delayed).id == delayed
    client.bury(delayed)
    assert client.reserve_job(delayed).body == "later"


# -- delete / release / bury / kick / touch -----------------------------------------


def test_delete_by_job_and_by_id(client: Client[str]) -> None:
    a = client.put("a")
    b = client.put("b")
    job = client.reserve()
    assert client.delete(job) is None  # type: ignore[func-returns-value]
    client.delete(b)  # a ready job can be deleted by id without reserving it
    for jid in (a, b):
        with pytest.raises(beanproto_sync.NotFoundError):
            client.stats_job(jid)


def test_release_back_to_ready(client: Client[str]) -> None:
    client.put("x")
    job = client.reserve()
    client.release(job)
    stats = client.stats_job(job)
    assert stats["state"] == "ready"
    assert stats["releases"] == 1
    assert stats["pri"] == beanproto_sync.DEFAULT_PRIORITY


def test_release_with_priority_and_by_id(client: Client[str]) -> None:
    client.put("x")
    job = client.reserve()
    client.release(job.id, priority=3)
    assert client.stats_job(job.id)["pri"] == 3
    assert client.reserve(timeout=0).id == job.id


def test_release_with_delay_makes_the_job_delayed(client: Client[str]) -> None:
    client.put("x")
    job = client.reserve()
    client.release(job, priority=9, delay=100)
    stats = client.stats_job(job)
    assert stats["state"] == "delayed"
    assert stats["delay"] == 100
    assert stats["pri"] == 9
    with pytest.raises(beanproto_sync.TimedOutError):
        client.reserve(timeout=0)
    assert client.peek_delayed().id == job.id


def test_bury_peek_buried_kick(client: Client[str]) -> None:
    ids = [client.put(f"job {n}") for n in range(3)]
    for _ in ids:
        job = client.reserve()
        client.bury(job, priority=5)
        stats = client.stats_job(job)
        assert stats["state"] == "buried"
        assert stats["buries"] == 1
        assert stats["pri"] == 5
    buried = client.peek_buried()
    assert (buried.id, buried.body) == (ids[0], "job 0")
    assert client.kick(2) == 2
    assert client.stats_job(ids[0])["state"] == "ready"
    assert client.stats_job(ids[1])["kicks"] == 1
    assert client.stats_job(ids[2])["state"] == "buried"
    assert client.kick(10) == 1
    assert client.kick(10) == 0


def test_bury_by_id(client: Client[str]) -> None:
    jid = client.put("x")
    client.reserve()
    client.bury(jid)
    assert client.stats_job(jid)["state"] == "buried"
    assert client.stats_job(jid)["pri"] == beanproto_sync.DEFAULT_PRIORITY


def test_kick_moves_delayed_jobs_when_none_are_buried(client: Client[str]) -> None:
    jid = client.put("later", delay=100)
    assert client.kick(5) == 1
    assert client.stats_job(jid)["state"] == "ready"
    assert client.reserve(timeout=0).id == jid


def test_kick_job_by_job_and_by_id(client: Client[str]) -> None:
    delayed = client.put("later", delay=100)
    client.put("to bury")
    job = client.reserve()
    client.bury(job)
    assert client.kick_job(job) is None  # type: ignore[func-returns-value]
    client.kick_job(delayed)
    assert client.stats_job(job)["state"] == "ready"
    assert client.stats_job(delayed)["state"] == "ready"
    assert client.stats_job(delayed)["kicks"] == 1


def test_touch_restarts_time_left(client: Client[str]) -> None:
    jid = client.put("x", ttr=100)
    job = client.reserve()
    assert 0 < client.stats_job(job)["time-left"] <= 100
    assert client.touch(job) is None  # type: ignore[func-returns-value]
    client.touch(jid)
    stats = client.stats_job(jid)
    assert stats["state"] == "reserved"
    assert 98 <= stats["time-left"] <= 100
    assert client.stats()["cmd-touch"] >= 2


def test_touch_unreserved_job_is_not_found(client: Client[str]) -> None:
    jid = client.put("x")
    with pytest.raises(beanproto_sync.NotFoundError):
        client.touch(jid)


def test_a_job_reserved_by_another_client_cannot_be_touched(
    client_factory: ClientFactory,
) -> None:
    owner = client_factory()
    other = client_factory()
    owner.put("x")
    job = owner.reserve()
    for action in (other.touch, other.release, other.bury):
        with pytest.raises(beanproto_sync.NotFoundError):
            action(job)
    owner.touch(job)
    assert owner.stats_job(job)["state"] == "reserved"


# -- watch / ignore / watching / tubes ---------------------------------------------


def test_watch_ignore_counts_and_watching(client: Client[str], tube: str) -> None:
    assert client.watching() == [tube]
    other = new_tube()
    assert client.watch(other) == 2
    assert client.watch(other) == 2  # watching twice changes nothing
    assert set(client.watching()) == {tube, other}
    assert client.ignore(tube) == 1
    assert client.watching() == [other]
    assert client.ignore(tube) == 1  # ignoring an unwatched tube is fine
    assert client.watch("default") == 2


def test_tubes_lists_existing_tubes(client: Client[str], tube: str) -> None:
    tubes = client.tubes()
    assert isinstance(tubes, list)
    assert all(isinstance(name, str) for name in tubes)
    assert tube in tubes
    assert "default" in tubes


# -- peek ---------------------------------------------------------------------------


def test_peek_by_id(client: Client[str]) -> None:
    jid = client.put("peek me")
    job = client.peek(jid)
    assert (job.id, job.body) == (jid, "peek me")
    assert client.stats_job(jid)["state"] == "ready"  # peeking reserves nothing


def test_peek_ready_and_delayed(client: Client[str]) -> None:
    ready = client.put("ready", priority=10)
    urgent = client.put("urgent", priority=1)
    soon = client.put("soon", delay=50)
    client.put("later", delay=100)
    assert client.peek_ready().id == urgent
    assert client.peek_delayed().id == soon
    client.delete(urgent)
    assert client.peek_ready().id == ready


def test_peek_looks_at_the_used_tube_not_the_watched_ones(
    client_factory: ClientFactory, tube: str
) -> None:
    other = new_tube()
    client = client_factory(use=other)
    client.put("in other")
    with client_factory(use=tube) as looker:
        with pytest.raises(beanproto_sync.NotFoundError):
            looker.peek_ready()
    assert client.peek_ready().body == "in other"


# -- stats ---------------------------------------------------------------------------


def test_stats_are_typed(client: Client[str], server: Server) -> None:
    stats = client.stats()
    assert stats["pid"] == server.pid
    for key in ("current-jobs-ready", "cmd-put", "total-jobs", "uptime", "max-job-size"):
        value = stats[key]
        assert type(value) is int, key
    assert stats["max-job-size"] == 2 * 1024 * 1024
    # greenstalk 2.1.1's types: the server's text for these.
    for rusage in (stats["rusage-utime"], stats["rusage-stime"]):
        assert isinstance(rusage, str)
        assert float(rusage) >= 0
    assert stats["draining"] == "false"
    assert isinstance(stats["version"], str)
    # The version the binary reports (1.12 and 1.13 both run in the test command).
    assert stats["version"] == beanstalkd_version()
    assert isinstance(stats["hostname"], str)
    assert isinstance(stats["id"], str)


def test_stats_counts_commands(client: Client[str]) -> None:
    before = client.stats()
    client.put("x")
    after = client.stats()
    assert after["cmd-put"] == before["cmd-put"] + 1
    assert after["cmd-stats"] == before["cmd-stats"] + 1
    assert after["total-jobs"] == before["total-jobs"] + 1


def test_stats_job_is_typed(client: Client[str], tube: str) -> None:
    jid = client.put("x", priority=11, ttr=20)
    stats = client.stats_job(jid)
    assert stats["state"] == "ready"
    assert stats["tube"] == tube
    for key in (
        "id",
        "pri",
        "age",
        "delay",
        "ttr",
        "time-left",
        "file",
        "reserves",
        "timeouts",
        "releases",
        "buries",
        "kicks",
    ):
        assert type(stats[key]) is int, key
    assert client.stats_job(client.reserve())["state"] == "reserved"


def test_stats_job_accepts_a_job(client: Client[str]) -> None:
    client.put("x")
    job = client.reserve()
    assert client.stats_job(job)["id"] == job.id


def test_stats_tube_is_typed(client: Client[str], tube: str) -> None:
    client.put("a")
    client.put("b", priority=0)
    client.put("c", delay=100)
    stats = client.stats_tube(tube)
    assert stats["name"] == tube
    assert stats["current-jobs-ready"] == 2
    assert stats["current-jobs-urgent"] == 1
    assert stats["current-jobs-delayed"] == 1
    assert stats["total-jobs"] == 3
    assert stats["current-using"] == 1
    assert stats["current-watching"] == 1
    assert stats["pause"] == 0
    for key in (
        "current-jobs-reserved",
        "current-jobs-buried",
        "current-waiting",
        "cmd-delete",
        "cmd-pause-tube",
        "pause-time-left",
    ):
        assert type(stats[key]) is int, key


def test_stats_tube_name_of_digits_stays_str(client_factory: ClientFactory) -> None:
    digits = str(int(new_tube()[2:], 16))[:30]
    for name in ("123", digits):
        client = client_factory(use=name, watch=name)
        stats = client.stats_tube(name)
        assert stats["name"] == name
        assert type(stats["name"]) is str
        assert client.using() == name
        assert client.watching() == [name]
        assert name in client.tubes()


# -- pause_tube ------------------------------------------------------------------------


def test_pause_tube(client: Client[str], tube: str) -> None:
    jid = client.put("x")
    assert client.pause_tube(tube, 60) is None  # type: ignore[func-returns-value]
    stats = client.stats_tube(tube)
    assert stats["pause"] == 60
    assert 0 < stats["pause-time-left"] <= 60
    assert stats["cmd-pause-tube"] == 1
    with pytest.raises(beanproto_sync.TimedOutError):
        client.reserve(timeout=0)
    client.pause_tube(tube, 0)
    assert client.stats_tube(tube)["pause"] == 0
    assert client.reserve(timeout=0).id == jid


# -- connection life -------------------------------------------------------------------


def test_context_manager_closes_and_releases_reserved_jobs(
    client_factory: ClientFactory, client: Client[str]
) -> None:
    jid = client.put("x")
    connections = client.stats()["current-connections"]
    made = client_factory()
    with made as worker:
        assert worker is made
        assert worker.reserve(timeout=0).id == jid
        assert client.stats_job(jid)["state"] == "reserved"
    with pytest.raises(OSError):
        worker.put("closed")
    wait_until(
        lambda: client.stats()["current-connections"] == connections,
        "the server to see the connection close",
    )
    assert client.stats_job(jid)["state"] == "ready"
    worker.close()  # closing twice is harmless


def test_close_then_use_raises(client: Client[str]) -> None:
    client.close()
    with pytest.raises(ConnectionError):
        client.stats()


def test_default_client_uses_and_watches_default(client_factory: ClientFactory) -> None:
    client = client_factory.make(client_factory.address)
    assert client.encoding == "utf-8"
    assert client.using() == "default"
    assert client.watching() == ["default"]


def test_constructor_use_and_watch_str(client_factory: ClientFactory, tube: str) -> None:
    other = new_tube()
    client = client_factory(use=other, watch=tube)
    assert client.using() == other
    assert client.watching() == [tube]  # default was ignored


def test_constructor_watch_list(client_factory: ClientFactory) -> None:
    a, b = new_tube(), new_tube()
    client = client_factory(use="default", watch=[a, b])
    assert client.using() == "default"
    assert sorted(client.watching()) == sorted([a, b])


def test_constructor_watch_list_of_one(client_factory: ClientFactory, tube: str) -> None:
    assert client_factory(watch=[tube]).watching() == [tube]


def test_constructor_watch_tuple_and_generator(client_factory: ClientFactory) -> None:
    a, b = new_tube(), new_tube()
    assert sorted(client_factory(watch=(a, b)).watching()) == sorted([a, b])
    assert client_factory(watch=(t for t in [a])).watching() == [a]


def test_constructor_keeps_default_when_named(client_factory: ClientFactory, tube: str) -> None:
    client = client_factory(watch=[tube, "default"])
    assert sorted(client.watching()) == sorted([tube, "default"])
    assert client_factory(watch="default").watching() == ["default"]


# Sync only: the async clients take sockets of their own kind (a trio socket, or
# a stdlib socket registered with the loop), and name themselves by the
# socket's repr; tests/test_async_clients.py covers them.
@sync_only
def test_passed_in_connected_socket(client_factory: ClientFactory, server: Server) -> None:
    if server.unix_path is not None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(server.unix_path)
        expected = f"beanproto_sync.Client(socket={server.unix_path!r})"
    else:
        sock = socket.create_connection(server.address)
        expected = f"beanproto_sync.Client(host='127.0.0.1', port={server.port})"
    client = client_factory(address=sock)
    assert repr(client) == expected
    jid = client.put("through my socket")
    assert client.reserve(timeout=0).id == jid
    client.close()
    assert sock.fileno() == -1  # the client owns the socket it was given


def test_repr(client: Client[str], server: Server, flavor: str) -> None:
    # Each client names itself: beanproto_sync.Client, beanproto_trio.Client...
    if server.unix_path is not None:
        assert repr(client) == f"beanproto_{flavor}.Client(socket={server.unix_path!r})"
    else:
        assert repr(client) == f"beanproto_{flavor}.Client(host='127.0.0.1', port={server.port})"


def test_job_repr() -> None:
    # One Job class for the three clients, so its repr names no package.
    assert repr(Job(1, "x")) == "Job(id=1, body='x')"
    assert repr(Job(2, b"y")) == "Job(id=2, body=b'y')"


# -- encodings and bodies ------------------------------------------------------------


def test_encoding_none_returns_bytes(raw_client: Client[bytes]) -> None:
    assert raw_client.encoding is None
    jid = raw_client.put(b"\xff\x00binary")
    job = raw_client.reserve()
    assert job.id == jid
    assert type(job.body) is bytes
    assert job.body == b"\xff\x00binary"
    assert raw_client.peek(jid).body == b"\xff\x00binary"


def test_encoding_none_refuses_str_before_sending(raw_client: Client[bytes]) -> None:
    before = raw_client.stats()["cmd-put"]
    with pytest.raises(TypeError):
        raw_client.put("text")  # type: ignore[arg-type]
    assert raw_client.stats()["cmd-put"] == before
    raw_client.put(b"still works")
    assert raw_client.reserve(timeout=0).body == b"still works"


def test_custom_encoding(client_factory: ClientFactory) -> None:
    latin = client_factory(encoding="latin-1")
    raw = client_factory.raw()
    jid = latin.put("caf\xe9")
    assert raw.peek(jid).body == b"caf\xe9"
    assert latin.reserve(timeout=0).body == "caf\xe9"
    raw.put(b"\xe0\xff")
    assert latin.peek_ready().body == "\xe0\xff"


def test_utf8_body_is_encoded(client: Client[str], raw_client: Client[bytes]) -> None:
    jid = client.put("snow \u2603")
    assert raw_client.peek(jid).body == "snow \u2603".encode()
    assert client.reserve().body == "snow \u2603"


def test_undecodable_body_keeps_id_and_body(client: Client[str], raw_client: Client[bytes]) -> None:
    jid = raw_client.put(b"bad \xff\xfe utf-8")
    with pytest.raises(UnicodeDecodeError) as caught:
        client.reserve(timeout=0)
    exc = caught.value
    assert isinstance(exc, beanproto_sync.JobDecodeError)
    assert isinstance(exc, beanproto_sync.Error)
    assert exc.id == jid
    assert exc.body == b"bad \xff\xfe utf-8"
    assert exc.encoding == "utf-8"
    assert client.stats_job(exc.id)["state"] == "reserved"  # it was reserved
    client.delete(exc.id)
    with pytest.raises(beanproto_sync.NotFoundError):
        client.stats_job(jid)


def test_undecodable_body_on_peek(client: Client[str], raw_client: Client[bytes]) -> None:
    jid = raw_client.put(b"\x80")
    with pytest.raises(beanproto_sync.JobDecodeError) as caught:
        client.peek(jid)
    assert (caught.value.id, caught.value.body) == (jid, b"\x80")
    assert client.stats_job(jid)["state"] == "ready"  # still usable afterwards


def test_one_mebibyte_body(raw_client: Client[bytes], client: Client[str]) -> None:
    body = bytes(range(256)) * 4096
    assert len(body) == 1024 * 1024
    jid = raw_client.put(body)
    assert raw_client.stats_job(jid)["state"] == "ready"
    job = raw_client.reserve()
    assert job.id == jid
    assert job.body == body
    text = "\u00e9" * (512 * 1024)  # 1 MiB once encoded
    tid = client.put(text)
    assert client.reserve().body == text
    assert client.stats_job(tid)["state"] == "reserved"


def test_many_bodies_around_the_vectored_write_threshold(raw_client: Client[bytes]) -> None:
    sizes = [0, 1, 32 * 1024 - 1, 32 * 1024, 32 * 1024 + 1, 200_000]
    ids = [raw_client.put(bytes([n % 251]) * size) for n, size in enumerate(sizes)]
    for n, (jid, size) in enumerate(zip(ids, sizes, strict=True)):
        job = raw_client.reserve(timeout=0)
        assert job.id == jid
        assert job.body == bytes([n % 251]) * size


def test_encoding_attribute_can_be_changed(client: Client[str]) -> None:
    # greenstalk reads ``client.encoding`` on every call; so must we.
    client.put("caf\xe9")
    client.encoding = "latin-1"
    assert client.peek_ready().body == "caf\xc3\xa9"
    client.encoding = None
    assert client.peek_ready().body == b"caf\xc3\xa9"  # type: ignore[comparison-overlap]
