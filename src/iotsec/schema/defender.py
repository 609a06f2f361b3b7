"""AWS IoT Device Defender device-side metrics reports, decoded into the security event model.

Fleets leaving Device Defender can point their agents at iotsec unchanged: a metrics report
(spec: "Device metrics document specification", AWS IoT Device Defender developer guide) is
decoded into typed values and mapped onto the same events an ASC agent sends.

=============================================  =====================================================
Device Defender report                         iotsec event (``ExtraDetails["Source"]`` is
                                               ``"aws-device-defender"`` on every row)
=============================================  =====================================================
``listening_tcp_ports`` / ``listening_udp_     one Periodic ``ListeningPorts``; a row per port:
ports`` (either block present)                 Protocol ``TCP``/``UDP``, LocalPort as a string; an
                                               interface that is an IP becomes LocalAddress, a name
                                               goes to ``ExtraDetails["Interface"]``. No ports:
                                               IsEmpty. Neither block: no event.
``tcp_connections.established_connections``    one ``ConnectionCreate``; a row per connection:
                                               RemoteAddress/RemotePort split from ``ip:port``,
                                               Direction ``In`` when ``local_port`` is one of the
                                               report's listening TCP ports, else ``Out``;
                                               ProcessId 0, Executable ``""``. No connections: no
                                               event (a Triggered event is never empty).
``network_stats``                              one ``SystemInformation`` row whose ExtraDetails
                                               carry ``BytesIn``, ``BytesOut``, ``PacketsIn``,
                                               ``PacketsOut`` (those present) as strings.
``header.report_id``                           event ids: uuid5(agent id, report id, event name),
                                               so a re-sent report dedupes.
``custom_metrics``, ``total`` counts           decoded onto ``DefenderReport``, not mapped.
=============================================  =====================================================

Every key has a long and a short name (``header``/``hed``, ``remote_addr``/``rad``, ...). A report
uses one form throughout, as every AWS agent writes it; a report that mixes them is rejected
with the offending key named. Issue paths use the report's own key names. Only JSON is read:
AWS also accepts CBOR on the ``.../metrics/cbor`` topic, iotsec does not.

The report has no per-event time, so every event is stamped with the time iotsec received it,
in UTC (both TimestampUTC and TimestampLocal). It names no agent either: the device is the thing
in the MQTT topic, so the caller passes the agent id, or ``agent_id_for_thing(thing_name)``.

>>> report = decode_defender_report(
...     b'{"hed":{"rid":1530305228,"v":"1.0"},"met":{"tp":{"pts":[{"pt":22,"if":"eth0"}],"t":1}}}',
...     agent_id=agent_id_for_thing("thermostat-7"))
>>> event = report.to_security_message().events[0]
>>> event.name, event.payload[0].local_port, event.payload[0].extra_details["Interface"]
('ListeningPorts', '22', 'eth0')
"""

from __future__ import annotations

import difflib
import re
from datetime import UTC, datetime
from typing import Literal

import msgspec

from iotsec.schema.codec import MAX_MESSAGE_BYTES, issue_from_validation
from iotsec.schema.defender_report import (
    _KINDS,
    _METRIC_NAME,
    DEFENDER_NAMESPACE,
    SOURCE,
    Count,
    CustomMetricValue,
    DefenderConnection,
    DefenderEstablishedConnections,
    DefenderListeningPorts,
    DefenderMetrics,
    DefenderNetworkStats,
    DefenderPort,
    DefenderReport,
    DefenderTcpConnections,
    ListeningPort,
    LocalPort,
    ReportId,
    _agent_guid,
    _Block,
    agent_id_for_thing,
    split_remote_addr,
)
from iotsec.schema.errors import DefenderReportInvalid, FieldIssue, MessageTooLarge

__all__ = [
    "DEFENDER_NAMESPACE",
    "SHORT_NAMES",
    "SOURCE",
    "CustomMetricValue",
    "DefenderConnection",
    "DefenderEstablishedConnections",
    "DefenderListeningPorts",
    "DefenderMetrics",
    "DefenderNetworkStats",
    "DefenderPort",
    "DefenderReport",
    "DefenderTcpConnections",
    "agent_id_for_thing",
    "decode_defender_report",
    "split_remote_addr",
]

