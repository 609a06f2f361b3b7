"""IoT Hub's "Certificates" operations on the service API: the CA certificates the hub trusts.

``GET /certificates`` answers ``{"value": [certificate, ...]}``; ``GET``, ``PUT`` and
``DELETE /certificates/{name}`` read, add or replace, and remove one. A certificate is
IoT Hub's ``CertificateDescription``: ``name``, ``etag``, ``id``, ``type`` and ``properties``
(``subject``, ``expiry``, ``thumbprint``, ``isVerified``, ``created``, ``updated``,
``certificate``). A PUT body is ``{"properties": {"certificate": "<PEM>"}}`` (the 2018 API's
``{"certificate": ...}`` is taken too); it answers 201 when it added the certificate and 200
when it replaced one. ``If-Match`` (PUT and DELETE) must be the current etag;
``If-None-Match: *`` makes a PUT create only.

Reads need ``RegistryRead``, changes ``RegistryWrite`` (as the hub configuration does). Changes
are written to the operation log under ``Configurations`` as ``createOrUpdateCertificate`` and
``deleteCertificate``, with the certificate's ``name``, ``subject`` and ``thumbprint``: the
operations the analytics catalogue's certificate alerts key on. A change applies to new TLS
connections at once (see :mod:`iotsec.hub.certificates` and :class:`iotsec.hub.tls.ServerTls`).
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from iotsec.hub.certificates import CaCertificate, check_certificate_name, parse_ca_certificate
from iotsec.hub.errors import InvalidCertificate
from iotsec.hub.http.context import HubContext
from iotsec.hub.http.endpoints import Call, configuration_route
from iotsec.hub.http.responses import JsonResponse, if_match, json_object, quoted
from iotsec.hub.settings import resource_id

__all__ = ["certificate_json", "certificate_routes"]

_TYPE = "Microsoft.Devices/IotHubs/Certificates"
_ONE = "/certificates/{name}"
# Subjects are the uploader's text: kept short in the operation log.
_MAX_LOGGED = 256


def _http_date(moment: datetime) -> str:
    """IoT Hub's RFC 1123 form: ``Sat, 31 Dec 2039 23:59:59 GMT``."""
    return format_datetime(moment.astimezone(UTC), usegmt=True)


def certificate_json(entry: CaCertificate, *, hub_name: str) -> dict[str, Any]:
    """IoT Hub's ``CertificateDescription`` of ``entry``."""
    return {
        "id": f"{resource_id(hub_name)}/certificates/{entry.name}",
        "name": entry.name,
        "type": _TYPE,
        "etag": entry.etag,
        "properties": {
            "subject": entry.subject,
            "expiry": _http_date(entry.expiry),
            "thumbprint": entry.thumbprint,
            # Uploading needs RegistryWrite and trusts at once: there is no proof-of-possession
            # step to wait for.
            "isVerified": True,
            "created": _http_date(entry.created),
            "updated": _http_date(entry.updated),
            "certificate": entry.pem,
        },
    }


def _answer(hub: HubContext, entry: CaCertificate, *, status: int = 200) -> JsonResponse:
    return JsonResponse(
        certificate_json(entry, hub_name=hub.hub_name),
        status_code=status,
        headers={"ETag": quoted(entry.etag)},
    )


def _name(request: Request, call: Call) -> str:
    name = str(request.path_params["name"])
    call.properties["name"] = name[:_MAX_LOGGED]
    return check_certificate_name(name)


def _describe(call: Call, entry: CaCertificate) -> None:
    call.properties["subject"] = entry.subject[:_MAX_LOGGED]
    call.properties["thumbprint"] = entry.thumbprint


def _certificate_text(body: dict[str, Any], name: str) -> tuple[str, str]:
    """The certificate text of a PUT body, and the JSON path it came from."""
    if body.get("name") not in (None, name):
        raise InvalidCertificate(f"the body names another certificate than {name!r}", field="name")
    properties = body.get("properties")
    if properties is None and "certificate" in body:
        field, text = "certificate", body["certificate"]  # the 2018-04-01 API's body
    else:
        if not isinstance(properties, dict):
            raise InvalidCertificate(
                'is required: {"properties": {"certificate": "<PEM>"}}', field="properties"
            )
        field, text = "properties.certificate", properties.get("certificate")
        if properties.get("isVerified") not in (None, True):
            raise InvalidCertificate(
                "must be true or left out: the hub has no proof-of-possession step, a "
                "certificate is trusted once uploaded",
                field="properties.isVerified",
            )
    if not isinstance(text, str):
        raise InvalidCertificate(
            "is required: the certificate's PEM text, or the base64 of its DER form (.cer)",
            field=field,
        )
    return text, field


async def list_certificates(hub: HubContext, request: Request, call: Call) -> Response:
    """Every trusted CA certificate: ``{"value": [...]}``, by name."""
    entries = hub.certificates.entries()
    return JsonResponse({"value": [certificate_json(e, hub_name=hub.hub_name) for e in entries]})


async def get_certificate(hub: HubContext, request: Request, call: Call) -> Response:
    """One trusted CA certificate; ETag header carries its etag."""
    return _answer(hub, hub.certificates.get(_name(request, call)))


async def put_certificate(hub: HubContext, request: Request, call: Call) -> Response:
    """Add or replace a CA certificate: 201 when added, 200 when replaced."""
    name = _name(request, call)
    text, field = _certificate_text(await json_object(request), name)
    certificate = parse_ca_certificate(text, now=hub.clock(), field=field)
    create_only = request.headers.get("if-none-match", "").strip() == "*"
    entry, added = hub.certificates.put(
        name, certificate, if_match=if_match(request), create_only=create_only
    )
    call.properties["action"] = "create" if added else "replace"
    _describe(call, entry)
    return _answer(hub, entry, status=201 if added else 200)


async def delete_certificate(hub: HubContext, request: Request, call: Call) -> Response:
    """Remove a CA certificate; If-Match etag or ``*`` (absent means ``*``)."""
    entry = hub.certificates.delete(_name(request, call), if_match=if_match(request))
    _describe(call, entry)
    return Response(status_code=204)


def certificate_routes(hub: HubContext) -> list[Route]:
    """The certificate routes, bound to ``hub``."""

    bind = functools.partial(configuration_route, hub=hub)
    return [
        bind("/certificates", "GET", "RegistryRead", "listCertificates", list_certificates),
        bind(_ONE, "GET", "RegistryRead", "getCertificate", get_certificate),
        bind(
            _ONE, "PUT", "RegistryWrite", "createOrUpdateCertificate", put_certificate, logged=True
        ),
        bind(_ONE, "DELETE", "RegistryWrite", "deleteCertificate", delete_certificate, logged=True),
    ]
