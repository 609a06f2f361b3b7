"""The AWS IoT Device Defender metrics report as typed values, and its mapping onto events.

Decoding the report's two wire forms (long and short key names) is in ``iotsec.schema.defender``;
the module docstring there explains the mapping.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec

from iotsec.schema.events import (
    ConnectionCreateEvent,
    Event,
    ListeningPortsEvent,
    SystemInformationEvent,
)
from iotsec.schema.message import SecurityMessage
from iotsec.schema.normalize import is_ip_address
from iotsec.schema.payloads import ConnectionCreate, ListeningPorts, SystemInformation

__all__ = [
    "DEFENDER_NAMESPACE",
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
    "split_remote_addr",
]

#: The namespace of every uuid5 this module derives (agent ids from thing names, event ids).
DEFENDER_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://iotsec.dev/ns/aws-device-defender")
_NAMESPACE_BYTES = DEFENDER_NAMESPACE.bytes
#: ``ExtraDetails["Source"]`` of every row made from a Device Defender report.
SOURCE = "aws-device-defender"

_THING_NAME = re.compile(r"[a-zA-Z0-9:_-]{1,128}")
_METRIC_NAME = re.compile(r"[a-zA-Z0-9:_-]{1,128}")

# AWS: listening ports "> 0", local ports and counters ">= 0"; both are TCP/UDP port numbers.
ListeningPort = Annotated[int, msgspec.Meta(ge=1, le=65535)]
LocalPort = Annotated[int, msgspec.Meta(ge=0, le=65535)]
Count = Annotated[int, msgspec.Meta(ge=0)]
ReportId = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]


# --- the report as typed values (attribute names are the long key names) -----------------------


class _Block(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    """A closed block of the report. Optional keys sent as ``null`` read as absent."""


class DefenderPort(_Block, frozen=True, kw_only=True):
    """A listening port and, when the agent knows it, its interface name or bound address."""

    port: ListeningPort
    interface: str | None = None


class DefenderListeningPorts(_Block, frozen=True, kw_only=True):
    """Listening TCP or UDP ports; ``total`` may exceed ``len(ports)`` when the agent sampled."""

    ports: tuple[DefenderPort, ...] = ()
    total: Count | None = None


class DefenderConnection(_Block, frozen=True, kw_only=True):
    """An established TCP connection; ``remote_addr`` is ``ip:port`` (IPv6 in brackets)."""

    remote_addr: str
    local_port: LocalPort | None = None
    local_interface: str | None = None

    def __post_init__(self) -> None:
        try:
            split_remote_addr(self.remote_addr)
        except ValueError as exc:
            raise ValueError(f"@remote_addr: {exc}") from None


class DefenderEstablishedConnections(_Block, frozen=True, kw_only=True):
    """Established TCP connections; ``total`` may exceed ``len(connections)``."""

    connections: tuple[DefenderConnection, ...] = ()
    total: Count | None = None


class DefenderTcpConnections(_Block, frozen=True, kw_only=True):
    """The ``tcp_connections`` block."""

    established_connections: DefenderEstablishedConnections | None = None


class DefenderNetworkStats(_Block, frozen=True, kw_only=True):
    """Traffic since the previous report (AWS calls these delta metrics)."""

    bytes_in: Count | None = None
    bytes_out: Count | None = None
    packets_in: Count | None = None
    packets_out: Count | None = None


class DefenderMetrics(_Block, frozen=True, kw_only=True):
    """The ``metrics`` block; every part is optional."""

    listening_tcp_ports: DefenderListeningPorts | None = None
    listening_udp_ports: DefenderListeningPorts | None = None
    network_stats: DefenderNetworkStats | None = None
    tcp_connections: DefenderTcpConnections | None = None


_KINDS = ("number", "number_list", "string_list", "ip_list")


class CustomMetricValue(_Block, frozen=True, kw_only=True):
    """One custom metric value: exactly one of the four AWS custom metric types is set."""

    number: float | None = None
    number_list: tuple[float, ...] | None = None
    string_list: tuple[str, ...] | None = None
    ip_list: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if sum(getattr(self, kind) is not None for kind in _KINDS) != 1:
            raise ValueError("expected exactly one of number, number_list, string_list, ip_list")
        for index, ip in enumerate(self.ip_list or ()):
            if not is_ip_address(ip):
                raise ValueError(f"@ip_list[{index}]: expected an IPv4 or IPv6 address, got {ip!r}")

    @property
    def kind(self) -> Literal["number", "number_list", "string_list", "ip_list"]:
        """Which of the four types this value is."""
        for kind in _KINDS:
            if getattr(self, kind) is not None:
                return kind  # type: ignore[return-value]  # one of the literal names above
        raise AssertionError("unreachable: __post_init__ requires one kind")


class DefenderReport(msgspec.Struct, frozen=True, kw_only=True):
    """A decoded Device Defender report, with the agent it came from and when it arrived."""

    report_id: int
    version: str
    metrics: DefenderMetrics | None
    custom_metrics: dict[str, CustomMetricValue]
    agent_id: str | None
    received_at: datetime

    def events(self, *, agent_id: str | None = None) -> tuple[Event, ...]:
        """The events this report maps to (see the module table); may be empty."""
        return self._events(_agent_guid(agent_id or self.agent_id))

    def to_security_message(self, *, agent_id: str | None = None) -> SecurityMessage:
        """This report as a security message from ``agent_id`` (default: the one given to decode).

        Raises:
            ValueError: no agent id was given, or the report maps to no event (it holds only
                custom metrics or empty blocks; check ``events()`` first where that can happen).
        """
        agent = _agent_guid(agent_id or self.agent_id)
        events = self._events(agent)
        if not events:
            raise ValueError(
                f"report {self.report_id} maps to no event: it holds no listening "
                "ports, connections or network stats"
            )
        return SecurityMessage(
            agent_version=f"aws-device-defender-{self.version}", agent_id=agent, events=events
        )

    def _events(self, agent: str) -> tuple[Event, ...]:
        metrics = self.metrics
        if metrics is None:
            return ()
        at = self.received_at
        events: list[Event] = []
        tcp, udp = metrics.listening_tcp_ports, metrics.listening_udp_ports
        if tcp is not None or udp is not None:
            rows = [_port_row("TCP", p) for p in (tcp.ports if tcp else ())]
            rows += [_port_row("UDP", p) for p in (udp.ports if udp else ())]
            events.append(
                ListeningPortsEvent(
                    id=self._event_id(agent, "ListeningPorts"),
                    timestamp_local=at,
                    timestamp_utc=at,
                    is_empty=not rows,
                    payload=tuple(rows),
                )
            )
        tcp_connections = metrics.tcp_connections
        established = tcp_connections.established_connections if tcp_connections else None
        if established is not None and established.connections:
            listening = {p.port for p in tcp.ports} if tcp else set()
            events.append(
                ConnectionCreateEvent(
                    id=self._event_id(agent, "ConnectionCreate"),
                    timestamp_local=at,
                    timestamp_utc=at,
                    payload=tuple(_connection_row(c, listening) for c in established.connections),
                )
            )
        if metrics.network_stats is not None:
            events.append(
                SystemInformationEvent(
                    id=self._event_id(agent, "SystemInformation"),
                    timestamp_local=at,
                    timestamp_utc=at,
                    payload=(_stats_row(metrics.network_stats),),
                )
            )
        return tuple(events)

    def _event_id(self, agent: str, name: str) -> str:
        return _uuid5(f"{agent}/{self.report_id}/{name}")


# --- mapping -----------------------------------------------------------------------------------


def _where(interface: str | None, details: dict[str, str]) -> str | None:
    """The interface as a LocalAddress when it is an IP, else recorded in ``details``."""
    if interface is None:
        return None
    if is_ip_address(interface):
        return interface
    details["Interface"] = interface
    return None


def _port_row(protocol: str, port: DefenderPort) -> ListeningPorts:
    details = {"Source": SOURCE}
    address = _where(port.interface, details)
    return ListeningPorts(
        protocol=protocol, local_port=str(port.port), local_address=address, extra_details=details
    )


def _connection_row(conn: DefenderConnection, listening: set[int]) -> ConnectionCreate:
    ip, port = split_remote_addr(conn.remote_addr)
    details = {"Source": SOURCE}
    address = _where(conn.local_interface, details)
    local = conn.local_port
    return ConnectionCreate(
        remote_address=ip,
        remote_port=str(port),
        direction="In" if local in listening else "Out",
        protocol="TCP",
        process_id=0,
        executable="",  # Device Defender does not see processes
        local_address=address,
        local_port=None if local is None else str(local),
        extra_details=details,
    )


def _stats_row(stats: DefenderNetworkStats) -> SystemInformation:
    details = {"Source": SOURCE}
    for key, value in (
        ("BytesIn", stats.bytes_in),
        ("BytesOut", stats.bytes_out),
        ("PacketsIn", stats.packets_in),
        ("PacketsOut", stats.packets_out),
    ):
        if value is not None:
            details[key] = str(value)
    return SystemInformation(extra_details=details)


def split_remote_addr(text: str) -> tuple[str, int]:
    """Split ``"10.0.0.1:443"`` or ``"[2001:db8::1]:443"`` into the IP and the port.

    An IPv6 address must be in brackets, as every AWS agent writes it: ``"2001:db8::1:443"``
    could be an address with no port.

    >>> split_remote_addr("[2001:db8::1]:443")
    ('2001:db8::1', 443)
    """
    if text.startswith("["):
        host, close, port_text = text[1:].partition("]:")
        if not close:
            raise ValueError(f'expected "ip:port", got {text!r}')
    else:
        host, colon, port_text = text.rpartition(":")
        if not colon or not host:
            raise ValueError(f'expected "ip:port", got {text!r}')
        if ":" in host:
            raise ValueError(
                'expected "ip:port" with the IPv6 address in brackets, '
                f'as in "[2001:db8::1]:443", got {text!r}'
            )
    if not is_ip_address(host):
        raise ValueError(f'expected "ip:port" with an IPv4 or IPv6 address, got {text!r}')
    if not (
        port_text.isascii()
        and port_text.isdigit()
        and len(port_text) <= 5
        and int(port_text) <= 65535
    ):
        raise ValueError(f'expected "ip:port" with a port in 0..65535, got {text!r}')
    return host, int(port_text)


def agent_id_for_thing(thing_name: str) -> str:
    """The stable agent GUID iotsec uses for an AWS IoT thing (uuid5 of its name).

    The thing name is the one in the topic ``$aws/things/<thing>/defender/metrics/json``.
    """
    if not _THING_NAME.fullmatch(thing_name):
        raise ValueError(f"not an AWS IoT thing name (1-128 of a-z A-Z 0-9 : _ -): {thing_name!r}")
    return _uuid5(f"thing/{thing_name}")


def _uuid5(name: str) -> str:
    """``str(uuid.uuid5(DEFENDER_NAMESPACE, name))`` without building UUID objects (5x faster)."""
    digest = bytearray(
        hashlib.sha1(_NAMESPACE_BYTES + name.encode(), usedforsecurity=False).digest()[:16]
    )
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    x = digest.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


def _agent_guid(agent_id: str | None) -> str:
    if agent_id is None:
        raise ValueError(
            "a Device Defender report names no agent: pass agent_id, or "
            "agent_id_for_thing(thing_name) for the thing that published it"
        )
    try:
        return str(uuid.UUID(agent_id))
    except ValueError:
        raise ValueError(
            f"agent_id must be a GUID (for an AWS thing name use "
            f"agent_id_for_thing()), got {agent_id!r}"
        ) from None
