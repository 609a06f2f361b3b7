"""Alert outputs: signed JSON webhooks and syslog (RFC 5424 or CEF over UDP, TCP or TLS).

Each output is an ``AlertSink`` whose ``write_alerts`` only queues (bounded, coalescing updates
of one alert, dropping the oldest when full, all counted), so a slow or dead destination never
holds up the stream. Workers deliver on the event loop with retries, exponential backoff and
jitter; an alert that still fails is counted and its ``OutputError`` kept in ``status()``.
``Outputs`` runs several as one sink.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from iotsec.analytics.alerts import Alert, AlertSink
from iotsec.analytics.outputs.base import (
    AlertFilter,
    Backoff,
    OutputConfigError,
    OutputStatus,
    QueuedOutput,
    TransientFailure,
)
from iotsec.analytics.outputs.signing import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    TOLERANCE_SECONDS,
    sign,
    verify,
)
from iotsec.analytics.outputs.syslog import (
    SyslogConfig,
    SyslogFormat,
    SyslogOutput,
    SyslogTransport,
)
from iotsec.analytics.outputs.syslog_format import (
    cef_extension_escape,
    cef_header_escape,
    cef_message,
    format_cef,
    format_rfc5424,
    frame_octet_counted,
    sd_escape,
)
from iotsec.analytics.outputs.webhook import WebhookConfig, WebhookOutput, safe_url

__all__ = [
    "DELIVERY_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "TOLERANCE_SECONDS",
    "AlertFilter",
    "Backoff",
    "OutputConfigError",
    "OutputStatus",
    "Outputs",
    "QueuedOutput",
    "SyslogConfig",
    "SyslogFormat",
    "SyslogOutput",
    "SyslogTransport",
    "TransientFailure",
    "WebhookConfig",
    "WebhookOutput",
    "cef_extension_escape",
    "cef_header_escape",
    "cef_message",
    "format_cef",
    "format_rfc5424",
    "frame_octet_counted",
    "safe_url",
    "sd_escape",
    "sign",
    "verify",
]


class Outputs:
    """Several outputs as one ``AlertSink``: each alert is queued on every output.

    >>> outputs = Outputs([])
    >>> outputs.write_alerts([]), outputs.statuses()
    (0, [])
    """

    def __init__(self, outputs: Sequence[QueuedOutput[Any]]) -> None:
        self.outputs = tuple(outputs)

    def write_alerts(self, alerts: Sequence[Alert]) -> int:
        """Queue ``alerts`` on every output; returns how many were queued in all."""
        return sum(output.write_alerts(alerts) for output in self.outputs)

    async def start(self) -> None:
        """Start every output (on the running loop)."""
        for output in self.outputs:
            await output.start()

    async def close(self, timeout: float = 5.0) -> None:
        """Give every output up to ``timeout`` seconds to deliver what is queued, then stop."""
        await asyncio.gather(*(output.close(timeout) for output in self.outputs))

    def statuses(self) -> list[OutputStatus]:
        """Every output's counters."""
        return [output.status() for output in self.outputs]


def _conforms(outputs: Outputs, webhook: WebhookOutput, syslog: SyslogOutput) -> list[AlertSink]:
    return [outputs, webhook, syslog]  # mypy checks each against the AlertSink protocol here
