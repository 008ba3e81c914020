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
from pathlib import Path
from typing import Callable

import duckdb
import pandas as pd

from audits.revenue.coverage import check_reference_coverage
from audits.errors import InputError
from audits.revenue.grouping import msdrg_versions
from audits.ingest.readers import InputFiles, StagedInputs, stage_inputs
from audits.ingest.readers.base import release_scratch
from audits.staging import STAGE, direct_publish, stage_attached, stage_rows, staged_replaces
from audits.ingest.universe import stage_universe
from audits.ingest.expectations import preload_gx
from audits.ingest.validation import (STAGED_CODE_COLUMNS, codes_go_to_stage, unpublished_code_rows_sql,
                                      validate_load)
from audits.warehouse import SCHEMA, ensure_schema, unordered


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
    # Layout of each file read and records the readers left out by reason (see audits.ingest.readers.stage).
    formats: list[dict] = field(default_factory=list)
    skipped_records: list[dict] = field(default_factory=list)
    warnings: list[dict] = field(default_factory=list)  # [{code, message, count}] that did not stop the load
    coverage: dict = field(default_factory=dict, repr=False)

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
                "rejected_rows": int(len(self.rejections)), "formats": self.formats,
                "skipped_records": self.skipped_records}


def current_period(today: dt.date | None = None) -> str:
    return (today or dt.date.today()).strftime("%Y-%m")


def load(con: duckdb.DuckDBPyConnection, files: InputFiles, audit_period: str,
         max_rejected_share: float = 0.5, weights_dir: str | Path | None = None,
         date_format: str | None = None, progress: Callable[[int, int], None] | None = None) -> LoadResult:
    """Load one set of input files as audit period `audit_period` into the warehouse on `con` (into
    the run's stage when one is attached, see `audits.staging`). `progress(done, 4)` after each
    step: read, validate, universe, publish.

    Before publishing, every accepted claim's discharge date must have a Table 5 (shipped or in
    `weights_dir`) and an MS-DRG version the grouper carries or one older than it (see
    `audits.revenue.coverage`): else InputError, and nothing is published."""
    step = progress or (lambda done, total: None)
    step(0, 4)
    preload_gx()
    if not stage_attached(con):
        ensure_schema(con)
    try:
        staged = stage_inputs(con, files)
        step(1, 4)
        with direct_publish(con):  # outside a run: a stage in memory, published if the load succeeds
            result = _validate_and_stage(con, files, staged, audit_period, max_rejected_share, weights_dir,
                                         date_format, step)
    finally:
        release_scratch(con)  # large files' tables (audits.ingest.readers.base.read_raw), read or not
    step(4, 4)
    return result


def _validate_and_stage(con: duckdb.DuckDBPyConnection, files: InputFiles, staged: StagedInputs,
                        audit_period: str, max_rejected_share: float, weights_dir: str | Path | None,
                        date_format: str | None, step: Callable[[int, int], None]) -> LoadResult:
    """`load` once the files are read: validate, stage the universe, stage the accepted rows."""
    # Reviews are checked against the claims that will exist after this load: this load's accepted
    # claims, and the published ones it neither replaces (its period) nor re-loads.
    period_sql = audit_period.replace("'", "''")
    surviving = (f"(SELECT * FROM claims WHERE audit_period IS DISTINCT FROM '{period_sql}' "
                 "AND claim_id NOT IN (SELECT claim_id FROM ok_claims)) AS surviving_claims")
    warnings: list[dict] = []
    load_id = f"{audit_period}-{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    # The accepted claims and universe rows go straight into the stage (`accept_rows`).
    stage = {"p": audit_period, "l": load_id}
    rejections = staged.name_user_columns(validate_load(con, published_claims=surviving, date_format=date_format,
                                                        warnings=warnings, layouts=staged.layouts, stage=stage))
    step(2, 4)
    universe_rejections = stage_universe(con, files.universe, date_format, warnings, stage)
    step(3, 4)
    universe_in = _count(con, "SELECT count(*) FROM stg_universe")
    universe_ok = _count(con, "SELECT count(*) FROM ok_universe")
    rejections = pd.concat([rejections, universe_rejections], ignore_index=True)
    claims_in = _count(con, "SELECT count(*) FROM stg_claims")
    reviews_in = _count(con, "SELECT count(*) FROM stg_reviews")
    claims_ok = _count(con, "SELECT count(*) FROM ok_claims")
    reviews_ok = _count(con, "SELECT count(*) FROM ok_reviews")
    result = LoadResult(load_id, audit_period, staged.layouts, claims_in, claims_ok, reviews_in, reviews_ok,
                        rejections, universe_in, universe_ok, formats=staged.formats,
                        skipped_records=staged.skipped_records, warnings=warnings)
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
    result.coverage = check_reference_coverage(con, ["ok_claims", "ok_universe"], msdrg_versions(), weights_dir)
    _publish(con, result, files)
    return result


