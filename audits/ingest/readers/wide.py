"""The canonical wide layout: one row per claim (or review) with dx1..dx25, poa1..poa25, px1..px25.

`stg_<entity>` is a view of the files' header columns, not a copy (a copy was 0.4 s a million
claims, and past DuckDB's memory limit more to spill); it numbers its rows in `_staged_order`
and says in `_has_principal_dx` whether the row's own dx1 holds a code (the principal diagnosis
rule reads it instead of looking each claim up among every code row: 4 s at 9M claims).
`stg_<entity>_codes` is a view that unpivots the file's table, not a copy: validation writes the
code rows (about 8 per claim) once, normalised (each copy of them was seconds of a 1M-claim load
and, past DuckDB's memory limit, most of its spilling). The file's tables (`wide_<entity>_<i>`)
live until the next load of the entity on the connection (a large file's, in the scratch database
of `audits.ingest.readers.base.read_raw`, until the end of its load).

The code columns are read untrimmed. `stg_<entity>_code_keys` is a second view, of the code rows
already normalised (`audits.codes`), which validation writes instead of normalising the rows of
`stg_<entity>_codes`: normalised column by column before the unpivot, the codes cost a third of
the time (an expression over a table's column is cheap; over the unpivot's rows it is not).
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from audits.codes import normalise_code_sql, normalise_poa_sql
from audits.contract import CODE_COLUMNS, MAX_POSITIONS
from audits.ingest.readers.base import (FileRead, create_staging, drop_read, read_raw, reads_named,
                                        require_columns, require_rows, required_columns, stage_header)
from audits.ingest.validation import ROW_DISCHARGE_DATE
from audits.warehouse import drop_relation, quote_ident


# `_staged_order` of the header rows: file i's row r is i * FILE_ORDER_STEP + r (the order a table
# of the files, staged one after the other, would give them).
FILE_ORDER_STEP = 1 << 40


def file_tables(con: duckdb.DuckDBPyConnection, entity: str) -> list[str]:
    """The files of `entity` read in the wide layout, as `read_raw` left them."""
    return reads_named(con, f"wide_{entity}_")


def drop_file_tables(con: duckdb.DuckDBPyConnection, entity: str) -> None:
    """Drop a previous load's file tables: every load starts with none, whatever its layout (the
    universe reuses a claims file's table only when this load read it)."""
    for name in file_tables(con, entity):
        drop_read(con, name)


def stage(con: duckdb.DuckDBPyConnection, entity: str, paths: list[Path]) -> dict[str, FileRead]:
    create_staging(con, entity)
    drop_file_tables(con, entity)
    reads: dict[str, FileRead] = {}
    headers, branches, keys = [], [], []
    for i, path in enumerate(paths):
        raw = f"wide_{entity}_{i}"
        columns = read_raw(con, path, raw, untrimmed=CODE_COLUMNS)
        require_rows(con, raw, path)
        require_columns(columns, required_columns(entity) + ("dx1",), path,
                        hint="" if "dx1" in columns else
                        " (wide layout; for the long layout give the diagnoses file too)")
        headers.append(stage_header(entity, raw, columns, CODE_COLUMNS, also=(
            f"{i} * {FILE_ORDER_STEP} + _source_row AS _staged_order",
            f"{normalise_code_sql(quote_ident('dx1'))} IS NOT NULL AS _has_principal_dx")))
        branches.append(_unpivot_codes(entity, raw, columns))
        keys.append(_normalised_codes(entity, raw, columns, [str(p) for p in paths]))
        reads[str(path)] = FileRead(records=con.execute(f"SELECT count(*) FROM {raw}").fetchall()[0][0])
    if branches:  # else the empty tables create_staging made
        drop_relation(con, f"stg_{entity}")
        con.execute(f"CREATE TEMP VIEW stg_{entity} AS {' UNION ALL '.join(headers)}")
        drop_relation(con, f"stg_{entity}_codes")
        con.execute(f"CREATE TEMP VIEW stg_{entity}_codes AS {' UNION ALL '.join(branches)}")
        con.execute(f"CREATE TEMP VIEW stg_{entity}_code_keys AS {' UNION ALL '.join(keys)}")
    return reads


def _row_date(entity: str) -> str:
    """The code rows of a claims file carry their row's raw discharge date (none without a claim_id)."""
    return (f", CASE WHEN claim_id IS NOT NULL THEN discharge_date END AS {ROW_DISCHARGE_DATE}"
            if entity == "claims" else "")


def _normalised_codes(entity: str, raw: str, columns: list[str], files: list[str]) -> str:
    """The rows of `stg_<entity>_codes` whose normalised code is present, with the columns
    validation keeps of them (`<entity>_code_keys`): dx and POA normalised per column, then
    unpivoted keeping blanks (a code without a POA is a row) and dropping the absent codes.
    The file is an ENUM of the entity's `files` (one byte a row, where the path took ~30: a third
    of the code rows' memory, spilled and read back at every pass over 70M rows at 9M claims)."""
    def value(name: str, normalise) -> str:
        return normalise(quote_ident(name)) if name in columns else "CAST(NULL AS VARCHAR)"

    enum = "ENUM(" + ", ".join("'" + f.replace("'", "''") + "'" for f in dict.fromkeys(files)) + ")"
    positions = range(1, MAX_POSITIONS + 1)
    date = f", {ROW_DISCHARGE_DATE}" if entity == "claims" else ""
    dx = ", ".join(f"{value(f'dx{p}', normalise_code_sql)} AS c{p}, {value(f'poa{p}', normalise_poa_sql)} AS p{p}"
                   for p in positions)
    px = ", ".join(f"{value(f'px{p}', normalise_code_sql)} AS c{p}" for p in positions)
    return f"""
        SELECT claim_id, 'dx' AS kind, CAST(position AS INTEGER) AS position_t, code, poa, _source_file{date}
        FROM (SELECT claim_id, CAST(_source_file AS {enum}) AS _source_file{_row_date(entity)}, {dx} FROM {raw})
             UNPIVOT INCLUDE NULLS ((code, poa) FOR position IN ({", ".join(f'(c{p}, p{p}) AS "{p}"' for p in positions)}))
        WHERE code IS NOT NULL
        UNION ALL
        SELECT claim_id, 'px' AS kind, CAST(position AS INTEGER) AS position_t, code, CAST(NULL AS VARCHAR) AS poa,
               _source_file{date}
        FROM (SELECT claim_id, CAST(_source_file AS {enum}) AS _source_file{_row_date(entity)}, {px} FROM {raw})
             UNPIVOT (code FOR position IN ({", ".join(f'c{p} AS "{p}"' for p in positions)}))"""


def _unpivot_codes(entity: str, raw: str, columns: list[str]) -> str:
    """dx1..dx25 / px1..px25 to one row per present code (set-based, one scan)."""
    def col(name: str) -> str:  # as every other column is read: trimmed, blank is NULL
        return f"nullif(trim({quote_ident(name)}), '')" if name in columns else "CAST(NULL AS VARCHAR)"

    date = _row_date(entity)
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
