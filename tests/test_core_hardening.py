"""Hardening of the core: every command class built the same way on every
Python, and limits the server enforces checked before a byte is produced.

Issue 7, items 1.3 (bodies of 2**32 bytes or more), 3.1 (Python 3.10) and
the ``reserve-with-timeout`` limit of beanstalkd 1.13.
"""

from __future__ import annotations

import dataclasses

import pytest

import beanproto as bp
from beanproto._commands import make_with_id
from core_helpers import ALL_COMMAND_TYPES, SAMPLE_COMMANDS

ID_COMMANDS = (bp.ReserveJob, bp.Delete, bp.Touch, bp.Peek, bp.KickJob, bp.StatsJob)


def _slot_names(cls: type) -> list[str]:
    """Every slot declared anywhere in ``cls``'s MRO, repeats included."""
    names: list[str] = []
    for klass in cls.__mro__:
        slots = klass.__dict__.get("__slots__", ())
        names.extend([slots] if isinstance(slots, str) else slots)
    return names


# -- Python 3.10: one slot per field ---------------------------------------------


@pytest.mark.parametrize("command_type", ALL_COMMAND_TYPES, ids=lambda t: t.__name__)
def test_every_field_has_exactly_one_slot(command_type: type[bp.Command]) -> None:
    # dataclass(slots=True) on 3.10 re-declares inherited fields as slots of
    # the subclass; the object then has two slots named "id" (or "tube").
    names = _slot_names(command_type)
    assert len(names) == len(set(names)), names
    fields = {f.name for f in dataclasses.fields(command_type)}  # type: ignore[arg-type]
    assert set(names) == fields
    assert "__dict__" not in dir(SAMPLE_COMMANDS[command_type])


@pytest.mark.parametrize("command_type", ID_COMMANDS, ids=lambda t: t.__name__)
def test_the_hot_path_builds_what_the_constructor_builds(
    command_type: type[bp.Command],
) -> None:
    fast = make_with_id(command_type, 42)  # type: ignore[type-var]
    assert type(fast) is command_type
    assert getattr(fast, "id") == 42  # noqa: B009  # AttributeError on 3.10 before the fix
    assert fast == command_type(id=42)  # type: ignore[call-arg]
    assert hash(fast) == hash(command_type(id=42))  # type: ignore[call-arg]
    assert repr(fast) == f"{command_type.__name__}(id=42)"
    assert fast.wire() == command_type.verb + b" 42\r\n"


@pytest.mark.parametrize("command_type", ID_COMMANDS, ids=lambda t: t.__name__)
def test_id_commands_go_through_a_connection(command_type: type[bp.Command]) -> None:
    conn = bp.Connection()
    assert conn.send(make_with_id(command_type, 7)) == command_type.verb + b" 7\r\n"  # type: ignore[type-var]
    assert conn.pending == 1


@pytest.mark.parametrize("command_type", ALL_COMMAND_TYPES, ids=lambda t: t.__name__)
def test_commands_stay_frozen(command_type: type[bp.Command]) -> None:
    command = SAMPLE_COMMANDS[command_type]
    for field in dataclasses.fields(command):  # type: ignore[arg-type]
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(command, field.name, getattr(command, field.name))
    assert dataclasses.replace(command) == command  # type: ignore[type-var]
