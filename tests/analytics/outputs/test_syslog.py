"""Syslog output: RFC 5424 and CEF over UDP, TCP (octet counting) and TLS, to real listeners."""

from __future__ import annotations

import asyncio
import socket
import ssl
from types import MappingProxyType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iotsec.analytics.outputs import (
    Backoff,
    OutputConfigError,
    SyslogConfig,
    SyslogOutput,
    cef_extension_escape,
    cef_header_escape,
    format_cef,
    format_rfc5424,
    frame_octet_counted,
    sd_escape,
)
from iotsec.analytics.outputs.syslog_format import SD_ID, SD_PROPERTIES_ID, cef_message
from tests.analytics.outputs.conftest import Sleeps, make_alert
from tests.analytics.outputs.parsers import parse_cef, parse_rfc5424
from tests.analytics.outputs.receivers import TcpSyslog, UdpSyslog
from tests.tls import LoopbackPki

FAST = Backoff(initial=0.01, maximum=0.05, jitter=0.0)
BOM = "\ufeff".encode()


async def test_rfc5424_over_udp() -> None:
    alert = make_alert()
    async with UdpSyslog() as receiver:
        output = SyslogOutput(
            SyslogConfig("127.0.0.1", receiver.port, hostname="analytics-1", facility="local3")
        )
        await output.start()
        output.write_alerts([alert])
        [data] = await receiver.wait_for(1)
        await output.close()
    message = parse_rfc5424(data)
    assert message.pri == 19 * 8 + 2  # local3, High -> critical
    assert message.version == 1
    assert message.timestamp == "2025-03-01T12:03:01.000000Z"
    assert (message.hostname, message.app_name, message.msgid) == ("analytics-1", "iotsec", "alert")
    fields = message.sd[SD_ID]
    assert fields["alertId"] == alert.alert_id
    assert fields["alertType"] == "IoT_ReverseShell"
    assert fields["severity"] == "High" and fields["status"] == "Active"
    assert fields["deviceId"] == "dev-0" and fields["securityGroup"] == "cameras"
    assert fields["count"] == "2" and fields["evidence"] == "ev-1:0,ev-2:0"
    assert fields["startTime"] == "2025-03-01T12:00:00.000000Z"
    assert message.sd[SD_PROPERTIES_ID] == {
        "CommandLine": "bash -i",
        "RemoteAddress": "203.0.113.9",
    }
    assert message.msg == BOM + f"Reverse shell: {alert.description}".encode()
    assert output.status().sent == 1


async def test_alerts_may_be_written_from_another_thread() -> None:
    async with UdpSyslog() as receiver:
        output = SyslogOutput(SyslogConfig("127.0.0.1", receiver.port, format="cef"))
        await output.start()
        # The stream may run in a worker thread: the queue wakes the output's loop.
        await asyncio.to_thread(output.write_alerts, [make_alert(1), make_alert(2)])
        messages = await receiver.wait_for(2)
        await output.close()
    assert [parse_cef(m.decode())[1]["deviceExternalId"] for m in messages] == ["dev-1", "dev-2"]


async def test_octet_counted_tcp_and_reconnects_when_the_receiver_closes() -> None:
    alerts = [make_alert(n) for n in range(5)]
    async with TcpSyslog(close_after=2) as receiver:
        output = SyslogOutput(
            SyslogConfig("127.0.0.1", receiver.port, transport="tcp", backoff=FAST, attempts=5)
        )
        await output.start()
        for alert in alerts:
            output.write_alerts([alert])
            await receiver.wait_for(len(receiver.frames) + 1)
            # Let the receiver's close reach us: syslog has no acknowledgements, so a message
            # written into a connection at the moment it is closed is lost (documented).
            await asyncio.sleep(0.1)
        await output.close()
    assert [parse_rfc5424(f).sd[SD_ID]["deviceId"] for f in receiver.frames] == [
        f"dev-{n}" for n in range(5)
    ]
    assert receiver.connections == 3
    assert output.status().sent == 5


async def test_tls_with_a_private_ca(pki: LoopbackPki, server_ssl: ssl.SSLContext) -> None:
    async with TcpSyslog(server_ssl) as receiver:
        output = SyslogOutput(
            SyslogConfig(
                "127.0.0.1",
                receiver.port,
                transport="tls",
                ca_file=str(pki.ca.cert),
                format="cef",
            )
        )
        await output.start()
        output.write_alerts([make_alert(1), make_alert(2)])
        frames = await receiver.wait_for(2)
        await output.close()
    header, extension = parse_cef(frames[0].decode())
    assert header[:6] == [
        "CEF:0",
        "iotsec",
        "iotsec",
        header[3],
        "IoT_ReverseShell",
        "Reverse shell",
    ]
    assert header[6] == "8"
    assert extension["deviceExternalId"] == "dev-1"
    assert extension["cnt"] == "2"
    assert extension["msg"] == make_alert().description


