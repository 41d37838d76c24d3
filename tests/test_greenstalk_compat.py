"""``import beanproto_sync as greenstalk`` must be a drop-in for greenstalk 2.1.1.

Checked against the installed greenstalk itself: the public names, the
Client's method signatures, the exception hierarchy, and a greenstalk-style
script run once with each module against a real beanstalkd, with identical
output.
"""

from __future__ import annotations

import inspect
import socket
import subprocess
import sys
import textwrap
import typing
from pathlib import Path
from typing import Any

import greenstalk
import pytest
from tools.beanstalkd import running_beanstalkd

import beanproto_sync

#: greenstalk 2.1.1's public names (its module has no ``__all__``).
PUBLIC_NAMES = [
    "Client",
    "Job",
    "Error",
    "UnknownResponseError",
    "BeanstalkdError",
    "BadFormatError",
    "BuriedError",
    "DeadlineSoonError",
    "DrainingError",
    "ExpectedCrlfError",
    "InternalError",
    "JobTooBigError",
    "NotFoundError",
    "NotIgnoredError",
    "OutOfMemoryError",
    "TimedOutError",
    "UnknownCommandError",
    "DEFAULT_TUBE",
    "DEFAULT_PRIORITY",
    "DEFAULT_DELAY",
    "DEFAULT_TTR",
    "Address",
    "ConnectionTarget",
    "TBody",
    "Stats",
    "StatsJob",
    "StatsTube",
    "JobOrID",
    "ERROR_RESPONSES",
]


def greenstalk_own_names() -> list[str]:
    """Names greenstalk itself defines: its classes and functions, and its
    upper-case constants (imports such as ``typing.List`` left out)."""
    names = []
    for name, value in vars(greenstalk).items():
        if name.startswith("_"):
            continue
        defined_here = getattr(value, "__module__", None) == "greenstalk"
        if (defined_here and (inspect.isclass(value) or inspect.isfunction(value))) or (
            name.isupper()
        ):
            names.append(name)
    return names


def greenstalk_exceptions() -> list[type[BaseException]]:
    return [
        value
        for value in vars(greenstalk).values()
        if inspect.isclass(value)
        and issubclass(value, BaseException)
        and value.__module__ == "greenstalk"
    ]


def ours(cls: type) -> type:
    mine = getattr(beanproto_sync, cls.__name__)
    assert inspect.isclass(mine)
    return mine


# -- (a) names --------------------------------------------------------------------------


def test_the_name_list_covers_greenstalk() -> None:
    assert set(greenstalk_own_names()) <= set(PUBLIC_NAMES)
    for name in PUBLIC_NAMES:
        assert hasattr(greenstalk, name), name


@pytest.mark.parametrize("name", PUBLIC_NAMES)
def test_public_name_exists(name: str) -> None:
    assert hasattr(beanproto_sync, name), name
    assert name in beanproto_sync.__all__


def test_constants_have_greenstalks_values() -> None:
    assert beanproto_sync.DEFAULT_TUBE == greenstalk.DEFAULT_TUBE == "default"
    assert beanproto_sync.DEFAULT_PRIORITY == greenstalk.DEFAULT_PRIORITY == 2**16
    assert beanproto_sync.DEFAULT_DELAY == greenstalk.DEFAULT_DELAY == 0
    assert beanproto_sync.DEFAULT_TTR == greenstalk.DEFAULT_TTR == 60


def test_error_responses_table() -> None:
    theirs: dict[bytes, type] = greenstalk.ERROR_RESPONSES
    mine: dict[bytes, type] = dict(beanproto_sync.ERROR_RESPONSES)
    assert set(mine) == set(theirs)
    for status, cls in theirs.items():
        assert mine[status] is ours(cls), status


@pytest.mark.parametrize("name", ["Stats", "StatsJob", "StatsTube"])
def test_stats_typed_dicts_have_greenstalks_keys(name: str) -> None:
    theirs = set(getattr(greenstalk, name).__annotations__)
    mine = set(getattr(beanproto_sync, name).__annotations__)
    assert mine == theirs


@pytest.mark.parametrize("name", ["Stats", "StatsJob", "StatsTube"])
def test_stats_typed_dicts_have_greenstalks_types(name: str) -> None:
    # Each key's declared type, exactly: draining is Literal["true", "false"],
    # rusage-* are str, names and ids str, counters int.
    theirs = getattr(greenstalk, name).__annotations__
    mine = getattr(beanproto_sync, name).__annotations__
    assert mine == theirs


