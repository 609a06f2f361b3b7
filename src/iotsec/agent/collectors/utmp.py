"""Linux glibc utmp records: the binary format of ``/var/run/utmp``, ``wtmp`` and ``btmp``.

``struct utmp`` is 384 bytes on x86_64 and aarch64 (and on 32-bit ARM, where glibc keeps the
same layout), little-endian, with the time as two 32-bit fields. :func:`parse_utmp` turns a
buffer into records; a partial record at the end (the writer is mid-append, or the file was cut)
is reported in :attr:`UtmpParse.tail`, never parsed. :func:`encode_utmp` is the inverse, so
tests write binary wtmp/btmp fixtures instead of committing blobs.

>>> record = UtmpRecord(type=UtmpType.USER_PROCESS, pid=812, line="pts/0", user="pi",
...                     host="10.0.0.7", seconds=1_700_000_000, address="10.0.0.7")
>>> parsed = parse_utmp(encode_utmp([record]) + b"\\0" * 10, source="/var/log/wtmp")
>>> parsed.records == (record,), parsed.consumed, parsed.tail
(True, 384, 10)
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from iotsec.agent.errors import ParseError

__all__ = [
    "RECORD_SIZE",
    "UtmpParse",
    "UtmpRecord",
    "UtmpType",
    "encode_utmp",
    "parse_utmp",
]

# type, (pad), pid, line, id, user, host, exit termination, exit status, session,
# tv_sec, tv_usec, addr_v6, reserved
_LAYOUT = struct.Struct("<h2xi32s4s32s256shhiII16s20x")
RECORD_SIZE = _LAYOUT.size
_LINE, _ID, _USER, _HOST = 32, 4, 32, 256
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class UtmpType(enum.IntEnum):
    """``ut_type``: what a record stands for."""

    EMPTY = 0
    RUN_LVL = 1
    BOOT_TIME = 2
    NEW_TIME = 3
    OLD_TIME = 4
    INIT_PROCESS = 5
    LOGIN_PROCESS = 6
    USER_PROCESS = 7
    DEAD_PROCESS = 8
    ACCOUNTING = 9


@dataclass(frozen=True, slots=True)
class UtmpRecord:
    """One utmp record; text fields are decoded UTF-8 (invalid bytes replaced)."""

    type: UtmpType
    pid: int = 0
    line: str = ""
    id: str = ""
    user: str = ""
    host: str = ""
    exit_termination: int = 0
    exit_status: int = 0
    session: int = 0
    seconds: int = 0
    microseconds: int = 0
    address: str | None = None

    @property
    def time(self) -> datetime:
        """When the record was written, in UTC."""
        return _EPOCH + timedelta(seconds=self.seconds, microseconds=self.microseconds)


@dataclass(frozen=True, slots=True)
class UtmpParse:
    """Records of a buffer; ``consumed`` bytes were whole records, ``tail`` bytes were left over."""

    records: tuple[UtmpRecord, ...]
    consumed: int
    tail: int


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", errors="replace")


def _address(raw: bytes) -> str | None:
    # glibc stores an IPv4 address in the first word and zeroes the rest (network byte order).
    if not any(raw):
        return None
    if not any(raw[4:]):
        return str(ipaddress.IPv4Address(raw[:4]))
    v6 = ipaddress.IPv6Address(raw)
    return str(v6.ipv4_mapped or v6)


def parse_utmp(data: bytes, *, source: str, offset: int = 0) -> UtmpParse:
    """Every whole record in ``data``; a record that cannot be utmp raises ParseError.

    ``offset`` is where ``data`` starts in the file, so errors name the file position.
    """
    records = []
    whole = len(data) - len(data) % RECORD_SIZE
    for start in range(0, whole, RECORD_SIZE):
        fields = _LAYOUT.unpack_from(data, start)
        kind, pid, line, ut_id, user, host, term, status, session, sec, usec, addr = fields
        where = f"record at byte {offset + start}"
        if kind not in UtmpType._value2member_map_:
            raise ParseError(source, f"{where}: unknown ut_type {kind}")
        if usec >= 1_000_000:
            raise ParseError(source, f"{where}: tv_usec {usec} is not below one second")
        records.append(
            UtmpRecord(
                type=UtmpType(kind),
                pid=pid,
                line=_text(line),
                id=_text(ut_id),
                user=_text(user),
                host=_text(host),
                exit_termination=term,
                exit_status=status,
                session=session,
                # Read unsigned: the 32-bit field then lasts until 2106 instead of 2038.
                seconds=sec,
                microseconds=usec,
                address=_address(addr),
            )
        )
    return UtmpParse(tuple(records), consumed=whole, tail=len(data) - whole)


def _field(value: str, size: int, name: str) -> bytes:
    raw = value.encode("utf-8")
    if len(raw) > size or b"\0" in raw:
        raise ValueError(f"{name} {value!r} does not fit {size} NUL-free bytes")
    return raw


def _packed_address(address: str | None) -> bytes:
    if address is None:
        return bytes(16)
    ip = ipaddress.ip_address(address)
    return ip.packed.ljust(16, b"\0")


def encode_utmp(records: Iterable[UtmpRecord]) -> bytes:
    """The binary form of ``records`` as glibc writes it; ValueError if a record cannot fit."""
    out = bytearray()
    for record in records:
        out += _LAYOUT.pack(
            int(record.type),
            record.pid,
            _field(record.line, _LINE, "line"),
            _field(record.id, _ID, "id"),
            _field(record.user, _USER, "user"),
            _field(record.host, _HOST, "host"),
            record.exit_termination,
            record.exit_status,
            record.session,
            record.seconds,
            record.microseconds,
            _packed_address(record.address),
        )
    return bytes(out)
