"""The workspace: security tables in DuckDB, batched ingest, and KQL (and read-only SQL).

``WorkspaceStore`` holds the tables; ``LogIngest`` fills them from the durable log;
``Workspace.query_kql`` / ``query_sql`` answer within limits; ``build_query_app`` serves them.
"""

from iotsec.workspace.api import build_query_app
from iotsec.workspace.errors import (
    QueryBusy,
    QueryError,
    QueryFailed,
    QueryInvalid,
    QueryRefused,
    QueryTimeout,
    StoreError,
    WorkspaceError,
)
from iotsec.workspace.ingest import BatchPolicy, LogIngest
from iotsec.workspace.kql import CompiledQuery, KqlError, compile_kql
from iotsec.workspace.query import QueryLimits, QueryResult, Workspace
from iotsec.workspace.retention import RetentionPolicy, apply_retention, run_retention
from iotsec.workspace.rows import HubIdentity, RowBuilder
from iotsec.workspace.sinks import AlertRow, AlertSink, RecommendationRow, RecommendationSink
from iotsec.workspace.store import WorkspaceStore
from iotsec.workspace.tables import TABLES, Column, Table

__all__ = [
    "TABLES",
    "AlertRow",
    "AlertSink",
    "BatchPolicy",
    "Column",
    "CompiledQuery",
    "HubIdentity",
    "KqlError",
    "LogIngest",
    "QueryBusy",
    "QueryError",
    "QueryFailed",
    "QueryInvalid",
    "QueryLimits",
    "QueryRefused",
    "QueryResult",
    "QueryTimeout",
    "RecommendationRow",
    "RecommendationSink",
    "RetentionPolicy",
    "RowBuilder",
    "StoreError",
    "Table",
    "Workspace",
    "WorkspaceError",
    "WorkspaceStore",
    "apply_retention",
    "build_query_app",
    "compile_kql",
    "run_retention",
]
