"""The web console: server-rendered pages over the service API, with sign-in and roles.

The console imports nothing of the hub, the workspace or analytics. The composition root
(``iotsec.cli``) hands it a ``ConsoleBackend`` (normally ``ServiceApiBackend``, which calls the
server's own service API), a ``UserStore`` (``SqliteUserStore`` in the data dir) and
``ConsoleSettings``, and mounts ``console_routes(...)`` on the server's HTTPS listener.
"""

from iotsec.console.app import build_console_app, console_routes
from iotsec.console.auth import Principal
from iotsec.console.backend import ConsoleBackend
from iotsec.console.errors import (
    ActionRefused,
    BackendError,
    ConsoleError,
    NotConfigured,
    NotFound,
    QueryFailed,
    UnknownUser,
    UserExists,
    UserInvalid,
    UserStoreError,
)
from iotsec.console.memory import AlertChange, MemoryBackend
from iotsec.console.models import (
    Alert,
    AlertDay,
    DeviceDetail,
    DeviceSummary,
    FeedSettings,
    FeedStatus,
    GroupRules,
    QueryColumn,
    QueryTable,
    RawEvent,
    Recommendation,
)
from iotsec.console.service_backend import ServiceApiBackend, ServiceRoutes
from iotsec.console.sessions import load_or_create_secret
from iotsec.console.settings import ConsoleSettings
from iotsec.console.users import ROLES, Role, SqliteUserStore, User, UserStore

__all__ = [
    "ROLES",
    "ActionRefused",
    "Alert",
    "AlertChange",
    "AlertDay",
    "BackendError",
    "ConsoleBackend",
    "ConsoleError",
    "ConsoleSettings",
    "DeviceDetail",
    "DeviceSummary",
    "FeedSettings",
    "FeedStatus",
    "GroupRules",
    "MemoryBackend",
    "NotConfigured",
    "NotFound",
    "Principal",
    "QueryColumn",
    "QueryFailed",
    "QueryTable",
    "RawEvent",
    "Recommendation",
    "Role",
    "ServiceApiBackend",
    "ServiceRoutes",
    "SqliteUserStore",
    "UnknownUser",
    "User",
    "UserExists",
    "UserInvalid",
    "UserStore",
    "UserStoreError",
    "build_console_app",
    "console_routes",
    "load_or_create_secret",
]
