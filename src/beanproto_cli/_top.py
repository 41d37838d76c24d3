"""``beanproto top``: a live, full-screen view of one or several servers.

curses (the standard library) draws it; ``curses.wrapper`` puts the terminal
back however the view ends (``q``, Ctrl-C, an error). Every ``interval``
seconds it reads ``stats`` and every tube's ``stats-tube`` and shows the
counts and, from the change since the last look, the rates per second.

Keys: ``q`` quits, ``p`` pauses (and resumes) the refresh, ``s`` sorts by
the next column, ``r`` reverses the sort; ``j``/``k`` or the arrow keys
scroll the tubes a row, Page Down/Page Up a screen, ``g`` goes back to the
top. When the tubes do not all fit, the last line says which are shown.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from typing import Any

import beanproto_sync

from ._commands import TUBE_COLUMNS, Context, _name

__all__ = ["run_top", "Snapshot", "render", "scroll_limit"]

#: (name, stats-tube counter) of the per-tube rates shown.
TUBE_RATES = [("put/s", "total-jobs"), ("delete/s", "cmd-delete")]
#: (name, stats counter) of the per-server rates shown.
SERVER_RATES = [("put/s", "cmd-put"), ("reserve/s", "cmd-reserve"), ("delete/s", "cmd-delete")]
SORTS = ["tube", *(column for _, column in TUBE_COLUMNS), *(name for name, _ in TUBE_RATES)]


class Snapshot:
    """What one look at the servers found."""

    def __init__(self) -> None:
        self.when = time.monotonic()
        self.servers: dict[str, dict[str, Any] | str] = {}  # stats, or why not
        self.tubes: dict[tuple[str, str], dict[str, Any]] = {}


def look(clients: dict[str, Any], ctx: Context) -> Snapshot:
    snap = Snapshot()
    for server in ctx.servers:
        name = _name(server)
        try:
            client = clients.get(name)
            if client is None:
                client = clients[name] = beanproto_sync.Client(
                    server, None, connect_timeout=ctx.timeout, io_timeout=ctx.timeout
                )
            snap.servers[name] = dict(client.stats())
            for tube in client.tubes():
                try:
                    snap.tubes[(name, tube)] = dict(client.stats_tube(tube))
                except beanproto_sync.NotFoundError:
                    continue
        except (ConnectionError, TimeoutError, OSError) as exc:
            snap.servers[name] = f"unreachable: {exc}"
            stale = clients.pop(name, None)
            if stale is not None:
                stale.close()
    return snap


def _rate(now: dict[str, Any], before: dict[str, Any] | None, key: str, seconds: float) -> float:
    """``key``'s change per second (a counter missing before counts from 0:
    a tube that appeared since the last look)."""
    if before is None or seconds <= 0:
        return 0.0
    return max(0.0, float(now[key] - before.get(key, 0)) / seconds)


def _room(snap: Snapshot, height: int | None) -> int | None:
    """How many tube rows fit under the header lines (``None``: all)."""
    if height is None:
        return None
    # title, blank, a line per server, blank, the column header; the footer.
    return max(1, height - (len(snap.servers) + 4) - 1)


def scroll_limit(snap: Snapshot, height: int | None) -> int:
    """The largest useful scroll offset: the last tube on the last line."""
    room = _room(snap, height)
    return 0 if room is None else max(0, len(snap.tubes) - room)


def render(
    snap: Snapshot,
    last: Snapshot | None,
    sort: int,
    reverse: bool,
    paused: bool,
    width: int,
    height: int | None = None,
    offset: int = 0,
) -> list[str]:
    """The screen's lines (plain text: the tests read them too).

    With a ``height``, the tube rows start at row ``offset`` (clamped to
    :func:`scroll_limit`) and stop where the screen does, and the last line
    says which rows are shown when they are not all.
    """
    seconds = snap.when - last.when if last else 0.0
    state = "paused" if paused else "live"
    lines = [
        f"beanproto top: {len(snap.servers)} server(s), {state}, sort: {SORTS[sort]}"
        f"{' (reversed)' if reverse else ''}   q quit  p pause  s sort  r reverse",
        "",
    ]
    for name, stats in snap.servers.items():
        if isinstance(stats, str):
            lines.append(f"{name}  {stats}")
            continue
        before = last.servers.get(name) if last else None
        old = before if isinstance(before, dict) else None
        rates = "  ".join(
            f"{label} {_rate(stats, old, key, seconds):7.1f}" for label, key in SERVER_RATES
        )
        lines.append(
            f"{name}  v{stats['version']}  jobs ready {stats['current-jobs-ready']}"
            f"  reserved {stats['current-jobs-reserved']}  buried {stats['current-jobs-buried']}"
            f"  conns {stats['current-connections']}  {rates}"
        )
    lines.append("")
    header = ["server", "tube", *(c for _, c in TUBE_COLUMNS), *(n for n, _ in TUBE_RATES)]
    rows = []
    for (server, tube), stats in snap.tubes.items():
        before = last.tubes.get((server, tube), {}) if last else None
        row: dict[str, Any] = {"server": server, "tube": tube}
        row.update({column: stats[key] for key, column in TUBE_COLUMNS})
        for name, key in TUBE_RATES:
            row[name] = round(_rate(stats, before, key, seconds), 1)
        rows.append(row)
    key = SORTS[sort]
    rows.sort(key=lambda r: (r[key], r["server"], r["tube"]), reverse=(key != "tube") != reverse)
    widths = {h: max([len(h), *(len(str(r[h])) for r in rows)]) for h in header}
    lines.append(
        "  ".join(
            h.rjust(widths[h]) if h not in ("server", "tube") else h.ljust(widths[h])
            for h in header
        )
    )
    room = _room(snap, height)
    footer = None
    if room is not None and len(rows) > room:
        start = min(max(0, offset), len(rows) - room)
        footer = (
            f"tubes {start + 1}-{start + room} of {len(rows)}"
            "   j/k or arrows scroll, PgUp/PgDn a page, g top"
        )
        rows = rows[start : start + room]
    for r in rows:
        lines.append(
            "  ".join(
                str(r[h]).ljust(widths[h])
                if h in ("server", "tube")
                else str(r[h]).rjust(widths[h])
                for h in header
            )
        )
    if footer is not None:
        lines.append(footer)
    return [line[:width] for line in lines]


def run_top(ctx: Context, interval: float) -> int:
    import curses

    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        print("beanproto: top needs a terminal", file=sys.stderr)
        return 2
    try:
        return int(curses.wrapper(_loop, ctx, interval))
    except KeyboardInterrupt:
        return 0  # Ctrl-C is a way to quit (the wrapper restored the terminal)
    except curses.error as exc:
        print(f"beanproto: top cannot use this terminal ({exc})", file=sys.stderr)
        return 2


def _loop(screen: Any, ctx: Context, interval: float) -> int:
    import curses

    with contextlib.suppress(curses.error):
        curses.curs_set(0)  # (a terminal without an invisible cursor keeps it)
    screen.timeout(100)  # look at the keyboard ten times a second
    sort, reverse, paused, offset = 0, False, False, 0
    poller = _Poller(ctx, interval)
    poller.start()
    try:
        while True:
            last, snap = poller.latest()
            height, width = screen.getmaxyx()
            offset = min(offset, scroll_limit(snap, height))
            screen.erase()
            lines = render(snap, last, sort, reverse, paused, width - 1, height, offset)
            for y, line in enumerate(lines[:height]):
                with contextlib.suppress(curses.error):  # (the last cell of a tiny screen)
                    screen.addstr(y, 0, line)
            screen.refresh()
            key = screen.getch()
            if key in (ord("q"), ord("Q")):
                return 0
            if key == ord("p"):
                paused = not paused
                poller.paused = paused
            elif key == ord("s"):
                sort = (sort + 1) % len(SORTS)
            elif key == ord("r"):
                reverse = not reverse
            elif key in (ord("j"), curses.KEY_DOWN):
                offset += 1
            elif key in (ord("k"), curses.KEY_UP):
                offset = max(0, offset - 1)
            elif key == curses.KEY_NPAGE:
                offset += _room(snap, height) or 1
            elif key == curses.KEY_PPAGE:
                offset = max(0, offset - (_room(snap, height) or 1))
            elif key in (ord("g"), curses.KEY_HOME):
                offset = 0
            elif key == curses.KEY_RESIZE:
                curses.update_lines_cols()
    finally:
        poller.stop()


class _Poller(threading.Thread):
    """Looks at the servers every ``interval`` in a thread of its own, so a
    server that hangs never freezes the screen or the keys."""

    def __init__(self, ctx: Context, interval: float) -> None:
        super().__init__(daemon=True)
        self.ctx, self.interval = ctx, interval
        self.paused = False
        self._stop_event = threading.Event()
        self._lock = threading.Lock()
        self._clients: dict[str, Any] = {}
        self._last: Snapshot | None = None
        self._snap = Snapshot()
        self._snap.servers = {_name(s): "connecting…" for s in ctx.servers}

    def latest(self) -> tuple[Snapshot | None, Snapshot]:
        with self._lock:
            return self._last, self._snap

    def run(self) -> None:
        try:
            while not self._stop_event.is_set():
                if not self.paused:
                    snap = look(self._clients, self.ctx)
                    with self._lock:
                        if self._snap.tubes or isinstance(
                            next(iter(self._snap.servers.values()), None), dict
                        ):
                            self._last = self._snap
                        self._snap = snap
                self._stop_event.wait(self.interval)
        finally:
            for client in self._clients.values():
                client.close()

    def stop(self) -> None:
        self._stop_event.set()
