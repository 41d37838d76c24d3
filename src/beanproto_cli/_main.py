"""The command line: arguments, servers, exit codes; the commands
themselves are in ``_commands``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

import beanproto_sync

from . import _commands as commands

__all__ = ["main", "OK", "NOTHING", "USAGE", "UNREACHABLE"]

OK, NOTHING, USAGE, UNREACHABLE = 0, 1, 2, 3

DEFAULT_SERVER = "127.0.0.1:11300"


def parse_server(text: str) -> Any:
    """``HOST:PORT`` (``beanstalk://`` allowed) or a unix socket path."""
    if text.startswith("beanstalk://"):
        text = text[len("beanstalk://") :].rstrip("/")
    if "/" in text or ":" not in text:
        return text  # a unix socket path
    host, _, port = text.rpartition(":")
    try:
        number = int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT") from None
    if not 0 < number < 65536:
        raise argparse.ArgumentTypeError(f"port {number} is out of range")
    return (host.strip("[]") or "127.0.0.1", number)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="beanproto",
        description="Look at and repair beanstalkd servers.",
        epilog="exit codes: 0 done, 1 not found or nothing to do, 2 usage, 3 unreachable",
    )
    parser.add_argument(
        "-s",
        "--server",
        action="append",
        type=parse_server,
        help=f"HOST:PORT or a unix socket path; repeat for several "
        f"(default: $BEANSTALKD_URL or {DEFAULT_SERVER})",
    )
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for a server")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str, reading: bool = False) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        if reading:
            p.add_argument("--json", action="store_true", help="print JSON, for scripts")
        return p

    command("stats", "the server's counters", reading=True)
    command("tubes", "one row per tube: its job counts", reading=True)
    p = command("peek", "show a job: its stats and body", reading=True)
    p.add_argument("what", help="a job id, or a tube (then give the state)")
    p.add_argument("state", nargs="?", choices=commands.STATES, help="with a tube")
    p.add_argument("--raw", action="store_true", help="write the body's bytes, nothing else")
    p = command("put", "put a job (the body from the argument, else standard input)")
    p.add_argument("tube")
    p.add_argument("body", nargs="?")
    p.add_argument("--priority", type=int, default=beanproto_sync.DEFAULT_PRIORITY)
    p.add_argument("--delay", type=int, default=0)
    p.add_argument("--ttr", type=int, default=beanproto_sync.DEFAULT_TTR)
    p.add_argument("--json", action="store_true", help="print JSON, for scripts")
    p = command("kick", "kick buried (else delayed) jobs of a tube back to ready")
    p.add_argument("tube")
    p.add_argument("count", nargs="?", type=int, default=1)
    p.add_argument("--all", action="store_true", help="every buried (else delayed) job")
    p = command("kick-job", "kick one buried or delayed job")
    p.add_argument("id", type=int)
    p = command("delete", "delete a job")
    p.add_argument("id", type=int)
    p = command("bury", "reserve and bury ready jobs of a tube")
    p.add_argument("tube")
    p.add_argument("count", nargs="?", type=int, default=1)
    p = command("pause", "pause a tube: no reserves from it for SECONDS")
    p.add_argument("tube")
    p.add_argument("seconds", type=int)
    p = command("drain", "delete every job of a tube in a state")
    p.add_argument("tube")
    p.add_argument("state", choices=commands.STATES)
    p.add_argument("--yes", action="store_true", help="do not ask first")
    p = command("move", "move a tube's ready jobs into another (same priority and TTR)")
    p.add_argument("source")
    p.add_argument("destination")
    p = command("tail", "reserve jobs of a tube, print them, then release (or bury, delete)")
    p.add_argument("tube")
    p.add_argument("--then", choices=["release", "bury", "delete"], default="release")
    p.add_argument("--count", type=int, default=0, help="stop after this many (0: never)")
    p.add_argument("--wait", type=int, default=0, help="seconds to wait for a job (0: none)")
    p.add_argument("--json", action="store_true", help="print JSON lines, for scripts")
    p = command("top", "a live view of every tube, refreshed every second")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; its exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    servers = args.server
    if not servers:
        try:
            servers = [parse_server(os.environ.get("BEANSTALKD_URL") or DEFAULT_SERVER)]
        except argparse.ArgumentTypeError as exc:
            parser.error(f"$BEANSTALKD_URL: {exc}")
    run = commands.COMMANDS[args.command]
    if getattr(run, "one_server", False) and len(servers) > 1:
        parser.error(f"{args.command} acts on one server: give one -s (job ids are per server)")
    context = commands.Context(servers=servers, timeout=args.timeout, out=sys.stdout)
    try:
        return run(context, args)
    except beanproto_sync.NotFoundError as exc:
        print(f"beanproto: not found{': ' + str(exc) if str(exc) else ''}", file=sys.stderr)
        return NOTHING
    except (beanproto_sync.ArgumentError, beanproto_sync.ArgumentTypeError) as exc:
        print(f"beanproto: {exc}", file=sys.stderr)
        return USAGE
    except BrokenPipeError:
        # The reader went away (`beanproto tubes | head -1`): not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return OK
    except (beanproto_sync.BeanstalkdError, beanproto_sync.RemoteProtocolError) as exc:
        print(f"beanproto: the server refused: {type(exc).__name__}: {exc}", file=sys.stderr)
        return NOTHING
    except (ConnectionError, TimeoutError, OSError) as exc:
        print(f"beanproto: cannot reach the server: {exc}", file=sys.stderr)
        return UNREACHABLE
    except KeyboardInterrupt:
        return 130
