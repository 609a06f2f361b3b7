"""The agent's state directory: its queue, its id, and the last twin configuration it used.

Everything the agent must remember across a restart or a reboot lives here (default
``/var/lib/iotsec-agent``, mode 0700):

- ``queue.db``: the durable queue (:mod:`iotsec.agent.queue`);
- ``agent-id``: the AgentId put in every message, made once and kept, so the hub sees one
  agent across restarts;
- ``twin-desired.json``: the desired configuration section last received from the twin, so
  an agent that restarts while the hub is unreachable keeps the configuration it was given.

Files are replaced atomically (write, fsync, rename), so a power cut leaves the old or the
new content, never half of one.

>>> import tempfile
>>> with tempfile.TemporaryDirectory() as tmp:
...     state = StateDir.open(Path(tmp, "state"))
...     first = state.agent_id()
...     state.save_desired({"snapshotFrequency": {"value": "PT1H"}}, version=3)
...     first == StateDir.open(Path(tmp, "state")).agent_id(), state.load_desired()
(True, ({'snapshotFrequency': {'value': 'PT1H'}}, 3))
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

from iotsec.agent.errors import AgentConfigError

__all__ = ["StateDir"]

_AGENT_ID = "agent-id"
_DESIRED = "twin-desired.json"
_QUEUE = "queue.db"


class StateDir:
    """The agent's state directory (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> StateDir:
        """The state directory at ``path``, created (mode 0700) if missing.

        Raises:
            AgentConfigError: it cannot be created, or is not a writable directory.
        """
        where = Path(path)
        try:
            where.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            reason = f"cannot create the state dir: {_why(exc)}"
            raise AgentConfigError(str(where), reason) from None
        if not where.is_dir() or not os.access(where, os.W_OK | os.X_OK):
            raise AgentConfigError(str(where), "the state dir is not a writable directory")
        return cls(where)

    @property
    def queue_path(self) -> Path:
        """The durable queue's SQLite file."""
        return self.path / _QUEUE

    def agent_id(self, configured: str | None = None) -> str:
        """The agent's id: ``configured`` if given, else the one kept here (made on first use).

        Raises:
            AgentConfigError: the id file cannot be read or written, or holds no GUID.
        """
        if configured is not None:
            return configured
        target = self.path / _AGENT_ID
        try:
            text = target.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            made = str(uuid.uuid4())
            self._write(target, made + "\n")
            return made
        except (OSError, UnicodeDecodeError) as exc:
            raise AgentConfigError(str(target), f"cannot read the agent id: {exc}") from None
        try:
            return str(uuid.UUID(text))
        except ValueError:
            raise AgentConfigError(str(target), f"expected a GUID, got {text[:40]!r}") from None

    def load_desired(self) -> tuple[Any, int | None] | None:
        """The desired section and twin version saved last, or None when nothing was saved.

        Raises:
            AgentConfigError: the file exists but cannot be read or is not what we wrote.
        """
        target = self.path / _DESIRED
        try:
            data = json.loads(target.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise AgentConfigError(str(target), f"cannot read: {exc}") from None
        if not isinstance(data, dict) or "desired" not in data:
            raise AgentConfigError(str(target), "expected an object with 'desired'")
        version = data.get("version")
        return data["desired"], version if isinstance(version, int) else None

    def save_desired(self, section: Any, *, version: int | None) -> None:
        """Keep ``section`` (the twin's desired configuration object) for the next start.

        Raises:
            AgentConfigError: the file cannot be written.
        """
        body = json.dumps({"version": version, "desired": section}, separators=(",", ":"))
        self._write(self.path / _DESIRED, body)

    def _write(self, target: Path, text: str) -> None:
        temporary = target.with_name(target.name + ".tmp")
        try:
            with open(temporary, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, target)
        except OSError as exc:
            raise AgentConfigError(str(target), f"cannot write: {_why(exc)}") from None


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)
