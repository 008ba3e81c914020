"""The canonical wide layout: one row per claim (or review) with dx1..dx25, poa1..poa25, px1..px25.

`stg_<entity>_codes` is a view that unpivots the file's table, not a copy: validation writes the
code rows (about 8 per claim) once, normalised (each copy of them was seconds of a 1M-claim load
and, past DuckDB's memory limit, most of its spilling). The file's tables (`wide_<entity>_<i>`)
live until the next load of the entity on the connection.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from audits.contract import CODE_COLUMNS, MAX_POSITIONS
from audits.ingest.readers.base import (FileRead, create_staging, read_raw, require_columns,
                                        require_rows, required_columns, stage_header)
from audits.ingest.validation import ROW_DISCHARGE_DATE
from audits.warehouse import drop_relation, quote_ident


def stage(con: duckdb.DuckDBPyConnection, entity: str, paths: list[Path]) -> dict[str, FileRead]:
    create_staging(con, entity)
    for (name,) in con.execute("SELECT table_name FROM duckdb_tables() WHERE temporary AND "
                               "starts_with(table_name, ?)", [f"wide_{entity}_"]).fetchall():
        con.execute(f"DROP TABLE {name}")  # a previous load's files
    reads: dict[str, FileRead] = {}
    branches = []
    for i, path in enumerate(paths):
        raw = f"wide_{entity}_{i}"
        columns = read_raw(con, path, raw)
        require_rows(con, raw, path)
        require_columns(columns, required_columns(entity) + ("dx1",), path,
                        hint="" if "dx1" in columns else
                        " (wide layout; for the long layout give the diagnoses file too)")
        con.execute(f"INSERT INTO stg_{entity} BY NAME {stage_header(entity, raw, columns, CODE_COLUMNS)}")
        branches.append(_unpivot_codes(entity, raw, columns))
        reads[str(path)] = FileRead(records=con.execute(f"SELECT count(*) FROM {raw}").fetchall()[0][0])
    if branches:  # else the empty table create_staging made
        drop_relation(con, f"stg_{entity}_codes")
        con.execute(f"CREATE TEMP VIEW stg_{entity}_codes AS {' UNION ALL '.join(branches)}")
    return reads


def _unpivot_codes(entity: str, raw: str, columns: list[str]) -> str:
    """dx1..dx25 / px1..px25 to one row per present code (set-based, one scan)."""
    def col(name: str) -> str:
        return quote_ident(name) if name in columns else "CAST(NULL AS VARCHAR)"

    date = (f", CASE WHEN claim_id IS NOT NULL THEN discharge_date END AS {ROW_DISCHARGE_DATE}"
            if entity == "claims" else "")
    selects = []
    for kind in ("dx", "px"):
        codes = ", ".join(col(f"{kind}{p}") for p in range(1, MAX_POSITIONS + 1))
        poas = ", ".join(col(f"poa{p}") if kind == "dx" else "CAST(NULL AS VARCHAR)"
                         for p in range(1, MAX_POSITIONS + 1))
        selects.append(f"""
            SELECT claim_id, '{kind}' AS kind, position, CAST(position AS VARCHAR) AS position_raw,
                   code_raw, poa_raw, _source_file, _source_row, '{kind}' || position AS _source_column{date}
            FROM (SELECT claim_id, _source_file, _source_row{", discharge_date" if date else ""},
                         unnest(range(1, {MAX_POSITIONS + 1})) AS position,
                         unnest([{codes}]) AS code_raw, unnest([{poas}]) AS poa_raw
                  FROM {raw})
            WHERE code_raw IS NOT NULL OR poa_raw IS NOT NULL""")
    return " UNION ALL ".join(selects)
