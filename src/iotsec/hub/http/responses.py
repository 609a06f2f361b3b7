"""JSON answers, IoT Hub's error bodies, and the request-body helpers both APIs share.

Every error is ``{"Message": "ErrorCode:<code>;<text>", "ExceptionMessage": "Tracking ID:..."}``
as IoT Hub writes it; refused security messages and custom alerts add ``issues`` (JSON path
and reason of each), a refused certificate ``field`` and ``reason``.
"""

from __future__ import annotations

import logging
import math
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from iotsec.hub.c2d import C2dQueueFull
from iotsec.hub.customalerts import CustomAlertsInvalid
from iotsec.hub.errors import (
    AuthFailure,
    AuthFailureReason,
    CertificateNotFound,
    HubConfigError,
    HubError,
    IdentityExists,
    IdentityNotFound,
    InvalidCertificate,
    InvalidIdentity,
    InvalidTwinPatch,
    PreconditionFailed,
    RateLimited,
    TwinTooLarge,
)
from iotsec.hub.ingest import MessageRejected
from iotsec.hub.registry import parse_if_match

__all__ = [
    "MAX_JSON_BYTES",
    "BadRequest",
    "JsonResponse",
    "PayloadTooLarge",
    "error_response",
    "hub_error_response",
    "if_match",
    "json_object",
    "quoted",
    "read_body",
    "server_error",
]

log = logging.getLogger("iotsec.hub.http")

#: Service-API JSON bodies (identities, twin patches, configuration) are small.
MAX_JSON_BYTES = 65_536

#: Auth refusals that are about permission, not about who the caller is.
_FORBIDDEN = frozenset(
    {
        AuthFailureReason.IP_FILTERED,
        AuthFailureReason.INSUFFICIENT_PERMISSION,
        AuthFailureReason.WRONG_IDENTITY,
        AuthFailureReason.TOPIC_NOT_ALLOWED,
    }
)
# What the caller is told: the class of the failure, never the token or the expected signature.
_AUTH_TEXT = {
    AuthFailureReason.EXPIRED_TOKEN: "the SAS token has expired",
    AuthFailureReason.BAD_SIGNATURE: "the SAS token signature does not match",
    AuthFailureReason.MALFORMED_TOKEN: "the Authorization header is not a valid SAS token",
    AuthFailureReason.WRONG_IDENTITY: "the credential is for another identity or resource",
    AuthFailureReason.UNKNOWN_DEVICE: "the identity or policy is not registered",
    AuthFailureReason.DISABLED_IDENTITY: "the identity is disabled",
    AuthFailureReason.IP_FILTERED: "the source address is rejected by the hub's IP filter",
    AuthFailureReason.BAD_CERTIFICATE: "the client certificate is not accepted for this identity",
    AuthFailureReason.NO_CREDENTIALS: "no SAS token and no client certificate were presented",
    AuthFailureReason.INSUFFICIENT_PERMISSION: "the policy lacks the permission this call needs",
    AuthFailureReason.TOPIC_NOT_ALLOWED: "the identity may not use this resource",
}


class BadRequest(HubError):
    """A request the API cannot use (bad JSON, a bad parameter); ``code`` is IoT Hub's."""

    def __init__(self, message: str, *, code: str = "ArgumentInvalid") -> None:
        super().__init__(message)
        self.code = code


