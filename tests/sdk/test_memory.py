from __future__ import annotations

from typing import Any

import pytest

from iotsec.sdk import (
    AuthError,
    MemoryTransport,
    Message,
    Transport,
    TransportError,
    merge_patch,
)


def test_is_a_transport() -> None:
    assert isinstance(MemoryTransport(), Transport)


async def test_records_sent_messages_once_connected() -> None:
    transport = MemoryTransport()
    with pytest.raises(TransportError, match="not connected"):
        await transport.send(Message(b"early"))
    await transport.connect()
    await transport.connect()
    assert transport.connect_count == 1
    await transport.send(Message(b"one", properties={"k": "v"}))
    assert [m.body for m in transport.sent] == [b"one"]
    await transport.close()
    assert not transport.connected


async def test_twin_versions_and_merge_patch_semantics() -> None:
    transport = MemoryTransport(desired={"interval": 60}, reported={"fw": "1.0", "extra": {"a": 1}})
    await transport.connect()
    assert await transport.get_twin() == {
        "desired": {"interval": 60, "$version": 1},
        "reported": {"fw": "1.0", "extra": {"a": 1}, "$version": 1},
    }
    assert await transport.patch_reported({"fw": "1.1", "extra": {"a": None, "b": 2}}) == 2
    assert await transport.patch_reported({"extra": None}) == 3
    assert transport.reported == {"fw": "1.1", "$version": 3}
    twin = await transport.get_twin()
    twin["reported"]["fw"] = "changed by caller"
    assert transport.reported["fw"] == "1.1"  # callers get copies


async def test_pushes_desired_patches_and_messages_to_handlers() -> None:
    transport = MemoryTransport(desired={"interval": 60, "queue": {"high": 10}})
    patches: list[dict[str, Any]] = []
    messages: list[Message] = []

    async def on_desired(patch: dict[str, Any]) -> None:
        patches.append(patch)

    transport.on_desired(on_desired)
    transport.on_message(messages.append)  # a plain function works too
    assert await transport.push_desired({"interval": 30, "queue": {"high": None}}) == 2
    await transport.push_message(Message(b"c2d"))
    assert patches == [{"interval": 30, "queue": {"high": None}, "$version": 2}]
    assert transport.desired == {"interval": 30, "queue": {}, "$version": 2}
    assert [m.body for m in messages] == [b"c2d"]


async def test_fails_the_next_calls_on_request() -> None:
    transport = MemoryTransport()
    await transport.connect()
    transport.fail_next(AuthError("denied"), times=2)
    for _ in range(2):
        with pytest.raises(AuthError):
            await transport.get_twin()
    assert await transport.patch_reported({"a": 1}) == 2
    transport.fail_next(TransportError("reset"))
    with pytest.raises(TransportError):
        await transport.send(Message(b"x"))
    assert not transport.connected  # a network failure drops the link
    assert transport.calls == ["connect", "get_twin", "get_twin", "patch_reported", "send"]
    transport.fail_next(TransportError("refused"))
    with pytest.raises(TransportError, match="refused"):
        await transport.connect()
    await transport.connect()
    assert transport.connected and transport.connect_count == 2
    with pytest.raises(ValueError, match="times"):
        transport.fail_next(AuthError("x"), times=0)


def test_merge_patch_follows_rfc_7386() -> None:
    # Examples from RFC 7386 appendix A.
    assert merge_patch({"a": "b"}, {"a": "c"}) == {"a": "c"}
    assert merge_patch({"a": "b"}, {"b": "c"}) == {"a": "b", "b": "c"}
    assert merge_patch({"a": "b"}, {"a": None}) == {}
    assert merge_patch({"a": "b", "b": "c"}, {"a": None}) == {"b": "c"}
    assert merge_patch({"a": ["b"]}, {"a": "c"}) == {"a": "c"}
    assert merge_patch({"a": "c"}, {"a": ["b"]}) == {"a": ["b"]}
    assert merge_patch({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}) == {"a": {"b": "d"}}
    assert merge_patch({"a": [{"b": "c"}]}, {"a": [1]}) == {"a": [1]}
    assert merge_patch({"e": None}, {"a": 1}) == {"e": None, "a": 1}
    assert merge_patch({"a": "foo"}, {"a": {"bb": {"ccc": None}}}) == {"a": {"bb": {}}}
    target = {"a": {"b": 1}}
    merge_patch(target, {"a": {"b": 2}})
    assert target == {"a": {"b": 1}}  # never mutates its input
