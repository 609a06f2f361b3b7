"""The ``feeds:`` section of ``analytics.yaml``, changed one feed at a time.

Every change reads the file, replaces (or removes) one entry of ``feeds:`` and writes the whole
document back atomically (a temporary file in the same directory, then ``os.replace``), so a
crash leaves the old file or the new one, never half of one. The other sections (``rules``,
``outputs``) are written back as they were read; comments are not kept.

A TAXII password given through the service API is not written into ``analytics.yaml``: it goes
to a file of its own under ``intel-secrets/`` in the data dir (mode 0600), which the entry names
as its ``password_file``.

>>> import tempfile
>>> folder = Path(tempfile.mkdtemp())
>>> _ = (folder / "analytics.yaml").write_text("rules: [extra.yaml]\\n")
>>> feeds = FeedFile(folder / "analytics.yaml")
>>> feeds.put({"name": "lab", "kind": "list-file", "path": "lab.txt"})
True
>>> print((folder / "analytics.yaml").read_text(), end="")
rules:
- extra.yaml
feeds:
- name: lab
  kind: list-file
  path: lab.txt
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from iotsec.cli.service_client import CliError

__all__ = ["SECRETS_DIR", "FeedFile"]

#: Where passwords given through the API are kept, relative to the data dir.
SECRETS_DIR = "intel-secrets"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class FeedFile:
    """``analytics.yaml``'s feed entries: read them, put one, delete one.

    Raises:
        CliError: the file cannot be read, is not a mapping, its ``feeds`` is not a list, or it
            cannot be written (the file is named; nothing is changed).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.base = path.parent

    def read(self) -> dict[str, Any]:
        """The whole document (an empty one when the file does not exist)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise CliError(f"{self.path}: cannot read: {exc.strerror or exc}") from exc
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            # Not str(exc): PyYAML quotes the offending line, which may hold a secret.
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or "a syntax error"
            raise CliError(f"{self.path}: not valid YAML{where}: {problem}") from exc
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise CliError(f"{self.path}: expected a mapping with rules, feeds and outputs")
        if not isinstance(data.get("feeds") or [], list):
            raise CliError(f"{self.path}: feeds must be a list of feeds")
        return data

    def entries(self) -> list[dict[str, Any]]:
        """The feed entries as written (mappings only)."""
        return [e for e in self.read().get("feeds") or [] if isinstance(e, dict)]

    def entry(self, name: str) -> dict[str, Any] | None:
        """The entry of feed ``name``, as written; None when the file has none."""
        return next((e for e in self.entries() if e.get("name") == name), None)

    def put(self, entry: Mapping[str, Any]) -> bool:
        """Replace the entry of ``entry["name"]`` (in place), or append it; True when new."""
        document = self.read()
        feeds = list(document.get("feeds") or [])
        name = entry["name"]
        found = [i for i, e in enumerate(feeds) if isinstance(e, dict) and e.get("name") == name]
        if found:
            feeds[found[0]] = dict(entry)
            for i in reversed(found[1:]):  # a hand-made duplicate would shadow the change
                del feeds[i]
        else:
            feeds.append(dict(entry))
        document["feeds"] = feeds
        self._write(document)
        return not found

    def delete(self, name: str) -> dict[str, Any] | None:
        """Remove the entry of feed ``name``; the removed entry, or None when there was none."""
        document = self.read()
        feeds = list(document.get("feeds") or [])
        kept = [e for e in feeds if not (isinstance(e, dict) and e.get("name") == name)]
        if len(kept) == len(feeds):
            return None
        removed = next(e for e in feeds if isinstance(e, dict) and e.get("name") == name)
        document["feeds"] = kept
        self._write(document)
        return dict(removed)

    def secret_path(self, name: str) -> str:
        """Where the API keeps feed ``name``'s password, relative to the data dir."""
        digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:12]
        slug = _UNSAFE.sub("_", name)[:48]
        return f"{SECRETS_DIR}/{slug}-{digest}.pass"

    def write_secret(self, name: str, password: str) -> str:
        """Keep ``password`` in a file of mode 0600; its path relative to the data dir."""
        relative = self.secret_path(name)
        target = self.base / relative
        try:
            target.parent.mkdir(mode=0o700, exist_ok=True)
            _atomic_write(target, password.encode("utf-8") + b"\n", mode=0o600)
        except OSError as exc:
            raise CliError(f"{target}: cannot write: {exc.strerror or exc}") from exc
        return relative

    def forget_secret(self, entry: Mapping[str, Any] | None) -> None:
        """Delete the password file the API made for ``entry``, if it names one."""
        if entry is None:
            return
        secret = entry.get("password_file")
        if secret == self.secret_path(str(entry.get("name"))):
            with contextlib.suppress(FileNotFoundError):
                (self.base / str(secret)).unlink()

    def _write(self, document: Mapping[str, Any]) -> None:
        text = yaml.safe_dump(
            dict(document), sort_keys=False, default_flow_style=False, allow_unicode=True
        )
        try:
            mode = self.path.stat().st_mode & 0o777
        except FileNotFoundError:
            mode = 0o600
        try:
            _atomic_write(self.path, text.encode("utf-8"), mode=mode)
        except OSError as exc:
            raise CliError(f"{self.path}: cannot write: {exc.strerror or exc}") from exc


def _atomic_write(path: Path, data: bytes, *, mode: int) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path``."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            os.fchmod(out.fileno(), mode)
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
