from __future__ import annotations

import base64
import hashlib
import hmac
import urllib.parse
from urllib.parse import quote

import pytest

from iotsec.sdk import (
    SasTokenError,
    SasTokenProvider,
    generate_sas_token,
    parse_sas_token,
    resource_uri,
)

KEY = base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


def by_hand(uri: str, key: str, expiry: int) -> tuple[str, str]:
    """The encoded resource and signature, computed independently of iotsec."""
    encoded_uri = urllib.parse.quote(uri, safe="")
    digest = hmac.new(
        base64.b64decode(key), f"{encoded_uri}\n{expiry}".encode(), hashlib.sha256
    ).digest()
    return encoded_uri, urllib.parse.quote(base64.b64encode(digest).decode(), safe="")


def test_known_vector() -> None:
    # Fixed bytes, so a change in encoding shows up as a changed literal.
    token = generate_sas_token(
        "myhub.azure-devices.net/devices/device1", "AAECAwQFBgcICQoLDA0ODw==", 1_600_000_000
    )
    sr, sig = by_hand(
        "myhub.azure-devices.net/devices/device1", "AAECAwQFBgcICQoLDA0ODw==", 1_600_000_000
    )
    assert sr == "myhub.azure-devices.net%2Fdevices%2Fdevice1"
    assert sig == "u1Q%2B5uvNjhZf2V6wYRuuY1fPi%2BiEkQ%2BrYkDhyOyCgFk%3D"  # '+', '/', '=' encoded
    assert token == f"SharedAccessSignature sr={sr}&sig={sig}&se=1600000000"


@pytest.mark.parametrize(
    ("device", "module"),
    [
        ("dev1", None),
        ("dev1", "agent"),
        ("dev#1 with:odd=chars@$'!", None),
        ("dev%20", "mod(1)"),
    ],
)
def test_matches_an_independent_computation(device: str, module: str | None) -> None:
    uri = resource_uri("hub.example.net", device, module)
    expected_path = f"/devices/{device}" + (f"/modules/{module}" if module else "")
    assert uri == "hub.example.net" + expected_path
    sr, sig = by_hand(uri, KEY, 1_700_000_123)
    assert generate_sas_token(uri, KEY, 1_700_000_123) == (
        f"SharedAccessSignature sr={sr}&sig={sig}&se=1700000123"
    )
    # Nothing in the resource is left unencoded but letters, digits and _.-~
    assert set(sr) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~%")


def test_policy_name_appends_skn() -> None:
    uri = "hub.example.net/devices/dev1"
    sr, sig = by_hand(uri, KEY, 42)
    assert generate_sas_token(uri, KEY, 42, "device") == (
        f"SharedAccessSignature sr={sr}&sig={sig}&se=42&skn=device"
    )


def test_rejects_a_bad_key_or_expiry() -> None:
    with pytest.raises(SasTokenError, match="base64"):
        generate_sas_token("h/devices/d", "%%%", 1)
    with pytest.raises(SasTokenError, match="empty"):
        generate_sas_token("h/devices/d", "", 1)
    with pytest.raises(SasTokenError, match="unix seconds"):
        generate_sas_token("h/devices/d", KEY, -1)
    with pytest.raises(SasTokenError, match="unix seconds"):
        generate_sas_token("h/devices/d", KEY, 1.5)  # type: ignore[arg-type]


def test_parse_round_trips_and_verifies() -> None:
    uri = resource_uri("hub.example.net", "dev#1", "agent")
    token = parse_sas_token(generate_sas_token(uri, KEY, 1234, "policy"))
    assert (token.sr, token.se, token.skn) == (uri, 1234, "policy")
    assert token.signature_matches(KEY)
    assert not token.signature_matches(base64.b64encode(b"another key").decode())
    assert token.expired(1234) and not token.expired(1233.9)
    assert token.sig not in repr(token)


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("sr=a&sig=b&se=1", "not a SAS token"),
        ("Bearer abc", "not a SAS token"),
        ("SharedAccessSignature sr=a&sig=b", "missing se"),
        ("SharedAccessSignature sr=a&se=1", "missing sig"),
        ("SharedAccessSignature sr=a&sig=b&se=1&sr=c", "duplicate"),
        ("SharedAccessSignature sr=a&sig=b&se=1&x=y", "unknown"),
        ("SharedAccessSignature sr=a&sig=b&se=soon", "unix seconds"),
        ("SharedAccessSignature sr=a&sig&se=1", "malformed"),
        ("SharedAccessSignature sr=a&sig=&se=1", "malformed"),
        ("SharedAccessSignature sr=a&sig=b&se=١٢", "unix seconds"),
    ],
)
def test_parse_rejects_malformed_tokens(token: str, message: str) -> None:
    with pytest.raises(SasTokenError, match=message):
        parse_sas_token(token)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_provider_renews_before_expiry() -> None:
    clock = Clock(1_000_000.0)
    uri = "hub.example.net/devices/dev1"
    tokens = SasTokenProvider(uri, KEY, ttl=3600, renew_before=300, clock=clock)
    first = tokens.token()
    assert tokens.expires_at == 1_003_600
    assert parse_sas_token(first).se == 1_003_600
    clock.now += 3299
    assert not tokens.needs_renewal()
    assert tokens.token() == first
    clock.now += 1  # 300 s before expiry
    assert tokens.needs_renewal()
    second = tokens.token()
    assert second != first
    assert tokens.expires_at == 1_000_000 + 3300 + 3600
    assert second == generate_sas_token(uri, KEY, tokens.expires_at)
    assert tokens.token() == second


def test_provider_with_policy_and_redaction() -> None:
    tokens = SasTokenProvider("h/devices/d", KEY, policy_name="device", clock=Clock(10.0))
    assert parse_sas_token(tokens.token()).skn == "device"
    assert KEY not in repr(tokens) and "sig" not in repr(tokens)


def test_provider_validates_its_configuration() -> None:
    with pytest.raises(SasTokenError):
        SasTokenProvider("h/devices/d", "not base64!")
    with pytest.raises(ValueError, match="ttl"):
        SasTokenProvider("h/devices/d", KEY, ttl=0)
    with pytest.raises(ValueError, match="renew_before"):
        SasTokenProvider("h/devices/d", KEY, ttl=100, renew_before=100)


def test_signature_is_checked_over_the_resource_as_the_device_encoded_it() -> None:
    key = base64.b64encode(b"device-key").decode()
    encoded = "hub.example.net%2fdevices%2fdev1"  # lower-case escapes, as some SDKs send them
    sig = base64.b64encode(
        hmac.digest(b"device-key", f"{encoded}\n1700000000".encode(), hashlib.sha256)
    ).decode()
    token = parse_sas_token(
        f"SharedAccessSignature sr={encoded}&sig={quote(sig, safe='')}&se=1700000000"
    )
    assert token.sr == "hub.example.net/devices/dev1"
    assert token.signature_matches(key)
    assert not token.signature_matches(base64.b64encode(b"other-key").decode())
