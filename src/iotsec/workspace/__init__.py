"""The workspace: security tables in DuckDB, batched ingest, and KQL (and read-only SQL)."""

from iotsec.workspace.tables import TABLES, Column, Table

__all__ = ["TABLES", "Column", "Table"]
