"""tools/beanstalkd.py, which starts the servers of the demo, the tests and
the benchmarks."""

from __future__ import annotations

import socket
import struct

import pytest
from tools.beanstalkd import beanstalkd_path, beanstalkd_version, running_beanstalkd

pytestmark = pytest.mark.integration


def reset_after_reply(address: tuple[str, int]) -> bytes:
    """Ask for something, read the reply, then abort the connection (RST):
    beanstalkd logs one line to stderr for it."""
    with socket.create_connection(address, timeout=2) as sock:
        sock.sendall(b"list-tubes\r\n")
        reply = sock.recv(4096)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    return reply


def test_a_server_that_logs_a_lot_keeps_serving() -> None:
    # Each aborted connection costs ~80-110 bytes of stderr (1.12 and 1.13):
    # 1,200 of them are more than a pipe holds (64 KiB). A server whose stderr
    # is a pipe nobody reads blocks on it, and the recv below times out.
    with running_beanstalkd() as server:
        for _ in range(1200):
            assert reset_after_reply(server.address).startswith(b"OK ")


def test_version_is_what_the_binary_says() -> None:
    version = beanstalkd_version()
    assert version == beanstalkd_version(beanstalkd_path())
    major, minor = version.split(".")[:2]
    assert (int(major), int(minor)) >= (1, 12)
