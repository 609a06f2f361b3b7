"""The SystemInformation collector: every distribution, the fallbacks, and the parsers."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iotsec.agent.collectors.sysinfo import (
    SYSINFO_SPEC,
    SystemInformationCollector,
    parse_cpuinfo,
    parse_key_values,
    parse_meminfo,
    parse_os_release,
)
from iotsec.agent.errors import HostReadError, ParseError
from iotsec.agent.hostroot import FakeHostRoot
from iotsec.schema import SecurityMessage, SystemInformation, SystemInformationEvent, encode_message
from tests.msschema import validate_with_microsoft_schema

HOSTS = Path(__file__).resolve().parents[1] / "fixtures" / "hosts"
NOW = datetime(2024, 3, 4, tzinfo=UTC)


def info(host: FakeHostRoot) -> tuple[SystemInformation, SystemInformationCollector]:
    collector = SystemInformationCollector(host)
    (event,) = collector.collect(NOW)
    assert isinstance(event, SystemInformationEvent)
    message = SecurityMessage.create([event], agent_id="b97faf0a-0f57-471f-9dab-46a8e1764946")
    validate_with_microsoft_schema(json.loads(encode_message(message)))
    (row,) = event.payload
    return row, collector


def test_the_spec() -> None:
    assert (SYSINFO_SPEC.name, SYSINFO_SPEC.category, SYSINFO_SPEC.default_priority) == (
        "SystemInformation",
        "Periodic",
        "Low",
    )


# distro -> (OSName, OSVersion, arch, host, cpu model, cpu count, total kB, free kB, total virt)
EXPECTED = {
    "debian12": (
        "Debian GNU/Linux",
        "12",
        "x86_64",
        "gateway-07",
        "Intel(R) Celeron(R) N5105 @ 2.00GHz",
        "4",
        7989532,
        5123400,
        7989532 + 2097148,
    ),
    "ubuntu2204": (
        "Ubuntu",
        "22.04",
        "aarch64",
        "ubuntu-rpi4",
        "Cortex-A72",
        "4",
        3881924,
        912340,
        3881924,
    ),
    "alpine318": (
        "Alpine Linux",
        "3.18.6",
        "armv7l",
        "sensor-hub",
        "ARMv7 Processor rev 4 (v7l)",
        "2",
        944268,
        712004,
        944268,
    ),
    "rhel9": (
        "Red Hat Enterprise Linux",
        "9.3",
        "x86_64",
        "edge-gw-rhel",
        "AMD EPYC 7R32",
        "2",
        3836128,
        2210044,
        3836128,
    ),
}


@pytest.mark.parametrize("distro", sorted(EXPECTED))
def test_every_distribution(distro: str) -> None:
    row, collector = info(FakeHostRoot.from_tree(HOSTS / distro))
    got = (
        row.os_name,
        row.os_version,
        row.os_architecture,
        row.host_name,
        row.extra_details["CpuModel"],
        row.extra_details["CpuCount"],
        row.total_physical_memory_kb,
        row.free_physical_memory_kb,
        row.total_virtual_memory_kb,
    )
    assert got == EXPECTED[distro]
    assert row.extra_details["KernelName"] == "Linux"
    assert (
        row.extra_details["KernelRelease"]
        == (HOSTS / distro / "proc/sys/kernel/osrelease").read_text().strip()
    )
    assert "BootTime" in row.extra_details
    assert collector.errors == []


def test_debian_details() -> None:
    row, _ = info(FakeHostRoot.from_tree(HOSTS / "debian12"))
    assert row.boot_device == "UUID=0f5c3a0e-7a1d-4b8e-9d3f-2c6a1b9e4f10"
    details = row.extra_details
    assert details["PrettyName"] == "Debian GNU/Linux 12 (bookworm)"
    assert (details["OsId"], details["VersionCodename"]) == ("debian", "bookworm")
    assert details["UptimeSeconds"] == "354212"
    assert details["BootTime"] == "2024-02-28T21:36:27+00:00"
    assert details["AvailablePhysicalMemoryInKB"] == "6801236"


def host_with(tmp_path: Path, files: dict[str, str]) -> FakeHostRoot:
    return FakeHostRoot.build(tmp_path, files=files)


@pytest.mark.parametrize(
    ("path", "text", "name", "version"),
    [
        (
            "/etc/lsb-release",
            'DISTRIB_ID=Ubuntu\nDISTRIB_RELEASE=18.04\nDISTRIB_DESCRIPTION="Ubuntu 18.04.6 LTS"\n',
            "Ubuntu",
            "18.04",
        ),
        (
            "/etc/redhat-release",
            "CentOS Linux release 7.9.2009 (Core)\n",
            "CentOS Linux",
            "7.9.2009",
        ),
        ("/etc/alpine-release", "3.12.0\n", "Alpine Linux", "3.12.0"),
        (
            "/usr/lib/os-release",
            'NAME="Fedora Linux"\nVERSION_ID=39\nVENDOR_NAME="Fedora"\n',
            "Fedora Linux",
            "39",
        ),
    ],
)
def test_os_release_fallbacks(
    tmp_path: Path, path: str, text: str, name: str, version: str
) -> None:
    row, collector = info(host_with(tmp_path, {path: text}))
    assert (row.os_name, row.os_version) == (name, version)
    assert row.extra_details["OsReleaseSource"] == path
    assert collector.errors == []


def test_vendor_comes_from_os_release_only(tmp_path: Path) -> None:
    row, _ = info(host_with(tmp_path, {"/etc/os-release": 'NAME=X\nVENDOR_NAME="Acme Devices"\n'}))
    assert row.os_vendor == "Acme Devices"


def test_a_bad_os_release_is_an_error_and_the_next_source_is_used(tmp_path: Path) -> None:
    row, collector = info(
        host_with(
            tmp_path, {"/etc/os-release": 'NAME="unterminated\n', "/etc/alpine-release": "3.19.1\n"}
        )
    )
    assert (row.os_name, row.os_version) == ("Alpine Linux", "3.19.1")
    (error,) = collector.errors
    assert isinstance(error, ParseError) and error.source == "/etc/os-release"


def test_hostname_and_boot_time_fallbacks(tmp_path: Path) -> None:
    row, _ = info(
        host_with(
            tmp_path,
            {
                "/etc/hostname": "edge-9\n",
                "/proc/stat": "cpu  1 2 3\nbtime 1709450000\nprocesses 4\n",
            },
        )
    )
    assert row.host_name == "edge-9"
    assert row.extra_details["BootTime"] == "2024-03-03T07:13:20+00:00"
    assert row.extra_details["UptimeSeconds"] == str(int(NOW.timestamp() - 1709450000))


def test_architecture_from_uname_then_cpuinfo(tmp_path: Path) -> None:
    host = host_with(tmp_path, {"/proc/cpuinfo": "processor\t: 0\nflags\t\t: fpu vme\n"})
    row, _ = info(host)
    assert row.os_architecture == "i686"  # no "lm" flag: a 32-bit x86
    host.fake_commands.add(["uname", "-m"], "riscv64\n")
    row, _ = info(host)
    assert row.os_architecture == "riscv64"


def test_an_unreadable_file_is_an_error_and_the_rest_is_read(tmp_path: Path) -> None:
    host = host_with(tmp_path, {"/etc/hostname": "edge-9\n"})
    (tmp_path / "proc/meminfo").mkdir(parents=True)
    row, collector = info(host)
    assert row.host_name == "edge-9" and row.total_physical_memory_kb is None
    assert [type(e) for e in collector.errors] == [HostReadError]


def test_an_empty_host_gives_an_empty_row(tmp_path: Path) -> None:
    row, collector = info(host_with(tmp_path, {}))
    assert row == SystemInformation()
    assert collector.errors == []


def test_parsers() -> None:
    values = parse_key_values("A=\"x y\"\n# c\nB='q'\nC=plain\n\n", "f")
    assert values == {"A": "x y", "B": "q", "C": "plain"}
    assert parse_os_release("ID=alpine\n").name == "alpine"
    with pytest.raises(ParseError, match="neither NAME nor ID"):
        parse_os_release("VERSION_ID=1\n")
    with pytest.raises(ParseError, match="KEY=value"):
        parse_key_values("no equals sign\n", "f")
    assert parse_meminfo("MemTotal:   100 kB\nHugePages_Total:   0\n") == {
        "MemTotal": 100,
        "HugePages_Total": 0,
    }
    with pytest.raises(ParseError):
        parse_meminfo("MemTotal: lots\n")
    cpu = parse_cpuinfo(
        "processor : 0\nCPU implementer : 0x41\nCPU architecture: 8\nCPU part : 0xd03\n"
    )
    assert (cpu.count, cpu.model, cpu.architecture) == (1, "Cortex-A53", "aarch64")
    with pytest.raises(ParseError):
        parse_cpuinfo("garbage line\n")


@settings(max_examples=300)
@given(st.text(max_size=300))
def test_parsers_raise_only_parse_error(text: str) -> None:
    for parse in (parse_key_values, parse_os_release, parse_cpuinfo, parse_meminfo):
        with contextlib.suppress(ParseError):
            parse(text, "fuzz")


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from(
        ["/proc/uptime", "/proc/stat", "/etc/redhat-release", "/etc/lsb-release", "/proc/cmdline"]
    ),
    st.text(max_size=80),
)
def test_odd_files_never_break_the_collector(path: str, text: str) -> None:
    import tempfile  # noqa: PLC0415  # a fresh tree per example

    with tempfile.TemporaryDirectory() as tmp:
        host = FakeHostRoot.build(tmp, files={path: text})
        collector = SystemInformationCollector(host)
        collector.collect(NOW)
        assert all(isinstance(e, ParseError | HostReadError) for e in collector.errors)
