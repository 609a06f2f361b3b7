"""Fixture hosts for the /proc collectors: the committed proc/ trees plus their symlinks.

The trees under tests/agent/fixtures/hosts/<distro>/proc hold plain files (socket tables,
stat, status, cmdline). The links the kernel would show (``exe`` and ``fd/N``) are made here,
in a copy, so the repository holds no dangling symlinks.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from iotsec.agent.hostroot import FakeHostRoot
from iotsec.schema import Event, SecurityMessage, encode_message
from tests.msschema import validate_with_microsoft_schema

HOSTS = Path(__file__).resolve().parents[1] / "fixtures" / "hosts"
DISTROS = ("debian12", "ubuntu2204", "alpine318", "rhel9")

# pid -> (exe link target or None, {fd: socket inode})
Links = dict[int, tuple[str | None, dict[int, int]]]

LINKS: dict[str, Links] = {
    "debian12": {
        1: ("/usr/lib/systemd/systemd", {}),
        530: ("/usr/sbin/dhclient", {6: 15001}),
        541: ("/usr/sbin/chronyd", {5: 15320, 6: 15321}),
        612: ("/usr/sbin/sshd", {3: 18431, 4: 18433}),
        731: ("/usr/sbin/nginx", {6: 20110, 7: 20112}),
        733: ("/usr/sbin/nginx", {6: 20110, 7: 20112, 12: 40001}),
        801: ("/usr/lib/postgresql/15/bin/postgres", {5: 19877, 9: 31612}),
        1020: ("/usr/lib/systemd/systemd", {}),
        1021: ("/usr/lib/systemd/systemd", {}),
        2201: ("/usr/sbin/sshd", {4: 31337}),
        2250: ("/usr/bin/tmux", {}),
        2290: ("/usr/bin/curl", {5: 31500, 6: 33001, 7: 31700}),
        2300: ("/home/pi/evil) R 1 (x (deleted)", {}),
        2310: ("/usr/bin/python3.11", {3: 31611, 4: 40200, 5: 40150}),
    },
    "ubuntu2204": {
        1: ("/usr/lib/systemd/systemd", {}),
        590: ("/usr/lib/systemd/systemd-resolved", {12: 22010, 13: 22011}),
        596: ("/usr/lib/systemd/systemd-networkd", {15: 21500}),
        640: ("/usr/sbin/avahi-daemon", {12: 21900, 13: 21901}),
        702: ("/usr/sbin/sshd", {3: 23001, 4: 23003}),
        820: ("/usr/sbin/mosquitto", {4: 24100, 5: 24102, 8: 51300, 9: 52001}),
        1450: ("/usr/bin/python3.10", {7: 51234}),
        1502: ("/usr/bin/sudo", {}),
    },
    "alpine318": {
        1: ("/bin/busybox", {}),
        310: ("/bin/busybox", {}),
        402: ("/bin/busybox", {3: 4230, 4: 5400}),
        410: ("/usr/sbin/dropbear", {3: 4410}),
        450: ("/usr/sbin/dropbear", {3: 4410, 5: 5120}),
        452: ("/bin/busybox", {}),
        470: ("/sbin/apk", {6: 5301}),
    },
    "rhel9": {
        1: ("/usr/lib/systemd/systemd", {50: 27500}),
        701: ("/usr/bin/rpcbind", {4: 27001, 5: 27002, 6: 27003, 7: 27004}),
        745: ("/usr/sbin/chronyd", {5: 26500, 6: 26501}),
        900: ("/usr/sbin/sshd", {3: 27210, 4: 27212}),
        1011: ("/usr/lib/systemd/systemd", {}),
        1500: ("/usr/libexec/cockpit-ws", {3: 27500, 4: 38200}),
        3201: ("/usr/sbin/sshd", {4: 38110}),
        3305: ("/usr/bin/python3.9", {5: 38300}),
    },
}

PASSWD = (
    "root:x:0:0:root:/root:/bin/bash\n"
    "www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\n"
    "postgres:x:106:113:PostgreSQL administrator:/var/lib/postgresql:/bin/bash\n"
    "pi:x:1000:1000:pi:/home/pi:/bin/bash\n"
)


def add_links(root: Path, pid: int, exe: str | None, fds: dict[int, int]) -> None:
    """Create /proc/<pid>/exe and /proc/<pid>/fd/N links (plus stdio) under ``root``."""
    proc = root / "proc" / str(pid)
    proc.mkdir(parents=True, exist_ok=True)
    if exe is not None:
        os.symlink(exe, proc / "exe")
    fd_dir = proc / "fd"
    fd_dir.mkdir(exist_ok=True)
    for number, target in ((0, "/dev/null"), (1, "pipe:[8812]"), (2, "anon_inode:[eventpoll]")):
        os.symlink(target, fd_dir / str(number))
    for number, inode in fds.items():
        os.symlink(f"socket:[{inode}]", fd_dir / str(number))


def fixture_host(distro: str, directory: Path) -> FakeHostRoot:
    """A FakeHostRoot over a copy of ``distro``'s proc/ tree with its links and a passwd."""
    shutil.copytree(HOSTS / distro / "proc", directory / "proc", symlinks=True)
    (directory / "etc").mkdir(exist_ok=True)
    (directory / "etc" / "passwd").write_text(PASSWD, encoding="utf-8")
    for pid, (exe, fds) in LINKS[distro].items():
        add_links(directory, pid, exe, fds)
    return FakeHostRoot.from_tree(directory)


