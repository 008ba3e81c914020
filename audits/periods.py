"""Derived tables per audit period.

Builders in `audits/` are written against plain table names (`claims`, `reviews`, `claim_codes`, ...)
and create their outputs with CREATE OR REPLACE. To run one for one audit period, the warehouse
tables are exposed as views in an in-memory scratch catalog (reviews and other period tables
filtered to the period), the builder runs there, and its outputs are staged with an
`audit_period` column, replacing that period when the run publishes.

Pattern for every table a step writes (see `audits.staging`): read plain table names (inside a run
they are the warehouse as it will be after this run publishes), write only through
`staging.stage_rows(con, table, select_sql, replaces)` (here: `replaces` = `audit_period = '<period>'`);
the run's last step publishes every staged table in one transaction. Outside a run (tests,
benchmarks) `build_for_period` publishes on its own, in one transaction.
"""

from __future__ import annotations

import datetime as dt
import re
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

import duckdb

from audits.errors import InputError
from audits.staging import direct_publish, stage_rows

SCRATCH = "period_scratch"
# ICD-10-CM/PCS replaced ICD-9 for discharges from 1 October 2015: no audit period before it.
FIRST_AUDIT_PERIOD = "2015-10"


def last_audit_period(today: dt.date | None = None) -> str:
    """The month after today: a run on the last days of a month may prepare the next one."""
    today = today or dt.date.today()
    year, month = (today.year + 1, 1) if today.month == 12 else (today.year, today.month + 1)
    return f"{year:04d}-{month:02d}"


def check_audit_period(period: str, today: dt.date | None = None) -> str:
    """The audit period as given, if it is a month YYYY-MM from 2015-10 to the month after today;
    else an InputError that states the valid range."""
    last = last_audit_period(today)
    valid_range = f"from {FIRST_AUDIT_PERIOD} (the start of ICD-10) to {last}"
    if not _valid_period(str(period)):
        raise InputError(f"audit period must be a month written YYYY-MM, {valid_range}; got {period!r}")
    if not FIRST_AUDIT_PERIOD <= period <= last:
        raise InputError(f"audit period {period} is outside the valid range: {valid_range}")
    return period


def _columns(con: duckdb.DuckDBPyConnection, catalog: str, table: str) -> list[str]:
    return [r[0] for r in con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_catalog = ? AND table_schema = 'main' "
        "AND table_name = ? ORDER BY ordinal_position", [catalog, table]).fetchall()]


@contextmanager
def period_scope(con: duckdb.DuckDBPyConnection, period: str, tables: Sequence[str]) -> Iterator[str]:
    """Inside: `tables` are views of the warehouse, period-filtered where they have an
    audit_period column (claims are never filtered: a review of this period may audit a claim
    loaded in another). Yields the warehouse catalog name."""
    warehouse = con.execute("SELECT current_database()").fetchall()[0][0]
    con.execute(f"ATTACH IF NOT EXISTS ':memory:' AS {SCRATCH}")
    con.execute(f"USE {SCRATCH}")
    try:
        for table in tables:
            columns = _columns(con, warehouse, table)
            if not columns:
                raise RuntimeError(f"table {table} is missing from the warehouse: run the steps before it")
            where = (f" WHERE audit_period = '{period}'"
                     if "audit_period" in columns and table != "claims" else "")
            con.execute(f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM {warehouse}.main.{table}{where}")
        yield warehouse
    finally:
        con.execute(f"USE {warehouse}")
        con.execute(f"DETACH {SCRATCH}")


def build_for_period(con: duckdb.DuckDBPyConnection, period: str, inputs: Sequence[str],
                     outputs: Sequence[str], build: Callable[[duckdb.DuckDBPyConnection], object]) -> dict[str, int]:
    """Run `build(con)` over the period's `inputs`, then stage `outputs` (replacing the period).
    Returns the row count staged per output."""
    if not _valid_period(period):
        raise ValueError(f"audit period must be YYYY-MM, got {period!r}")
    counts: dict[str, int] = {}
    with direct_publish(con), period_scope(con, period, inputs):
        build(con)
        for table in outputs:
            counts[table] = stage_rows(con, table, f"SELECT CAST('{period}' AS VARCHAR) AS audit_period, * "
                                                   f"FROM {table}", f"audit_period = '{period}'")
    return counts


def _valid_period(period: str) -> bool:
    return re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", period) is not None
