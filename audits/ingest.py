"""Ingest: stage -> validate (GX) -> publish in one transaction.

A load belongs to an audit period (YYYY-MM). Publishing replaces that period: rows of the period
and rows whose claim_id the load carries again are deleted, then the accepted rows inserted, all in
one DuckDB transaction. So loading the same files twice gives the same tables, and a load that
fails (unreadable file, missing column, too many rejected rows) changes nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass, field
from typing import Callable

import duckdb
import pandas as pd

from audits.errors import InputError
from audits.readers import InputFiles, stage_inputs
from audits.universe import stage_universe
from audits.validation import validate_load
from audits.warehouse import ensure_schema


class TooManyRejectedError(InputError):
    """More rows were rejected than the load allows: the file is probably wrong as a whole."""


@dataclass
class LoadResult:
    load_id: str
    audit_period: str
    layouts: dict[str, str]
    claims_in: int
    claims_loaded: int
    reviews_in: int
    reviews_loaded: int
    rejections: pd.DataFrame = field(repr=False)
    universe_in: int = 0
    universe_loaded: int = 0

    @property
    def claims_rejected(self) -> int:
        return self.claims_in - self.claims_loaded

    @property
    def reviews_rejected(self) -> int:
        return self.reviews_in - self.reviews_loaded

    def as_dict(self) -> dict:
        return {"load_id": self.load_id, "audit_period": self.audit_period, "layouts": self.layouts,
                "claims_in": self.claims_in, "claims_loaded": self.claims_loaded,
                "claims_rejected": self.claims_rejected, "reviews_in": self.reviews_in,
                "reviews_loaded": self.reviews_loaded, "reviews_rejected": self.reviews_rejected,
                "universe_in": self.universe_in, "universe_loaded": self.universe_loaded,
                "rejected_rows": int(len(self.rejections))}


def current_period(today: dt.date | None = None) -> str:
    return (today or dt.date.today()).strftime("%Y-%m")


def load(con: duckdb.DuckDBPyConnection, files: InputFiles, audit_period: str,
         max_rejected_share: float = 0.5, progress: Callable[[int, int], None] | None = None) -> LoadResult:
    """Load one set of input files as audit period `audit_period` into the warehouse on `con`.
    `progress(done, 4)` after each step: read, validate, universe, publish."""
    step = progress or (lambda done, total: None)
    step(0, 4)
    ensure_schema(con)
    layouts = stage_inputs(con, files)
    step(1, 4)
    # Reviews are checked against the claims that will exist after this load: this load's accepted
    # claims, and the published ones it neither replaces (its period) nor re-loads.
    period_sql = audit_period.replace("'", "''")
    surviving = (f"(SELECT * FROM claims WHERE audit_period IS DISTINCT FROM '{period_sql}' "
                 "AND claim_id NOT IN (SELECT claim_id FROM ok_claims)) AS surviving_claims")
    rejections = validate_load(con, published_claims=surviving)
    step(2, 4)
    universe_rejections = stage_universe(con, files.universe)
    step(3, 4)
    universe_in = _count(con, "SELECT count(*) FROM stg_universe")
    universe_ok = _count(con, "SELECT count(*) FROM ok_universe")
    rejections = pd.concat([rejections, universe_rejections], ignore_index=True)
    claims_in = _count(con, "SELECT count(*) FROM stg_claims")
    reviews_in = _count(con, "SELECT count(*) FROM stg_reviews")
    claims_ok = _count(con, "SELECT count(*) FROM ok_claims")
    reviews_ok = _count(con, "SELECT count(*) FROM ok_reviews")
    load_id = f"{audit_period}-{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    result = LoadResult(load_id, audit_period, layouts, claims_in, claims_ok, reviews_in, reviews_ok,
                        rejections, universe_in, universe_ok)
    for entity, total, ok in (("claims", claims_in, claims_ok), ("reviews", reviews_in, reviews_ok),
                              ("universe", universe_in, universe_ok)):
        if total and (total - ok) / total > max_rejected_share:
            first = rejections[rejections["entity"] == entity].head(1)
            example = ""
            if not first.empty:
                r = first.iloc[0]
                example = (f"; first problem: file {r['source_file']}, row {r['row']}, column "
                           f"{r['column']}: {r['reason']}")
            raise TooManyRejectedError(
                f"{total - ok} of {total} {entity} rows failed validation (more than "
                f"{max_rejected_share:.0%}); nothing was loaded{example}",
                file=first.iloc[0]["source_file"] if not first.empty else None)
    _publish(con, result, files)
    step(4, 4)
    return result


def _count(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    return int(con.execute(sql).fetchall()[0][0])


def _publish(con: duckdb.DuckDBPyConnection, result: LoadResult, files: InputFiles) -> None:
    period = result.audit_period
    rejected = result.rejections.copy()
    rejected.insert(0, "load_id", result.load_id)
    rejected.insert(1, "audit_period", period)
    rejected["row"] = pd.to_numeric(rejected["row"], errors="coerce").astype("Int64")
    for column in ("entity", "source_file", "claim_id", "column", "rule", "value", "reason"):
        rejected[column] = rejected[column].astype("string")
    con.register("new_rejections", rejected)
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute("""CREATE OR REPLACE TEMP TABLE replaced_claims AS
            SELECT claim_id FROM claims WHERE audit_period = $p UNION SELECT claim_id FROM ok_claims""",
                    {"p": period})
        con.execute("""CREATE OR REPLACE TEMP TABLE replaced_reviews AS
            SELECT claim_id FROM reviews WHERE audit_period = $p UNION SELECT claim_id FROM ok_reviews""",
                    {"p": period})
        con.execute("""DELETE FROM claim_codes WHERE
            (side = 'original' AND claim_id IN (SELECT claim_id FROM replaced_claims))
            OR (side = 'audited' AND claim_id IN (SELECT claim_id FROM replaced_reviews))""")
        con.execute("DELETE FROM claims WHERE claim_id IN (SELECT claim_id FROM replaced_claims)")
        con.execute("DELETE FROM reviews WHERE claim_id IN (SELECT claim_id FROM replaced_reviews)")
        con.execute("DELETE FROM rejected_rows WHERE audit_period = $p", {"p": period})
        con.execute("DELETE FROM universe WHERE audit_period = $p", {"p": period})
        con.execute("DELETE FROM loads WHERE audit_period = $p", {"p": period})
        con.execute("""INSERT INTO claims BY NAME
            SELECT *, $p AS audit_period, $l AS load_id FROM ok_claims""",
                    {"p": period, "l": result.load_id})
        con.execute("""INSERT INTO reviews BY NAME
            SELECT *, $p AS audit_period, $l AS load_id FROM ok_reviews""",
                    {"p": period, "l": result.load_id})
        con.execute("""INSERT INTO claim_codes
            SELECT claim_id, 'original', kind, position, code, poa FROM ok_claims_codes
            UNION ALL
            SELECT claim_id, 'audited', kind, position, code, poa FROM ok_reviews_codes""")
        con.execute("""INSERT INTO universe BY NAME
            SELECT *, $p AS audit_period, $l AS load_id FROM ok_universe""",
                    {"p": period, "l": result.load_id})
        con.execute("""INSERT INTO rejected_rows BY NAME
            SELECT load_id, audit_period, entity, source_file, "row", claim_id, "column", rule, value, reason
            FROM new_rejections""")
        con.execute("INSERT INTO loads VALUES ($l, $p, now(), $i, $ci, $cl, $cr, $ri, $rl, $rr, $n, $ui, $ul)", {
            "l": result.load_id, "p": period, "i": json.dumps(files.as_dict()),
            "ci": result.claims_in, "cl": result.claims_loaded, "cr": result.claims_rejected,
            "ri": result.reviews_in, "rl": result.reviews_loaded, "rr": result.reviews_rejected,
            "n": len(rejected), "ui": result.universe_in, "ul": result.universe_loaded})
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    finally:
        con.unregister("new_rejections")
