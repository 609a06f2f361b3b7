"""The console's exceptions.

::

    IotsecError
    +-- ConsoleError                 iotsec.console: the web console
        +-- BackendError             the service API failed or answered what we cannot read
        |   +-- NotFound             no such device or alert (.what, .key)
        |   +-- NotConfigured        the server has no route for this yet (.feature)
        |   +-- ActionRefused        the server refused a change, with its reason (.field)
        |   +-- QueryFailed          a workspace query did not run (.line, .column)
        +-- UserStoreError           the user store refused or failed
            +-- UserInvalid          a bad name, role or password (.field)
            +-- UserExists           the name is taken
            +-- UnknownUser          no such user

Pages turn ``NotFound`` into 404, ``NotConfigured`` into a "not configured" panel, and the rest
into a message on the page; nothing here carries a secret.
"""

from __future__ import annotations

from iotsec.errors import IotsecError

__all__ = [
    "ActionRefused",
    "BackendError",
    "ConsoleError",
    "NotConfigured",
    "NotFound",
    "QueryFailed",
    "UnknownUser",
    "UserExists",
    "UserInvalid",
    "UserStoreError",
]


class ConsoleError(IotsecError):
    """Base class of the console's errors."""


class BackendError(ConsoleError):
    """The service API could not be reached, failed, or answered something unreadable."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class NotFound(BackendError):
    """No such device, alert or event."""

    def __init__(self, what: str, key: str) -> None:
        super().__init__(f"no {what} {key!r}", status=404)
        self.what = what
        self.key = key


class NotConfigured(BackendError):
    """The server offers no route for ``feature`` (yet): the page says so instead of failing."""

    def __init__(self, feature: str) -> None:
        super().__init__(f"{feature} is not configured on this server", status=404)
        self.feature = feature


class ActionRefused(BackendError):
    """The server refused a change (a resolved alert cannot be dismissed, invalid rules, ...).

    ``field`` names the form field at fault when the server said which (a feed's ``path``).
    """

    def __init__(self, message: str, *, status: int | None = None, field: str | None = None):
        super().__init__(message, status=status)
        self.field = field


class QueryFailed(BackendError):
    """A workspace query was refused or failed; ``line``/``column`` point into the query."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        super().__init__(message, status=status)
        self.line = line
        self.column = column


class UserStoreError(ConsoleError):
    """The user store refused an operation or could not be read."""


class UserInvalid(UserStoreError):
    """A user name, role or password that cannot be used; ``field`` names which."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class UserExists(UserStoreError):
    """The user name is taken (names compare without case)."""

    def __init__(self, username: str) -> None:
        super().__init__(f"user {username!r} exists")
        self.username = username


class UnknownUser(UserStoreError):
    """No user has this name."""

    def __init__(self, username: str) -> None:
        super().__init__(f"no user {username!r}")
        self.username = username
