"""Split an input file into the security messages it holds.

A file may hold one message, a JSON array of messages, or JSON lines (one message per line).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import msgspec

__all__ = ["Document", "iter_documents"]


@dataclass(frozen=True, slots=True)
class Document:
    """One message's raw bytes and where it came from (``[3]`` or ``line 4``)."""

    where: str
    raw: bytes


_raw_decoder = msgspec.json.Decoder(msgspec.Raw)
_array_decoder = msgspec.json.Decoder(list[msgspec.Raw])


def iter_documents(data: bytes) -> Iterator[Document]:
    """Yield each message in ``data``; text that is not JSON at all comes out as one document."""
    stripped = data.strip()
    if stripped.startswith(b"["):
        try:
            items = _array_decoder.decode(stripped)
        except msgspec.DecodeError:
            pass
        else:
            for index, item in enumerate(items):
                yield Document(f"[{index}]", bytes(item))
            return
    try:
        _raw_decoder.decode(stripped)
    except msgspec.DecodeError:
        lines = [(n, line) for n, line in enumerate(data.splitlines(), 1) if line.strip()]
        if len(lines) > 1:
            for number, line in lines:
                yield Document(f"line {number}", line.strip())
            return
    yield Document("", stripped)
