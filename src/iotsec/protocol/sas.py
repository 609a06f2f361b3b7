r"""Shared access signature (SAS) tokens, computed exactly as IoT Hub and its SDKs compute them.

The resource URI (``{host}/devices/{id}``) is percent-encoded with no safe characters; the
string to sign is that encoded URI, a newline and the expiry in unix seconds; the signature is
the base64 HMAC-SHA256 of it under the base64-decoded key, percent-encoded the same way.

>>> token = generate_sas_token("hub.example.net/devices/dev1", "c2VjcmV0LWtleQ==", 1700000000)
>>> print(token.replace("&", "\n&"))
SharedAccessSignature sr=hub.example.net%2Fdevices%2Fdev1
&sig=o4i0dOd3g9YFHcppiAVC0udpK3bkOgDhKCKj9tRHWJU%3D
&se=1700000000
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import quote, unquote

from iotsec.protocol.errors import SasTokenError

__all__ = [
    "SasToken",
    "SasTokenProvider",
    "compute_signature",
    "generate_sas_token",
    "parse_sas_token",
    "resource_uri",
]

_PREFIX = "SharedAccessSignature "
_REQUIRED = ("sr", "sig", "se")
_FIELDS = frozenset((*_REQUIRED, "skn"))


def resource_uri(host: str, device_id: str, module_id: str | None = None) -> str:
    """The resource a device's (or module's) token signs, not yet percent-encoded."""
    uri = f"{host}/devices/{device_id}"
    return uri if module_id is None else f"{uri}/modules/{module_id}"


def _decode_key(key: str | bytes) -> bytes:
    try:
        raw = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        raise SasTokenError("the shared access key is not valid base64") from None
    if not raw:
        raise SasTokenError("the shared access key is empty")
    return raw


def _sign(raw_key: bytes, uri: str, expiry: int) -> str:
    to_sign = f"{quote(uri, safe='')}\n{expiry}".encode()
    return base64.b64encode(hmac.digest(raw_key, to_sign, hashlib.sha256)).decode("ascii")


def _token(uri: str, signature: str, expiry: int, policy_name: str | None) -> str:
    token = f"{_PREFIX}sr={quote(uri, safe='')}&sig={quote(signature, safe='')}&se={expiry}"
    # Like Microsoft's SDKs, the policy name goes in as it is (policy names are plain words).
    return token if policy_name is None else f"{token}&skn={policy_name}"


def _check_expiry(expiry: int) -> None:
    if isinstance(expiry, bool) or not isinstance(expiry, int) or expiry < 0:
        raise SasTokenError(f"expiry must be unix seconds (a non-negative int), not {expiry!r}")


def compute_signature(uri: str, key: str | bytes, expiry: int) -> str:
    """The base64 signature (not percent-encoded) of ``uri`` until ``expiry`` under ``key``."""
    _check_expiry(expiry)
    return _sign(_decode_key(key), uri, expiry)


def generate_sas_token(
    uri: str,
    key: str | bytes,
    expiry: int,
    policy_name: str | None = None,
) -> str:
    """A ``SharedAccessSignature sr=...&sig=...&se=...[&skn=...]`` token for ``uri``.

    Raises:
        SasTokenError: ``key`` is not base64, or ``expiry`` is not unix seconds.
    """
    return _token(uri, compute_signature(uri, key, expiry), expiry, policy_name)


@dataclass(frozen=True, slots=True)
class SasToken:
    """A parsed token: resource URI and signature percent-decoded, expiry in unix seconds."""

    sr: str
    sig: str = field(repr=False)
    se: int
    skn: str | None = None
    # The resource exactly as the device encoded it: the signature covers these bytes, and
    # SDKs differ in how they percent-encode (``%2F`` or ``%2f``), so it is never re-encoded.
    encoded_sr: str = field(default="", repr=False)

    def signature_matches(self, key: str | bytes) -> bool:
        """True when ``sig`` is this token's signature under ``key`` (constant-time compare)."""
        _check_expiry(self.se)
        signed = self.encoded_sr or quote(self.sr, safe="")
        to_sign = f"{signed}\n{self.se}".encode()
        expected = base64.b64encode(hmac.digest(_decode_key(key), to_sign, hashlib.sha256))
        return hmac.compare_digest(expected, self.sig.encode())

    def expired(self, now: float) -> bool:
        """True when the token is no longer valid at ``now`` (unix seconds)."""
        return now >= self.se