#: Long key name -> short key name, as AWS's spec, agents and SDKs spell them.
SHORT_NAMES: dict[str, str] = {
    "header": "hed",
    "metrics": "met",
    "custom_metrics": "cmet",
    "report_id": "rid",
    "version": "v",
    "listening_tcp_ports": "tp",
    "listening_udp_ports": "up",
    "ports": "pts",
    "port": "pt",
    "interface": "if",
    "total": "t",
    "network_stats": "ns",
    "bytes_in": "bi",
    "bytes_out": "bo",
    "packets_in": "pi",
    "packets_out": "po",
    "tcp_connections": "tc",
    "established_connections": "ec",
    "connections": "cs",
    "remote_addr": "rad",
    "local_port": "lp",
    "local_interface": "li",
}
_LONG_NAMES = {short: long for long, short in SHORT_NAMES.items()}
_TOP = {
    "long": frozenset(("header", "metrics", "custom_metrics")),
    "short": frozenset(("hed", "met", "cmet")),
}
Form = Literal["long", "short"]

# --- the two wire forms ------------------------------------------------------------------------


class _Header(_Block, frozen=True, kw_only=True):
    report_id: ReportId
    version: Literal["1.0"]


class _LongReport(_Block, frozen=True, kw_only=True):
    header: _Header
    metrics: DefenderMetrics | None = None
    custom_metrics: dict[str, msgspec.Raw] | None = None


class _Short(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, rename=SHORT_NAMES
):
    """Twins of the blocks above under the short names; converted to them after decoding."""


class _ShortPort(_Short, frozen=True, kw_only=True):
    port: ListeningPort
    interface: str | None = None


class _ShortListeningPorts(_Short, frozen=True, kw_only=True):
    ports: tuple[_ShortPort, ...] = ()
    total: Count | None = None


class _ShortConnection(_Short, frozen=True, kw_only=True):
    remote_addr: str
    local_port: LocalPort | None = None
    local_interface: str | None = None


class _ShortEstablishedConnections(_Short, frozen=True, kw_only=True):
    connections: tuple[_ShortConnection, ...] = ()
    total: Count | None = None


class _ShortTcpConnections(_Short, frozen=True, kw_only=True):
    established_connections: _ShortEstablishedConnections | None = None


class _ShortNetworkStats(_Short, frozen=True, kw_only=True):
    bytes_in: Count | None = None
    bytes_out: Count | None = None
    packets_in: Count | None = None
    packets_out: Count | None = None


class _ShortMetrics(_Short, frozen=True, kw_only=True):
    listening_tcp_ports: _ShortListeningPorts | None = None
    listening_udp_ports: _ShortListeningPorts | None = None
    network_stats: _ShortNetworkStats | None = None
    tcp_connections: _ShortTcpConnections | None = None


class _ShortHeader(_Short, frozen=True, kw_only=True):
    report_id: ReportId
    version: Literal["1.0"]


class _ShortReport(_Short, frozen=True, kw_only=True):
    header: _ShortHeader
    metrics: _ShortMetrics | None = None
    custom_metrics: dict[str, msgspec.Raw] | None = None


_long_decoder = msgspec.json.Decoder(_LongReport)
_short_decoder = msgspec.json.Decoder(_ShortReport)
_top_decoder = msgspec.json.Decoder(dict[str, msgspec.Raw])
_custom_decoder = msgspec.json.Decoder(tuple[CustomMetricValue])


# --- decoding ----------------------------------------------------------------------------------