def _declared(annotation: Any, value: object) -> bool:
    """Whether ``value`` is of the type a greenstalk TypedDict declares."""
    if typing.get_origin(annotation) is typing.Literal:
        return value in typing.get_args(annotation)
    return type(value) is annotation


def test_every_client_returns_greenstalks_declared_types(
    client: beanproto_sync.Client[str], tube: str
) -> None:
    job_id = client.put("x")
    replies: list[tuple[Any, dict[str, Any]]] = [
        (greenstalk.Stats, dict(client.stats())),
        (greenstalk.StatsTube, dict(client.stats_tube(tube))),
        (greenstalk.StatsJob, dict(client.stats_job(job_id))),
    ]
    for typed_dict, data in replies:
        declared = typed_dict.__annotations__
        wrong = {k: v for k, v in data.items() if k in declared and not _declared(declared[k], v)}
        assert not wrong, (typed_dict.__name__, wrong)
    stats = replies[0][1]
    assert stats["draining"] == "false"  # code written for greenstalk compares text
    assert float(stats["rusage-utime"]) >= 0.0
    assert stats["version"][:2] == "1."  # "1.12": a str, not a float


def test_tbody_constraints() -> None:
    assert beanproto_sync.TBody.__constraints__ == greenstalk.TBody.__constraints__


def test_job_signature_and_attributes() -> None:
    assert list(inspect.signature(beanproto_sync.Job).parameters) == list(
        inspect.signature(greenstalk.Job).parameters
    )
    job = beanproto_sync.Job(id=3, body="b")
    assert (job.id, job.body) == (3, "b")
    assert repr(job).split("(", 1)[1] == repr(greenstalk.Job(id=3, body="b")).split("(", 1)[1]


# -- (b) method signatures -----------------------------------------------------------

DUNDERS = ["__init__", "__enter__", "__exit__", "__repr__"]


def client_methods() -> list[str]:
    names = [
        name
        for name, value in vars(greenstalk.Client).items()
        if not name.startswith("_") and callable(value)
    ]
    return sorted(names) + DUNDERS


def shape(func: Any) -> list[tuple[str, Any, Any]]:
    """A signature without annotations: (name, kind, default) per parameter."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(func).parameters.values()]


def test_method_list_is_complete() -> None:
    assert "put" in client_methods()
    assert len(client_methods()) == 28
    mine = {n for n in dir(beanproto_sync.Client) if not n.startswith("_")}
    assert set(client_methods()) - set(DUNDERS) <= mine


@pytest.mark.parametrize("name", client_methods())
def test_client_method_signature(name: str) -> None:
    theirs = getattr(greenstalk.Client, name)
    mine = getattr(beanproto_sync.Client, name, None)
    assert mine is not None, f"beanproto_sync.Client has no {name}"
    assert callable(mine)
    ours_, theirs_ = shape(mine), shape(theirs)
    # A superset: greenstalk's parameters exactly, then only keyword-only
    # extras with defaults (the constructor's fault settings), which no
    # greenstalk call can pass by accident.
    assert ours_[: len(theirs_)] == theirs_
    for _, kind, default in ours_[len(theirs_) :]:
        assert kind is inspect.Parameter.KEYWORD_ONLY
        assert default is not inspect.Parameter.empty


def test_client_and_job_are_generic() -> None:
    assert beanproto_sync.Client[str].__origin__ is beanproto_sync.Client  # type: ignore[attr-defined]
    assert beanproto_sync.Job[bytes].__origin__ is beanproto_sync.Job  # type: ignore[attr-defined]


# -- (c) exceptions ------------------------------------------------------------------


def test_exception_list() -> None:
    names = {cls.__name__ for cls in greenstalk_exceptions()}
    assert len(names) == 15
    assert {"Error", "BeanstalkdError", "UnknownResponseError", "BuriedError"} <= names


@pytest.mark.parametrize("cls", greenstalk_exceptions(), ids=lambda c: c.__name__)
def test_exception_hierarchy_matches(cls: type[BaseException]) -> None:
    mine = ours(cls)
    assert issubclass(mine, Exception)
    for other in greenstalk_exceptions():
        assert issubclass(mine, ours(other)) == issubclass(cls, other), (
            f"{cls.__name__} vs {other.__name__}"
        )
    # greenstalk: ConnectionError is the built-in one, not one of its classes.
    assert issubclass(mine, ConnectionError) == issubclass(cls, ConnectionError)


@pytest.mark.parametrize("status", sorted(greenstalk.ERROR_RESPONSES))
def test_error_classes_build_the_way_greenstalk_builds_them(status: bytes) -> None:
    # greenstalk raises ERROR_RESPONSES[status](values).
    error = beanproto_sync.ERROR_RESPONSES[status]([])
    assert isinstance(error, beanproto_sync.BeanstalkdError)
    assert isinstance(error, beanproto_sync.Error)


def test_unknown_response_error_attributes() -> None:
    error = beanproto_sync.UnknownResponseError(b"SOME_ERROR", [b"1", b"2"])
    theirs = greenstalk.UnknownResponseError(b"SOME_ERROR", [b"1", b"2"])
    assert (error.status, error.values) == (theirs.status, theirs.values)
    assert error.status == b"SOME_ERROR"
    assert error.values == [b"1", b"2"]


def test_buried_error_id() -> None:
    assert beanproto_sync.BuriedError(values=[b"5"]).id == 5
    assert beanproto_sync.BuriedError([b"7"]).id == 7
    assert beanproto_sync.BuriedError().id is None
    assert beanproto_sync.BuriedError([]).id is None
    assert greenstalk.BuriedError(values=[b"5"]).id == 5


# -- (d) a greenstalk script, run with both modules -----------------------------

SCRIPT = """
import json
import sys