def _count(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    return int(con.execute(sql).fetchall()[0][0])


def _publish(con: duckdb.DuckDBPyConnection, result: LoadResult, files: InputFiles) -> None:
    """Stage the load (published by the run's publish step, or here, in one transaction, when no
    run is staging): it replaces the period's rows and any claim or review it brings again."""
    period = result.audit_period
    p = period.replace("'", "''")
    rejected = result.rejections.copy()
    rejected.insert(0, "load_id", result.load_id)
    rejected.insert(1, "audit_period", period)
    rejected["row"] = pd.to_numeric(rejected["row"], errors="coerce").astype("Int64")
    for column in ("entity", "source_file", "claim_id", "column", "rule", "value", "reason"):
        rejected[column] = rejected[column].astype("string")
    con.register("new_rejections", rejected)
    warnings = pd.DataFrame(load_warnings(result, files), columns=["code", "message", "count"])
    con.register("new_warnings", warnings.astype({"code": "string", "message": "string", "count": "int64"}))
    values = {"p": period, "l": result.load_id}
    in_period = f"audit_period = '{p}'"
    try:
        with unordered(con):  # published tables are read by key, never by order
            # claim_codes first: its condition reads the published claims and reviews it replaces.
            replaces = f"""(side = 'original' AND claim_id IN (SELECT claim_id FROM {{warehouse}}.main.claims
                        WHERE {in_period} UNION ALL SELECT claim_id FROM {STAGE}.main.claims))
                    OR (side = 'audited' AND claim_id IN (SELECT claim_id FROM {{warehouse}}.main.reviews
                        WHERE {in_period} UNION ALL SELECT claim_id FROM {STAGE}.main.reviews))"""
            audited = "SELECT claim_id, 'audited' AS side, kind, position, code, poa FROM ok_reviews_codes"
            if codes_go_to_stage(con, "claims"):  # validation wrote the claims' code rows there
                codes = f"{STAGE}.main.claim_codes"
                con.execute(f"DELETE FROM {codes} WHERE {unpublished_code_rows_sql('claims')}")
                for column in STAGED_CODE_COLUMNS:
                    con.execute(f"ALTER TABLE {codes} DROP COLUMN {column}")
                stage_rows(con, "claim_codes", audited, replaces, append=True)
            else:
                stage_rows(con, "claim_codes", "SELECT claim_id, 'original' AS side, kind, position, code, poa "
                           f"FROM ok_claims_codes UNION ALL {audited}", replaces, SCHEMA["claim_codes"])
            # Claims and universe are in the stage already (validation wrote them: `accept_rows`).
            staged_replaces(con, "claims", f"{in_period} OR claim_id IN (SELECT claim_id FROM {STAGE}.main.claims)")
            stage_rows(con, "reviews", "SELECT *, $p AS audit_period, $l AS load_id FROM ok_reviews",
                       f"{in_period} OR claim_id IN (SELECT claim_id FROM {STAGE}.main.reviews)",
                       SCHEMA["reviews"], values)
            staged_replaces(con, "universe", in_period)
            stage_rows(con, "rejected_rows", """SELECT load_id, audit_period, entity, source_file, "row", claim_id,
                "column", rule, value, reason FROM new_rejections""", in_period, SCHEMA["rejected_rows"])
            stage_rows(con, "loads", """SELECT $l AS load_id, $p AS audit_period, now() AS loaded_at, $i AS inputs,
                    $ci AS claims_in, $cl AS claims_loaded, $cr AS claims_rejected, $ri AS reviews_in,
                    $rl AS reviews_loaded, $rr AS reviews_rejected, $n AS rejected_rows, $ui AS universe_in,
                    $ul AS universe_loaded""", in_period, SCHEMA["loads"], {
                **values, "i": json.dumps({**files.as_dict(), "read": {
                    "formats": result.formats, "skipped_records": result.skipped_records}}),
                "ci": result.claims_in, "cl": result.claims_loaded, "cr": result.claims_rejected,
                "ri": result.reviews_in, "rl": result.reviews_loaded, "rr": result.reviews_rejected,
                "n": len(rejected), "ui": result.universe_in, "ul": result.universe_loaded})
            stage_rows(con, "load_warnings", "SELECT $p AS audit_period, $l AS load_id, code, message, count "
                       "FROM new_warnings", in_period, "audit_period VARCHAR, load_id VARCHAR, code VARCHAR, "
                       "message VARCHAR, count BIGINT", values)
    finally:
        con.unregister("new_rejections")
        con.unregister("new_warnings")


def load_warnings(result: LoadResult, files: InputFiles) -> list[dict]:
    """What the load resolved on its own and the user should know: ambiguous dates read one way,
    layouts detected by `--format auto`."""
    out = list(result.warnings)
    for entity, fmt in (files.formats or {}).items():
        if fmt == "auto" and entity in result.layouts:
            out.append({"code": "layout_detected", "count": 1,
                        "message": f"{entity} files read as the {result.layouts[entity]} layout (--format auto)"})
    return out
