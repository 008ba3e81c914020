"""The long layout: a header file (no code columns) beside `*_diagnoses(claim_id, position, code, poa)`
and `*_procedures(claim_id, position, code)` files."""

from __future__ import annotations

from pathlib import Path

import duckdb

from audits.ingest.readers.base import (FileRead, create_staging, drop_read, read_raw, require_columns,
                                        require_rows, required_columns, stage_header)
from audits.ingest.validation import whole_number_sql


def stage(con: duckdb.DuckDBPyConnection, entity: str, headers: list[Path], dx_files: list[Path],
          px_files: list[Path]) -> dict[str, FileRead]:
    create_staging(con, entity)
    reads: dict[str, FileRead] = {}
    for i, path in enumerate(headers):
        raw = f"raw_{entity}_h{i}"
        columns = read_raw(con, path, raw)
        require_rows(con, raw, path)
        require_columns(columns, required_columns(entity), path)
        con.execute(f"INSERT INTO stg_{entity} BY NAME {stage_header(entity, raw, columns)}")
        reads[str(path)] = FileRead(records=con.execute(f"SELECT count(*) FROM {raw}").fetchall()[0][0])
        drop_read(con, raw)
    for kind, files in (("dx", dx_files), ("px", px_files)):
        for i, path in enumerate(files):
            raw = f"raw_{entity}_{kind}{i}"
            columns = read_raw(con, path, raw)
            require_columns(columns, ("claim_id", "position", "code"), path)
            poa = "poa" if (kind == "dx" and "poa" in columns) else "CAST(NULL AS VARCHAR)"
            # An unparseable position is kept as NULL here; validation quarantines it.
            con.execute(f"""
                INSERT INTO stg_{entity}_codes BY NAME
                SELECT claim_id, '{kind}' AS kind, {whole_number_sql('position')} AS position,
                       position AS position_raw,
                       code AS code_raw, {poa} AS poa_raw, _source_file, _source_row,
                       CASE WHEN {whole_number_sql('position')} IS NULL THEN 'position' ELSE 'code' END
                           AS _source_column
                FROM {raw}""")
            drop_read(con, raw)
    return reads
