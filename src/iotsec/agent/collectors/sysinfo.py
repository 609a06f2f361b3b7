"""The SystemInformation collector: OS, kernel, host name, CPU, memory and boot time.

Each fact has a first source and fallbacks, read through the HostRoot so fixture trees of
several distributions give their own answers:

========================  ========================================================================
OSName, OSVersion         /etc/os-release, else /etc/lsb-release, /etc/redhat-release,
                          /etc/alpine-release
OSVendor                  VENDOR_NAME of os-release (systemd 254+); absent otherwise
OsArchitecture            /proc/sys/kernel/arch, else ``uname -m``, else guessed from /proc/cpuinfo
HostName                  /proc/sys/kernel/hostname, else /etc/hostname
Total/FreePhysical...     MemTotal, MemFree of /proc/meminfo
Total/FreeVirtual...      physical plus swap (SwapTotal, SwapFree), as Windows counts page files
BIOSVersion               /sys/class/dmi/id/bios_version (x86 only)
BootDevice                ``root=`` of /proc/cmdline
========================  ========================================================================

Kernel name, release and version, CPU model and count, boot time and uptime go to
``ExtraDetails``. A missing file leaves its field out; a file that cannot be read or parsed
does too, and its error is kept in :attr:`SystemInformationCollector.errors`.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from iotsec.agent.collectors.base import CollectorSpec
from iotsec.agent.errors import AgentError, HostReadError, ParseError
from iotsec.agent.hostroot import HostRoot
from iotsec.schema import Event, SystemInformation, SystemInformationEvent

__all__ = [
    "SYSINFO_SPEC",
    "CpuInfo",
    "OsRelease",
    "SystemInformationCollector",
    "parse_cpuinfo",
    "parse_key_values",
    "parse_meminfo",
    "parse_os_release",
]

SYSINFO_SPEC = CollectorSpec(
    name="SystemInformation",
    event_type="Security",
    category="Periodic",
    default_priority="Low",
    description="OS, kernel, host name, CPU, memory and boot time",
)

_T = TypeVar("_T")
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)
_RELEASE = re.compile(r"(?P<name>.+?)\s+release\s+(?P<version>\S+)", re.ASCII)


@dataclass(frozen=True, slots=True)
class OsRelease:
    """The distribution, and which file named it."""

    name: str
    version: str | None
    source: str
    pretty_name: str | None = None
    id: str | None = None
    id_like: str | None = None
    codename: str | None = None
    vendor: str | None = None


@dataclass(frozen=True, slots=True)
class CpuInfo:
    """Processor model and count, and the architecture /proc/cpuinfo suggests."""

    count: int
    model: str | None
    architecture: str | None
    hardware_model: str | None = None


def parse_key_values(text: str, source: str) -> dict[str, str]:
    """``KEY=value`` lines with shell quoting (os-release, lsb-release)."""
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not _KEY.fullmatch(key):
            raise ParseError(source, "expected KEY=value", line=number)
        try:
            words = shlex.split(value, comments=False, posix=True)
        except ValueError as exc:
            raise ParseError(source, f"bad quoting: {exc}", line=number) from None
        values[key] = " ".join(words)
    return values


def parse_os_release(text: str, source: str = "/etc/os-release") -> OsRelease:
    """The distribution named by an os-release file."""
    values = parse_key_values(text, source)
    name = values.get("NAME") or values.get("ID")
    if not name:
        raise ParseError(source, "neither NAME nor ID is set")
    return OsRelease(
        name=name,
        version=values.get("VERSION_ID") or values.get("VERSION"),
        source=source,
        pretty_name=values.get("PRETTY_NAME"),
        id=values.get("ID"),
        id_like=values.get("ID_LIKE"),
        codename=values.get("VERSION_CODENAME"),
        vendor=values.get("VENDOR_NAME"),
    )


def _lsb_release(text: str, source: str) -> OsRelease:
    values = parse_key_values(text, source)
    name = values.get("DISTRIB_ID")
    if not name:
        raise ParseError(source, "DISTRIB_ID is not set")
    return OsRelease(
        name=name,
        version=values.get("DISTRIB_RELEASE"),
        source=source,
        pretty_name=values.get("DISTRIB_DESCRIPTION"),
        codename=values.get("DISTRIB_CODENAME"),
    )


def _redhat_release(text: str, source: str) -> OsRelease:
    found = _RELEASE.match(text.strip())
    if found is None:
        raise ParseError(source, "expected '<name> release <version>'")
    return OsRelease(found["name"], found["version"], source, pretty_name=text.strip())


def _alpine_release(text: str, source: str) -> OsRelease:
    version = text.strip()
    if not version:
        raise ParseError(source, "empty file")
    return OsRelease("Alpine Linux", version, source, id="alpine")


_OS_SOURCES: tuple[tuple[str, Callable[[str, str], OsRelease]], ...] = (
    ("/etc/os-release", parse_os_release),
    ("/usr/lib/os-release", parse_os_release),
    ("/etc/lsb-release", _lsb_release),
    ("/etc/redhat-release", _redhat_release),
    ("/etc/alpine-release", _alpine_release),
)
# /proc/cpuinfo's "CPU architecture" of ARM cores, as uname -m names them.
_ARM_ARCHITECTURES = {"8": "aarch64", "7": "armv7l", "6": "armv6l", "5TEJ": "armv5tejl"}
# ARM Ltd. ("CPU implementer 0x41") core part numbers common on devices; ARM kernels print no
# model name, only these numbers.
_ARM_PARTS = {
    "0xb76": "ARM1176",
    "0xc07": "Cortex-A7",
    "0xc08": "Cortex-A8",
    "0xc09": "Cortex-A9",
    "0xd03": "Cortex-A53",
    "0xd04": "Cortex-A35",
    "0xd05": "Cortex-A55",
    "0xd07": "Cortex-A57",
    "0xd08": "Cortex-A72",
    "0xd0b": "Cortex-A76",
}


def parse_cpuinfo(text: str, source: str = "/proc/cpuinfo") -> CpuInfo:
    """Processor count and model of /proc/cpuinfo (x86 and ARM layouts)."""
    count = 0
    fields: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        key, sep, value = raw.partition(":")
        if not sep:
            raise ParseError(source, "expected 'key : value'", line=number)
        key = key.strip()
        if key == "processor":
            count += 1
        fields.setdefault(key, value.strip())
    architecture = None
    if "flags" in fields:
        architecture = "x86_64" if " lm " in f" {fields['flags']} " else "i686"
    elif "CPU architecture" in fields:
        architecture = _ARM_ARCHITECTURES.get(fields["CPU architecture"])
    model = fields.get("model name") or fields.get("Processor") or fields.get("cpu model")
    if model is None and "CPU part" in fields:
        part = fields["CPU part"].lower()
        known = _ARM_PARTS.get(part) if fields.get("CPU implementer") == "0x41" else None
        model = known or f"ARM implementer {fields.get('CPU implementer', '?')} part {part}"
    return CpuInfo(count, model, architecture, fields.get("Model") or fields.get("Hardware"))


def parse_meminfo(text: str, source: str = "/proc/meminfo") -> dict[str, int]:
    """/proc/meminfo as kB per key."""
    values: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        key, sep, rest = raw.partition(":")
        words = rest.split()
        if not sep or not words or not words[0].isascii() or not words[0].isdigit():
            raise ParseError(source, "expected 'Key: <number> [kB]'", line=number)
        values[key.strip()] = int(words[0])
    return values


class SystemInformationCollector:
    """Snapshots system facts (Periodic/Security, default priority Low)."""

    spec = SYSINFO_SPEC

    def __init__(self, host: HostRoot) -> None:
        self.host = host
        self.errors: list[AgentError] = []

    def collect(self, now: datetime) -> Sequence[Event]:
        """One SystemInformation event with one row."""
        self.errors = []
        return [SystemInformationEvent.create([self.read(now)], at=now)]

    def close(self) -> None:
        """Nothing to release."""

    def read(self, now: datetime) -> SystemInformation:
        """The row of facts as of ``now``."""
        details: dict[str, str] = {}
        release = next(
            (r for path, parse in _OS_SOURCES if (r := self._read(path, parse)) is not None), None
        )
        if release is not None:
            _put(details, "OsReleaseSource", release.source)
            _put(details, "PrettyName", release.pretty_name)
            _put(details, "OsId", release.id)
            _put(details, "OsIdLike", release.id_like)
            _put(details, "VersionCodename", release.codename)
        for name, key in (("ostype", "KernelName"), ("osrelease", "KernelRelease")):
            _put(details, key, self._text(f"/proc/sys/kernel/{name}"))
        _put(details, "KernelVersion", self._text("/proc/sys/kernel/version"))
        cpu = self._read("/proc/cpuinfo", parse_cpuinfo)
        if cpu is not None:
            _put(details, "CpuModel", cpu.model)
            _put(details, "CpuCount", str(cpu.count) if cpu.count else None)
            _put(details, "HardwareModel", cpu.hardware_model)
        _put(details, "HardwareModel", self._text("/sys/class/dmi/id/product_name"))
        _put(details, "HardwareVendor", self._text("/sys/class/dmi/id/sys_vendor"))
        memory = self._read("/proc/meminfo", parse_meminfo) or {}
        if "MemAvailable" in memory:
            details["AvailablePhysicalMemoryInKB"] = str(memory["MemAvailable"])
        self._boot(now, details)
        return SystemInformation(
            os_name=release.name if release else None,
            os_version=release.version if release else None,
            os_vendor=release.vendor if release else None,
            os_architecture=self._architecture(cpu),
            host_name=self._text("/proc/sys/kernel/hostname") or self._text("/etc/hostname"),
            bios_version=self._text("/sys/class/dmi/id/bios_version"),
            boot_device=self._boot_device(),
            total_physical_memory_kb=memory.get("MemTotal"),
            free_physical_memory_kb=memory.get("MemFree"),
            total_virtual_memory_kb=_plus(memory, "MemTotal", "SwapTotal"),
            free_virtual_memory_kb=_plus(memory, "MemFree", "SwapFree"),
            extra_details=details,
        )

    def _read(self, path: str, parse: Callable[[str, str], _T]) -> _T | None:
        text = self._text(path, strip=False)
        if text is None:
            return None
        try:
            return parse(text, path)
        except ParseError as exc:
            self.errors.append(exc)
            return None

    def _text(self, path: str, *, strip: bool = True) -> str | None:
        if not self.host.exists(path):
            return None
        try:
            text = self.host.read_text(path)
        except HostReadError as exc:
            self.errors.append(exc)
            return None
        return (text.strip() or None) if strip else text

    def _architecture(self, cpu: CpuInfo | None) -> str | None:
        arch = self._text("/proc/sys/kernel/arch")
        if arch is None and self.host.commands.available("uname"):
            try:
                done = self.host.run(["uname", "-m"])
            except HostReadError as exc:
                self.errors.append(exc)
            else:
                arch = done.stdout.strip() if done.returncode == 0 else None
        return arch or (cpu.architecture if cpu else None)

    def _boot_device(self) -> str | None:
        cmdline = self._text("/proc/cmdline") or ""
        roots = [word[5:] for word in cmdline.split() if word.startswith("root=")]
        return roots[-1] if roots else None

    def _boot(self, now: datetime, details: dict[str, str]) -> None:
        uptime = self._read("/proc/uptime", _parse_uptime)
        btime = self._read("/proc/stat", _parse_btime)
        boot = datetime.fromtimestamp(btime, tz=UTC) if btime is not None else None
        if boot is None and uptime is not None:
            boot = (now - timedelta(seconds=uptime)).astimezone(UTC).replace(microsecond=0)
        if uptime is None and boot is not None:
            uptime = (now - boot).total_seconds()
        _put(details, "BootTime", boot.isoformat() if boot else None)
        _put(details, "UptimeSeconds", str(int(uptime)) if uptime is not None else None)


def _parse_uptime(text: str, source: str) -> float:
    words = text.split()
    try:
        seconds = float(words[0])
    except (IndexError, ValueError):
        raise ParseError(source, "expected '<uptime seconds> <idle seconds>'") from None
    if not 0 <= seconds < 1e10:
        raise ParseError(source, f"uptime {words[0]} is out of range")
    return seconds


def _parse_btime(text: str, source: str) -> int | None:
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith("btime "):
            value = line[6:].strip()
            if not value.isascii() or not value.isdigit() or len(value) > 12:
                raise ParseError(source, f"bad btime {value!r}", line=number)
            return int(value)
    return None


def _put(details: dict[str, str], key: str, value: str | None) -> None:
    if value and key not in details:
        details[key] = value


def _plus(memory: Mapping[str, int], physical: str, swap: str) -> int | None:
    if physical not in memory:
        return None
    return memory[physical] + memory.get(swap, 0)
