"""The ``beanproto`` command against real beanstalkd servers: through its
entry point (``main``), as ``python -m beanproto``, ``--json`` parsed, exit
codes, and ``top`` in a real terminal (tmux: keys sent, the pane read,
resized, quit, the terminal checked afterwards)."""

from __future__ import annotations

import json
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
from beanproto_cli._output import preview
from conftest import address_of, new_tube
from tmux_support import keys, pane, session, shown

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent


def spec(server: Server) -> str:
    address = address_of(server)
    assert isinstance(address, tuple), "the CLI tests use TCP servers"
    return f"{address[0]}:{address[1]}"


def run(server: Server, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["-s", spec(server), *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_put_peek_tubes_and_stats_with_json(
    tcp_server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    tube = new_tube()
    code, out, _ = run(tcp_server, capsys, "put", tube, "hello", "--priority", "7", "--json")
    assert code == 0
    job_id = json.loads(out)["id"]
    code, out, _ = run(tcp_server, capsys, "peek", str(job_id), "--json")
    record = json.loads(out)
    assert code == 0 and record["body"] == "hello" and record["stats"]["pri"] == 7
    code, out, _ = run(tcp_server, capsys, "peek", tube, "ready")
    assert code == 0 and "hello" in out and f"{tube}" in out
    code, out, _ = run(tcp_server, capsys, "tubes", "--json")
    rows = {row["tube"]: row for row in json.loads(out)}
    assert rows[tube]["ready"] == 1 and rows[tube]["total"] == 1
    code, out, _ = run(tcp_server, capsys, "tubes")
    line = next(line for line in out.splitlines() if line.startswith(tube))
    assert line.split()[1:3] == ["1", "1"]  # ready 1, urgent 1 (priority 7 < 1024)
    code, out, _ = run(tcp_server, capsys, "stats", "--json")
    (stats,) = json.loads(out).values()
    assert stats["version"] and stats["current-jobs-ready"] >= 1
    with beanproto_sync.Client(address_of(tcp_server)) as client:
        client.delete(job_id)


def test_binary_bodies_are_shown_safely_and_raw_on_request(
    tcp_server: Server, tmp_path: Path
) -> None:
    tube = new_tube()
    body = b"\x00\x1b[31mred\xff"
    with beanproto_sync.Client(address_of(tcp_server), None, use=tube) as client:
        job_id = client.put(body)
    base = [sys.executable, "-m", "beanproto", "-s", spec(tcp_server)]
    shown = subprocess.run([*base, "peek", str(job_id)], capture_output=True, check=True)
    assert b"\x1b" not in shown.stdout and b"(binary, 10 bytes)" in shown.stdout
    raw = subprocess.run([*base, "peek", str(job_id), "--raw"], capture_output=True, check=True)
    assert raw.stdout == body
    as_json = json.loads(
        subprocess.run([*base, "peek", str(job_id), "--json"], capture_output=True).stdout
    )
    assert as_json["body"] is None and bytes.fromhex(as_json["body_hex"]) == body
    with beanproto_sync.Client(address_of(tcp_server)) as client:
        client.delete(job_id)


def test_repairs_bury_kick_move_drain_delete(
    tcp_server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    tube, other = new_tube(), new_tube()
    address = address_of(tcp_server)
    with beanproto_sync.Client(address, use=tube) as client:
        ids = [client.put(f"job {n}", priority=10 + n, ttr=30 + n) for n in range(3)]
    assert run(tcp_server, capsys, "bury", tube, "2")[:2] == (0, "buried 2\n")
    assert run(tcp_server, capsys, "kick", tube, "--all")[:2] == (0, "kicked 2\n")
    assert run(tcp_server, capsys, "kick", tube)[0] == 1  # nothing buried or delayed
    assert run(tcp_server, capsys, "move", tube, other)[:2] == (0, "moved 3\n")
    with beanproto_sync.Client(address, watch=other) as client:
        moved = []
        for _ in range(3):
            job = client.reserve(timeout=0)
            stats = client.stats_job(job)
            moved.append((job.body, stats["pri"], stats["ttr"]))
        # (the connection closing releases them)
    assert sorted(moved) == [(f"job {n}", 10 + n, 30 + n) for n in range(3)]
    for job_id in ids:
        with beanproto_sync.Client(address) as client, pytest.raises(beanproto_sync.NotFoundError):
            client.stats_job(job_id)  # moved: the originals are gone
    code, out, _ = run(tcp_server, capsys, "tail", other, "--count", "1", "--then", "bury")
    assert code == 0 and "job 0" in out  # the most urgent first
    assert run(tcp_server, capsys, "drain", other, "ready", "--yes")[:2] == (0, "deleted 2\n")
    assert run(tcp_server, capsys, "drain", other, "ready", "--yes")[0] == 1
    code, out, _ = run(tcp_server, capsys, "peek", other, "buried", "--json")
    buried = json.loads(out)["id"]
    assert run(tcp_server, capsys, "delete", str(buried))[:2] == (0, f"deleted {buried}\n")
    code, _, err = run(tcp_server, capsys, "delete", str(buried))
    assert code == 1 and "not found" in err
    assert run(tcp_server, capsys, "pause", other, "1")[0] == 1  # emptied: the tube is gone
    with beanproto_sync.Client(address, use=other) as client:
        client.put("keeps the tube")
        assert run(tcp_server, capsys, "pause", other, "30")[0] == 0
        assert client.stats_tube(other)["pause"] == 30
        client.pause_tube(other, 0)
        client.delete(client.peek_ready())


def test_drain_asks_first(tcp_server: Server) -> None:
    tube = new_tube()
    with beanproto_sync.Client(address_of(tcp_server), use=tube) as client:
        client.put("keep me")
    base = [sys.executable, "-m", "beanproto", "-s", spec(tcp_server), "drain", tube, "ready"]
    refused = subprocess.run(base, input="n\n", capture_output=True, text=True)
    assert refused.returncode == 1 and "nothing deleted" in refused.stdout
    agreed = subprocess.run(base, input="y\n", capture_output=True, text=True)
    assert agreed.returncode == 0 and "deleted 1" in agreed.stdout


def test_exit_codes_for_usage_and_unreachable_servers(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-s", "127.0.0.1:1", "stats"]) == 3
    assert "cannot reach" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["no-such-command"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["-s", "127.0.0.1:1", "-s", "127.0.0.1:2", "delete", "5"])
    assert info.value.code == 2  # a job id names no server among several


def test_several_servers_and_the_environment_default(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    tube = new_tube()
    with running_beanstalkd() as one, running_beanstalkd() as two:
        for server in (one, two):
            with beanproto_sync.Client(server.address, use=tube) as client:
                client.put("x")
        assert main(["-s", spec(one), "-s", spec(two), "tubes", "--json"]) == 0
        rows = [r for r in json.loads(capsys.readouterr().out) if r["tube"] == tube]
        assert sorted(r["server"] for r in rows) == sorted([spec(one), spec(two)])
        monkeypatch.setenv("BEANSTALKD_URL", f"beanstalk://{spec(two)}")
        assert main(["kick", tube]) == 1  # nothing to kick, but it reached the server
        assert main(["-s", spec(one), "-s", spec(two), "drain", tube, "ready", "--yes"]) == 0
        assert "deleted 2" in capsys.readouterr().out


def test_preview_of_long_and_odd_bodies() -> None:
    assert preview(b"plain text\nwith lines") == "plain text\nwith lines"
    assert preview(b"a" * 1000).endswith("(600 more bytes)")
    assert preview(b"\x07bell").startswith("(binary, 5 bytes)")


# -- top in a real terminal -------------------------------------------------------------


@pytest.fixture
def tmux() -> Iterator[str]:
    with session(132, 30) as name:
        yield name


def test_top_shows_counts_and_rates_sorts_pauses_resizes_and_restores_the_terminal(
    tmux: str,
) -> None:
    # A server of its own: the shared one has the other tests' tubes, more
    # rows than the screen has.
    with running_beanstalkd() as server:
        _top_session(server, tmux)


def _top_session(tcp_server: Server, tmux: str) -> None:
    tube = new_tube()
    with beanproto_sync.Client(address_of(tcp_server), use=tube) as client:
        for n in range(5):
            client.put(f"job {n}")
    command = f"{sys.executable} -m beanproto -s {spec(tcp_server)} top --interval 0.2"
    keys(tmux, f"cd {ROOT} && {command}; echo EXIT=$?", "Enter")
    screen = shown(tmux, "beanproto top: 1 server(s), live, sort: tube")
    row = next(line for line in shown(tmux, tube).splitlines() if tube in line)
    assert row.split()[2] == "5"  # ready
    # Rates: more puts while it runs show as put/s.
    with beanproto_sync.Client(address_of(tcp_server), use=tube) as client:
        client.put_many([f"more {n}" for n in range(50)])
    shown(tmux, f"{tube}")
    deadline = time.monotonic() + 10
    while True:
        row = next(line for line in pane(tmux).splitlines() if tube in line)
        if row.split()[2] == "55":
            break
        assert time.monotonic() < deadline, row
        time.sleep(0.05)
    keys(tmux, "s")
    shown(tmux, "sort: ready")
    keys(tmux, "p")
    shown(tmux, ", paused,")
    keys(tmux, "p")
    shown(tmux, ", live,")
    subprocess.run(["tmux", "resize-window", "-t", tmux, "-x", "70", "-y", "12"], check=True)
    screen = shown(tmux, "beanproto top")
    assert all(len(line) <= 70 for line in screen.splitlines())
    keys(tmux, "q")
    screen = shown(tmux, "EXIT=0")
    assert "beanproto top:" not in screen  # the full-screen view is gone
    # The terminal is back as it was: line editing and echo on.
    keys(
        tmux, "stty -a | tr ' ;' '\\n\\n' | grep -x -e echo -e icanon | sort | tr '\\n' ,", "Enter"
    )
    shown(tmux, "echo,icanon,")


def test_top_scrolls_the_tubes_that_do_not_fit(tmux: str) -> None:
    """More tubes than rows: the last line says which are shown, and j, k,
    Page Down and g move through them (on a server of its own)."""
    with running_beanstalkd() as server:
        with beanproto_sync.Client(address_of(server)) as client:
            for n in range(40):
                client.use(f"scroll-{n:02d}")
                client.put("x")
        command = f"{sys.executable} -m beanproto -s {spec(server)} top --interval 0.2"
        keys(tmux, f"cd {ROOT} && {command}; echo EXIT=$?", "Enter")
        # 30 lines: 5 above the rows (one server), the footer below: 24 rows
        # of the 41 tubes (default included), sorted by name.
        screen = shown(tmux, "tubes 1-24 of 41")
        assert "scroll-00" in screen and "scroll-39" not in screen
        keys(tmux, "j")
        shown(tmux, "tubes 2-25 of 41")
        keys(tmux, "NPage")
        screen = shown(tmux, "tubes 18-41 of 41")  # clamped: the last tube on the last line
        assert "scroll-39" in screen
        keys(tmux, "k")
        shown(tmux, "tubes 17-40 of 41")
        keys(tmux, "g")
        shown(tmux, "tubes 1-24 of 41")
        keys(tmux, "q")
        shown(tmux, "EXIT=0")


class FakeScreen:
    """What ``_top._loop`` draws on, in process: a screen of ``height`` lines
    that records every frame and plays ``keys`` once the tubes are shown
    (until then, no key: what curses' 100 ms timeout gives)."""

    def __init__(self, keys: list[int], width: int = 120, height: int = 12) -> None:
        self.keys = keys
        self.size = (height, width)
        self.frames: list[list[str]] = []
        self._frame: dict[int, str] = {}
        self._deadline = time.monotonic() + 10

    def timeout(self, ms: int) -> None:
        pass

    def getmaxyx(self) -> tuple[int, int]:
        return self.size

    def erase(self) -> None:
        self._frame = {}

    def addstr(self, y: int, x: int, text: str) -> None:
        assert x == 0 and 0 <= y < self.size[0] and len(text) < self.size[1]
        self._frame[y] = text

    def refresh(self) -> None:
        self.frames.append([self._frame[y] for y in sorted(self._frame)])

    def getch(self) -> int:
        assert time.monotonic() < self._deadline, self.frames[-1]
        if not any(line.startswith("tubes ") for line in self.frames[-1]):
            time.sleep(0.01)  # (curses would wait for a key this long)
            return -1
        return self.keys.pop(0) if self.keys else ord("q")


def test_top_loop_reads_keys_sorts_pauses_and_scrolls_in_process() -> None:
    """The curses loop itself (tmux runs it in a subprocess, unmeasured), on
    a fake screen: every key does what the header and the footer say."""
    import curses

    from beanproto_cli._commands import Context
    from beanproto_cli._top import _loop

    with running_beanstalkd() as server:
        with beanproto_sync.Client(address_of(server)) as client:
            for n in range(12):
                client.use(f"fake-{n:02d}")
                client.put("x")
        keys = [ord("s"), ord("r"), ord("p"), ord("p"), ord("j"), curses.KEY_DOWN]
        keys += [curses.KEY_NPAGE, ord("k"), curses.KEY_PPAGE, ord("g"), curses.KEY_RESIZE]
        screen = FakeScreen(keys)
        ctx = Context(servers=[address_of(server)], timeout=5.0, out=sys.stdout)
        assert _loop(screen, ctx, 0.05) == 0
    shown = [f for f in screen.frames if any(line.startswith("tubes ") for line in f)]
    titles = [frame[0] for frame in shown]
    footers = [frame[-1] for frame in shown]
    # 12 lines: 5 above the rows, the footer: 6 of the 13 tubes at a time.
    assert footers[0].startswith("tubes 1-6 of 13")
    assert "sort: ready" in titles[1] and "(reversed)" in titles[2]
    assert ", paused," in titles[3] and ", live," in titles[4]
    assert [f.split()[1] for f in footers[5:11]] == ["2-7", "3-8", "8-13", "7-12", "1-6", "1-6"]
    assert all(len(frame) <= 12 for frame in screen.frames)


def test_top_without_a_terminal_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    # (pytest's stdin and stdout are not terminals)
    assert main(["-s", "127.0.0.1:1", "top"]) == 2
    assert "top needs a terminal" in capsys.readouterr().err


def test_top_quits_on_ctrl_c_and_shows_an_unreachable_server(tmux: str) -> None:
    command = f"{sys.executable} -m beanproto -s 127.0.0.1:1 top --interval 0.2"
    keys(tmux, f"cd {ROOT} && {command}; echo EXIT=$?", "Enter")
    shown(tmux, "unreachable")
    keys(tmux, "C-c")
    screen = shown(tmux, "EXIT=0")
    assert "Traceback" not in screen


def test_top_screen_lines_counts_rates_and_sorting(tcp_server: Server) -> None:
    """What top draws, without a terminal: two looks a known time apart."""
    from beanproto_cli._commands import Context
    from beanproto_cli._top import SORTS, look, render, scroll_limit

    tube = new_tube()
    ctx = Context(servers=[address_of(tcp_server)], timeout=5.0, out=sys.stdout)
    clients: dict[str, Any] = {}
    try:
        first = look(clients, ctx)
        with beanproto_sync.Client(address_of(tcp_server), use=tube) as client:
            client.put_many(["x"] * 20)
        second = look(clients, ctx)
        second.when = first.when + 2.0  # as if two seconds apart
        lines = render(second, first, SORTS.index("ready"), False, False, 200)
        assert lines[0].startswith("beanproto top: 1 server(s), live, sort: ready")
        (row,) = [line for line in lines if tube in line]
        fields = row.split()
        assert fields[2] == "20"  # ready
        assert float(fields[-2]) == 10.0  # put/s: 20 puts in 2 s (a new tube counts from 0)
        header = next(n for n, line in enumerate(lines) if line.startswith("server "))
        readies = [int(line.split()[2]) for line in lines[header + 1 :] if line.strip()]
        assert readies == sorted(readies, reverse=True)  # most ready first
        paused = render(second, first, 0, True, True, 40)
        assert ", paused," in paused[0] and all(len(line) <= 40 for line in paused)
        # A screen too short for every tube: a window of rows, and a footer.
        total = len(second.tubes)
        assert total >= 2
        height = 5 + 1 + 1  # the lines above the rows, one row, the footer
        window = render(second, first, 0, False, False, 200, height, offset=1)
        assert len(window) == height
        assert window[-1].startswith(f"tubes 2-2 of {total}")
        clamped = render(second, first, 0, False, False, 200, height, offset=10**6)
        assert clamped[-1].startswith(f"tubes {total}-{total} of {total}")
        assert scroll_limit(second, height) == total - 1
        assert scroll_limit(second, 10**6) == 0
        roomy = render(second, first, 0, False, False, 200, 10**6)
        assert not roomy[-1].startswith("tubes ")  # all fit: no footer
    finally:
        for open_client in clients.values():
            open_client.close()
