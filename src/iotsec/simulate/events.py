"""Building blocks for simulated events: a timed event, and rows as the Linux agents fill them.

Everything is stamped in the device's own time zone, with whole seconds and ids drawn from the
caller's seeded stream, so a generator that is given the same stream makes equal events.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar, cast

import msgspec

from iotsec.schema import (
    ConnectionCreate,
    ConnectionCreateEvent,
    Event,
    Login,
    LoginEvent,
    ProcessCreate,
    ProcessCreateEvent,
    ProcessTerminate,
    ProcessTerminateEvent,
)
from iotsec.simulate._random import new_uuid
from iotsec.simulate.fleet import SimDevice

__all__ = [
    "Proc",
    "TimedEvent",
    "connection",
    "ephemeral_port",
    "login",
    "make_event",
    "process_create",
    "process_terminate",
]

E = TypeVar("E", bound=Event)


@dataclass(frozen=True, slots=True)
class TimedEvent:
    """An event and the simulated time its device's agent sends it.

    ``at`` is the event's own time for most events; an aggregated event is sent when its
    aggregation window closes, after the time it carries (its first hit).
    """

    at: datetime
    event: Event


@dataclass(frozen=True, slots=True)
class Proc:
    """A process as the audit log sees it."""

    pid: int
    ppid: int
    executable: str
    command_line: str
    user: str
    uid: str


def make_event(
    cls: type[E], rows: Iterable[object], at: datetime, device: SimDevice, rng: random.Random
) -> E:
    """An event of ``cls`` at ``at`` (whole seconds), local time in the device's zone."""
    when = at.replace(microsecond=0)
    event = cls.create(rows, at=when, event_id=new_uuid(rng))
    # replace() keeps the class; its stub widens a bounded type variable to the bound.
    return cast(E, msgspec.structs.replace(event, timestamp_local=when.astimezone(device.tz)))


def ephemeral_port(rng: random.Random) -> str:
    """A source port from Linux's default ephemeral range."""
    return str(rng.randint(32768, 60999))


def process_create(
    proc: Proc, at: datetime, device: SimDevice, rng: random.Random
) -> ProcessCreateEvent:
    """A ProcessCreate for ``proc`` (no IMA hash: ``ExtraDetails.Hash`` left out)."""
    row = ProcessCreate(
        executable=proc.executable,
        process_id=proc.pid,
        parent_process_id=proc.ppid,
        user_id=proc.uid,
        user_name=proc.user,
        command_line=proc.command_line,
    )
    return make_event(ProcessCreateEvent, [row], at, device, rng)


def process_terminate(
    proc: Proc, at: datetime, device: SimDevice, rng: random.Random, exit_status: int = 0
) -> ProcessTerminateEvent:
    """A ProcessTerminate for ``proc``."""
    row = ProcessTerminate(executable=proc.executable, process_id=proc.pid, exit_status=exit_status)
    return make_event(ProcessTerminateEvent, [row], at, device, rng)


def connection(
    proc: Proc,
    at: datetime,
    device: SimDevice,
    rng: random.Random,
    *,
    direction: str,
    remote: tuple[str, int | str],
    local_port: int | str,
    protocol: str = "TCP",
) -> ConnectionCreateEvent:
    """A ConnectionCreate made (``Out``) or accepted (``In``) by ``proc``."""
    address, port = remote
    row = ConnectionCreate(
        remote_address=address,
        remote_port=str(port),
        local_address=device.address,
        local_port=str(local_port),
        direction="In" if direction == "In" else "Out",
        protocol=protocol,
        process_id=proc.pid,
        user_id=proc.uid,
        executable=proc.executable,
        command_line=proc.command_line,
    )
    return make_event(ConnectionCreateEvent, [row], at, device, rng)


def login(
    at: datetime,
    device: SimDevice,
    rng: random.Random,
    *,
    pid: int,
    user: str,
    uid: str | None,
    result: str,
    operation: str,
    executable: str,
    remote_address: str | None,
) -> LoginEvent:
    """A Login as the C agent reads it from USER_AUTH / USER_LOGIN audit records."""
    row = Login(
        process_id=pid,
        user_name=user,
        user_id=uid,
        operation=operation,
        executable=executable,
        remote_address=remote_address,
        result="Success" if result == "Success" else "Fail",
    )
    return make_event(LoginEvent, [row], at, device, rng)
