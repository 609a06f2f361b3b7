"""The HTTPS transport: IoT Hub's device REST API over TLS, with httpx.

Device-to-cloud messages use IoT Hub's "Send Device Event" call; the twin uses iotsec's
documented extension (GET ``.../twin``, PATCH ``.../twin/properties/reported``). HTTPS is
request/response only: the hub cannot push desired-property updates or cloud-to-device
messages over it, so ``on_desired`` and ``on_message`` raise ``NotSupportedError``; use MQTT.
"""

from __future__ import annotations

import email.utils
import math
import re
import ssl
import time
from collections.abc import Callable
from datetime import UTC
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from iotsec import __version__
from iotsec.protocol.message import Message
from iotsec.protocol.sas import SasTokenProvider
from iotsec.sdk.connection_string import ConnectionString, DeviceAuth
from iotsec.sdk.errors import (
    AuthError,
    NotSupportedError,
    RejectedError,
    SdkError,
    ThrottledError,
    TransportError,
)
from iotsec.sdk.transport import DesiredHandler, MessageHandler

__all__ = ["API_VERSION", "HttpsTransport"]

#: The IoT Hub REST API version this transport speaks.
API_VERSION = "2020-09-30"

# RFC 9110 token characters: what an application property name must be to become a header.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_MAX_REASON = 500


