"""Review probes of the ``beanproto`` command (``beanproto_cli``) against real
beanstalkd servers. Each defect the review found has its test here (passing
now that it is fixed); the others pin behaviour that was checked and is
right."""

from __future__ import annotations

import builtins
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tools.beanstalkd import Server, running_beanstalkd

import beanproto_sync
from beanproto_cli import main
from beanproto_cli._commands import _name
from beanproto_cli._main import parse_server
from beanproto_cli._output import preview
from conftest import SMALL_JOB_SIZE, ServerPool, address_of, new_tube
from tmux_support import keys, session, shown

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent


def spec(server: Server) -> str:
    """``-s`` for ``server``: its unix socket path, else HOST:PORT."""
    address = address_of(server)
    return address if isinstance(address, str) else f"{address[0]}:{address[1]}"


def run(server: Server, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["-s", spec(server), *args])
    out, err = capsys.readouterr()
    return code, out, err


def cli(*args: str | bytes, **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
    """``python -m beanproto ARGS`` in a child process (bounded)."""
    if "stdout" not in kwargs:
        kwargs.setdefault("capture_output", True)
    kwargs.setdefault("timeout", 20)
    return subprocess.run([sys.executable, "-m", "beanproto", *args], cwd=ROOT, **kwargs)


def counts(server: Server, tube: str) -> dict[str, Any]:
    with beanproto_sync.Client(address_of(server)) as client:
        try:
            return dict(client.stats_tube(tube))
        except beanproto_sync.NotFoundError:
            return {}


def bodies(server: Server, tube: str) -> list[bytes]:
    """Every ready job's body in ``tube`` (reserved, then released on close)."""
    found = []
    with beanproto_sync.Client(address_of(server), None, watch=tube) as client:
        while True:
            try:
                found.append(client.reserve(timeout=0).body)
            except beanproto_sync.TimedOutError:
                return sorted(found)


def drop(server: Server, tube: str) -> None:
    """Delete whatever is left in ``tube`` (ready, delayed, buried)."""
    with beanproto_sync.Client(address_of(server), None, use=tube) as client:
        for peek in (client.peek_ready, client.peek_delayed, client.peek_buried):
            while True:
                try:
                    client.delete(peek())
                except beanproto_sync.NotFoundError:
                    break


@pytest.fixture
def small_tcp_server(server_pool: ServerPool) -> Server:
    return server_pool.get("tcp", SMALL_JOB_SIZE)


@pytest.fixture
def own_server() -> Iterator[Server]:
    """A server of this test's own (to drain, stop or kill)."""
    with running_beanstalkd() as server:
        yield server


# -- servers and arguments --------------------------------------------------------------


def test_server_specs_parse() -> None:
    assert parse_server("[::1]:11300") == ("::1", 11300)
    assert parse_server("beanstalk://example.org:11301/") == ("example.org", 11301)
    assert parse_server("/run/beanstalkd.sock") == "/run/beanstalkd.sock"
    assert parse_server(":11300") == ("127.0.0.1", 11300)


def test_bad_server_specs_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    for text in ("host:port", "host:0", "host:65536", "host:-1"):
        with pytest.raises(SystemExit) as info:
            main(["-s", text, "stats"])
        assert info.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_ipv6_and_missing_unix_socket_are_unreachable_not_tracebacks(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["-s", "[::1]:1", "stats"]) == 3
    assert main(["-s", str(tmp_path / "no.sock"), "tubes"]) == 3
    assert "cannot reach" in capsys.readouterr().err


def test_ipv6_server_names_are_bracketed() -> None:
    assert _name(("::1", 11300)) == "[::1]:11300"


def test_bad_environment_server_is_a_usage_error() -> None:
    done = cli("stats", env={**os.environ, "BEANSTALKD_URL": "host:notaport"})
    assert done.returncode == 2 and b"Traceback" not in done.stderr


def test_numbers_out_of_range_are_usage_errors(
    tcp_server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    tube = new_tube()
    for args in (
        ["put", tube, "x", "--priority", "-1"],
        ["put", tube, "x", "--priority", str(2**32)],
        ["put", tube, "x", "--delay", str(2**40)],
        ["put", tube, "x", "--ttr", str(2**32)],
        ["put", "", "x"],
        ["put", "a b", "x"],
        ["peek", str(2**70)],
        ["peek", tube],  # no state
        ["delete", "-5"],
        ["kick", tube, "-3"],
        ["kick", tube, str(2**40)],
        ["pause", tube, str(2**40)],
        ["tail", tube, "--wait", "-1"],
        ["--timeout", "-1", "stats"],
        ["--timeout", "nan", "stats"],
        ["peek", "bad name", "ready"],
        ["drain", "", "ready", "--yes"],
    ):
        code, _, err = run(tcp_server, capsys, *args)
        assert code == 2, (args, err)
        assert err.startswith("beanproto: "), (args, err)
    assert counts(tcp_server, tube) == {}


def test_peek_of_a_superscript_digit_is_a_usage_error(
    tcp_server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(tcp_server, capsys, "peek", "\u00b2")[0] == 2


def test_put_of_a_non_utf8_argument_puts_its_bytes(tcp_server: Server) -> None:
    tube = new_tube()
    done = cli("-s", spec(tcp_server), "put", tube, b"\xff\xfe")
    try:
        assert done.returncode == 0, done.stderr
        assert bodies(tcp_server, tube) == [b"\xff\xfe"]
    finally:
        drop(tcp_server, tube)


def test_put_from_stdin_keeps_the_bytes(tcp_server: Server) -> None:
    tube = new_tube()
    done = cli("-s", spec(tcp_server), "put", tube, "--json", input=b"\x00\xffbin\r\n")
    assert done.returncode == 0 and json.loads(done.stdout)["tube"] == tube
    assert bodies(tcp_server, tube) == [b"\x00\xffbin\r\n"]
    drop(tcp_server, tube)


def test_put_too_big_is_an_error_message_not_a_traceback(small_tcp_server: Server) -> None:
    done = cli("-s", spec(small_tcp_server), "put", new_tube(), "x" * 100)
    assert b"Traceback" not in done.stderr and done.returncode in (1, 2)


def test_put_with_several_servers_is_refused(tcp_server: Server) -> None:
    with pytest.raises(SystemExit) as info:
        main(["-s", spec(tcp_server), "-s", "127.0.0.1:1", "put", new_tube(), "x"])
    assert info.value.code == 2


def test_a_closed_stdout_is_not_an_unreachable_server(tcp_server: Server) -> None:
    read, write = os.pipe()
    os.close(read)
    try:
        done = cli("-s", spec(tcp_server), "stats", stdout=write, stderr=subprocess.PIPE)
    finally:
        os.close(write)
    assert done.returncode != 3 and b"cannot reach" not in done.stderr


# -- reading commands over a unix socket, JSON ------------------------------------------


@pytest.mark.parametrize("transport", ["unix"])
def test_reading_commands_over_a_unix_socket_give_json(
    server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    tube = new_tube()
    assert server.unix_path is not None
    with beanproto_sync.Client(address_of(server), None, use=tube) as client:
        job_id = client.put(b"\x1b]0;owned\x07", priority=3, delay=0)
        client.put(b"later", delay=100)
    try:
        code, out, _ = run(server, capsys, "stats", "--json")
        assert code == 0 and json.loads(out)[server.unix_path]["current-jobs-delayed"] >= 1
        code, out, _ = run(server, capsys, "tubes", "--json")
        row = next(r for r in json.loads(out) if r["tube"] == tube)
        assert (row["ready"], row["urgent"], row["delayed"]) == (1, 1, 1)
        code, out, _ = run(server, capsys, "tubes")
        assert code == 0 and tube in out
        code, out, _ = run(server, capsys, "peek", tube, "delayed", "--json")
        assert code == 0 and json.loads(out)["body"] == "later"
        code, out, _ = run(server, capsys, "peek", str(job_id))
        assert code == 0 and "\x1b" not in out and "\x07" not in out and "(binary" in out
        code, out, _ = run(server, capsys, "peek", tube, "buried")
        assert code == 1 and out == ""
        assert run(server, capsys, "peek", "999999999")[0] == 1
    finally:
        drop(server, tube)


def test_tail_json_lines_are_json_and_release_keeps_priority(
    tcp_server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    tube = new_tube()
    with beanproto_sync.Client(address_of(tcp_server), None, use=tube) as client:
        ids = [client.put(b"\xff", priority=5), client.put(b"text", priority=9)]
    code, out, _ = run(tcp_server, capsys, "tail", tube, "--json")
    records = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["id"] for r in records] == ids
    assert records[0]["body"] is None and records[0]["body_hex"] == "ff"
    # Released, not duplicated nor lost, with their priorities.
    assert counts(tcp_server, tube)["current-jobs-ready"] == 2
    with beanproto_sync.Client(address_of(tcp_server)) as client:
        assert [client.stats_job(i)["pri"] for i in ids] == [5, 9]
    drop(tcp_server, tube)


def test_tail_release_of_short_ttr_jobs(tcp_server: Server) -> None:
    tube = new_tube()
    with beanproto_sync.Client(address_of(tcp_server), use=tube) as client:
        client.put("a", ttr=1)
        client.put("b", ttr=1)
    try:
        done = cli("-s", spec(tcp_server), "tail", tube)
        assert b"Traceback" not in done.stderr and done.returncode == 0
    finally:
        assert counts(tcp_server, tube)["current-jobs-ready"] == 2  # released, not lost
        drop(tcp_server, tube)


def test_preview_escapes_c1_controls() -> None:
    shown = preview("\u009b2J\u0085x".encode())
    assert "\u009b" not in shown and "\u0085" not in shown


def test_preview_escapes_c0_controls_and_invalid_utf8() -> None:
    for body in (b"\x1b[2J", b"a\x00b", b"\x7f", b"\xc3", b"ok\x9b"):
        shown = preview(body)
        assert shown.startswith("(binary,") and not any(ord(c) < 32 for c in shown)


# -- repairs: bury, kick, move, drain ---------------------------------------------------


def test_bury_keeps_priorities_and_counts(
    tcp_server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    tube = new_tube()
    with beanproto_sync.Client(address_of(tcp_server), use=tube) as client:
        for n in range(3):
            client.put(f"{n}", priority=100 + n)
    assert run(tcp_server, capsys, "bury", tube, "5")[:2] == (0, "buried 3\n")
    assert run(tcp_server, capsys, "bury", tube)[:2] == (1, "buried 0\n")
    with beanproto_sync.Client(address_of(tcp_server), use=tube) as client:
        assert client.stats_job(client.peek_buried())["pri"] == 100
    assert run(tcp_server, capsys, "kick", tube, "--all")[:2] == (0, "kicked 3\n")
    drop(tcp_server, tube)


def test_kick_all_over_servers_where_one_lacks_the_tube(
    tcp_server: Server, own_server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    tube = new_tube()
    with beanproto_sync.Client(address_of(tcp_server), use=tube) as client:
        client.bury(client.reserve_job(client.put("x")))
    try:
        code = main(["-s", spec(own_server), "-s", spec(tcp_server), "kick", tube, "--all"])
        capsys.readouterr()
        assert code == 0 and counts(tcp_server, tube)["current-jobs-ready"] == 1
    finally:
        drop(tcp_server, tube)


def test_pause_over_servers_where_one_lacks_the_tube(
    tcp_server: Server, own_server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    tube = new_tube()
    with beanproto_sync.Client(address_of(tcp_server), use=tube) as client:
        client.put("x")
        try:
            main(["-s", spec(own_server), "-s", spec(tcp_server), "pause", tube, "100"])
            capsys.readouterr()
            assert client.stats_tube(tube)["pause"] == 100
        finally:
            client.pause_tube(tube, 0)
            drop(tcp_server, tube)


def test_move_failing_midway_loses_no_job(own_server: Server) -> None:
    source, destination = new_tube(), new_tube()
    with beanproto_sync.Client(address_of(own_server), use=source) as client:
        for n in range(3):
            client.put(f"job {n}", priority=7)
    os.kill(own_server.pid, signal.SIGUSR1)  # drain mode: every put is refused
    done = cli("-s", spec(own_server), "move", source, destination)
    assert done.returncode != 0
    assert bodies(own_server, source) == [b"job 0", b"job 1", b"job 2"]
    assert counts(own_server, destination).get("current-jobs-ready", 0) == 0


def test_move_failing_midway_says_why(own_server: Server) -> None:
    source = new_tube()
    with beanproto_sync.Client(address_of(own_server), use=source) as client:
        client.put("x")
    os.kill(own_server.pid, signal.SIGUSR1)
    done = cli("-s", spec(own_server), "move", source, new_tube())
    assert b"Traceback" not in done.stderr


def test_move_into_the_same_tube_ends(own_server: Server) -> None:
    tube = new_tube()
    with beanproto_sync.Client(address_of(own_server), use=tube) as client:
        client.put("x")
    proc = subprocess.Popen(
        [sys.executable, "-m", "beanproto", "-s", spec(own_server), "move", tube, tube],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still moving; {counts(own_server, tube)['total-jobs']} jobs put so far")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_drain_with_no_answer_deletes_nothing(tcp_server: Server) -> None:
    tube = new_tube()
    with beanproto_sync.Client(address_of(tcp_server), use=tube) as client:
        client.put("keep me")
    try:
        done = cli("-s", spec(tcp_server), "drain", tube, "ready", stdin=subprocess.DEVNULL)
        assert done.returncode == 1 and b"Traceback" not in done.stderr
    finally:
        assert counts(tcp_server, tube)["current-jobs-ready"] == 1
        drop(tcp_server, tube)


def test_drain_deletes_only_what_was_confirmed(
    tcp_server: Server, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    tube = new_tube()
    producer = beanproto_sync.Client(address_of(tcp_server), use=tube)
    producer.put("old 1")
    producer.put("old 2")

    def answer(prompt: str) -> str:
        assert "delete 2 ready" in prompt
        for n in range(3):
            producer.put(f"new {n}")  # a producer carries on meanwhile
        return "y"

    monkeypatch.setattr(builtins, "input", answer)
    try:
        code, out, _ = run(tcp_server, capsys, "drain", tube, "ready")
        assert code == 0 and out == "deleted 2\n"
    finally:
        producer.close()
        drop(tcp_server, tube)


def test_drain_racing_a_consumer_deletes_the_rest(
    tcp_server: Server, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    tube = new_tube()
    address = address_of(tcp_server)
    with beanproto_sync.Client(address, use=tube) as client:
        for n in range(3):
            client.put(f"{n}")
    consumer = beanproto_sync.Client(address, watch=tube)
    real_peek_ready = beanproto_sync.Client.peek_ready
    raced: list[int] = []

    def peek_then_lose_it(self: beanproto_sync.Client[Any]) -> Any:
        job = real_peek_ready(self)
        if not raced:  # the real server, a real consumer: it takes the peeked job
            raced.append(consumer.reserve(timeout=0).id)
            assert raced == [job.id]
        return job

    monkeypatch.setattr(beanproto_sync.Client, "peek_ready", peek_then_lose_it)
    try:
        code, out, _ = run(tcp_server, capsys, "drain", tube, "ready", "--yes")
        monkeypatch.undo()
        assert code == 0 and counts(tcp_server, tube)["current-jobs-ready"] == 0, out
    finally:
        monkeypatch.undo()
        consumer.delete(raced[0])
        consumer.close()
        drop(tcp_server, tube)


# -- top in a real terminal -------------------------------------------------------------


@pytest.fixture
def tmux() -> Iterator[str]:
    with session(100, 12) as name:
        yield name


def start_top(name: str, *args: str, prefix: str = "") -> None:
    command = f"{prefix}{sys.executable} -m beanproto {' '.join(args)} top --interval 0.2"
    keys(name, f"cd {ROOT} && {command}; echo EXIT=$?", "Enter")


def test_top_with_many_tubes_in_tiny_terminals_and_a_dying_server(tmux: str) -> None:
    with running_beanstalkd() as server:
        tubes = [new_tube() for _ in range(40)]
        with beanproto_sync.Client(server.address) as client:
            for tube in tubes:
                client.use(tube)
                client.put("x")
        start_top(tmux, "-s", spec(server))
        screen = shown(tmux, "beanproto top")
        assert len(screen.splitlines()) <= 12
        for x, y in ((20, 3), (1, 1), (2, 2), (100, 12)):
            subprocess.run(["tmux", "resize-window", "-t", tmux, "-x", str(x), "-y", str(y)])
            if x > 15:
                shown(tmux, "beanproto")
        keys(tmux, "s", "s", "r")
        shown(tmux, "(reversed)")
    # The server is gone while top runs: it says so and goes on.
    shown(tmux, "unreachable")
    keys(tmux, "q")
    screen = shown(tmux, "EXIT=0")
    assert "Traceback" not in screen


def unread_by(port: int) -> bool:
    """Whether a connection to the server on ``port`` holds bytes it has not read."""
    for row in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = row.split()
        local_port = int(fields[1].split(":")[1], 16)
        if local_port == port and int(fields[4].split(":")[1], 16) > 0:
            return True
    return False


def test_top_keys_work_while_a_server_hangs(tmux: str) -> None:
    with running_beanstalkd() as server:
        start_top(tmux, "--timeout", "30", "-s", spec(server))
        shown(tmux, "live")
        os.kill(server.pid, signal.SIGSTOP)
        try:
            deadline = time.monotonic() + 10
            while not unread_by(server.port):  # until top waits on the stopped server
                assert time.monotonic() < deadline, "top sent nothing"
                time.sleep(0.02)  # polling the kernel's queues, bounded above
            keys(tmux, "p")
            shown(tmux, ", paused,", bound=3.0)
        finally:
            os.kill(server.pid, signal.SIGCONT)
            keys(tmux, "q")
            shown(tmux, "EXIT=")


def test_top_on_a_vt100(tcp_server: Server, tmux: str) -> None:
    start_top(tmux, "-s", spec(tcp_server), prefix="TERM=vt100 ")
    shown(tmux, "beanproto top")
    keys(tmux, "q")
    assert "EXIT=0" in shown(tmux, "EXIT=")


def test_top_without_a_terminal_says_so(tcp_server: Server) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TERM"}
    done = cli("-s", spec(tcp_server), "top", env=env, stdin=subprocess.DEVNULL)
    assert b"Traceback" not in done.stderr and done.returncode == 2


def test_drain_delayed_and_buried_and_tables_over_two_servers(
    tcp_server: Server, own_server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    tube = new_tube()
    with beanproto_sync.Client(address_of(tcp_server), use=tube) as client:
        client.put("later", delay=100)
        client.bury(client.reserve_job(client.put("bad")))
        client.put("keep")
    servers = ["-s", spec(tcp_server), "-s", spec(own_server)]
    try:
        assert main([*servers, "drain", tube, "delayed", "--yes"]) == 0
        assert main([*servers, "drain", tube, "buried", "--yes"]) == 0
        assert capsys.readouterr().out == "deleted 1\ndeleted 1\n"
        assert bodies(tcp_server, tube) == [b"keep"]
        assert main([*servers, "stats"]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0].split() == ["stat", spec(tcp_server), spec(own_server)]
        assert main([*servers, "tubes"]) == 0
        lines = capsys.readouterr().out.splitlines()
        row = next(line for line in lines if tube in line)
        assert row.split()[:3] == [spec(tcp_server), tube, "1"]
    finally:
        drop(tcp_server, tube)
