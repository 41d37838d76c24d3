"""``beanproto``: look at and repair beanstalkd servers from the shell.

    beanproto stats                      # the server's counters
    beanproto -s 10.0.0.1:11300 -s 10.0.0.2:11300 tubes
    beanproto peek mail buried           # the next buried job: stats and body
    beanproto kick mail --all
    beanproto move mail.failed mail      # jobs back, none lost on the way

Installed as a console script and run as ``python -m beanproto``; built on
the blocking client (``beanproto_sync``) and the standard library only, so
it needs no extra. Servers: ``-s HOST:PORT`` or a unix socket path,
repeatable; default ``$BEANSTALKD_URL``, else ``127.0.0.1:11300``.

Every reading command takes ``--json``. Exit codes: 0 done, 1 not found or
nothing to do, 2 bad usage, 3 a server could not be reached.
"""

from __future__ import annotations

from ._main import main

__all__ = ["main"]
