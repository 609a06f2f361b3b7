"""Rewrite the expected rows of the golden file from the current compiler (review the diff!).

python -m tests.workspace.kql.regen
"""

from __future__ import annotations

from iotsec.workspace.kql import compile_kql
from tests.workspace.kql.conftest import NOW, make_workspace
from tests.workspace.kql.golden import Entry, dump, load, normalize


def run(entry: Entry) -> tuple[list[str], list[list[object]]]:
    compiled = compile_kql(entry.kql, now=NOW)
    con = make_workspace()
    rows = con.execute(compiled.sql).fetchall()
    kinds = [k for _, k in compiled.columns]
    return list(compiled.column_names), [
        [normalize(v, k) for v, k in zip(row, kinds, strict=True)] for row in rows
    ]


def main() -> None:
    entries = []
    for e in load():
        columns, rows = run(e)
        if not e.ordered:
            rows.sort(key=repr)
        entries.append(Entry(e.name, e.ordered, e.kql, columns, rows))
    dump(entries)


if __name__ == "__main__":
    main()