def decode_defender_report(
    data: bytes | bytearray | memoryview | str,
    *,
    agent_id: str | None = None,
    received_at: datetime | None = None,
    max_bytes: int = MAX_MESSAGE_BYTES,
) -> DefenderReport:
    """Decode one Device Defender metrics report (JSON, long or short key names).

    Args:
        agent_id: the publishing agent's GUID, kept for ``to_security_message``; for an AWS
            thing use ``agent_id_for_thing(thing_name)``.
        received_at: when iotsec received the report (aware; default now); stamps every event.

    Raises:
        MessageTooLarge: ``data`` is over ``max_bytes``; it was not parsed.
        DefenderReportInvalid: the report does not decode; issues name paths in its own keys.
        ValueError: ``agent_id`` is not a GUID, or ``received_at`` is naive.
    """
    size = len(data.encode() if isinstance(data, str) else data)
    if size > max_bytes:
        raise MessageTooLarge(size, max_bytes)
    agent = None if agent_id is None else _agent_guid(agent_id)
    when = datetime.now(UTC) if received_at is None else received_at
    if when.tzinfo is None:
        raise ValueError("received_at must be timezone-aware")
    try:
        header, metrics, custom, form = _decode(data)
        custom_metrics = _decode_custom(custom, form)
    except UnicodeDecodeError as exc:
        raise DefenderReportInvalid(
            (FieldIssue("$", f"not UTF-8 (byte {exc.start}: {exc.reason})"),)
        ) from None
    if metrics is None and custom is None:
        raise DefenderReportInvalid(
            (
                FieldIssue(
                    "$",
                    _name_in(form, ('expected a "metrics" or a "custom_metrics" block, or both')),
                ),
            )
        )
    return DefenderReport(
        report_id=header.report_id,
        version=header.version,
        metrics=metrics,
        custom_metrics=custom_metrics,
        agent_id=agent,
        received_at=when.astimezone(UTC),
    )


def _decode(
    data: bytes | bytearray | memoryview | str,
) -> tuple[_Header, DefenderMetrics | None, dict[str, msgspec.Raw] | None, Form]:
    # msgspec stops at the first problem, so a validation error may hide a syntax error further
    # on; every decode here therefore tells the two apart.
    try:
        long = _long_decoder.decode(data)
    except msgspec.ValidationError as exc:
        long_error = exc.with_traceback(None)  # kept, it would tie this frame into a GC cycle
    except msgspec.DecodeError as exc:
        raise DefenderReportInvalid((_malformed(data, exc),)) from None
    else:
        return long.header, long.metrics, long.custom_metrics, "long"
    try:
        short = _short_decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise _invalid(data, long_error, exc) from None
    except msgspec.DecodeError as exc:
        raise DefenderReportInvalid((_malformed(data, exc),)) from None
    header = _Header(report_id=short.header.report_id, version=short.header.version)
    if short.metrics is None:
        return header, None, short.custom_metrics, "short"
    try:
        metrics = msgspec.convert(short.metrics, DefenderMetrics, from_attributes=True)
    except msgspec.ValidationError as exc:  # a check in __post_init__, its path in long names
        issue = _issue(exc, "short", prefix="metrics", to_short=True)
        raise DefenderReportInvalid((issue,)) from None
    return header, metrics, short.custom_metrics, "short"


def _decode_custom(
    custom: dict[str, msgspec.Raw] | None,
    form: Form,
) -> dict[str, CustomMetricValue]:
    block = "custom_metrics" if form == "long" else "cmet"
    values: dict[str, CustomMetricValue] = {}
    issues: list[FieldIssue] = []
    for name, raw in (custom or {}).items():
        if not _METRIC_NAME.fullmatch(name) or name.startswith("aws:"):
            issues.append(
                FieldIssue(
                    block,
                    f"invalid custom metric name {name!r} (1-128 of "
                    'a-z A-Z 0-9 : _ -, not starting with "aws:")',
                )
            )
            continue
        try:
            (values[name],) = _custom_decoder.decode(raw)
        except msgspec.ValidationError as exc:
            issues.append(_issue(exc, form, prefix=f"{block}.{name}"))
    if issues:
        raise DefenderReportInvalid(tuple(issues))
    return values


def _malformed(data: bytes | bytearray | memoryview | str, exc: msgspec.DecodeError) -> FieldIssue:
    reason = str(exc).removeprefix("JSON is malformed: ")
    reason = "malformed JSON: " + reason[:1].lower() + reason[1:]
    head = data[:1]
    if not isinstance(head, str) and bytes(head) and 0xA0 <= bytes(head)[0] <= 0xBF:
        reason += " (this looks like CBOR, a map; iotsec reads JSON reports only)"
    return FieldIssue("$", reason)