def parse_sas_token(token: str) -> SasToken:
    """Parse a ``SharedAccessSignature`` token.

    Raises:
        SasTokenError: not a SAS token, a missing, duplicate or unknown field, or a bad expiry.
    """
    if not token.startswith(_PREFIX):
        raise SasTokenError("not a SAS token: expected 'SharedAccessSignature sr=...'")
    values: dict[str, str] = {}
    for part in token[len(_PREFIX) :].split("&"):
        name, sep, value = part.partition("=")
        if not sep or not value:
            raise SasTokenError(f"malformed SAS token field {name[:8]!r}: expected name=value")
        if name not in _FIELDS:
            raise SasTokenError(f"unknown SAS token field {name[:8]!r}")
        if name in values:
            raise SasTokenError(f"duplicate SAS token field {name!r}")
        values[name] = value
    missing = [name for name in _REQUIRED if name not in values]
    if missing:
        raise SasTokenError(f"SAS token is missing {', '.join(missing)}")
    if not values["se"].isascii() or not values["se"].isdigit():
        raise SasTokenError("SAS token expiry (se) must be unix seconds")
    skn = values.get("skn")
    return SasToken(
        sr=unquote(values["sr"]),
        sig=unquote(values["sig"]),
        se=int(values["se"]),
        skn=skn,
        encoded_sr=values["sr"],
    )


class SasTokenProvider:
    """Hands out a token for one resource and renews it ``renew_before`` seconds before expiry.

    >>> clock = iter([1000.0, 1000.0, 4400.0]).__next__
    >>> tokens = SasTokenProvider("hub/devices/d", "c2VjcmV0", ttl=3600, clock=clock)
    >>> tokens.expires_at, tokens.needs_renewal(), tokens.needs_renewal()
    (4600, False, True)
    """

    def __init__(
        self,
        uri: str,
        key: str | bytes,
        *,
        policy_name: str | None = None,
        ttl: int = 3600,
        renew_before: int = 300,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if ttl <= 0:
            raise ValueError(f"ttl must be positive, not {ttl}")
        if not 0 <= renew_before < ttl:
            raise ValueError(f"renew_before must be in [0, ttl), not {renew_before}")
        self._uri = uri
        self._key = _decode_key(key)
        self._policy_name = policy_name
        self._ttl = ttl
        self._renew_before = renew_before
        self._clock = clock
        self._token = ""
        self._expires_at = 0
        self.renew()

    @property
    def uri(self) -> str:
        """The resource URI the tokens sign."""
        return self._uri

    @property
    def expires_at(self) -> int:
        """Unix seconds at which the current token expires."""
        return self._expires_at

    def needs_renewal(self) -> bool:
        """True once the current token is within ``renew_before`` seconds of expiry."""
        return self._clock() >= self._expires_at - self._renew_before

    def renew(self) -> str:
        """Make a fresh token valid for ``ttl`` seconds from now, and return it."""
        expiry = int(self._clock() + self._ttl)
        self._token = _token(
            self._uri, _sign(self._key, self._uri, expiry), expiry, self._policy_name
        )
        self._expires_at = expiry
        return self._token

    def token(self) -> str:
        """The current token, renewed first when it is close to expiry."""
        return self.renew() if self.needs_renewal() else self._token

    def __repr__(self) -> str:
        return f"SasTokenProvider(uri={self._uri!r}, expires_at={self._expires_at})"