class PayloadTooLarge(HubError):
    """A request body over the limit, refused before it was read in full."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is over the {limit}-byte limit")
        self.limit = limit


class JsonResponse(Response):
    """A JSON answer encoded with orjson."""

    media_type = "application/json; charset=utf-8"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def _tracking() -> str:
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return f"Tracking ID:{uuid.uuid4().hex}-TimeStamp:{stamp}"


def error_response(
    status: int,
    code: str,
    text: str,
    *,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
    tracking: str | None = None,
) -> JsonResponse:
    """An IoT Hub error body with ``status``."""
    body = {
        "Message": f"ErrorCode:{code};{text}",
        "ExceptionMessage": tracking or _tracking(),
        **(extra or {}),
    }
    return JsonResponse(body, status_code=status, headers=headers)


def server_error(request: Request) -> JsonResponse:
    """A 500 for the exception being handled; its traceback is logged with the tracking id."""
    tracking = _tracking()
    log.exception("%s %s failed (%s)", request.method, request.url.path, tracking)
    text = "internal error; the hub log has the details"
    return error_response(500, "ServerError", text, tracking=tracking)


#: Status and IoT Hub error code of each hub error; the first matching class wins.
_STATUS: tuple[tuple[type[HubError], int, str], ...] = (
    (PreconditionFailed, 412, "PreconditionFailed"),
    (TwinTooLarge, 413, "RequestEntityTooLarge"),
    (PayloadTooLarge, 413, "MessageTooLarge"),
    (RateLimited, 429, "ThrottlingException"),
    (C2dQueueFull, 403, "DeviceMaximumQueueDepthExceeded"),
    (CertificateNotFound, 404, "CertificateNotFound"),
    (InvalidCertificate, 400, "ArgumentInvalid"),
    (InvalidIdentity, 400, "ArgumentInvalid"),
    (InvalidTwinPatch, 400, "ArgumentInvalid"),
    (HubConfigError, 400, "ArgumentInvalid"),
)


def _describe(exc: HubError) -> tuple[int, str, str]:
    """Status, IoT Hub error code and the text the caller may see."""
    match exc:
        case AuthFailure():
            status = 403 if exc.reason in _FORBIDDEN else 401
            code = "IotHubUnauthorizedAccess" if status == 401 else "IotHubForbidden"
            return status, code, f"{exc.reason.value}: {_AUTH_TEXT.get(exc.reason, 'refused')}"
        case IdentityNotFound() | IdentityExists():
            found = isinstance(exc, IdentityNotFound)
            kind = "Module" if exc.module_id else "Device"
            code = f"{kind}NotFound" if found else f"{kind}AlreadyExists"
            return (404 if found else 409), code, str(exc)
        case MessageRejected():
            code = "MessageTooLarge" if exc.status == 413 else "InvalidMessage"
            return exc.status, code, exc.reason
        case BadRequest():
            return 400, exc.code, str(exc)
    for error_type, status, code in _STATUS:
        if isinstance(exc, error_type):
            return status, code, str(exc)
    # A storage failure (RegistryError itself) or an error no route should raise.
    log.error("unexpected hub error %s: %s", type(exc).__name__, exc)
    return 500, "ServerError", "internal error; the hub log has the details"


def hub_error_response(exc: HubError) -> JsonResponse:
    """The answer to a hub error: status, IoT Hub code, and what the caller may know."""
    status, code, text = _describe(exc)
    headers: dict[str, str] | None = None
    extra: dict[str, Any] | None = None
    if isinstance(exc, RateLimited):
        headers = {"Retry-After": str(max(1, math.ceil(1.0 / exc.limit)) if exc.limit > 0 else 1)}
    if isinstance(exc, MessageRejected) and exc.issues:
        extra = {"issues": [{"path": i.path, "reason": i.reason} for i in exc.issues]}
    if isinstance(exc, CustomAlertsInvalid):
        extra = {"issues": [{"path": path, "reason": reason} for path, reason in exc.issues]}
    if isinstance(exc, InvalidCertificate):
        extra = {"field": exc.field, "reason": exc.reason}
    return error_response(status, code, text, headers=headers, extra=extra)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with ``PayloadTooLarge`` as soon as it passes ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def json_object(request: Request, *, limit: int = MAX_JSON_BYTES) -> dict[str, Any]:
    """The body as a JSON object, or ``BadRequest`` saying what is wrong with it."""
    body = await read_body(request, limit)
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise BadRequest(f"the body must be a JSON object, not {type(value).__name__}")
    return value


def if_match(request: Request) -> str | None:
    """The ``If-Match`` etag without quotes or ``W/``; None when absent or ``*``."""
    return parse_if_match(request.headers.get("if-match"))


def quoted(etag: str) -> str:
    """An etag as the ``ETag`` header carries it."""
    return f'"{etag}"'