{import_line}

if sys.argv[1] == "unix":
    address = sys.argv[2]
else:
    address = (sys.argv[2], int(sys.argv[3]))

def show(*values):
    print(*[repr(v) for v in values])

def attempt(label, call):
    try:
        result = call()
    except greenstalk.BeanstalkdError as exc:
        show(label, "raised", type(exc).__name__, isinstance(exc, greenstalk.Error))
    else:
        show(label, "returned", result)

with greenstalk.Client(address, use="emails", watch="emails") as client:
    show("using", client.using(), "watching", client.watching())

    # Quickstart: a JSON producer and consumer.
    job_id = client.put(json.dumps({{"user_id": 42}}))
    show("put", job_id)
    job = client.reserve()
    show("reserved", job.id, json.loads(job.body)["user_id"], repr(job).split("(", 1)[1])
    client.delete(job)
    attempt("empty reserve", lambda: client.reserve(timeout=0))

    # Priorities, release, bury, kick.
    low = client.put("low", priority=2**31)
    high = client.put("high", priority=1)
    job = client.reserve(timeout=1)
    show("most urgent first", job.id == high, job.body)
    client.release(job, priority=5, delay=10)
    stats = client.stats_job(job)
    show("released", stats["state"], stats["pri"], stats["delay"], stats["releases"])
    job = client.reserve()
    show("next", job.id == low, job.body)
    client.bury(job, priority=8)
    show("buried", client.stats_job(job.id)["state"], client.peek_buried().body)
    show("peek delayed", client.peek_delayed().id == high)
    show("kick buried", client.kick(10), "kick delayed", client.kick(10), "none left",
         client.kick(10))
    show("peek ready", client.peek_ready().body, client.peek(low).body)

    # kick_job, touch, reserve_job.
    job = client.reserve()
    client.bury(job)
    client.kick_job(job.id)
    job = client.reserve_job(job.id)
    client.touch(job)
    show("touched", client.stats_job(job)["state"], client.stats_job(job)["ttr"])
    client.delete(job.id)
    attempt("touch deleted", lambda: client.touch(job))
    attempt("release deleted", lambda: client.release(job))
    attempt("bury deleted", lambda: client.bury(job))
    attempt("delete deleted", lambda: client.delete(job))
    attempt("peek deleted", lambda: client.peek(job.id))
    attempt("kick_job deleted", lambda: client.kick_job(job.id))
    attempt("stats_job deleted", lambda: client.stats_job(job.id))
    attempt("reserve_job deleted", lambda: client.reserve_job(job.id))
    attempt("stats_tube missing", lambda: client.stats_tube("no-such-tube"))
    attempt("pause missing", lambda: client.pause_tube("no-such-tube", 1))

    # Tubes.
    show("watch", client.watch("sms"), client.watch("push"), sorted(client.watching()))
    show("ignore", client.ignore("push"), client.ignore("sms"))
    attempt("ignore last", lambda: client.ignore("emails"))
    client.use("sms")
    client.put("text me")
    show("tubes", sorted(client.tubes()), client.using())
    tube = client.stats_tube("sms")
    show("stats_tube", tube["name"], tube["current-jobs-ready"], tube["total-jobs"],
         tube["current-using"], tube["pause"])
    client.pause_tube("emails", 30)
    show("paused", client.stats_tube("emails")["pause"])
    client.use("emails")
    client.put("held back")
    attempt("reserve from paused", lambda: client.reserve(timeout=0))
    client.pause_tube("emails", 0)
    show("unpaused", client.reserve(timeout=0).body)
    while True:  # empty the tube; the reserved job goes too
        try:
            client.delete(client.reserve(timeout=0))
        except greenstalk.TimedOutError:
            break
        except greenstalk.DeadlineSoonError:
            break
    show("emptied", client.stats_tube("emails")["current-jobs-ready"])

    # Deadline soon.
    client.put("hurry", ttr=1)
    job = client.reserve()
    attempt("deadline soon", lambda: client.reserve())
    client.delete(job)

    # Job too big (the server's default max is 65535 bytes), then still usable.
    attempt("too big", lambda: client.put("x" * 70000))
    show("after too big", client.put("fits") > 0)

    stats = client.stats()
    show("stats", stats["current-jobs-ready"], stats["current-jobs-buried"],
         stats["current-jobs-delayed"], stats["total-jobs"], stats["version"],
         stats["current-connections"], isinstance(stats["pid"], int))

