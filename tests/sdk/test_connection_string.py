from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from iotsec.sdk import ConnectionString, ConnectionStringError, DeviceAuth
from tests.tls import LoopbackPki

KEY = "c2VjcmV0LWtleS1mb3ItdGVzdHM="  # base64 of b"secret-key-for-tests"
DEVICE = f"HostName=hub.example.net;DeviceId=dev1;SharedAccessKey={KEY}"


def test_parses_a_device_connection_string() -> None:
    cs = ConnectionString.parse(DEVICE)
    assert (cs.host_name, cs.device_id, cs.module_id) == ("hub.example.net", "dev1", None)
    assert cs.shared_access_key == KEY
    assert cs.auth == "sas"
    assert not cs.x509
    assert cs.resource_uri == "hub.example.net/devices/dev1"
    assert cs.connect_host == "hub.example.net"


def test_parses_a_module_connection_string_with_gateway() -> None:
    cs = ConnectionString.parse(
        f"HostName=hub.example.net;DeviceId=dev1;ModuleId=agent;SharedAccessKey={KEY};"
        "GatewayHostName=edge.local"
    )
    assert cs.module_id == "agent"
    assert cs.resource_uri == "hub.example.net/devices/dev1/modules/agent"
    assert cs.connect_host == "edge.local"


def test_parses_x509_and_policy_forms() -> None:
    x509 = ConnectionString.parse("HostName=hub.example.net;DeviceId=dev1;x509=true")
    assert x509.x509 and x509.auth == "x509" and x509.shared_access_key is None
    policy = ConnectionString.parse(f"{DEVICE};SharedAccessKeyName=device")
    assert policy.shared_access_key_name == "device"


def test_tolerates_spaces_and_a_trailing_semicolon() -> None:
    cs = ConnectionString.parse(f" HostName=hub.example.net; DeviceId=dev1;SharedAccessKey={KEY}; ")
    assert cs.device_id == "dev1"


def test_a_key_may_contain_equals_signs() -> None:
    cs = ConnectionString.parse("HostName=h;DeviceId=d;SharedAccessKey=YWJjZA==")
    assert cs.shared_access_key == "YWJjZA=="


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"DeviceId=dev1;SharedAccessKey={KEY}", "missing key HostName"),
        (f"HostName=h;SharedAccessKey={KEY}", "missing key DeviceId"),
        ("HostName=h;DeviceId=d", "missing key SharedAccessKey"),
        (f"Hostname=h;DeviceId=d;SharedAccessKey={KEY}", "did you mean HostName?"),
        (f"HostName=h;DeviceID=d;SharedAccessKey={KEY}", "did you mean DeviceId?"),
        (f"HostName=h;DeviceId=d;SharedAccesKey={KEY}", "did you mean SharedAccessKey?"),
        (f"HostName=h;DeviceId=d;SharedAccessKey={KEY};HostName=h2", "duplicate key HostName"),
        (
            "HostName=h;DeviceId=d;SharedAccessKey=not base64!",
            "SharedAccessKey is not valid base64",
        ),
        ("HostName=h;DeviceId=d;SharedAccessKey=abc", "SharedAccessKey is not valid base64"),
        (f"HostName=h;DeviceId=;SharedAccessKey={KEY}", "empty value for key DeviceId"),
        (f"HostName=h;DeviceId=d;SharedAccessKey={KEY};x509=true", "exclusive"),
        ("HostName=h;DeviceId=d;x509=yes", "x509 must be true or false"),
        ("HostName=h;DeviceId=d;SharedAccessKeyName=p;x509=true", "needs a SharedAccessKey"),
        (f"HostName=h;DeviceId=a/b;SharedAccessKey={KEY}", "invalid DeviceId"),
        (f"HostName=h/x;DeviceId=d;SharedAccessKey={KEY}", "invalid HostName"),
        (f"HostName=h;DeviceId=d;SharedAccessKey={KEY};justtext", "not of the form Key=value"),
        (
            "HostName=h;DeviceId=d;SharedAccessSignature=SharedAccessSignature sr=x",
            "SharedAccessSignature is not supported",
        ),
    ],
)
def test_rejects_bad_connection_strings(text: str, message: str) -> None:
    with pytest.raises(ConnectionStringError, match=message.replace("?", r"\?")):
        ConnectionString.parse(text)


def test_the_key_never_shows() -> None:
    cs = ConnectionString.parse(f"{DEVICE};SharedAccessKeyName=device")
    for text in (repr(cs), str(cs), f"{cs}", f"{cs!r}", repr(DeviceAuth(cs))):
        assert KEY not in text
        assert "redacted" in text
    assert str(cs) == (
        "HostName=hub.example.net;DeviceId=dev1;SharedAccessKeyName=device;"
        "SharedAccessKey=<redacted>"
    )


def test_errors_never_echo_a_key() -> None:
    secret = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo="
    for text in (
        f"HostName=h;DeviceId=d;SharedAccessKey={secret}x!",
        f"HostName=h;DeviceId=d;{secret}",
        f"HostName=h;DeviceId=d;SharedAcessKey={secret}",
    ):
        with pytest.raises(ConnectionStringError) as caught:
            ConnectionString.parse(text)
        assert secret not in str(caught.value)


def test_device_auth_checks_certificate_files_against_the_auth_kind(pki: LoopbackPki) -> None:
    x509 = "HostName=localhost;DeviceId=dev1;x509=true"
    cert = pki.device_cert("dev1")
    with pytest.raises(ConnectionStringError, match="needs a client certificate"):
        DeviceAuth.from_connection_string(x509)
    with pytest.raises(ConnectionStringError, match="together"):
        DeviceAuth.from_connection_string(x509, cert_file=cert.cert)
    with pytest.raises(ConnectionStringError, match="authenticates with SharedAccessKey"):
        DeviceAuth.from_connection_string(DEVICE, cert_file=cert.cert, key_file=cert.key)
    auth = DeviceAuth.from_connection_string(
        x509, ca_file=str(pki.ca.cert), cert_file=cert.cert, key_file=cert.key
    )
    assert auth.cert_file == Path(cert.cert)
    context = auth.ssl_context()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_device_auth_reports_unreadable_files(tmp_path: Path) -> None:
    auth = DeviceAuth.from_connection_string(DEVICE, ca_file=tmp_path / "missing.pem")
    with pytest.raises(ConnectionStringError, match=r"missing\.pem"):
        auth.ssl_context()
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    x509 = "HostName=h;DeviceId=d;x509=true"
    auth = DeviceAuth.from_connection_string(x509, cert_file=garbage, key_file=garbage)
    with pytest.raises(ConnectionStringError, match=r"garbage\.pem"):
        auth.ssl_context()


def test_values_are_trimmed() -> None:
    cs = ConnectionString.parse(
        f"HostName = hub.example.net ;DeviceId= dev1;SharedAccessKey= {KEY} "
    )
    assert (cs.host_name, cs.device_id, cs.shared_access_key) == ("hub.example.net", "dev1", KEY)
