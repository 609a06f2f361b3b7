"""The webhook output against a real HTTPS receiver on loopback (a throwaway CA)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import random
import re
import ssl
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from iotsec.analytics import OutputError
from iotsec.analytics.outputs import (
    Backoff,
    OutputConfigError,
    Outputs,
    WebhookConfig,
    WebhookOutput,
    safe_url,
    sign,
    verify,
)
from tests.analytics.outputs.conftest import SECRET, Sleeps, make_alert
from tests.analytics.outputs.receivers import Reply, WebhookServer
from tests.tls import LoopbackPki

NO_JITTER = Backoff(initial=1.0, maximum=8.0, multiplier=2.0, jitter=0.0)


def config(url: str, pki: LoopbackPki, **changes: object) -> WebhookConfig:
    fields: dict[str, object] = {
        "url": url,
        "secret": SECRET,
        "ca_file": str(pki.ca.cert),
        "backoff": NO_JITTER,
        "timeout": 5.0,
    }
    fields.update(changes)
    return WebhookConfig(**fields)  # type: ignore[arg-type]


async def run(output: WebhookOutput, *alerts: object, timeout: float = 10.0) -> None:
    await output.start()
    output.write_alerts(list(alerts))  # type: ignore[arg-type]
    assert await output.drain(timeout)
    await output.close()


async def test_alerts_arrive_signed_over_verified_tls(
    server_ssl: ssl.SSLContext, pki: LoopbackPki, sleeps: Sleeps
) -> None:
    alert = make_alert()
    async with WebhookServer(server_ssl) as server:
        output = WebhookOutput(config(server.url, pki), clock=lambda: 1_740_830_400.0)
        await run(output, alert)
    [request] = server.requests
    assert request.method == "POST" and request.path == "/hooks/alerts"
    assert request.headers["content-type"] == "application/json"
    assert orjson.loads(request.body) == alert.to_json()
    timestamp = request.headers["x-iotsec-timestamp"]
    assert timestamp == "1740830400"
    # The receiver's check, done independently: HMAC-SHA256 over "<timestamp>." + exact body.
    mac = hmac.new(SECRET.encode(), timestamp.encode() + b"." + request.body, hashlib.sha256)
    assert request.headers["x-iotsec-signature"] == f"sha256={mac.hexdigest()}"
    assert verify(
        SECRET.encode(),
        request.body,
        timestamp=timestamp,
        signature=request.headers["x-iotsec-signature"],
        now=1_740_830_400.0 + 60,
    )
    assert request.headers["x-iotsec-delivery"]
    status = output.status()
    assert (status.sent, status.failed, status.retries, status.queued) == (1, 0, 0, 0)


async def test_5xx_is_retried_with_backoff_and_a_fresh_signature(
    server_ssl: ssl.SSLContext, pki: LoopbackPki, sleeps: Sleeps
) -> None:
    script = [Reply(503), Reply(502), Reply(200)]
    stamps = iter([100.0, 101.0, 105.0, 106.0, 107.0, 108.0])
    async with WebhookServer(server_ssl, script) as server:
        output = WebhookOutput(config(server.url, pki), sleep=sleeps, clock=lambda: next(stamps))
        await run(output, make_alert())
    assert len(server.requests) == 3
    assert sleeps.delays == [1.0, 2.0]  # exponential, no jitter configured
    deliveries = {r.headers["x-iotsec-delivery"] for r in server.requests}
    assert len(deliveries) == 1  # one delivery id across the retries
    assert len({r.headers["x-iotsec-timestamp"] for r in server.requests}) == 3
    for request in server.requests:
        assert verify(
            SECRET.encode(),
            request.body,
            timestamp=request.headers["x-iotsec-timestamp"],
            signature=request.headers["x-iotsec-signature"],
            now=105.0,
        )
    assert (output.status().sent, output.status().retries) == (1, 2)


async def test_jitter_stays_within_the_exponential_envelope() -> None:
    backoff = Backoff(initial=0.5, maximum=30.0, multiplier=2.0, jitter=0.5)
    rng = random.Random(7)
    for attempt in range(10):
        ceiling = min(30.0, 0.5 * 2**attempt)
        delays = {backoff.delay(attempt, rng) for _ in range(50)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(delays) > 1


async def test_4xx_is_not_retried_but_429_is(
    server_ssl: ssl.SSLContext, pki: LoopbackPki, sleeps: Sleeps
) -> None:
    script = [Reply(400), Reply(429, {"Retry-After": "3"}), Reply(204)]
    async with WebhookServer(server_ssl, script) as server:
        output = WebhookOutput(config(server.url, pki, concurrency=1), sleep=sleeps)
        await run(output, make_alert(1), make_alert(2))
    status = output.status()
    assert (status.sent, status.failed, status.retries) == (1, 1, 1)
    assert status.last_error == f"output {output.name}: HTTP 400 (not retried)"
    assert isinstance(output.last_error, OutputError)
    assert sleeps.delays == [3.0]  # Retry-After outweighs the 1 s backoff


async def test_failures_after_the_retries_are_counted_not_raised(
    server_ssl: ssl.SSLContext, pki: LoopbackPki, sleeps: Sleeps, caplog: pytest.LogCaptureFixture
) -> None:
    script = [Reply(500)] * 3
    async with WebhookServer(server_ssl, script) as server:
        output = WebhookOutput(config(server.url, pki, attempts=3), sleep=sleeps)
        with caplog.at_level(logging.WARNING):
            await run(output, make_alert())
    status = output.status()
    assert (status.sent, status.failed, status.retries) == (0, 1, 2)
    assert status.last_error is not None and "HTTP 500" in status.last_error
    assert status.last_error_time is not None
    assert "gave up" in caplog.text
    assert SECRET not in caplog.text


async def test_timeouts_are_retried(
    server_ssl: ssl.SSLContext, pki: LoopbackPki, sleeps: Sleeps
) -> None:
    script = [Reply(200, delay=2.0), Reply(200)]
    async with WebhookServer(server_ssl, script) as server:
        output = WebhookOutput(config(server.url, pki, timeout=0.3), sleep=sleeps)
        await run(output, make_alert())
    assert (output.status().sent, output.status().retries) == (1, 1)


async def test_tls_is_verified_by_default(
    server_ssl: ssl.SSLContext, pki: LoopbackPki, sleeps: Sleeps
) -> None:
    async with WebhookServer(server_ssl) as server:
        output = WebhookOutput(config(server.url, pki, ca_file=None), sleep=sleeps)
        await run(output, make_alert())
    assert server.requests == []
    status = output.status()
    assert (status.failed, status.retries) == (1, 0)  # a bad certificate is not retried
    assert status.last_error is not None and "certificate" in status.last_error


async def test_a_slow_endpoint_never_blocks_the_writer(
    server_ssl: ssl.SSLContext, pki: LoopbackPki
) -> None:
    async with WebhookServer(server_ssl) as server:
        server.hold = asyncio.Event()  # the receiver answers nothing until released
        output = WebhookOutput(config(server.url, pki, queue_size=10, concurrency=1))
        await output.start()
        output.write_alerts([make_alert(0)])
        await asyncio.wait_for(server.received.wait(), 10)
        taken = output.write_alerts([make_alert(n) for n in range(1, 31)])
        status = output.status()
        assert taken == 30
        assert (status.in_flight, status.queued, status.dropped) == (1, 10, 20)
        server.hold.set()
        assert await output.drain(10)
        await output.close()
    assert output.status().sent == 11
    # The oldest were dropped: the newest ten waiting alerts went out.
    sent = [orjson.loads(r.body)["deviceId"] for r in server.requests]
    assert sent == ["dev-0", *(f"dev-{n}" for n in range(21, 31))]


async def test_updates_of_a_waiting_alert_are_coalesced(pki: LoopbackPki) -> None:
    output = WebhookOutput(config("https://127.0.0.1:9/x", pki))
    first = make_alert(count=1)
    output.write_alerts([first, make_alert(count=2), make_alert(count=3)])
    status = output.status()
    assert (status.queued, status.coalesced, status.dropped) == (1, 2, 0)
    await output.close()
    assert output.status().dropped == 1  # never started: counted at close


async def test_the_filter_keeps_dismissed_and_low_alerts_quiet(pki: LoopbackPki) -> None:
    output = WebhookOutput(config("https://127.0.0.1:9/x", pki, min_severity="Medium"))
    taken = output.write_alerts(
        [make_alert(1, status="Dismissed"), make_alert(2, severity="Low"), make_alert(3)]
    )
    assert taken == 1 and output.status().filtered == 2
    await output.close()


async def test_several_outputs_as_one_sink(server_ssl: ssl.SSLContext, pki: LoopbackPki) -> None:
    async with WebhookServer(server_ssl) as one, WebhookServer(server_ssl) as two:
        outputs = Outputs(
            [WebhookOutput(config(one.url, pki)), WebhookOutput(config(two.url, pki))]
        )
        await outputs.start()
        assert outputs.write_alerts([make_alert()]) == 2
        await outputs.close(timeout=10)
    assert len(one.requests) == len(two.requests) == 1
    assert [s.sent for s in outputs.statuses()] == [1, 1]


async def test_an_unreadable_ca_file_is_a_configuration_error(
    pki: LoopbackPki, tmp_path: Path
) -> None:
    output = WebhookOutput(config("https://127.0.0.1:9/x", pki, ca_file=str(tmp_path / "none")))
    with pytest.raises(OutputConfigError, match="cannot load the CA file"):
        await output.start()
    await output.close()


def test_the_secret_never_shows(pki: LoopbackPki) -> None:
    made = config("https://user:pw@hooks.example.com:8443/a?token=t#f", pki)
    assert SECRET not in repr(made)
    assert made.display_name == "https://hooks.example.com:8443/a"
    assert safe_url("https://[::1]:9/p?q") == "https://[::1]:9/p"
    output = WebhookOutput(made)
    assert SECRET not in repr(output) and "pw" not in output.name


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"url": "ftp://x/"}, "http(s) URL"),
        ({"url": "https:///nohost"}, "http(s) URL"),
        ({"secret": "short"}, "at least 16 bytes"),
        ({"headers": {"X-Iotsec-Signature": "forged"}}, "set by iotsec"),
        ({"min_severity": "Severe"}, "unknown severity"),
        ({"statuses": ("Open",)}, "unknown status"),
        ({"timeout": 0}, "timeout"),
    ],
)
def test_bad_configurations_are_refused(
    pki: LoopbackPki, changes: dict[str, object], reason: str
) -> None:
    url = str(changes.pop("url", "https://127.0.0.1/x"))
    with pytest.raises(OutputConfigError, match=re.escape(reason)):
        config(url, pki, **changes)


def test_configuration_from_json_names_the_key() -> None:
    made = WebhookConfig.from_json(
        {
            "url": "https://h.example/x",
            "secret": SECRET,
            "minSeverity": "High",
            "statuses": ["Active"],
        }
    )
    assert made.min_severity == "High" and made.statuses == ("Active",)
    with pytest.raises(OutputConfigError, match="unknown key 'sekret'"):
        WebhookConfig.from_json({"url": "https://h.example/x", "sekret": SECRET}, where="hooks[0]")
    with pytest.raises(OutputConfigError, match="'secret' is required"):
        WebhookConfig.from_json({"url": "https://h.example/x"})


def test_verification_refuses_old_tampered_or_malformed_requests() -> None:
    key, body = SECRET.encode(), b'{"a":1}'
    good = sign(key, 1000, body)
    assert verify(key, body, timestamp="1000", signature=good, now=1200.0)
    assert not verify(key, body, timestamp="1000", signature=good, now=1400.0)  # replayed late
    assert not verify(key, body, timestamp="1001", signature=good, now=1000.0)  # moved stamp
    assert not verify(
        b"another-secret-0123456789", body, timestamp="1000", signature=good, now=1000.0
    )
    assert not verify(key, body, timestamp=None, signature=good, now=1000.0)
    assert not verify(key, body, timestamp="-5", signature=good, now=1000.0)
    assert not verify(key, body, timestamp="1000", signature="sha256=", now=1000.0)


@given(body=st.binary(), signature=st.text(), timestamp=st.text())
def test_verification_never_crashes(body: bytes, signature: str, timestamp: str) -> None:
    assert verify(SECRET.encode(), body, timestamp=timestamp, signature=signature, now=0.0) in (
        True,
        False,
    )
