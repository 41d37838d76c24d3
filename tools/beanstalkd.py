"""Start a private beanstalkd for the demo, the tests and the benchmarks.

The server listens on a free loopback port (and, if asked, a unix socket),
is known by its pid, and is stopped by that pid. Readiness is checked by
connecting, never by sleeping a fixed time.

Which binary runs is ``$BEANSTALKD`` (the test command sets it once per server
version), else the one on ``PATH``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = [
    "Server",
    "beanstalkd_path",
    "beanstalkd_version",
    "forbid_servers",
    "free_port",
    "running_beanstalkd",
]

#: When set, the reason starting a server is refused (see ``forbid_servers``).
_forbidden: str | None = None


@dataclass(frozen=True)
class Server:
    """A running beanstalkd: where it listens and its pid."""

    host: str
    port: int
    pid: int
    unix_path: str | None = None

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)


def beanstalkd_path() -> str:
    """The beanstalkd binary: ``$BEANSTALKD`` or the one on ``PATH``."""
    path = os.environ.get("BEANSTALKD") or shutil.which("beanstalkd")
    if not path:
        for candidate in ("/usr/bin/beanstalkd", "/usr/sbin/beanstalkd"):
            if os.path.exists(candidate):
                return candidate
        raise RuntimeError(
            "beanstalkd is not installed: run scripts/bootstrap.sh, or apt-get install beanstalkd"
        )
    return path


@functools.cache
def _version_of(binary: str) -> str:
    done = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=10, check=False)
    words = done.stdout.split()
    if done.returncode != 0 or len(words) != 2 or words[0] != "beanstalkd":
        raise RuntimeError(
            f"{binary} -v did not print 'beanstalkd <version>' (exit {done.returncode}): "
            f"{(done.stdout + done.stderr).strip()!r}"
        )
    return words[1]


def beanstalkd_version(binary: str | None = None) -> str:
    """The version ``binary -v`` reports (``"1.12"``), by default of
    ``beanstalkd_path()``: what the server's ``stats`` should say it is."""
    return _version_of(binary or beanstalkd_path())


@contextlib.contextmanager
def forbid_servers(reason: str) -> Iterator[None]:
    """Make ``running_beanstalkd`` raise ``RuntimeError(reason)`` inside the block.

    The test fixtures wrap every test not marked ``integration`` in this, so
    a test that starts a server without the marker fails at once instead of
    silently skipping the per-server runs of the test command.
    """
    global _forbidden
    previous, _forbidden = _forbidden, reason
    try:
        yield
    finally:
        _forbidden = previous


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _wait_ready(
    proc: subprocess.Popen[bytes], connect: tuple[int, object], deadline: float, log: str
) -> None:
    family, address = connect
    while True:
        if proc.poll() is not None:
            with open(log, errors="replace") as f:
                err = f.read()
            raise RuntimeError(f"beanstalkd exited with {proc.returncode}: {err.strip()}")
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            try:
                sock.connect(address)  # type: ignore[arg-type]
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("beanstalkd did not start listening in time") from None
        # Poll the listening socket; the wait is bounded by the deadline above.
        time.sleep(0.005)


@contextlib.contextmanager
def running_beanstalkd(
    *,
    host: str = "127.0.0.1",
    unix_socket: bool = False,
    max_job_size: int | None = None,
    extra_args: tuple[str, ...] = (),
    startup_timeout: float = 10.0,
    port: int | None = None,
    binlog_dir: str | os.PathLike[str] | None = None,
) -> Iterator[Server]:
    """Run beanstalkd for the duration of a ``with`` block.

    Args:
        unix_socket: listen on a unix socket in a private directory instead of TCP.
        max_job_size: the ``-z`` option (bytes).
        extra_args: more command-line arguments, as they are.
        port: listen on this TCP port rather than a free one picked here (a
            server restarted on the port its clients know). No second port
            is tried: if it cannot be bound, ``RuntimeError``.
        binlog_dir: the ``-b`` option: keep jobs in a binlog in this
            directory (which must exist), so a server started again on it
            has them back.
    """
    if _forbidden is not None:
        raise RuntimeError(_forbidden)
    binary = beanstalkd_path()
    fixed_port = port
    with tempfile.TemporaryDirectory(prefix="beanproto-") as tmp:
        for _attempt in range(5):
            port = free_port(host) if fixed_port is None else fixed_port
            args = [binary]
            unix_path = None
            if unix_socket:
                unix_path = os.path.join(tmp, "beanstalkd.sock")
                args += ["-l", f"unix:{unix_path}"]
            else:
                args += ["-l", host, "-p", str(port)]
            if max_job_size is not None:
                args += ["-z", str(max_job_size)]
            if binlog_dir is not None:
                args += ["-b", os.fspath(binlog_dir)]
            args += list(extra_args)
            # stderr goes to a file, never a pipe: beanstalkd 1.13 logs every
            # client error, and a pipe nobody reads fills up and blocks it.
            log = os.path.join(tmp, "beanstalkd.log")
            with open(log, "wb") as log_file:
                proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log_file)
            target: tuple[int, object] = (
                (socket.AF_UNIX, unix_path) if unix_path else (socket.AF_INET, (host, port))
            )
            try:
                _wait_ready(proc, target, time.monotonic() + startup_timeout, log)
            except RuntimeError:
                proc.kill()
                proc.wait()
                if unix_socket or fixed_port is not None:
                    raise
                continue  # the port was taken between free_port() and bind: try another
            break
        else:
            raise RuntimeError("could not start beanstalkd on a free port")
        try:
            yield Server(host=host, port=port, pid=proc.pid, unix_path=unix_path)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
