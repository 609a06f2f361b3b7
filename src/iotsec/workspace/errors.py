"""The workspace's exceptions.

::

    IotsecError
    +-- WorkspaceError               iotsec.workspace: tables, ingest and queries
        +-- StoreError               DuckDB refused a write or could not open the file; has .path
        +-- QueryError               a query was not run or did not finish; has .status
            +-- QueryRefused         read-only SQL guard: names what was refused (.what)
            +-- QueryInvalid         the query does not parse or compile; .line, .column, .render()
            +-- QueryFailed          DuckDB raised while running it (binder, conversion, ...)
            +-- QueryTimeout         the query ran past its timeout and was interrupted
            +-- QueryBusy            too many queries were running; try again

``status`` is the HTTP status the query API answers with.
"""

from __future__ import annotations

from pathlib import Path

from iotsec.errors import IotsecError

__all__ = [
    "QueryBusy",
    "QueryError",
    "QueryFailed",
    "QueryInvalid",
    "QueryRefused",
    "QueryTimeout",
    "StoreError",
    "WorkspaceError",
]


class WorkspaceError(IotsecError):
    """Base class of the workspace's errors."""


class StoreError(WorkspaceError):
    """DuckDB failed to open the workspace file or to write a batch."""

    def __init__(self, message: str, *, path: Path | None = None, table: str | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.table = table


class QueryError(WorkspaceError):
    """A query was refused, failed or did not finish."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def render(self) -> str:
        """The message to show a user (query errors with a span underline it)."""
        return self.message


class QueryRefused(QueryError):
    """The read-only SQL guard refused the query; ``what`` names the statement or function."""

    def __init__(self, what: str, reason: str) -> None:
        super().__init__(f"refused {what}: {reason}")
        self.what = what
        self.reason = reason


class QueryInvalid(QueryError):
    """The query does not parse or compile; ``line`` and ``column`` are 1-based when known."""

    def __init__(
        self,
        message: str,
        *,
        line: int | None = None,
        column: int | None = None,
        rendered: str | None = None,
    ) -> None:
        super().__init__(message)
        self.line = line
        self.column = column
        self._rendered = rendered

    def render(self) -> str:
        """The message with the query line and a caret under the offending span, when known."""
        return self._rendered or self.message


class QueryFailed(QueryError):
    """DuckDB raised while running the query."""


class QueryTimeout(QueryError):
    """The query ran past its timeout and was interrupted."""

    status = 504

    def __init__(self, timeout: float) -> None:
        super().__init__(f"the query ran past its {timeout:g} s timeout and was stopped")
        self.timeout = timeout


class QueryBusy(QueryError):
    """Every query slot stayed taken while the query waited for one."""

    status = 429

    def __init__(self, slots: int) -> None:
        super().__init__(f"{slots} queries are already running; try again shortly")
        self.slots = slots