def add_process(
    root: Path,
    pid: int,
    *,
    comm: str,
    ppid: int,
    argv: list[str],
    exe: str | None,
    uid: int = 0,
    euid: int | None = None,
    kernel_thread: bool = False,
    fds: dict[int, int] | None = None,
) -> None:
    """Write a /proc/<pid> directory as the kernel shows it."""
    proc = root / "proc" / str(pid)
    proc.mkdir(parents=True)
    flags = 0x00208040 if kernel_thread else 0x00400100
    tail = " ".join(["0"] * 12)
    (proc / "stat").write_text(
        f"{pid} ({comm}) S {ppid} {pid} {pid} 0 -1 {flags} 120 0 0 0 3 1 0 0 20 0 1 0 "
        f"{5000 + pid} 12345678 321 {tail} 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n",
        encoding="utf-8",
    )
    e = uid if euid is None else euid
    (proc / "status").write_text(
        f"Name:\t{comm}\nState:\tS (sleeping)\nPid:\t{pid}\nPPid:\t{ppid}\n"
        f"Uid:\t{uid}\t{e}\t{e}\t{e}\n",
        encoding="utf-8",
    )
    (proc / "cmdline").write_bytes(b"".join(a.encode() + b"\0" for a in argv))
    add_links(root, pid, exe, fds or {})


def hex_address(address: str, byteorder: str = "little") -> str:
    """``address`` as /proc/net prints it on a host of ``byteorder``."""
    packed = ipaddress.ip_address(address).packed
    if byteorder == "little":
        packed = b"".join(packed[i : i + 4][::-1] for i in range(0, len(packed), 4))
    return packed.hex().upper()


def socket_line(
    slot: int,
    local: tuple[str, int],
    remote: tuple[str, int],
    state: int,
    inode: int,
    *,
    uid: int = 0,
    byteorder: str = "little",
) -> str:
    """One /proc/net/{tcp,udp}[6] line."""
    return (
        f"{slot:4d}: {hex_address(local[0], byteorder)}:{local[1]:04X} "
        f"{hex_address(remote[0], byteorder)}:{remote[1]:04X} {state:02X} "
        f"00000000:00000000 00:00000000 00000000 {uid:5d} 0 {inode} 1 0000000000000000 20 4 30 10"
        " -1\n"
    )


def assert_schema_valid(events: Sequence[Event]) -> None:
    """The events, sent as one message, are valid against Microsoft's published schema."""
    message = SecurityMessage.create(events, agent_id="b97faf0a-0f57-471f-9dab-46a8e1764946")
    validate_with_microsoft_schema(json.loads(encode_message(message)))
