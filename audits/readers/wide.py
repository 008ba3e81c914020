"""The canonical wide layout: one row per claim (or review) with dx1..dx25, poa1..poa25, px1..px25."""

from __future__ import annotations

from pathlib import Path

import duckdb

from audits.contract import (CLAIM_HEADER_COLUMNS, CLAIM_REQUIRED, CODE_COLUMNS, MAX_POSITIONS,
                             REVIEW_HEADER_COLUMNS, REVIEW_REQUIRED)
from audits.readers.base import _quote_ident, read_raw, require_columns, require_rows


def header_columns(entity: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if entity == "claims":
        return CLAIM_HEADER_COLUMNS, CLAIM_REQUIRED
    return REVIEW_HEADER_COLUMNS, REVIEW_REQUIRED


def stage_header(con: duckdb.DuckDBPyConnection, entity: str, raw: str, columns: list[str],
                 code_columns: tuple[str, ...] = ()) -> str:
    """SELECT of the contract's header columns (missing optional ones as NULL) + extra_columns JSON."""
    known, _ = header_columns(entity)
    parts = ["_source_file", "_source_row"]
    for name in known:
        parts.append(_quote_ident(name) if name in columns else f"CAST(NULL AS VARCHAR) AS {name}")
    extras = [c for c in columns if c not in known and c not in code_columns
              and c not in ("_source_file", "_source_row")]
    if extras:
        pairs = ", ".join(f"'{c.replace(chr(39), chr(39) * 2)}', {_quote_ident(c)}" for c in extras)
        parts.append(f"CAST(json_object({pairs}) AS JSON) AS extra_columns")
    else:
        parts.append("CAST(NULL AS JSON) AS extra_columns")
    return f"SELECT {', '.join(parts)} FROM {raw}"


def stage(con: duckdb.DuckDBPyConnection, entity: str, paths: list[Path]) -> None:
    known, required = header_columns(entity)
    con.execute(f"DROP TABLE IF EXISTS stg_{entity}")
    con.execute(f"DROP TABLE IF EXISTS stg_{entity}_codes")
    for i, path in enumerate(paths):
        raw = f"raw_{entity}_{i}"
        columns = read_raw(con, path, raw)
        require_rows(con, raw, path)
        require_columns(columns, required + ("dx1",), path,
                        hint="" if "dx1" in columns else
                        " (wide layout; for the long layout give the diagnoses file too)")
        header_sql = stage_header(con, entity, raw, columns, CODE_COLUMNS)
        code_sql = _unpivot_codes(raw, columns)
        if i == 0:
            con.execute(f"CREATE TEMP TABLE stg_{entity} AS {header_sql}")
            con.execute(f"CREATE TEMP TABLE stg_{entity}_codes AS {code_sql}")
        else:
            con.execute(f"INSERT INTO stg_{entity} BY NAME {header_sql}")
            con.execute(f"INSERT INTO stg_{entity}_codes BY NAME {code_sql}")
        con.execute(f"DROP TABLE {raw}")
    if not paths:
        _create_empty(con, entity)


def _create_empty(con: duckdb.DuckDBPyConnection, entity: str) -> None:
    known, _ = header_columns(entity)
    cols = ", ".join(f"{c} VARCHAR" for c in known)
    con.execute(f"CREATE TEMP TABLE stg_{entity} (_source_file VARCHAR, _source_row BIGINT, {cols}, "
                "extra_columns JSON)")
    con.execute(f"CREATE TEMP TABLE stg_{entity}_codes (claim_id VARCHAR, kind VARCHAR, position INTEGER, "
                "position_raw VARCHAR, "
                "code_raw VARCHAR, poa_raw VARCHAR, _source_file VARCHAR, _source_row BIGINT, "
                "_source_column VARCHAR)")


def _unpivot_codes(raw: str, columns: list[str]) -> str:
    """dx1..dx25 / px1..px25 to one row per present code (set-based, one scan)."""
    def col(name: str) -> str:
        return _quote_ident(name) if name in columns else "CAST(NULL AS VARCHAR)"

    selects = []
    for kind in ("dx", "px"):
        codes = ", ".join(col(f"{kind}{p}") for p in range(1, MAX_POSITIONS + 1))
        poas = ", ".join(col(f"poa{p}") if kind == "dx" else "CAST(NULL AS VARCHAR)"
                         for p in range(1, MAX_POSITIONS + 1))
        selects.append(f"""
            SELECT claim_id, '{kind}' AS kind, position, CAST(position AS VARCHAR) AS position_raw,
                   code_raw, poa_raw, _source_file, _source_row,
                   '{kind}' || position AS _source_column
            FROM (SELECT claim_id, _source_file, _source_row,
                         unnest(range(1, {MAX_POSITIONS + 1})) AS position,
                         unnest([{codes}]) AS code_raw, unnest([{poas}]) AS poa_raw
                  FROM {raw})
            WHERE code_raw IS NOT NULL OR poa_raw IS NOT NULL""")
    return " UNION ALL ".join(selects)
