"""A run is all or nothing: every step builds aside, one transaction publishes.

Each run has a staging folder `<workdir>/staging/<run_id>/` holding `stage.duckdb` (the run's new
rows of every table), `summary.json` and `reports/`. The pattern every step follows:

- open the warehouse, then `open_stage(con, stage_file)`: the stage is attached as `run_stage` and
  the current catalog becomes `run_view`, where each table name is a view of the warehouse *as it
  will be after this run publishes* (published rows the run replaces left out, its staged rows in).
  Builders, checks, summary and reports read plain table names and see the run's own results.
- write with `stage_rows(con, table, select_sql, replaces)`: `replaces` is the SQL condition on the
  published table of the rows these rows replace (e.g. `audit_period = '2026-11'`). Nothing else
  writes the warehouse during a run.
- the last step, `publish`, deletes and inserts every staged table in one DuckDB transaction (with
  the run's `runs` row), then `move_into_place` renames summary.json and the report folder into the
  working folder. A run killed before the commit leaves the warehouse and files as they were; one
  killed after it is completed by `recover` at the start of the next run.
"""

from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import duckdb

STAGE = "run_stage"
VIEW = "run_view"
# `{warehouse}` in a stored condition is the published catalog's name; `run_stage` the stage's.
_REPLACES_DDL = "seq INTEGER, table_name VARCHAR, replaces VARCHAR"


def staging_root(workdir: Path) -> Path:
    return Path(workdir) / "staging"


def staging_dir(workdir: Path, run_id: str) -> Path:
    return staging_root(workdir) / run_id


def stage_file(workdir: Path, run_id: str) -> Path:
    return staging_dir(workdir, run_id) / "stage.duckdb"


def _catalogs(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {r[0] for r in con.execute("SELECT database_name FROM duckdb_databases()").fetchall()}


def stage_attached(con: duckdb.DuckDBPyConnection) -> bool:
    """A stage is attached on `con`: a run's, or the in-memory one of `direct_publish`."""
    return STAGE in _catalogs(con)


def _tables(con: duckdb.DuckDBPyConnection, catalog: str) -> list[str]:
    return [r[0] for r in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = ? AND schema_name = 'main' "
        "AND table_name NOT LIKE '\\_%' ESCAPE '\\' ORDER BY 1", [catalog]).fetchall()]