async def test_tls_refuses_an_unknown_certificate(
    server_ssl: ssl.SSLContext, sleeps: Sleeps
) -> None:
    async with TcpSyslog(server_ssl) as receiver:
        output = SyslogOutput(
            SyslogConfig("127.0.0.1", receiver.port, transport="tls", attempts=2), sleep=sleeps
        )
        await output.start()
        output.write_alerts([make_alert()])
        assert await output.drain(10)
        await output.close()
    assert receiver.frames == []
    status = output.status()
    assert (status.sent, status.failed) == (0, 1)
    assert status.last_error is not None and "CERTIFICATE_VERIFY_FAILED" in status.last_error


async def test_a_dead_receiver_is_retried_then_counted(sleeps: Sleeps) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    output = SyslogOutput(
        SyslogConfig("127.0.0.1", port, transport="tcp", attempts=3, backoff=FAST), sleep=sleeps
    )
    await output.start()
    output.write_alerts([make_alert()])
    assert await output.drain(10)
    await output.close()
    status = output.status()
    assert (status.sent, status.failed, status.retries) == (0, 1, 2)
    assert status.last_error is not None and "ConnectionRefusedError" in status.last_error
    assert sleeps.delays == [0.01, 0.02]


def test_long_alerts_are_cut_to_the_size_limit() -> None:
    alert = make_alert(description="x" * 20_000 + "é" * 100)
    data = format_rfc5424(alert, hostname="h", max_bytes=2048)
    assert len(data) <= 2048
    parsed = parse_rfc5424(data)
    assert parsed.sd[SD_ID]["alertId"] == alert.alert_id
    assert parsed.msg.startswith(BOM + b"Reverse shell: xxx")
    cef = cef_message(alert, hostname="h", max_bytes=1024)
    assert len(cef) <= 1024
    _, extension = parse_cef(cef.decode())
    assert extension["msg"].startswith("xxx") and extension["externalId"] == alert.alert_id


def test_framing_is_octet_counting() -> None:
    assert frame_octet_counted("é".encode()) == b"2 \xc3\xa9"


def test_escaping_examples() -> None:
    assert sd_escape('a"b\\c]d') == 'a\\"b\\\\c\\]d'
    assert cef_header_escape("a|b\\c\nd") == "a\\|b\\\\c d"
    assert cef_extension_escape("a=b\\c\nd\re|f") == "a\\=b\\\\c\\nd\\re|f"


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"transport": "sctp"}, "transport"),
        ({"facility": "kernel"}, "facility"),
        ({"facility": 24}, "facility"),
        ({"port": 0}, "port"),
        ({"cert_file": "c.pem"}, "key_file"),
        ({"max_message_bytes": 100}, "480"),
    ],
)
def test_bad_configurations_are_refused(changes: dict[str, object], reason: str) -> None:
    with pytest.raises(OutputConfigError, match=reason):
        SyslogConfig("127.0.0.1", **changes)  # type: ignore[arg-type]


def test_default_ports_and_json_configuration() -> None:
    assert SyslogConfig("siem").effective_port == 514
    made = SyslogConfig.from_json({"host": "siem", "transport": "tls", "format": "cef"})
    assert made.effective_port == 6514 and made.display_name == "tls://siem:6514"
    with pytest.raises(OutputConfigError, match="unknown key 'protocol'"):
        SyslogConfig.from_json({"host": "siem", "protocol": "tcp"})


# -- escaping round-trips through an independent parser ----------------------------------------

texts = st.text(max_size=80)
names = st.text(min_size=1, max_size=40)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(
    display=texts,
    description=texts,
    device=names,
    group=texts,
    properties=st.dictionaries(names, texts, max_size=5),
)
def test_any_alert_text_round_trips_through_rfc5424(
    display: str, description: str, device: str, group: str, properties: dict[str, str]
) -> None:
    alert = make_alert(
        display_name=display,
        description=description,
        device_id=device,
        group=group,
        properties=MappingProxyType(properties),
    )
    parsed = parse_rfc5424(format_rfc5424(alert, hostname="h", max_bytes=65_536))
    fields = parsed.sd[SD_ID]
    assert fields["deviceId"] == device
    assert fields.get("displayName", "") == display
    assert fields.get("securityGroup", "") == group
    assert sorted(parsed.sd.get(SD_PROPERTIES_ID, {}).values()) == sorted(properties.values())
    assert parsed.msg == BOM + f"{display}: {description}".encode()


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(display=texts, rule=names, description=texts, device=names, group=texts)
def test_any_alert_text_round_trips_through_cef(
    display: str, rule: str, description: str, device: str, group: str
) -> None:
    alert = make_alert(
        display_name=display, rule_id=rule, description=description, device_id=device, group=group
    )
    header, extension = parse_cef(format_cef(alert))
    flat = str.maketrans({"\r": " ", "\n": " "})  # the header has no escape for line breaks
    assert header[4] == rule.translate(flat)
    assert header[5] == display.translate(flat)
    assert extension["msg"] == description
    assert extension["deviceExternalId"] == device
    assert extension["cs1"] == group
    assert extension["externalId"] == alert.alert_id
