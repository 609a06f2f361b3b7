"""``ConsoleSettings``: the console's configuration, read once at the edge and passed down."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["ConsoleSettings"]


@dataclass(frozen=True, slots=True)
class ConsoleSettings:
    """How the console signs sessions, whom it lets in, and where it is mounted.

    ``owner_key`` is the ``SharedAccessKey`` of the ``iothubowner`` policy, or a callable that
    reads it when needed: whoever holds it signs in as ``owner`` with the admin role (None, or
    a callable answering None, turns that sign-in off).
    """

    secret: bytes = field(repr=False)
    owner_key: str | Callable[[], str | None] | None = field(default=None, repr=False)
    #: Where the console is mounted on the server (``console_routes`` mounts it there).
    path: str = "/console"
    #: Seconds a sign-in lasts.
    session_ttl: float = 8 * 3600.0
    #: Send cookies only over HTTPS (``__Host-`` prefix); off only for plain-HTTP tests.
    secure_cookies: bool = True
    #: Failed sign-ins an address may make per ``login_window`` seconds before it must wait.
    login_attempts: int = 5
    login_window: float = 300.0
    #: Most rows the query page shows.
    max_query_rows: int = 1000
    #: Days the overview's alert chart covers.
    timeline_days: int = 14
    #: Shown in page titles.
    hub_name: str = "iotsec"

    def __post_init__(self) -> None:
        if len(self.secret) < 16:
            raise ValueError("ConsoleSettings.secret must have at least 16 bytes")
        if not self.path.startswith("/") or self.path.endswith("/") or self.path == "/":
            raise ValueError(f"ConsoleSettings.path must look like /console, not {self.path!r}")
        if self.login_attempts < 1 or self.login_window <= 0 or self.session_ttl <= 0:
            raise ValueError("login_attempts, login_window and session_ttl must be positive")

    @property
    def cookie_name(self) -> str:
        """``__Host-`` binds the cookie to this host and path ``/``, and needs Secure."""
        return "__Host-iotsec-console" if self.secure_cookies else "iotsec-console"
