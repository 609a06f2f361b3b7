"""The KQL compiler: tokenizer -> parser -> typed tree -> lowering to DuckDB SQL.

>>> q = compile_kql('SecurityAlert | where AlertSeverity == "High" | count')
>>> q.column_names
('Count',)
"""

from __future__ import annotations

from iotsec.workspace.kql.compiler import CompiledQuery, RenderHint, compile_kql
from iotsec.workspace.kql.errors import KqlError
from iotsec.workspace.kql.format import format_query
from iotsec.workspace.kql.parser import parse

__all__ = ["CompiledQuery", "KqlError", "RenderHint", "compile_kql", "format_query", "parse"]
