"""The device security agent: collectors, aggregation, the on-device queue and twin config."""

from iotsec.agent.errors import AgentConfigError, AgentError, HostReadError, ParseError, QueueError
from iotsec.agent.hostroot import (
    CommandResult,
    CommandRunner,
    FakeCommands,
    FakeHostRoot,
    HostRoot,
    SubprocessCommands,
)

__all__ = [
    "AgentConfigError",
    "AgentError",
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
