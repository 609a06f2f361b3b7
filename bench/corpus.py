"""Realistic security messages for the benchmarks: what the ASC agents send."""

from __future__ import annotations

import json
import uuid

_AGENT = "b97faf0a-0f57-471f-9dab-46a8e1764946"


def _event(
    i: int, name: str, category: str, payload: list[dict[str, object]], id_base: int = 0
) -> dict[str, object]:
    return {
        "Id": str(uuid.UUID(int=id_base + i + 1)),
        "TimestampLocal": f"2019-06-02T10:00:{i:02d}Z",
        "TimestampUTC": f"2019-06-02T07:00:{i:02d}Z",
        "Category": category,
        "Name": name,
        "EventType": "Security",
        "IsEmpty": False,
        "PayloadSchemaVersion": "1.0",
        "Payload": payload,
    }


def _process(i: int) -> dict[str, object]:
    return {
        "Executable": "/bin/sh",
        "ProcessId": 4000 + i,
        "ParentProcessId": 611,
        "UserId": "0",
        "CommandLine": f"sh -c job{i}",
    }


def _connection(i: int) -> dict[str, object]:
    return {
        "RemoteAddress": "10.0.0.5",
        "RemotePort": 0,
        "LocalAddress": "192.168.1.20",
        "LocalPort": "443",
        "Direction": "In",
        "Protocol": "tcp",
        "ProcessId": 0,
        "Executable": "/usr/sbin/nginx",
        "ExtraDetails": {"HitCount": str(i + 2)},
    }


def _login(i: int) -> dict[str, object]:
    return {
        "ProcessId": 2201 + i,
        "UserName": "pi",
        "Operation": "PAM:authentication",
        "Executable": "/usr/sbin/sshd",
        "RemoteAddress": "10.0.0.7",
        "Result": "Fail",
    }


def realistic_message(events: int = 20, id_base: int = 0) -> bytes:
    """``events`` events as the C agent sends them (local time marked Z, lower-case protocols,
    aggregated connections with an integer RemotePort 0): about 4 KB for 20 events.

    Event ids are ``id_base + 1`` onwards, so distinct bases give distinct events."""
    out: list[dict[str, object]] = []
    for i in range(events):
        kind = i % 4
        if kind == 0:
            out.append(_event(i, "ProcessCreate", "Triggered", [_process(i)], id_base))
        elif kind == 1:
            out.append(_event(i, "ConnectionCreate", "Aggregated", [_connection(i)], id_base))
        elif kind == 2:
            out.append(_event(i, "Login", "Triggered", [_login(i)], id_base))
        else:
            out.append(_event(i, "ProcessCreate", "Triggered", [_process(i)], id_base))
    message = {
        "AgentVersion": "0.0.5",
        "AgentId": _AGENT,
        "MessageSchemaVersion": "1.0",
        "Events": out,
    }
    return json.dumps(message, separators=(",", ":")).encode()
