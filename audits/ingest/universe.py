"""The claims universe: the population an audit sample was drawn from (optional input).

Same columns as claims (codes are not needed for extrapolation and are not loaded), with a
`stratum` column where the sample was stratified. Used for extrapolation and sampling.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd

from audits.ingest.readers.base import drop_read, read_raw, reads_named, require_columns
from audits.ingest.readers.wide import file_tables
from audits.ingest.dates import accepted_formats, slash_date_orders
from audits.ingest.expectations import DistinctCheck, Rule, _gx, check_distinct, once, present
from audits.ingest.validation import (accept_rows, date_check, discharge_status_sql, drg_sql, parse_date_sql,
                                      parse_dates_once, whole_number_sql)
from audits.warehouse import drop_relation, quote_ident

UNIVERSE_COLUMNS = ("claim_id", "facility_id", "admit_date", "discharge_date", "discharge_status", "age", "sex",
                    "payer", "coder_id", "service_line", "billed_drg", "stratum")


def _read_as_claims(con: duckdb.DuckDBPyConnection, path: Path) -> str | None:
    """The table this load read `path` into as a wide claims file, if it did: the year's claims
    file often comes again as the universe, and its header columns are read the same way."""
    for table in file_tables(con, "claims"):
        first = con.execute(f"SELECT _source_file FROM {table} LIMIT 1").fetchall()
        if first and Path(first[0][0]).resolve() == Path(path).resolve():
            return table
    return None


def stage_universe(con: duckdb.DuckDBPyConnection, paths: list[Path], date_format: str | None = None,
                   warnings: list | None = None, stage: dict | None = None) -> pd.DataFrame:
    """Read the universe file(s) into `ok_universe` (the stage's universe with `stage`, else a TEMP
    table: `audits.ingest.validation.accept_rows`); return the quarantined rows. Slash dates: see
    `audits.ingest.dates`. `stg_universe` is a view of the files as read (not a copy of millions of
    rows), kept with them until the next load."""
    drop_relation(con, "stg_universe")
    for name in reads_named(con, "raw_universe_"):
        drop_read(con, name)
    selects = []
    for i, path in enumerate(paths):
        raw = _read_as_claims(con, path)
        if raw:
            columns = [r[0] for r in con.execute(f"DESCRIBE {raw}").fetchall()]
        else:
            raw = f"raw_universe_{i}"
            columns = read_raw(con, path, raw, keep=UNIVERSE_COLUMNS)
        require_columns(columns, ("claim_id",), path)
        select = ", ".join(quote_ident(c) if c in columns else f"CAST(NULL AS VARCHAR) AS {c}"
                           for c in UNIVERSE_COLUMNS)
        selects.append(f"SELECT _source_file, _source_row, {select} FROM {raw}")
    if selects:
        con.execute(f"CREATE TEMP VIEW stg_universe AS {' UNION ALL '.join(selects)}")
    else:
        con.execute(f"CREATE TEMP TABLE stg_universe (_source_file VARCHAR, _source_row BIGINT, "
                    f"{', '.join(f'{c} VARCHAR' for c in UNIVERSE_COLUMNS)})")
    orders = slash_date_orders(con, "stg_universe", ["admit_date", "discharge_date"], date_format, warnings)
    e = _gx().expectations
    checks = [
        DistinctCheck("rows", {"claim_id": present("claim_id"), "claim_id_once": once("claim_id", "stg_universe")}, [
            Rule("required_value_missing", "claim_id", "claim_id is required and is blank",
                 lambda: e.ExpectColumnValuesToNotBeNull(column="claim_id")),
            Rule("duplicate_claim_id", "claim_id", "claim_id appears more than once in the universe",
                 lambda: e.ExpectColumnValuesToBeInSet(column="claim_id_once", value_set=[True]))]),
        date_check("discharge_date", accepted_formats(orders),
                   f"discharge_date IS NULL OR {parse_date_sql('discharge_date', orders)} IS NOT NULL"),
    ]
    columns = ["entity", "source_file", "row", "claim_id", "column", "rule", "value", "reason"]
    rejections = check_distinct(con, "stg_universe", checks, """'universe' AS entity, c._source_file AS source_file,
        c._source_row AS "row", c.claim_id, f."column", f.rule,
        CASE f."column" WHEN 'claim_id' THEN c.claim_id ELSE c.discharge_date END AS value, f.reason""",
                                "c._source_file, c._source_row")
    con.register("universe_rejected", rejections[["source_file", "row"]])
    parse_dates_once(con, "stg_universe", ["admit_date", "discharge_date"], orders, "universe_dates")
    accept_rows(con, "universe", f"""
        SELECT s.claim_id, s.facility_id, a.t AS admit_date, d.t AS discharge_date,
               {discharge_status_sql('s.discharge_status')} AS discharge_status,
               {whole_number_sql('s.age')} AS age, upper(s.sex) AS sex, s.payer, s.coder_id, s.service_line,
               {drg_sql('s.billed_drg')} AS billed_drg, s.stratum,
               s._source_file AS source_file, s._source_row AS source_row
        FROM stg_universe s
        LEFT JOIN universe_dates a ON a._source_file = s._source_file AND a.v = s.admit_date
        LEFT JOIN universe_dates d ON d._source_file = s._source_file AND d.v = s.discharge_date
        ANTI JOIN universe_rejected r ON r.source_file = s._source_file AND r."row" = s._source_row""", stage)
    con.unregister("universe_rejected")
    return rejections[columns]
