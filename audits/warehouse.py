"""The DuckDB warehouse: schema of the published tables and the connection settings.

claim_id is unique in `claims` and `reviews` by construction (a load deletes what it replaces
before inserting, in one transaction) and checked by an asset check; no PRIMARY KEY, because
DuckDB checks keys eagerly inside a delete-then-insert transaction.

One file; every writer opens it, works, and closes it (DuckDB allows one writer per file).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

import duckdb

# DuckDB takes up to 80% of RAM by default; a cap makes large loads spill to disk instead, which
# keeps a 1M-claim load under 3 GB (benchmarks/ingest.py). CODING_AUDIT_DUCKDB_MEMORY overrides.
MEMORY_LIMIT = os.environ.get("CODING_AUDIT_DUCKDB_MEMORY", "1536MB")


def connection_config() -> dict:
    return {"memory_limit": MEMORY_LIMIT}


@contextmanager
def unordered(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Statements whose rows' order nothing reads (tables read by key, rejections sorted where they
    are listed): DuckDB then writes them in parallel as they come, instead of holding rows back to
    keep their order, which past the memory limit spills (`preserve_insertion_order`)."""
    before = con.execute("SELECT current_setting('preserve_insertion_order')").fetchall()[0][0]
    con.execute("SET preserve_insertion_order = false")
    try:
        yield
    finally:
        con.execute(f"SET preserve_insertion_order = {'true' if before else 'false'}")


def quote_ident(name: str) -> str:
    """`name` as a SQL identifier, whatever characters a file's header gave it."""
    return '"' + name.replace('"', '""') + '"'


def _temp_relation_kinds(con: duckdb.DuckDBPyConnection, name: str) -> list[str]:
    return [r[0] for r in con.execute(
        "SELECT 'TABLE' FROM duckdb_tables() WHERE temporary AND table_name = $n UNION ALL "
        "SELECT 'VIEW' FROM duckdb_views() WHERE temporary AND view_name = $n", {"n": name}).fetchall()]


def temp_relation_exists(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    return bool(_temp_relation_kinds(con, name))


def drop_relation(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """Drop TEMP table or view `name` if there is one (a layout may stage its code rows as a view)."""
    for kind in _temp_relation_kinds(con, name):
        con.execute(f"DROP {kind} {quote_ident(name)}")


SCHEMA = {
    "loads": """
        load_id VARCHAR, audit_period VARCHAR, loaded_at TIMESTAMP, inputs JSON,
        claims_in BIGINT, claims_loaded BIGINT, claims_rejected BIGINT,
        reviews_in BIGINT, reviews_loaded BIGINT, reviews_rejected BIGINT, rejected_rows BIGINT,
        universe_in BIGINT, universe_loaded BIGINT""",
    "claims": """
        claim_id VARCHAR, facility_id VARCHAR, patient_id VARCHAR, admit_date DATE,
        discharge_date DATE, discharge_status VARCHAR, age INTEGER, sex VARCHAR, payer VARCHAR,
        coder_id VARCHAR, service_line VARCHAR, billed_drg VARCHAR, drg_version INTEGER,
        audit_period VARCHAR, load_id VARCHAR, source_file VARCHAR, source_row BIGINT, extra_columns JSON""",
    "reviews": """
        claim_id VARCHAR, reviewer_id VARCHAR, review_date DATE, discharge_status VARCHAR,
        reviewer_drg VARCHAR, notes VARCHAR, audit_period VARCHAR, load_id VARCHAR,
        source_file VARCHAR, source_row BIGINT, extra_columns JSON""",
    "claim_codes": """
        claim_id VARCHAR, side VARCHAR, kind VARCHAR, position INTEGER, code VARCHAR, poa VARCHAR""",
    "universe": """
        claim_id VARCHAR, facility_id VARCHAR, admit_date DATE, discharge_date DATE, discharge_status VARCHAR,
        age INTEGER, sex VARCHAR, payer VARCHAR, coder_id VARCHAR, service_line VARCHAR, billed_drg VARCHAR,
        stratum VARCHAR, audit_period VARCHAR, load_id VARCHAR, source_file VARCHAR, source_row BIGINT""",
    "rejected_rows": """
        load_id VARCHAR, audit_period VARCHAR, entity VARCHAR, source_file VARCHAR, "row" BIGINT, claim_id VARCHAR,
        "column" VARCHAR, rule VARCHAR, value VARCHAR, reason VARCHAR""",
}


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    for table, columns in SCHEMA.items():
        con.execute(f"CREATE TABLE IF NOT EXISTS {table} ({columns})")