def replacements(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    """[(table, condition)] staged so far, in publish order."""
    return [(r[0], r[1]) for r in con.execute(
        f"SELECT table_name, replaces FROM {STAGE}.main._replaces ORDER BY seq").fetchall()]


def attach_stage(con: duckdb.DuckDBPyConnection, path: str | Path) -> None:
    if not stage_attached(con):
        con.execute(f"ATTACH '{str(path).replace(chr(39), chr(39) * 2)}' AS {STAGE}")
    con.execute(f"CREATE TABLE IF NOT EXISTS {STAGE}.main._replaces ({_REPLACES_DDL})")


@contextmanager
def open_stage(con: duckdb.DuckDBPyConnection, path: str | Path) -> Iterator[str]:
    """Attach the run's stage and make `run_view` (the warehouse as after publish) current.
    Yields the warehouse catalog's name."""
    warehouse = con.execute("SELECT current_database()").fetchall()[0][0]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    attach_stage(con, path)
    try:
        refresh_view(con, warehouse)
        yield warehouse
    finally:
        con.execute(f"USE {warehouse}")
        if VIEW in _catalogs(con):
            con.execute(f"DETACH {VIEW}")
        con.execute(f"DETACH {STAGE}")


def refresh_view(con: duckdb.DuckDBPyConnection, warehouse: str) -> None:
    """(Re)build `run_view`: one view per published or staged table."""
    con.execute(f"USE {warehouse}")
    if VIEW in _catalogs(con):
        con.execute(f"DETACH {VIEW}")
    con.execute(f"ATTACH ':memory:' AS {VIEW}")
    staged = dict(replacements(con))
    for table in sorted(set(_tables(con, warehouse)) | set(staged)):
        con.execute(f"CREATE VIEW {VIEW}.main.{table} AS {after_publish_sql(con, warehouse, table, staged)}")
    con.execute(f"USE {VIEW}")


def after_publish_sql(con, warehouse: str, table: str, staged: dict[str, str]) -> str:
    published = table in _tables(con, warehouse)
    if table not in staged:
        return f"SELECT * FROM {warehouse}.main.{table}"
    if not published:
        return f"SELECT * FROM {STAGE}.main.{table}"
    condition = staged[table].format(warehouse=warehouse)
    return (f"SELECT * FROM {warehouse}.main.{table} WHERE ({condition}) IS NOT TRUE "
            f"UNION ALL BY NAME SELECT * FROM {STAGE}.main.{table}")


def stage_rows(con: duckdb.DuckDBPyConnection, table: str, select_sql: str, replaces: str,
               columns_ddl: str | None = None, params: dict | None = None, append: bool = False) -> int:
    """Stage `select_sql`'s rows as the run's `table`, replacing the published rows where `replaces`
    holds (`write_staged`, then `staged_replaces`)."""
    write_staged(con, table, select_sql, columns_ddl, params, append)
    return staged_replaces(con, table, replaces)


def write_staged(con: duckdb.DuckDBPyConnection, table: str, select_sql: str, columns_ddl: str | None = None,
                 params: dict | None = None, append: bool = False) -> None:
    """Write `select_sql`'s rows as the staged `table`. With `columns_ddl` the staged table has
    exactly the warehouse's column types. `append`: add them to the rows the step already wrote
    into the staged `table` (same columns)."""
    if append:
        con.execute(f"INSERT INTO {STAGE}.main.{table} BY NAME {select_sql}", params or {})
    elif columns_ddl:
        con.execute(f"CREATE OR REPLACE TABLE {STAGE}.main.{table} ({columns_ddl})")
        con.execute(f"INSERT INTO {STAGE}.main.{table} BY NAME {select_sql}", params or {})
    else:
        con.execute(f"CREATE OR REPLACE TABLE {STAGE}.main.{table} AS {select_sql}", params or {})


def staged_replaces(con: duckdb.DuckDBPyConnection, table: str, replaces: str) -> int:
    """Record that the rows a step already wrote into the staged `table` replace the published
    rows where `replaces` holds (published after the tables recorded before it); their count."""
    con.execute(f"DELETE FROM {STAGE}.main._replaces WHERE table_name = ?", [table])
    con.execute(f"INSERT INTO {STAGE}.main._replaces SELECT coalesce(max(seq), 0) + 1, ?, ? "
                f"FROM {STAGE}.main._replaces", [table, replaces])
    return int(con.execute(f"SELECT count(*) FROM {STAGE}.main.{table}").fetchall()[0][0])


def publish(con: duckdb.DuckDBPyConnection, warehouse: str | None = None, extra_sql=()) -> dict[str, int]:
    """Replace, in one transaction, the published rows of every staged table by the staged rows.
    `extra_sql`: (sql, params) run in the same transaction (the run's `runs` row)."""
    warehouse = warehouse or con.execute("SELECT current_database()").fetchall()[0][0]
    counts = {}
    con.execute("BEGIN TRANSACTION")
    try:
        for table, condition in replacements(con):
            con.execute(f"CREATE TABLE IF NOT EXISTS {warehouse}.main.{table} AS "
                        f"SELECT * FROM {STAGE}.main.{table} LIMIT 0")
            con.execute(f"DELETE FROM {warehouse}.main.{table} WHERE {condition.format(warehouse=warehouse)}")
            con.execute(f"INSERT INTO {warehouse}.main.{table} BY NAME SELECT * FROM {STAGE}.main.{table}")
            counts[table] = int(con.execute(f"SELECT count(*) FROM {STAGE}.main.{table}").fetchall()[0][0])
        for sql, params in extra_sql:
            con.execute(sql, params)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return counts


@contextmanager
def direct_publish(con: duckdb.DuckDBPyConnection) -> Iterator[bool]:
    """For callers outside a run (tests, benchmarks): stage in memory, publish on leaving.
    Inside a run (stage already attached) it does nothing: the run's publish step will.
    Yields True when it publishes itself."""
    if stage_attached(con):
        yield False
        return
    warehouse = con.execute("SELECT current_database()").fetchall()[0][0]
    attach_stage(con, ":memory:")
    try:
        yield True
        con.execute(f"USE {warehouse}")
        publish(con, warehouse)
    finally:
        con.execute(f"USE {warehouse}")
        con.execute(f"DETACH {STAGE}")


# ------------------------------------------------------------------------------------------ files


def move_into_place(workdir: Path, run_id: str, period: str) -> None:
    """After the commit: staged summary.json and reports/<period>/ replace the published ones, and
    the period's pages become the latest in reports/. Safe to repeat (recovery rolls forward)."""
    workdir, stage = Path(workdir), staging_dir(workdir, run_id)
    summary = stage / "summary.json"
    if summary.exists():
        os.replace(summary, workdir / "summary.json")
    new, target = stage / "reports" / period, workdir / "reports" / period
    if new.is_dir():
        target.parent.mkdir(parents=True, exist_ok=True)
        old = target.parent / f".{period}.replaced-{run_id}"
        if target.exists():
            os.replace(target, old)
        os.replace(new, target)
        shutil.rmtree(old, ignore_errors=True)
    if target.is_dir():
        for path in sorted(target.iterdir()):
            if path.is_file():
                tmp = target.parent / f".{path.name}.{run_id}.tmp"
                shutil.copy2(path, tmp)
                os.replace(tmp, target.parent / path.name)
    shutil.rmtree(stage, ignore_errors=True)


def discard(workdir: Path, run_id: str) -> None:
    shutil.rmtree(staging_dir(workdir, run_id), ignore_errors=True)


def leftover_runs(workdir: Path) -> list[str]:
    root = staging_root(workdir)
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def read_staged_summary(workdir: Path, run_id: str) -> dict:
    path = staging_dir(workdir, run_id) / "summary.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
