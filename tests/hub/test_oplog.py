"""Operation logs: accepted device-to-cloud messages are counted, then logged per identity."""

from __future__ import annotations

import doctest

import iotsec.hub.oplog
from iotsec.hub.oplog import TelemetryTally


def test_counts_are_per_identity_protocol_and_address_and_start_over_when_taken() -> None:
    tally = TelemetryTally()
    mqtt = ("dev1", None, "mqtt", "10.0.0.7")
    https = ("dev1", None, "https", "10.0.0.7")
    module = ("dev1", "mod1", "mqtt", "10.0.0.7")
    for key, size in ((mqtt, 10), (mqtt, 20), (https, 5), (module, 1)):
        tally.add(key, size)
    [entry] = tally.take(now=7.0, key=mqtt)
    assert (entry.time, entry.category, entry.operation, entry.result) == (
        7.0,
        "DeviceTelemetry",
        "d2c",
        "Success",
    )
    assert (entry.device_id, entry.module_id, entry.protocol, entry.source_ip) == mqtt
    assert entry.properties == {"count": "2", "bytes": "30", "protocol": "mqtt"}
    assert tally.take(now=8.0, key=mqtt) == []
    rest = {(e.module_id, e.protocol): e.properties["count"] for e in tally.take(now=9.0)}
    assert rest == {(None, "https"): "1", ("mod1", "mqtt"): "1"}
    assert tally.take(now=10.0) == []


def test_docstring_examples() -> None:
    result = doctest.testmod(iotsec.hub.oplog)
    assert result.attempted > 0
    assert result.failed == 0
