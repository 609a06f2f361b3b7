"""Records and entries are valid frozen values; a key's partition never changes."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from iotsec.stream import Entry, InvalidRequest, Record, RecordInvalid, partition_for


def test_headers_are_sorted_pairs_so_order_does_not_matter() -> None:
    a = Record("dev-1", "d2c", b"x", {"b": "2", "a": "1"}, 1.0)
    b = Record("dev-1", "d2c", b"x", [("a", "1"), ("b", "2")], 1.0)
    assert a.headers == (("a", "1"), ("b", "2"))
    assert a == b
    assert hash(a) == hash(b)
    assert a.header("b") == "2"
    assert a.header("missing") is None
    assert a.header("missing", "-") == "-"


def test_records_and_entries_are_frozen() -> None:
    entry = Entry(0, 0, Record("dev-1", "d2c", b"x", {}, 1))
    assert entry.record.timestamp == 1.0
    assert isinstance(entry.record.timestamp, float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.record.key = "dev-2"  # type: ignore[misc]  # the assignment is what is under test
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.offset = 3  # type: ignore[misc]  # the assignment is what is under test


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"key": ""}, "key"),
        ({"kind": ""}, "kind"),
        ({"body": "text"}, "body"),
        ({"body": bytearray(b"x")}, "body"),
        ({"headers": {"a": 1}}, "headers"),
        ({"headers": [("a", "1"), ("a", "2")]}, "headers"),
        ({"headers": [("a",)]}, "headers"),
        ({"timestamp": float("nan")}, "timestamp"),
        ({"timestamp": "now"}, "timestamp"),
        ({"timestamp": True}, "timestamp"),
    ],
)
def test_invalid_records_are_refused_with_the_field(kwargs: dict[str, object], field: str) -> None:
    values: dict[str, object] = {
        "key": "dev-1",
        "kind": "d2c",
        "body": b"x",
        "headers": {},
        "timestamp": 1.0,
    }
    with pytest.raises(RecordInvalid) as caught:
        Record(**{**values, **kwargs})  # type: ignore[arg-type]  # invalid on purpose
    assert caught.value.field == field
    assert field in str(caught.value)


def test_partition_for_is_crc32_and_fixed() -> None:
    # Fixed values: changing the function would move every device to another partition.
    assert partition_for("dev-1", 8) == 6
    assert partition_for("dev-1", 4) == 2
    assert partition_for("thermostat-0042", 8) == 4
    assert partition_for("$hub", 16) == 10
    assert partition_for("dev-1", 1) == 0


def test_partition_for_is_the_same_in_another_process() -> None:
    keys = [f"device-{i}" for i in range(50)]
    code = (
        "import sys; from iotsec.stream import partition_for;"
        "print([partition_for(k, 8) for k in sys.argv[1:]])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *keys], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == str([partition_for(k, 8) for k in keys])
    assert len(set(partition_for(k, 8) for k in keys)) == 8  # and it spreads keys


def test_partition_count_must_be_positive() -> None:
    with pytest.raises(InvalidRequest):
        partition_for("dev-1", 0)