def _invalid(
    data: bytes | bytearray | memoryview | str,
    long_error: msgspec.ValidationError,
    short_error: msgspec.ValidationError,
) -> DefenderReportInvalid:
    """Report the error of the form the report is written in, judged by its top-level keys."""
    try:
        keys = set(_top_decoder.decode(data))
    except msgspec.ValidationError:  # not an object: the long-form error says so
        keys = set()
    except msgspec.DecodeError as exc:  # malformed past the point where validation stopped
        return DefenderReportInvalid((_malformed(data, exc),))
    long_keys, short_keys = keys & _TOP["long"], keys & _TOP["short"]
    if long_keys and short_keys:
        return DefenderReportInvalid(
            (
                FieldIssue(
                    "$",
                    (
                        f"mixes long names ({', '.join(sorted(long_keys))}) and short names "
                        f"({', '.join(sorted(short_keys))}); a report uses one form throughout"
                    ),
                ),
            )
        )
    if short_keys:
        return DefenderReportInvalid((_issue(short_error, "short"),))
    return DefenderReportInvalid((_issue(long_error, "long"),))


def _name_in(form: Form, text: str) -> str:
    """``text`` with each quoted long key name in the form's spelling."""
    if form == "long":
        return text
    return re.sub(r'"([a-z_]+)"', lambda m: f'"{SHORT_NAMES.get(m[1], m[1])}"', text)


_SEGMENT = re.compile(r"[A-Za-z_]+")
_BOUND = re.compile(r"^expected `int` (?P<op>[<>]=) (?P<n>-?\d+)$")
_PORT_RANGES = {"port": "1..65535", "pt": "1..65535", "local_port": "0..65535", "lp": "0..65535"}
# Optional blocks read as "X | null" in msgspec's messages; null is only a tolerance.
_OPTIONAL = re.compile(r"^expected `(?P<kind>float|array|object) \| null`")
_ARTICLES = {"float": "a number", "array": "an array", "object": "an object"}


def _issue(
    exc: msgspec.ValidationError, form: Form, *, prefix: str = "", to_short: bool = False
) -> FieldIssue:
    """A msgspec error as a FieldIssue in the report's own key names, with a reason that helps."""
    issue = issue_from_validation(exc, prefix=prefix)
    path, reason = issue.path, issue.reason
    if reason.startswith("@"):  # a check in __post_init__ naming the field it is about
        field, _, reason = reason[1:].partition(": ")
        path = field if path == "$" else f"{path}.{field}"
    if to_short:
        path = _SEGMENT.sub(lambda m: SHORT_NAMES.get(m[0], m[0]), path)
    name = path.rpartition(".")[2].partition("[")[0]
    reason = _OPTIONAL.sub(lambda m: f"expected {_ARTICLES[m['kind']]}", reason)
    if reason.startswith("unknown field"):
        reason = "unknown field" + _unknown_hint(name, form)
    elif m := _BOUND.match(reason):
        port_range = _PORT_RANGES.get(name)
        reason = (
            f"expected a port number in {port_range}"
            if port_range
            else f"expected an integer {m['op']} {m['n']}"
        )
    elif reason.startswith("invalid value") and name in ("version", "v"):
        reason += ' (only "1.0" is defined)'
    elif reason == "expected `array` of length 1":
        reason = "expected an array of exactly 1 item"
    return FieldIssue(path, reason)


def _unknown_hint(name: str, form: Form) -> str:
    if form == "long" and name in _LONG_NAMES:
        return (
            f' ("{name}" is the short name of "{_LONG_NAMES[name]}"; this report uses long '
            "names, and a report uses one form throughout)"
        )
    if form == "short" and name in SHORT_NAMES:
        return (
            f' ("{name}" is the long name of "{SHORT_NAMES[name]}"; this report uses short '
            "names, and a report uses one form throughout)"
        )
    names = SHORT_NAMES if form == "long" else _LONG_NAMES
    close = difflib.get_close_matches(name, [*names, *_KINDS], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
