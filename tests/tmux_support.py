"""A real terminal for tests of full-screen programs (``beanproto top``):
a detached tmux session running a plain shell, keys sent to it, its screen
read back."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest


@contextlib.contextmanager
def session(width: int, height: int) -> Iterator[str]:
    """A tmux session of ``width`` x ``height`` running ``bash --norc``; its
    name. Skips the test when tmux is missing (scripts/test.sh installs it)."""
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (scripts/test.sh installs it)")
    name = f"beanproto-test-{os.getpid()}-{time.monotonic_ns()}"
    subprocess.run(
        [
            "tmux",
            "new-session",
            "-d",
            "-s",
            name,
            "-x",
            str(width),
            "-y",
            str(height),
            "bash --norc",
        ],
        check=True,
        env={**os.environ, "PS1": "$ ", "TERM": "xterm-256color"},
    )
    try:
        yield name
    finally:
        subprocess.run(["tmux", "kill-session", "-t", name], check=False)


def pane(name: str) -> str:
    """What the session's screen shows now."""
    return subprocess.run(
        ["tmux", "capture-pane", "-p", "-t", name], capture_output=True, text=True, check=True
    ).stdout


def shown(name: str, text: str, bound: float = 15.0) -> str:
    """Wait until the screen shows ``text`` (polling it, bounded); the screen."""
    deadline = time.monotonic() + bound
    while True:
        screen = pane(name)
        if text in screen:
            return screen
        assert time.monotonic() < deadline, f"{text!r} never shown; the pane:\n{screen}"
        time.sleep(0.05)


def keys(name: str, *sent: str) -> None:
    """Type ``sent`` into the session (tmux send-keys names: "Enter", "C-c")."""
    subprocess.run(["tmux", "send-keys", "-t", name, *sent], check=True)
