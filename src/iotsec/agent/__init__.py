"""The device security agent: collectors, aggregation, the on-device queue and twin config.

``Agent`` (in :mod:`iotsec.agent.runner`) puts them together; ``iotsec agent run`` runs it.
It is imported on first use: collectors import this package, and must not pull in the SDK.
"""

from typing import TYPE_CHECKING, Any

from iotsec.agent.errors import AgentConfigError, AgentError, HostReadError, ParseError, QueueError
from iotsec.agent.hostroot import (
    CommandResult,
    CommandRunner,
    FakeCommands,
    FakeHostRoot,
    HostRoot,
    SubprocessCommands,
)

if TYPE_CHECKING:
    from iotsec.agent.runner import Agent, AgentOptions


def __getattr__(name: str) -> Any:
    if name in ("Agent", "AgentOptions"):
        from iotsec.agent import runner  # noqa: PLC0415

        return getattr(runner, name)
    raise AttributeError(f"module 'iotsec.agent' has no attribute {name!r}")


__all__ = [
    "Agent",
    "AgentConfigError",
    "AgentError",
    "AgentOptions",
    "CommandResult",
    "CommandRunner",
    "FakeCommands",
    "FakeHostRoot",
    "HostReadError",
    "HostRoot",
    "ParseError",
    "QueueError",
    "SubprocessCommands",
]