class HttpsTransport:
    """One device or module identity talking to the hub over HTTPS.

    >>> conn = ConnectionString.parse(
    ...     "HostName=hub.example.net;DeviceId=dev1;SharedAccessKey=c2VjcmV0LWtleQ==")
    >>> HttpsTransport(conn).base_url
    'https://hub.example.net:443'
    """

    def __init__(
        self,
        conn: ConnectionString,
        *,
        ca_file: str | Path | None = None,
        cert_file: str | Path | None = None,
        key_file: str | Path | None = None,
        port: int = 443,
        token_ttl: int = 3600,
        timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._auth = DeviceAuth.from_connection_string(
            conn, ca_file=ca_file, cert_file=cert_file, key_file=key_file
        )
        self._conn = conn
        self._ssl = self._auth.ssl_context()
        self._timeout = timeout
        self._clock = clock
        self._tokens: SasTokenProvider | None = None
        if conn.shared_access_key is not None:
            self._tokens = SasTokenProvider(
                conn.resource_uri,
                conn.shared_access_key,
                policy_name=conn.shared_access_key_name,
                ttl=token_ttl,
                renew_before=min(300, token_ttl // 2),
                clock=clock,
            )
        self.base_url = f"https://{conn.connect_host}:{port}"
        identity = f"/devices/{quote(conn.device_id, safe='')}"
        if conn.module_id is not None:
            identity += f"/modules/{quote(conn.module_id, safe='')}"
        self._identity_path = identity
        self._client: httpx.AsyncClient | None = None

    def __repr__(self) -> str:
        return f"HttpsTransport({self._conn!r}, base_url={self.base_url!r})"

    async def connect(self) -> None:
        """Open the connection pool (idempotent); TLS handshakes happen on first request."""
        if self._client is None:
            self._client = httpx.AsyncClient(
                base_url=self.base_url,
                verify=self._ssl,
                timeout=self._timeout,
                headers={"User-Agent": f"iotsec/{__version__}"},
            )

    async def close(self) -> None:
        """Close the connection pool (idempotent)."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def send(self, message: Message) -> None:
        """POST one device-to-cloud message; returns when the hub answered 2xx."""
        headers = _message_headers(message)
        await self._request("POST", "/messages/events", headers=headers, content=message.body)

    async def get_twin(self) -> dict[str, Any]:
        """GET the twin: ``{"desired": {...}, "reported": {...}}``, each with ``$version``."""
        response = await self._request("GET", "/twin", headers={"Accept": "application/json"})
        twin = _json(response)
        if not (
            isinstance(twin, dict)
            and isinstance(twin.get("desired"), dict)
            and isinstance(twin.get("reported"), dict)
        ):
            raise TransportError("the hub answered GET twin with something that is not a twin")
        return twin

    async def patch_reported(self, patch: dict[str, Any]) -> int:
        """PATCH reported properties; returns the new reported ``$version``."""
        response = await self._request(
            "PATCH",
            "/twin/properties/reported",
            content=orjson.dumps(patch),
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        answer = _json(response)
        version = answer.get("$version") if isinstance(answer, dict) else None
        if not isinstance(version, int) or isinstance(version, bool):
            raise TransportError("the hub answered PATCH reported without a $version")
        return version

    def on_desired(self, handler: DesiredHandler) -> None:
        """Not supported over HTTPS: the hub cannot push. Raises NotSupportedError."""
        raise NotSupportedError(
            "desired-property updates need a connection the hub can push on: use MQTT "
            "(transport='mqtt'); over HTTPS, poll get_twin() instead"
        )

    def on_message(self, handler: MessageHandler) -> None:
        """Not supported over HTTPS: the hub cannot push. Raises NotSupportedError."""
        raise NotSupportedError(
            "cloud-to-device messages need a connection the hub can push on: use MQTT "
            "(transport='mqtt')"
        )

    async def _request(
        self, method: str, path: str, *, headers: dict[str, str], content: bytes | None = None
    ) -> httpx.Response:
        if self._client is None:
            raise TransportError(f"{method} {path}: not connected")
        if self._tokens is not None:
            headers = {**headers, "Authorization": self._tokens.token()}
        url = f"{self._identity_path}{path}"
        try:
            response = await self._client.request(
                method, url, params={"api-version": API_VERSION}, headers=headers, content=content
            )
        except httpx.TimeoutException as exc:
            raise TransportError(f"{method} {path}: timed out ({type(exc).__name__})") from exc
        except (httpx.HTTPError, ssl.SSLError, OSError) as exc:
            raise TransportError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        if not response.is_success:
            raise _error_for(response, f"{method} {path}", self._clock())
        return response


def _message_headers(message: Message) -> dict[str, str]:
    headers = {"Content-Type": message.content_type or "application/octet-stream"}
    if message.content_type is not None:
        headers["iothub-contenttype"] = _header_value("content_type", message.content_type)
    if message.content_encoding is not None:
        headers["iothub-contentencoding"] = _header_value(
            "content_encoding", message.content_encoding
        )
    if message.message_id is not None:
        headers["iothub-messageid"] = _header_value("message_id", message.message_id)
    if message.correlation_id is not None:
        headers["iothub-correlationid"] = _header_value("correlation_id", message.correlation_id)
    if message.interface_id is not None:
        headers["iothub-interface-id"] = _header_value("interface_id", message.interface_id)
    for name, value in message.properties.items():
        if not _TOKEN.fullmatch(name):
            raise RejectedError(
                f"application property name {name!r} cannot be sent over HTTPS: use letters, "
                "digits and !#$%&'*+-.^_`|~ only"
            )
        headers[f"iothub-app-{name}"] = _header_value(f"property {name!r}", value)
    return headers


def _header_value(what: str, value: str) -> str:
    if not value.isascii() or not value.isprintable():
        raise RejectedError(f"{what} cannot be sent over HTTPS: printable ASCII only")
    return value


def _json(response: httpx.Response) -> Any:
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        raise TransportError(
            f"the hub answered {response.request.method} with invalid JSON"
        ) from None


def _error_for(response: httpx.Response, what: str, now: float) -> SdkError:
    status = response.status_code
    reason = _reason(response)
    text = f"{what}: hub answered {status}: {reason}"
    if status in (401, 403):
        return AuthError(text, status=status)
    if status == 429:
        return ThrottledError(
            text, retry_after=_retry_after(response.headers.get("Retry-After"), now)
        )
    if 400 <= status < 500:
        return RejectedError(reason, status=status)
    return TransportError(text)


def _reason(response: httpx.Response) -> str:
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        body = None
    if isinstance(body, dict):
        for key in ("Message", "message", "reason"):
            if isinstance(body.get(key), str) and body[key]:
                return str(body[key])[:_MAX_REASON]
    text = response.content.decode("utf-8", errors="replace").strip()
    return text[:_MAX_REASON] if text else response.reason_phrase or f"HTTP {response.status_code}"


def _retry_after(value: str | None, now: float) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date; None when absent/bad."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)  # HTTP dates are always GMT
        return max(0.0, when.timestamp() - now)
    return seconds if math.isfinite(seconds) and seconds >= 0 else None
