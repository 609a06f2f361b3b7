"""The OpenAPI 3.1 document of the hub's HTTPS API, written as data.

A test checks that every route of the application is described here, and nothing else.
"""

from __future__ import annotations

from typing import Any

from iotsec.hub.http.openapi_components import (
    PARAMETERS,
    RESPONSES,
    SCHEMAS,
    SECURITY_SCHEMES,
    json_content,
    ref,
)

__all__ = ["openapi_document"]

_JSON = "application/json"


def _param(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/parameters/{name}"}


_ERRORS = {
    "400": {"$ref": "#/components/responses/BadRequest"},
    "401": {"$ref": "#/components/responses/Unauthorized"},
    "403": {"$ref": "#/components/responses/Forbidden"},
    "429": {"$ref": "#/components/responses/Throttled"},
}
_NO_CONTENT = {"description": "Done; no body."}
_IDS = {"device": [_param("deviceId")], "module": [_param("deviceId"), _param("moduleId")]}


def _op(
    operation_id: str,
    summary: str,
    tag: str,
    responses: dict[str, Any],
    *,
    params: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
    security: str | None = "sas",
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary,
        "tags": [tag],
        "parameters": [*(params or []), _param("apiVersion")],
        "responses": {**responses, **(_ERRORS if security else {})},
    }
    if body is not None:
        operation["requestBody"] = body
    operation["security"] = [{security: []}] if security else []
    return operation


def _body(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"required": True, "description": description, "content": {_JSON: {"schema": schema}}}


_RAW_BODY = {
    "required": True,
    "description": "The message body, any bytes; properties travel as iothub-* headers.",
    "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
}


def _device_paths() -> dict[str, Any]:
    events = _op(
        "sendDeviceEvent",
        "Send a device-to-cloud message (security messages carry iothub-interface-id).",
        "device",
        {"204": _NO_CONTENT, "413": {"$ref": "#/components/responses/TooLarge"}},
        body=_RAW_BODY,
    )
    twin = _op(
        "getDeviceTwin",
        "The twin as the device sees it.",
        "device",
        {"200": json_content(ref("DeviceTwin"), "Desired and reported properties.")},
    )
    reported = _op(
        "updateReportedProperties",
        "Merge a patch into the reported properties.",
        "device",
        {"200": json_content(ref("Version"), "The new reported $version.")},
        body=_body({"type": "object"}, "A JSON merge patch; null deletes."),
    )
    module_events = {**events, "operationId": "sendModuleEvent"}
    module_twin = {**twin, "operationId": "getModuleDeviceTwin"}
    module_reported = {**reported, "operationId": "updateModuleReportedProperties"}
    etag = [_param("deviceId"), _param("lockToken")]
    return {
        "/devices/{device_id}/messages/events": {
            "post": {**events, "parameters": [*_IDS["device"], *events["parameters"]]}
        },
        "/devices/{device_id}/modules/{module_id}/messages/events": {
            "post": {**module_events, "parameters": [*_IDS["module"], *events["parameters"]]}
        },
        "/devices/{device_id}/messages/deviceBound": {
            "get": _op(
                "receiveDeviceBoundNotification",
                "Receive the next cloud-to-device message, locked; ETag is its lock token.",
                "device",
                {
                    "200": {"description": "The message; properties in iothub-* headers."},
                    "204": {"description": "No message is waiting."},
                },
                params=_IDS["device"],
            ),
            "post": _op(
                "sendDeviceBoundNotification",
                "Queue a cloud-to-device message (iotsec extension; IoT Hub uses AMQP).",
                "service",
                {"204": _NO_CONTENT, "404": {"$ref": "#/components/responses/NotFound"}},
                params=_IDS["device"],
                body=_RAW_BODY,
                security="policySas",
            ),
        },
        "/devices/{device_id}/messages/deviceBound/{etag}": {
            "delete": _op(
                "completeDeviceBoundNotification",
                "Complete the message, or reject it with ?reject.",
                "device",
                {"204": _NO_CONTENT, "412": {"$ref": "#/components/responses/PreconditionFailed"}},
                params=[
                    *etag,
                    {
                        "name": "reject",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string"},
                    },
                ],
            )
        },
        "/devices/{device_id}/messages/deviceBound/{etag}/abandon": {
            "post": _op(
                "abandonDeviceBoundNotification",
                "Put the message back in the queue for redelivery.",
                "device",
                {"204": _NO_CONTENT, "412": {"$ref": "#/components/responses/PreconditionFailed"}},
                params=etag,
            )
        },
        "/devices/{device_id}/twin": {
            "get": {**twin, "parameters": [*_IDS["device"], *twin["parameters"]]}
        },
        "/devices/{device_id}/twin/properties/reported": {
            "patch": {**reported, "parameters": [*_IDS["device"], *reported["parameters"]]}
        },
        "/devices/{device_id}/modules/{module_id}/twin": {
            "get": {**module_twin, "parameters": [*_IDS["module"], *twin["parameters"]]}
        },
        "/devices/{device_id}/modules/{module_id}/twin/properties/reported": {
            "patch": {**module_reported, "parameters": [*_IDS["module"], *reported["parameters"]]}
        },
    }


def _service(
    operation_id: str, summary: str, responses: dict[str, Any], **kwargs: Any
) -> dict[str, Any]:
    return _op(operation_id, summary, "service", responses, security="policySas", **kwargs)


def _identity_paths(kind: str, schema: str, ids: list[dict[str, Any]]) -> dict[str, Any]:
    ok = {
        "200": json_content(ref(schema), f"The {kind}; ETag header carries its etag."),
        "404": {"$ref": "#/components/responses/NotFound"},
    }
    return {
        "put": _service(
            f"createOrUpdate{schema}",
            f"Create a {kind} (no If-Match) or update it (If-Match etag or *).",
            {
                **ok,
                "409": {"$ref": "#/components/responses/Conflict"},
                "412": {"$ref": "#/components/responses/PreconditionFailed"},
            },
            params=[*ids, _param("ifMatch")],
            body=_body(ref(schema), f"The {kind}; omitted keys are generated."),
        ),
        "get": _service(f"get{schema}", f"One {kind}, with its keys.", ok, params=ids),
        "delete": _service(
            f"delete{schema}",
            f"Delete the {kind}; If-Match etag or * (absent means *).",
            {
                "204": _NO_CONTENT,
                "404": {"$ref": "#/components/responses/NotFound"},
                "412": {"$ref": "#/components/responses/PreconditionFailed"},
            },
            params=[*ids, _param("ifMatch")],
        ),
    }


def _twin_paths(ids: list[dict[str, Any]], suffix: str) -> dict[str, Any]:
    answer = {
        "200": json_content(ref("Twin"), "The twin; ETag header carries its etag."),
        "404": {"$ref": "#/components/responses/NotFound"},
    }
    changed = {
        **answer,
        "412": {"$ref": "#/components/responses/PreconditionFailed"},
        "413": {"$ref": "#/components/responses/TooLarge"},
    }
    return {
        "get": _service(
            f"get{suffix}Twin", "The twin in IoT Hub's service shape.", answer, params=ids
        ),
        "patch": _service(
            f"update{suffix}Twin",
            "Merge tags and properties.desired (null deletes); desired changes are pushed.",
            changed,
            params=[*ids, _param("ifMatch")],
            body=_body(ref("TwinPatch"), "Tags and/or desired properties."),
        ),
        "put": _service(
            f"replace{suffix}Twin",
            "Replace the tags and/or properties.desired given; a section left out is kept.",
            changed,
            params=[*ids, _param("ifMatch")],
            body=_body(ref("TwinPatch"), "Tags and/or desired properties."),
        ),
    }


def _service_paths() -> dict[str, Any]:
    top = {
        "name": "top",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
    }
    skip = {
        "name": "skip",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 0},
    }
    device_id = {"name": "deviceId", "in": "query", "required": False, "schema": {"type": "string"}}
    config = json_content(ref("HubConfiguration"), "The hub configuration.")
    return {
        "/devices": {
            "get": _service(
                "getDevices",
                "Up to top devices (skip is an iotsec extension).",
                {"200": json_content({"type": "array", "items": ref("Device")}, "Devices.")},
                params=[top, skip],
            )
        },
        "/devices/{device_id}": _identity_paths("device", "Device", _IDS["device"]),
        "/devices/{device_id}/modules": {
            "get": _service(
                "getModulesOnDevice",
                "Every module of a device.",
                {
                    "200": json_content({"type": "array", "items": ref("Module")}, "Modules."),
                    "404": {"$ref": "#/components/responses/NotFound"},
                },
                params=_IDS["device"],
            )
        },
        "/devices/{device_id}/modules/{module_id}": _identity_paths(
            "module", "Module", _IDS["module"]
        ),
        "/twins/{device_id}": _twin_paths(_IDS["device"], "Device"),
        "/twins/{device_id}/modules/{module_id}": _twin_paths(_IDS["module"], "Module"),
        "/statistics/devices": {
            "get": _service(
                "getDeviceStatistics",
                "How many devices, enabled and disabled.",
                {"200": json_content(ref("DeviceStatistics"), "Counts.")},
            )
        },
        "/configuration": {
            "get": _service("getConfiguration", "The hub configuration.", {"200": config}),
            "put": _service(
                "setConfiguration",
                "Replace the hub configuration.",
                {"200": config},
                body=_body(ref("HubConfiguration"), "New config."),
            ),
        },
        "/securityGroups": {
            "get": _service(
                "listSecurityGroups",
                "The security groups that have custom alerts, with them.",
                {
                    "200": json_content(
                        {"type": "array", "items": ref("SecurityGroup")}, "Security groups."
                    )
                },
            )
        },
        "/securityGroups/{group}/customAlerts": _custom_alert_paths(),
        "/certificates": {
            "get": _service(
                "listCertificates",
                "The CA certificates the hub trusts for CA-signed devices.",
                {"200": json_content(ref("CertificateList"), "Certificates, by name.")},
            )
        },
        "/certificates/{name}": _certificate_paths(),
        "/deadletters": {
            "get": _service(
                "getDeadLetters",
                "Refused messages and events, newest first.",
                {
                    "200": json_content(
                        {"type": "array", "items": ref("DeadLetter")}, "Dead letters."
                    )
                },
                params=[device_id, top],
            )
        },
        "/healthz": {
            "get": _op(
                "health",
                "Liveness; no authentication.",
                "meta",
                {"200": json_content({"type": "object"}, "The hub is serving.")},
                security=None,
            )
        },
        "/openapi.json": {
            "get": _op(
                "openapi",
                "This document; no authentication.",
                "meta",
                {"200": json_content({"type": "object"}, "OpenAPI 3.1.")},
                security=None,
            )
        },
    }