# Binary bodies and other encodings.
with greenstalk.Client(address, encoding=None, use="bin", watch=["bin"]) as raw:
    raw.put(b"\\x00\\xff\\xfe")
    job = raw.reserve()
    show("bytes", type(job.body).__name__, job.body)
    try:
        raw.put("text")
    except TypeError:
        show("str refused")
    raw.delete(job)
    raw.put(b"caf\\xe9")

with greenstalk.Client(address, encoding="latin-1", watch="bin") as latin:
    show("latin-1", latin.reserve().body)

with greenstalk.Client(address, watch=["default", "emails"]) as client:
    show("default kept", sorted(client.watching()), client.using())
    show("ignore", client.ignore("nope"), client.ignore("default"))
    try:
        client.ignore("emails")
    except greenstalk.NotIgnoredError:
        show("not ignored")
    show("end", client.stats()["current-jobs-ready"])
"""

IMPORTS = {
    "greenstalk": "import greenstalk",
    "beanproto_sync": "import beanproto_sync as greenstalk",
}


def run_script(module: str, transport: str, tmp_path: Path) -> str:
    """Run the script with ``module`` against a fresh server (so job ids
    match between runs) and return what it printed."""
    path = tmp_path / f"script_{module}.py"
    path.write_text(textwrap.dedent(SCRIPT).format(import_line=IMPORTS[module]))
    with running_beanstalkd(unix_socket=transport == "unix") as server:
        if server.unix_path is not None:
            args = ["unix", server.unix_path]
        else:
            args = ["tcp", server.host, str(server.port)]
        done = subprocess.run(
            [sys.executable, "-bb", "-W", "error", str(path), *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert done.returncode == 0, f"{module}: {done.stderr}"
    assert done.stderr == ""
    return done.stdout


@pytest.mark.integration
@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_greenstalk_script_runs_unchanged(transport: str, tmp_path: Path) -> None:
    theirs = run_script("greenstalk", transport, tmp_path)
    mine = run_script("beanproto_sync", transport, tmp_path)
    assert mine.splitlines() == theirs.splitlines()
    # The script really did something, and met each error it provokes.
    for expected in (
        "'put' 1",
        "'empty reserve' 'raised' 'TimedOutError' True",
        "'touch deleted' 'raised' 'NotFoundError' True",
        "'ignore last' 'raised' 'NotIgnoredError' True",
        "'reserve from paused' 'raised' 'TimedOutError' True",
        "'deadline soon' 'raised' 'DeadlineSoonError' True",
        "'too big' 'raised' 'JobTooBigError' True",
        "'bytes' 'bytes' b'\\x00\\xff\\xfe'",
        "'str refused'",
        "'latin-1' 'café'",
        "'not ignored'",
    ):
        assert expected in mine.splitlines(), expected


# -- connection loss, as greenstalk reports it ----------------------------------------


@pytest.mark.parametrize("module", [greenstalk, beanproto_sync], ids=lambda m: m.__name__)
def test_connection_loss_is_a_connection_error_on_every_call(module: Any) -> None:
    """The server hangs up (EOF, the socket is still writable): greenstalk
    raises ``ConnectionError`` on this call and on every later one, so a
    worker written as ``except ConnectionError: reconnect`` recovers whichever
    call it is in when the server goes away."""
    mine, theirs = socket.socketpair()
    theirs.settimeout(5)
    client = module.Client(theirs)
    try:
        mine.shutdown(socket.SHUT_WR)
        for call in (lambda: client.put("x"), client.stats, client.reserve):
            with pytest.raises(ConnectionError):
                call()
    finally:
        client.close()
        mine.close()
