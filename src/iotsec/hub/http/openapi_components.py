"""The reusable parts of the OpenAPI document: schemas, parameters, responses, security."""

from __future__ import annotations

from typing import Any

__all__ = ["PARAMETERS", "RESPONSES", "SCHEMAS", "SECURITY_SCHEMES", "json_content", "ref"]

_JSON = "application/json"


def ref(name: str) -> dict[str, str]:
    """A reference to a component schema."""
    return {"$ref": f"#/components/schemas/{name}"}


def json_content(schema: dict[str, Any], description: str) -> dict[str, Any]:
    """A response with a JSON body of ``schema``."""
    return {"description": description, "content": {_JSON: {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return json_content(ref("Error"), description)


_STR = {"type": "string"}
_NULLABLE_STR = {"type": ["string", "null"]}
_AUTHENTICATION = {
    "type": "object",
    "properties": {
        "type": {"enum": ["sas", "selfSigned", "certificateAuthority"]},
        "symmetricKey": {
            "type": "object",
            "properties": {"primaryKey": _NULLABLE_STR, "secondaryKey": _NULLABLE_STR},
        },
        "x509Thumbprint": {
            "type": "object",
            "properties": {
                "primaryThumbprint": _NULLABLE_STR,
                "secondaryThumbprint": _NULLABLE_STR,
            },
        },
    },
}
_IDENTITY = {
    "deviceId": _STR,
    "generationId": _STR,
    "etag": _STR,
    "connectionState": {"enum": ["Connected", "Disconnected"]},
    "connectionStateUpdatedTime": _STR,
    "lastActivityTime": _STR,
    "cloudToDeviceMessageCount": {"type": "integer"},
    "authentication": ref("Authentication"),
}
SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["Message", "ExceptionMessage"],
        "properties": {
            "Message": {**_STR, "description": "ErrorCode:<code>;<what went wrong>"},
            "ExceptionMessage": {**_STR, "description": "Tracking ID and time stamp."},
            "issues": {
                "type": "array",
                "items": {"type": "object", "properties": {"path": _STR, "reason": _STR}},
                "description": "Why a security message "
                "was refused: the JSON path and reason of each problem.",
            },
        },
    },
    "Authentication": _AUTHENTICATION,
    "Device": {
        "type": "object",
        "properties": {
            **_IDENTITY,
            "status": {"enum": ["enabled", "disabled"]},
            "statusReason": _NULLABLE_STR,
            "statusUpdatedTime": _STR,
            "capabilities": {"type": "object", "properties": {"iotEdge": {"type": "boolean"}}},
        },
    },
    "Module": {
        "type": "object",
        "properties": {"moduleId": _STR, **_IDENTITY, "managedBy": _NULLABLE_STR},
    },
    "Twin": {
        "type": "object",
        "properties": {
            "deviceId": _STR,
            "moduleId": _STR,
            "etag": _STR,
            "version": {"type": "integer"},
            "status": _STR,
            "tags": {"type": "object"},
            "properties": {
                "type": "object",
                "properties": {"desired": {"type": "object"}, "reported": {"type": "object"}},
            },
        },
    },
    "TwinPatch": {
        "type": "object",
        "properties": {
            "tags": {"type": "object"},
            "properties": {"type": "object", "properties": {"desired": {"type": "object"}}},
        },
    },
    "DeviceTwin": {
        "type": "object",
        "required": ["desired", "reported"],
        "properties": {
            "desired": {"type": "object", "required": ["$version"]},
            "reported": {"type": "object", "required": ["$version"]},
        },
    },
    "Version": {
        "type": "object",
        "required": ["$version"],
        "properties": {"$version": {"type": "integer"}},
    },
    "HubConfiguration": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "ipFilterRules": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["filterName", "action", "ipMask"],
                    "properties": {
                        "filterName": _STR,
                        "action": {"enum": ["Accept", "Reject"]},
                        "ipMask": _STR,
                    },
                },
            },
            "ipFilterDefaultAction": {"enum": ["Accept", "Reject"]},
            "minTlsVersion": {"enum": ["1.2", "1.3"]},
            "ratePerDevice": {"type": "number", "exclusiveMinimum": 0},
            "rateBurst": {"type": "integer", "minimum": 1},
        },
    },
    "CustomAlerts": {
        "type": "object",
        "description": "A security group's custom alerts (ASC's DeviceSecurityGroupProperties). "
        "Each rule has ruleType and isEnabled; time-window rules minThreshold, maxThreshold and "
        "timeWindowSize (ISO 8601); list rules allowlistValues or denylistValues. See "
        "docs/rules.md for every ruleType.",
        "additionalProperties": False,
        "properties": {
            family: {"type": "array", "items": ref("CustomAlertRule")}
            for family in ("thresholdRules", "timeWindowRules", "allowlistRules", "denylistRules")
        },
    },
    "CustomAlertRule": {
        "type": "object",
        "required": ["ruleType", "isEnabled"],
        "properties": {
            "ruleType": _STR,
            "isEnabled": {"type": "boolean"},
            "minThreshold": {"type": "integer", "minimum": 0},
            "maxThreshold": {"type": "integer", "minimum": 0},
            "timeWindowSize": {**_STR, "description": "ISO 8601 duration, e.g. PT5M."},
            "allowlistValues": {"type": "array", "items": _STR},
            "denylistValues": {"type": "array", "items": _STR},
            "valueType": {"enum": ["IpCidr", "String"], "readOnly": True},
            "displayName": {**_STR, "readOnly": True},
            "description": {**_STR, "readOnly": True},
        },
    },
    "SecurityGroup": {
        "type": "object",
        "properties": {"name": _STR, "customAlerts": ref("CustomAlerts")},
    },
    "DeadLetter": {
        "type": "object",
        "properties": {
            "time": {"type": "number"},
            "deviceId": _STR,
            "moduleId": _NULLABLE_STR,
            "protocol": _STR,
            "reason": _STR,
            "eventIndex": {"type": ["integer", "null"]},
            "truncated": {"type": "boolean"},
            "body": _STR,
            "bodyEncoding": {"enum": ["utf-8", "base64"]},
        },
    },
    "Certificate": {
        "type": "object",
        "description": "IoT Hub's CertificateDescription.",
        "properties": {
            "id": _STR,
            "name": _STR,
            "type": _STR,
            "etag": _STR,
            "properties": {
                "type": "object",
                "properties": {
                    "subject": {**_STR, "description": "RFC 4514, e.g. CN=Fleet CA,O=Example."},
                    "expiry": {**_STR, "description": "RFC 1123 date."},
                    "thumbprint": {**_STR, "description": "SHA-1, upper-case hex."},
                    "isVerified": {"type": "boolean"},
                    "created": {**_STR, "description": "RFC 1123 date."},
                    "updated": {**_STR, "description": "RFC 1123 date."},
                    "certificate": {**_STR, "description": "PEM."},
                },
            },
        },
    },
    "CertificateList": {
        "type": "object",
        "properties": {"value": {"type": "array", "items": ref("Certificate")}},
    },
    "CertificateBody": {
        "type": "object",
        "required": ["properties"],
        "properties": {
            "properties": {
                "type": "object",
                "required": ["certificate"],
                "properties": {
                    "certificate": {
                        **_STR,
                        "description": "One CA certificate (basicConstraints CA=true): PEM, "
                        "or the base64 of its DER form; at most 16,384 characters.",
                    },
                    "isVerified": {"type": "boolean", "description": "true or left out."},
                },
            },
        },
    },
    "DeviceStatistics": {
        "type": "object",
        "properties": {
            "totalDeviceCount": {"type": "integer"},
            "enabledDeviceCount": {"type": "integer"},
            "disabledDeviceCount": {"type": "integer"},
        },
    },
}
PARAMETERS = {
    "apiVersion": {
        "name": "api-version",
        "in": "query",
        "required": False,
        "schema": _STR,
        "description": "Accepted and ignored: any IoT Hub API version works.",
    },
    "deviceId": {"name": "device_id", "in": "path", "required": True, "schema": _STR},
    "moduleId": {"name": "module_id", "in": "path", "required": True, "schema": _STR},
    "lockToken": {
        "name": "etag",
        "in": "path",
        "required": True,
        "schema": _STR,
        "description": "The lock token from the ETag of the received message.",
    },
    "ifMatch": {"name": "If-Match", "in": "header", "required": False, "schema": _STR},
    "ifNoneMatch": {
        "name": "If-None-Match",
        "in": "header",
        "required": False,
        "schema": _STR,
        "description": "* to create only (412 when the name is taken).",
    },
    "certificateName": {
        "name": "name",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$"},
    },
    "group": {
        "name": "group",
        "in": "path",
        "required": True,
        "schema": _STR,
        "description": "A device security group (case-insensitive); devices name theirs in "
        "the SecurityGroup twin tag.",
    },
}
RESPONSES = {
    "BadRequest": _error("Bad input; the message says which field."),
    "Unauthorized": _error("Bad, expired or missing credentials; the reason class is given."),
    "Forbidden": _error("IP filtered, wrong identity, or a policy without the permission."),
    "NotFound": _error("No such device, module or certificate."),
    "Conflict": _error("The id is taken."),
    "PreconditionFailed": _error("The If-Match etag or the lock token does not match."),
    "TooLarge": _error("The body is over the size limit."),
    "Throttled": {
        **_error("Over the message rate; retry after Retry-After seconds."),
        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
    },
}


SECURITY_SCHEMES = {
    "sas": {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": "SharedAccessSignature for the device or module.",
    },
    "policySas": {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": "SharedAccessSignature of a policy (skn=...).",
    },
}
