"""Alerts as syslog messages: RFC 5424 with structured data, and ArcSight CEF.

RFC 5424: ``<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [iotsec@32473 ...] BOM MSG``.
The structured data carries the alert's fields (``alertId``, ``alertType``, ``severity``,
``deviceId``, ...) and a second element ``iotsecProps@32473`` its extended properties; inside a
value ``"``, ``\\`` and ``]`` are escaped with a backslash (RFC 5424 section 6.3.3). PRI is
``facility * 8 + severity``, severity from the alert's (High 2 critical, Medium 4 warning, Low 5
notice, Informational 6). 32473 is the enterprise number RFC 5612 reserves for examples.

CEF: ``CEF:0|iotsec|iotsec|<version>|<alertType>|<displayName>|<severity>|<extension>``, sent as
the MSG of an RFC 5424 message. In the header ``|`` and ``\\`` are escaped with a backslash (a
line break becomes a space: the header has no escape for it); in extension values ``=`` and
``\\`` are escaped with a backslash, and line breaks written ``\\n`` and ``\\r``. CEF severity:
High 8, Medium 5, Low 3, Informational 1.

>>> sd_escape('say "hi" [ok] \\\\ bye')
'say \\\\"hi\\\\" [ok\\\\] \\\\\\\\ bye'
>>> cef_header_escape("a|b\\\\c")
'a\\\\|b\\\\\\\\c'
>>> cef_extension_escape("k=v\\nnext")
'k\\\\=v\\\\nnext'
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import orjson

from iotsec import __version__
from iotsec.analytics.alerts import Alert

__all__ = [
    "CEF_SEVERITY",
    "FACILITIES",
    "SD_ID",
    "SD_PROPERTIES_ID",
    "SYSLOG_SEVERITY",
    "cef_extension_escape",
    "cef_header_escape",
    "cef_message",
    "format_cef",
    "format_rfc5424",
    "frame_octet_counted",
    "header_token",
    "sd_escape",
    "sd_name",
]

SD_ID = "iotsec@32473"
SD_PROPERTIES_ID = "iotsecProps@32473"
SYSLOG_SEVERITY = {"High": 2, "Medium": 4, "Low": 5, "Informational": 6}
CEF_SEVERITY = {"High": 8, "Medium": 5, "Low": 3, "Informational": 1}
FACILITIES = {
    "kern": 0,
    "user": 1,
    "daemon": 3,
    "auth": 4,
    "syslog": 5,
    "authpriv": 10,
    "audit": 13,
    "alert": 14,
    **{f"local{n}": 16 + n for n in range(8)},
}

_BOM = "\ufeff"
_NAME_BAD = re.compile(r'[^\x21-\x7e]|[=\]"]')
_TOKEN_BAD = re.compile(r"[^\x21-\x7e]")
_SD_VALUE = str.maketrans({"\\": "\\\\", '"': '\\"', "]": "\\]"})
_CEF_HEADER = str.maketrans({"\\": "\\\\", "|": "\\|", "\r": " ", "\n": " "})
_CEF_EXT = str.maketrans({"\\": "\\\\", "=": "\\=", "\n": "\\n", "\r": "\\r"})
#: Longest structured-data value kept: a syslog message is not the place for megabytes.
_MAX_VALUE = 1024
_MAX_EVIDENCE = 10
_MAX_PROPERTIES = 32


def sd_escape(value: str) -> str:
    """An RFC 5424 PARAM-VALUE: ``"``, ``\\`` and ``]`` escaped with a backslash."""
    return value.translate(_SD_VALUE)


def sd_name(name: str) -> str:
    """An RFC 5424 PARAM-NAME from ``name``: printable ASCII without ``= ] "`` or space, 1-32."""
    cleaned = _NAME_BAD.sub("", name)[:32]
    return cleaned or "_"


def header_token(value: str, limit: int) -> str:
    """A HOSTNAME, APP-NAME, PROCID or MSGID: printable ASCII, at most ``limit``, else ``-``."""
    cleaned = _TOKEN_BAD.sub("", value)[:limit]
    return cleaned or "-"


def cef_header_escape(value: str) -> str:
    """A CEF header field: ``|`` and ``\\`` escaped; line breaks become spaces."""
    return value.translate(_CEF_HEADER)


def cef_extension_escape(value: str) -> str:
    """A CEF extension value: ``=`` and ``\\`` escaped, line breaks as ``\\n`` and ``\\r``."""
    return value.translate(_CEF_EXT)


def _timestamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _header(
    alert: Alert, *, facility: int, hostname: str, app_name: str, procid: str, msgid: str
) -> str:
    pri = facility * 8 + SYSLOG_SEVERITY[alert.severity]
    return " ".join(
        (
            f"<{pri}>1",
            _timestamp(alert.updated),
            header_token(hostname, 255),
            header_token(app_name, 48),
            header_token(procid, 128),
            header_token(msgid, 32),
        )
    )


def _alert_params(alert: Alert, *, brief: bool) -> list[tuple[str, str]]:
    params = [
        ("alertId", alert.alert_id),
        ("alertType", alert.rule_id),
        ("displayName", alert.display_name),
        ("severity", alert.severity),
        ("status", alert.status),
        ("deviceId", alert.device_id),
        ("moduleId", alert.module_id or ""),
        ("securityGroup", alert.group),
        ("hub", alert.hub),
        ("origin", alert.origin),
        ("count", str(alert.count)),
        ("startTime", _timestamp(alert.start_time)),
        ("endTime", _timestamp(alert.end_time)),
        ("evidenceTotal", str(alert.evidence_total)),
    ]
    if not brief:
        params += [
            ("evidence", ",".join(alert.evidence[:_MAX_EVIDENCE])),
            ("tactics", ",".join(alert.tactics)),
            ("techniques", ",".join(alert.techniques)),
        ]
    return [(name, value) for name, value in params if value]


