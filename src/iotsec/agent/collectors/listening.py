"""ListeningPorts: a snapshot of the TCP sockets in LISTEN and the bound UDP sockets, v4 and v6.

Each row names the owning process in ``ExtraDetails`` (``Pid``, ``Executable``), as the ASC C
agent does, found by matching socket inodes against /proc/<pid>/fd links. Unlike the C agent,
which lists every socket line, only listening and bound sockets are rows (reference
Appendix B.7). IPv4-mapped addresses are shown as IPv4.

>>> LISTENING_PORTS_SPEC.category, LISTENING_PORTS_SPEC.default_priority
('Periodic', 'High')
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import datetime

from iotsec.agent.collectors.base import CollectorSpec
from iotsec.agent.collectors.procfs import (
    ByteOrder,
    SocketEntry,
    display_address,
    list_pids,
    read_process,
    read_sockets,
    socket_owners,
)
from iotsec.agent.hostroot import HostRoot
from iotsec.schema import Event
from iotsec.schema.events import ListeningPortsEvent
from iotsec.schema.payloads import ListeningPorts

__all__ = ["LISTENING_PORTS_SPEC", "ListeningPortsCollector", "listening_ports_collector"]

LISTENING_PORTS_SPEC = CollectorSpec(
    name="ListeningPorts",
    event_type="Security",
    category="Periodic",
    default_priority="High",
    description="TCP sockets in LISTEN and bound UDP sockets, with the owning process.",
)


class ListeningPortsCollector:
    """One ListeningPorts snapshot per collect()."""

    spec = LISTENING_PORTS_SPEC

    def __init__(self, host: HostRoot, *, byteorder: ByteOrder | None = None) -> None:
        self.host = host
        self._byteorder: ByteOrder = byteorder or (
            "big" if host.is_live and sys.byteorder == "big" else "little"
        )

    def collect(self, now: datetime) -> Sequence[Event]:
        sockets = [e for e in read_sockets(self.host, byteorder=self._byteorder) if e.is_listening]
        # Oldest pid first: of the processes sharing a listening socket after fork (nginx,
        # sshd), the parent that opened it is the one to name.
        owners = socket_owners(
            self.host, {e.inode for e in sockets if e.inode}, candidates=list_pids(self.host)
        )
        details: dict[int, dict[str, str]] = {}
        rows = []
        for entry in sorted(sockets, key=_order):
            pid = owners.get(entry.inode)
            if pid is not None and pid not in details:
                details[pid] = self._process_details(pid)
            rows.append(
                ListeningPorts(
                    protocol=entry.protocol.upper(),
                    local_address=display_address(entry.local_address),
                    local_port=str(entry.local_port),
                    remote_address=display_address(entry.remote_address),
                    remote_port="*",
                    extra_details=dict(details[pid]) if pid is not None else {},
                )
            )
        return [ListeningPortsEvent.create(rows, at=now)]

    def close(self) -> None:
        """Nothing to release: each snapshot reads the tables afresh."""

    def _process_details(self, pid: int) -> dict[str, str]:
        found = {"Pid": str(pid)}
        snap = read_process(self.host, pid)
        if snap is not None and snap.exe is not None:
            found["Executable"] = snap.exe
        elif snap is not None:
            found["Comm"] = snap.comm  # the executable is unreadable (another user's, or gone)
        return found


def _order(entry: SocketEntry) -> tuple[str, int, int, str, int]:
    return (
        entry.protocol,
        entry.local_port,
        entry.local_address.version,
        str(entry.local_address),
        entry.inode,
    )


def listening_ports_collector(host: HostRoot) -> ListeningPortsCollector:
    """Registry factory: ListeningPorts from the host's socket tables."""
    return ListeningPortsCollector(host)
