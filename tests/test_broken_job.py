"""A job whose body arrives without its CRLF: :class:`beanproto.BrokenJobError`.

beanstalkd writes a job to its binlog in four writes (name length, tube
name, job record, body) into a file it preallocated with zeros. A server
SIGKILLed between the last two comes back with the job and a body of zero
bytes, CRLF included, and serves it: ``RESERVED <id> <n>`` and ``n + 2``
zero bytes. (Measured: 9 of 150 kill cycles under a stream of puts; the
load test, tests/test_faults_load.py, met it once.) The client must raise a
typed protocol error that names the job, never hand back the zeros, and the
job must then be deletable by id.

Here the torn record is made on purpose: the body's bytes in the binlog of
a killed server are overwritten with zeros, exactly what the crash leaves.
"""

from __future__ import annotations

import asyncio
import pickle
from pathlib import Path

import pytest
import trio

import beanproto as bp
import beanproto_asyncio
import beanproto_sync
import beanproto_trio
from conftest import new_tube
from faults_support import RestartableServer

# -- the core, scripted replies -----------------------------------------------------------


def test_a_job_body_without_crlf_is_a_broken_job_error_naming_the_job() -> None:
    conn = bp.Connection()
    conn.send(bp.Reserve())
    with pytest.raises(bp.BrokenJobError) as info:
        conn.next_event_with(b"RESERVED 318 7\r\n" + bytes(9))
    error = info.value
    assert isinstance(error, bp.RemoteProtocolError)
    assert (error.id, error.size) == (318, 7)
    assert "job 318" in str(error) and "delete it by id" in str(error)
    assert conn.state is bp.State.ERROR  # given up, like any protocol error
    again = pickle.loads(pickle.dumps(error))
    assert (type(again), again.id, again.size, str(again)) == (
        bp.BrokenJobError,
        318,
        7,
        str(error),
    )


@pytest.mark.parametrize("split", [1, 10, 11, 16, 19])
def test_the_same_however_the_reply_is_cut(split: int) -> None:
    conn = bp.Connection()
    conn.send(bp.Peek(id=5))
    reply = b"FOUND 5 7\r\n" + b"abcdefg" + b"XY"
    assert conn.next_event_with(reply[:split]) is bp.NEED_DATA
    with pytest.raises(bp.BrokenJobError) as info:
        conn.next_event_with(reply[split:])
    assert info.value.id == 5


def test_a_yaml_body_without_crlf_stays_a_plain_protocol_error() -> None:
    conn = bp.Connection()
    conn.send(bp.Stats())
    with pytest.raises(bp.RemoteProtocolError) as info:
        conn.next_event_with(b"OK 4\r\n---\nXY")
    assert type(info.value) is bp.RemoteProtocolError


# -- a real server and a real torn record -------------------------------------------------


def tear_body(binlog: Path, body: bytes) -> None:
    """Zero ``body`` and its CRLF in the binlog, as a crash between the job
    record's write and the body's leaves them."""
    (path,) = sorted(binlog.glob("binlog.*"))
    data = path.read_bytes()
    record = body + b"\r\n"
    assert data.count(record) == 1, "the body should be in the binlog once"
    at = data.index(record)
    path.write_bytes(data[:at] + bytes(len(record)) + data[at + len(record) :])


@pytest.fixture
def torn(binlog_server: RestartableServer) -> tuple[RestartableServer, str, int, int]:
    """A server restored from a binlog with one torn job and one sound one
    after it, in a tube of their own: (server, tube, torn id, sound id)."""
    tube = new_tube()
    with beanproto_sync.Client(binlog_server.address, use=tube) as client:
        torn_id = client.put("torn-body", priority=0)  # reserved first
        sound_id = client.put("sound", priority=1)
    binlog_server.kill()
    assert binlog_server.binlog_dir is not None
    tear_body(binlog_server.binlog_dir, b"torn-body")
    binlog_server.start()
    return binlog_server, tube, torn_id, sound_id


@pytest.mark.integration
def test_sync_client_names_the_broken_job_and_can_delete_it(
    torn: tuple[RestartableServer, str, int, int],
) -> None:
    server, tube, torn_id, sound_id = torn
    with beanproto_sync.Client(server.address, watch=tube, encoding=None) as client:
        with pytest.raises(bp.BrokenJobError) as info:
            client.reserve(timeout=0)
        assert info.value.id == torn_id
        # The next call goes out on a new connection; the old one's
        # reservation ends when the server sees it closed.
        deleted = False
        for _ in range(1000):
            try:
                client.delete(torn_id)
            except beanproto_sync.NotFoundError:
                continue  # still reserved by the closed connection
            deleted = True
            break
        assert deleted, "the broken job could not be deleted by id"
        job = client.reserve(timeout=0)
        assert (job.id, job.body) == (sound_id, b"sound")
        client.delete(job)


@pytest.mark.integration
def test_async_clients_name_the_broken_job(
    torn: tuple[RestartableServer, str, int, int],
) -> None:
    server, tube, torn_id, _ = torn

    async def reserve_broken(module: object) -> int:
        async with module.Client(server.address, watch=tube) as client:  # type: ignore[attr-defined]
            try:
                await client.reserve(timeout=0)
            except bp.BrokenJobError as exc:
                return exc.id
        raise AssertionError("no BrokenJobError")

    assert trio.run(reserve_broken, beanproto_trio) == torn_id
    # trio's client closed its connection on the way out: the job is ready
    # again once the server has seen that, and asyncio's reserve gets it.
    ids = set()
    for _ in range(100):
        try:
            ids.add(asyncio.run(reserve_broken(beanproto_asyncio)))
            break
        except beanproto_asyncio.TimedOutError:
            continue
    assert ids == {torn_id}