def _element(sd_id: str, params: list[tuple[str, str]], limit: int) -> str:
    inner = "".join(f' {name}="{sd_escape(value[:limit])}"' for name, value in params)
    return f"[{sd_id}{inner}]"


def _property_params(alert: Alert) -> list[tuple[str, str]]:
    taken: set[str] = set()
    params = []
    for name, value in list(alert.properties.items())[:_MAX_PROPERTIES]:
        base = sd_name(name)
        unique, n = base, 1
        while unique in taken:
            n += 1
            unique = f"{base[:29]}_{n}"
        taken.add(unique)
        params.append((unique, str(value)))
    return params


def format_rfc5424(
    alert: Alert,
    *,
    hostname: str,
    facility: int = FACILITIES["authpriv"],
    app_name: str = "iotsec",
    procid: str = "-",
    msgid: str = "alert",
    max_bytes: int = 8192,
) -> bytes:
    """``alert`` as one RFC 5424 message (no framing), at most ``max_bytes`` long.

    Past ``max_bytes``, the structured data falls back to the alert's core fields, then the MSG
    (``display name: description``) is cut at a character boundary.
    """
    header = _header(
        alert, facility=facility, hostname=hostname, app_name=app_name, procid=procid, msgid=msgid
    )
    properties = _property_params(alert)
    sd = _element(SD_ID, _alert_params(alert, brief=False), _MAX_VALUE)
    if properties:
        sd += _element(SD_PROPERTIES_ID, properties, _MAX_VALUE)
    head = f"{header} {sd} ".encode()
    if len(head) + 64 > max_bytes:
        sd = _element(SD_ID, _alert_params(alert, brief=True), 128)
        head = f"{header} {sd} ".encode()
    text = f"{_BOM}{alert.display_name}: {alert.description}".encode()
    room = max(0, max_bytes - len(head))
    if len(text) > room:
        text = text[:room].decode("utf-8", "ignore").encode()
    return head + text


def _millis(value: datetime) -> str:
    return str(int(value.timestamp() * 1000))


def format_cef(
    alert: Alert, *, product_version: str = __version__, description_limit: int | None = None
) -> str:
    """``alert`` as one CEF:0 record (the text; ``cef_message`` wraps it for syslog).

    ``description_limit`` cuts ``msg`` and leaves out the properties (to fit a size limit).
    """
    description = alert.description
    properties = dict(alert.properties)
    if description_limit is not None:
        description = description[:description_limit]
        properties = {}
    header = "|".join(
        cef_header_escape(part)
        for part in (
            "CEF:0",
            "iotsec",
            "iotsec",
            product_version,
            alert.rule_id,
            alert.display_name,
            str(CEF_SEVERITY[alert.severity]),
        )
    )
    extension = [
        ("rt", _millis(alert.updated)),
        ("start", _millis(alert.start_time)),
        ("end", _millis(alert.end_time)),
        ("cnt", str(alert.count)),
        ("externalId", alert.alert_id),
        ("deviceExternalId", alert.device_id),
        ("msg", description),
        ("cat", alert.origin),
        ("outcome", alert.status),
        ("cs1Label", "securityGroup"),
        ("cs1", alert.group),
        ("cs2Label", "hub"),
        ("cs2", alert.hub),
        ("cs3Label", "evidence"),
        ("cs3", ",".join(alert.evidence[:_MAX_EVIDENCE])),
        ("cs4Label", "tactics"),
        ("cs4", ",".join(alert.tactics)),
        ("cs5Label", "techniques"),
        ("cs5", ",".join(alert.techniques)),
        ("cs6Label", "properties"),
        ("cs6", orjson.dumps(properties).decode("utf-8")),
    ]
    text = " ".join(f"{key}={cef_extension_escape(value)}" for key, value in extension)
    return f"{header}|{text}"


def cef_message(
    alert: Alert,
    *,
    hostname: str,
    facility: int = FACILITIES["authpriv"],
    app_name: str = "iotsec",
    max_bytes: int = 8192,
) -> bytes:
    """A CEF record as the MSG of an RFC 5424 message without structured data."""
    header = _header(
        alert, facility=facility, hostname=hostname, app_name=app_name, procid="-", msgid="alert"
    )
    data = f"{header} - {format_cef(alert)}".encode()
    if len(data) > max_bytes:
        # Cut the description rather than the record, so no escape is ever cut in half.
        over = len(data) - max_bytes
        keep = max(0, len(alert.description) - over - len(orjson.dumps(dict(alert.properties))))
        while True:
            data = f"{header} - {format_cef(alert, description_limit=keep)}".encode()
            if len(data) <= max_bytes or keep == 0:
                break
            keep = max(0, keep - max(16, (len(data) - max_bytes)))
    return data


def frame_octet_counted(message: bytes) -> bytes:
    """RFC 6587 octet-counting framing for TCP and TLS: ``<length> SP <message>``."""
    return b"%d %s" % (len(message), message)
