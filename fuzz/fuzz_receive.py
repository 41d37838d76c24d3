"""Fuzz the receive side of beanproto.Connection with atheris.

    python fuzz/fuzz_receive.py -runs=100000
    python fuzz/fuzz_receive.py -max_total_time=600 fuzz/corpus

Every input is a script for :func:`harness.check` (pending commands, limits,
read sizes) followed by the bytes a server sends; the only exception allowed
out of the core is ``beanproto.RemoteProtocolError``. See fuzz/README.md.
"""

from __future__ import annotations

import sys

import atheris

# Everything imported in this block is instrumented for coverage feedback:
# beanproto (imported by harness, and named here to make that plain) too.
with atheris.instrument_imports():
    import harness

    import beanproto  # noqa: F401


def one_input(data: bytes) -> None:
    harness.check(data)


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