def _custom_alert_paths() -> dict[str, Any]:
    group = [_param("group")]
    document = json_content(ref("CustomAlerts"), "The group's custom alerts.")
    return {
        "get": _service(
            "getCustomAlerts",
            "A security group's custom alerts (every family empty when it has none).",
            {"200": document},
            params=group,
        ),
        "put": _service(
            "setCustomAlerts",
            "Replace a security group's custom alerts; 400 lists each {path, reason}.",
            {"200": document},
            params=group,
            body=_body(ref("CustomAlerts"), "The custom alerts, in ASC's ARM shape."),
        ),
        "delete": _service(
            "deleteCustomAlerts",
            "Remove a security group's custom alerts: 200 if it had some, 204 if not.",
            {
                "200": json_content({"type": "object"}, "Removed."),
                "204": {"description": "The group had no custom alerts."},
            },
            params=group,
        ),
    }


def _certificate_paths() -> dict[str, Any]:
    name = [_param("certificateName")]
    one = json_content(ref("Certificate"), "The certificate; ETag header carries its etag.")
    missing = {"404": {"$ref": "#/components/responses/NotFound"}}
    stale = {"412": {"$ref": "#/components/responses/PreconditionFailed"}}
    return {
        "get": _service(
            "getCertificate", "One trusted CA certificate.", {"200": one, **missing}, params=name
        ),
        "put": _service(
            "createOrUpdateCertificate",
            "Add (201) or replace (200) a CA certificate; trusted for new connections at once.",
            {"200": one, "201": one, **stale, "413": {"$ref": "#/components/responses/TooLarge"}},
            params=[*name, _param("ifMatch"), _param("ifNoneMatch")],
            body=_body(ref("CertificateBody"), "The CA certificate, PEM or base64 DER."),
        ),
        "delete": _service(
            "deleteCertificate",
            "Remove a CA certificate; If-Match etag or * (absent means *).",
            {"204": _NO_CONTENT, **missing, **stale},
            params=[*name, _param("ifMatch")],
        ),
    }


def openapi_document(hub_host: str, *, version: str = "0.1.0") -> dict[str, Any]:
    """The OpenAPI 3.1 document of the API served at ``https://{hub_host}``."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "iotsec hub",
            "version": version,
            "description": "IoT Hub's device and service REST shapes, served by iotsec. "
            "Device calls take a device SAS token (or a client certificate); service calls "
            "take a shared access policy token.",
        },
        "servers": [{"url": f"https://{hub_host}"}],
        "paths": {**_device_paths(), **_service_paths()},
        "components": {
            "schemas": SCHEMAS,
            "parameters": PARAMETERS,
            "responses": RESPONSES,
            "securitySchemes": SECURITY_SCHEMES,
        },
    }
