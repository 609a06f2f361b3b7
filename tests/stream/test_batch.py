"""Group commit's I/O-free core: which queued items go into one transaction."""

from __future__ import annotations

import asyncio
from collections import deque

from iotsec.stream import Record
from iotsec.stream._writer import _STOP, Append, Commit, Item, take_batch


def _append(records: int, size: int, loop: asyncio.AbstractEventLoop) -> Append:
    record = Record("dev-1", "d2c", b"x" * size, {}, 0.0)
    return Append([record] * records, size * records, loop.create_future())


def _take(items: list[Item], max_records: int = 10, max_bytes: int = 1000) -> list[list[Item]]:
    """Every batch ``take_batch`` makes of ``items``; the stop marker ends them."""
    queued = deque(items)
    batches: list[list[Item]] = []
    carry: Item | None = None
    while queued or carry is not None:
        first = carry if carry is not None else queued.popleft()
        batch, carry = take_batch(
            first, lambda: queued.popleft() if queued else None, max_records, max_bytes
        )
        batches.append(list(batch))
        if carry is _STOP:
            break
    return batches


def test_everything_queued_goes_in_one_batch() -> None:
    loop = asyncio.new_event_loop()
    try:
        items: list[Item] = [_append(1, 10, loop) for _ in range(5)]
        items.append(Commit("analytics", 0, 1, loop.create_future()))
        assert _take(items) == [items]
    finally:
        loop.close()


def test_the_record_cap_splits_between_appends_never_inside_one() -> None:
    loop = asyncio.new_event_loop()
    try:
        a, b, c, big = (_append(4, 1, loop), _append(4, 1, loop), _append(4, 1, loop),
                        _append(25, 1, loop))  # fmt: skip
        assert _take([a, b, c, big, a]) == [[a, b], [c], [big], [a]]
    finally:
        loop.close()


def test_the_byte_cap_splits_batches() -> None:
    loop = asyncio.new_event_loop()
    try:
        items: list[Item] = [_append(1, 400, loop) for _ in range(5)]
        assert _take(items) == [items[:2], items[2:4], items[4:]]
    finally:
        loop.close()


def test_the_stop_marker_ends_the_last_batch() -> None:
    loop = asyncio.new_event_loop()
    try:
        a, b = _append(1, 1, loop), _append(1, 1, loop)
        assert _take([a, b, _STOP]) == [[a, b]]
        assert _take([_STOP]) == [[]]
    finally:
        loop.close()
