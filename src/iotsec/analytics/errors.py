"""Errors of the analytics pipeline (see ``iotsec.errors`` for the whole tree)::

AnalyticsError
+-- RuleError               a rule file that cannot be used; carries file, line and column
+-- FeedError               a threat-intelligence feed that cannot be configured, read or parsed
                            (feed named; .field names the configuration key at fault)
+-- OutputError             a webhook or syslog destination that failed after its retries
+-- StateError              the analytics state store failed (sqlite3/OSError); carries the path
"""

from __future__ import annotations

from iotsec.errors import IotsecError

__all__ = ["AnalyticsError", "FeedError", "OutputError", "RuleError", "StateError"]


class AnalyticsError(IotsecError):
    """Base class of the analytics pipeline's errors."""


class RuleError(AnalyticsError):
    """A rule that cannot be used: ``source`` (file), ``line`` and ``column`` (1-based) say where.

    ``rule_id`` names the rule when it is known. Loaders may collect several of these instead
    of raising the first (see ``RuleErrors``).
    """

    def __init__(
        self,
        reason: str,
        *,
        source: str = "<rules>",
        line: int | None = None,
        column: int | None = None,
        rule_id: str | None = None,
    ) -> None:
        where = source
        if line is not None:
            where += f":{line}" + (f":{column}" if column is not None else "")
        who = f" (rule {rule_id})" if rule_id else ""
        super().__init__(f"{where}: {reason}{who}")
        self.reason = reason
        self.source = source
        self.line = line
        self.column = column
        self.rule_id = rule_id


class FeedError(AnalyticsError):
    """A threat-intelligence feed that cannot be configured, read or parsed.

    ``field`` names the configuration key at fault (``path``, ``refresh``, ...) when the error
    is about the feed's configuration rather than its data.
    """

    def __init__(self, feed: str, reason: str, *, field: str | None = None) -> None:
        super().__init__(f"feed {feed}: {reason}")
        self.feed = feed
        self.reason = reason
        self.field = field


class OutputError(AnalyticsError):
    """An alert output (webhook, syslog) that failed after its retries."""

    def __init__(self, output: str, reason: str) -> None:
        super().__init__(f"output {output}: {reason}")
        self.output = output
        self.reason = reason


class StateError(AnalyticsError):
    """The analytics state store failed."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"analytics state {path}: {reason}")
        self.path = path
        self.reason = reason
