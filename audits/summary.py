"""summary.json: the headline figures of one audit period, machine-readable.

Each capability contributes its figures through a function here; counts are for the audit period
of the run.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import duckdb

# Every key summary.json may hold, with what it means: README's list is generated from this
# (`readme_key_list`), and tests compare it with the keys a run writes. A new key goes here.
SUMMARY_KEYS = {
    "audit_period": "the audit period of the run (YYYY-MM)",
    "run_id": "the run that wrote this file (its row in the `runs` table)",
    "generated_at": "when the file was written (UTC)",
    "load_id": "the load published by the run (table `loads`)",
    "inputs": "the input files of the load, by kind (`claims`, `reviews`, ..., and `formats` when not canonical)",
    "formats": "the layout each input file was read as: a list of `{entity, file, format, detected}`",
    "skipped_records": "records the readers left out as not audited (e.g. outpatient bill types, claim types "
                       "other than inpatient, FINAL_ACTION 'N'): a list of `{entity, file, reason, records}`",
    "claims": "claims of the period",
    "reviews": "reviews of the period",
    "audited_claims": "claims with a review",
    "rejected_rows": "rows quarantined by validation (table `rejected_rows`)",
    "record_error_rate": "audited claims with a diagnosis error, over audited claims",
    "principal_dx_error_rate": "audited claims whose principal diagnosis is not a match",
    "secondary_dx_error_rate": "audited claims with at least one secondary diagnosis error",
    "procedure_error_rate": "audited claims with at least one procedure result other than match",
    "error_rate_by_position": 'unsupported share by diagnosis position: `{"1": ..., "2": ..., "omitted": ...}`',
    "drg_change_rate": "regrouped audited claims whose audited DRG differs from the original, over the "
                       "regrouped audited claims (`not_grouped_claims` left out)",
    "drg_upgrade_rate": "regrouped audited claims with a positive delta (underpaid), same base",
    "drg_downgrade_rate": "regrouped audited claims with a negative delta (overpaid), same base",
    "underpaid_amount": "sum of the positive deltas (USD)",
    "overpaid_amount": "sum of the magnitudes of the negative deltas (USD)",
    "net_amount": "underpaid_amount - overpaid_amount (USD)",
    "billed_drg_mismatch_rate": "audited claims whose billed DRG differs from the regrouped original DRG",
    "not_priced_claims": "audited claims that could not be priced (counted as a zero delta)",
    "not_grouped_claims": "audited claims discharged under an MS-DRG version older than the grouper's (before "
                          "1 October 2022): in the error rates, not regrouped or priced",
    "fiscal_years": "per fiscal year of discharge: `{claims, audited_claims, priced_claims, not_grouped_claims, "
                    "msdrg_versions, weights}`; `msdrg_versions` counts the audited claims grouped with each "
                    "version (`{\"v40.0\": 12, \"v40.1\": 9}`), `weights` is `shipped` or `file <path>`",
    "extrapolation": "universe estimate of the total delta: `{point, lower_90, upper_90, universe_claims, "
                     "sample_claims, overpayment_demand_lower_90}`, or null without a universe",
    "extrapolation_note": "why there is no extrapolation (only when there is none and a reason is known)",
    "grouper": "the MS-DRG grouper and its version",
    "weights_fiscal_years": "the fiscal years of the Table 5 relative weights used",
    "base_rate": "the base rate (USD): the `--base-rate` what-if, else the default base rate",
    "rates": "`{base_rate, default_base_rate, facility_base_rates, payer_multipliers, rates_source}`: where "
             "the rates came from",
    "upcoding_flags": "flag counts by level: `{claim, coder, facility}`",
    "billed_drg_validation": "with `--regroup-universe`: `{mismatches, ungroupable, amount_at_stake, "
                             "net_difference, not_grouped}` (`not_grouped`: claims older than the grouper's "
                             "versions, left out); else null",
    "warnings": "what did not stop the run: a list of `{code, message, count}` (codes "
                "`ambiguous_dates_resolved`, `layout_detected`, `outside_grouper_versions`, `unpriced_claims`)",
}


def readme_key_list() -> str:
    """The summary.json key list as README shows it."""
    return "\n".join(f"- `{key}`: {text}" for key, text in SUMMARY_KEYS.items())



def ingest_summary(con: duckdb.DuckDBPyConnection, audit_period: str) -> dict:
    p = {"p": audit_period}
    one = lambda sql: int(con.execute(sql, p).fetchall()[0][0])  # noqa: E731
    last_load = con.execute("SELECT load_id, loaded_at, inputs FROM loads WHERE audit_period = $p "
                            "ORDER BY loaded_at DESC LIMIT 1", p).fetchall()
    inputs = json.loads(last_load[0][2]) if last_load and last_load[0][2] else {}
    read = inputs.pop("read", None) or {}
    return {
        "audit_period": audit_period,
        "claims": one("SELECT count(*) FROM claims WHERE audit_period = $p"),
        "reviews": one("SELECT count(*) FROM reviews WHERE audit_period = $p"),
        "audited_claims": one("SELECT count(*) FROM reviews r JOIN claims c USING (claim_id) "
                              "WHERE r.audit_period = $p"),
        "rejected_rows": one("SELECT count(*) FROM rejected_rows WHERE audit_period = $p"),
        "load_id": last_load[0][0] if last_load else None,
        "inputs": inputs,
        # Layout each file was read as; records the readers left out, by file and reason.
        "formats": read.get("formats", []),
        "skipped_records": read.get("skipped_records", []),
    }


def build_summary(con: duckdb.DuckDBPyConnection, audit_period: str, run_info: dict | None = None,
                  weights_dir: str | Path | None = None) -> dict:
    """Every capability's headline figures for the period, in one dict."""
    from audits.compare import error_rate_summary
    from audits.periods import period_scope

    figures = ingest_summary(con, audit_period)
    from audits.flags import flag_summary

    tables = ["claims", "reviews", "claim_codes", "error_rates", "claim_regroup", "revenue_extrapolation",
              "upcoding_flags", "billed_drg_validation"]
    has_warnings = bool(con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'load_warnings' "
                                    "AND table_catalog = current_database()").fetchall()[0][0])
    with period_scope(con, audit_period, tables + (["load_warnings"] if has_warnings else [])):
        figures.update(error_rate_summary(con))
        figures.update(revenue_summary(con))
        figures["upcoding_flags"] = flag_summary(con)
        figures["billed_drg_validation"] = billed_validation_summary(con, audit_period)
        figures["fiscal_years"] = fiscal_year_summary(con, audit_period, weights_dir)
        figures["warnings"] = run_warnings(con, has_warnings)
    figures.update(run_info or {})
    return figures


def fiscal_year_summary(con: duckdb.DuckDBPyConnection, audit_period: str,
                        weights_dir: str | Path | None = None) -> dict:
    """Per fiscal year of discharge: the period's claims, its audited claims, how many were priced and
    how many could not be regrouped (MS-DRG version older than the grouper's), the MS-DRG versions
    the audited claims were grouped with, and where the year's Table 5 came from."""
    from audits.codes import fiscal_year_sql
    from audits.revenue.coverage import version_label
    from audits.revenue.weights import weights_sources

    fy = fiscal_year_sql("c.discharge_date")
    years: dict[int, dict] = {}

    def entry(year: object) -> dict:
        return years.setdefault(int(year), {"claims": 0, "audited_claims": 0, "priced_claims": 0,
                                            "not_grouped_claims": 0, "msdrg_versions": {}})

    for year, n in con.execute(f"SELECT {fy}, count(*) FROM claims c WHERE audit_period = ? "
                               "AND discharge_date IS NOT NULL GROUP BY 1", [audit_period]).fetchall():
        entry(year)["claims"] = int(n)
    for year, n in con.execute(f"SELECT {fy}, count(*) FROM reviews r JOIN claims c USING (claim_id) "
                               "WHERE c.discharge_date IS NOT NULL GROUP BY 1").fetchall():
        entry(year)["audited_claims"] = int(n)
    for year, priced, not_grouped in con.execute("""
            SELECT fiscal_year, count(*) FILTER (WHERE delta IS NOT NULL),
                   count(*) FILTER (WHERE direction = 'not_grouped')
            FROM claim_regroup WHERE fiscal_year IS NOT NULL GROUP BY 1""").fetchall():
        entry(year).update(priced_claims=int(priced), not_grouped_claims=int(not_grouped))
    for year, version, n in con.execute("""
            SELECT fiscal_year, drg_version, count(*) FROM claim_regroup
            WHERE direction <> 'not_grouped' AND fiscal_year IS NOT NULL GROUP BY ALL ORDER BY ALL""").fetchall():
        entry(year)["msdrg_versions"][version_label(version)] = int(n)
    # `missing`: a claim of another period's load, audited here and never priced.
    for year, source in weights_sources(list(years), weights_dir, missing_ok=True).items():
        years[year]["weights"] = source
    return {str(y): years[y] for y in sorted(years)}


def run_warnings(con: duckdb.DuckDBPyConnection, has_load_warnings: bool = True) -> list[dict]:
    """What did not stop the run but changes how to read it: [{code, message, count}]."""
    out = []
    if has_load_warnings:
        out += [{"code": r[0], "message": r[1], "count": int(r[2])} for r in con.execute(
            "SELECT code, message, count FROM load_warnings ORDER BY code, message").fetchall()]
    unpriced, unsupported = con.execute("""
        SELECT count(*) FILTER (WHERE direction = 'not_priced'),
               count(*) FILTER (WHERE direction = 'not_grouped')
        FROM claim_regroup""").fetchall()[0]
    if unsupported:
        out.append({"code": "outside_grouper_versions", "count": int(unsupported), "message": (
            f"{unsupported:,} audited claims were discharged under an MS-DRG version older than the grouper's "
            "(before 1 October 2022): counted in the error rates, not regrouped or priced (regroup_findings: "
            "grouper_version_unavailable)")})
    if unpriced:
        out.append({"code": "unpriced_claims", "count": int(unpriced), "message": (
            f"{unpriced:,} audited claims could not be priced and count as a zero delta; "
            "see table regroup_findings for why")})
    return out


def billed_validation_summary(con: duckdb.DuckDBPyConnection, audit_period: str | None = None) -> dict | None:
    """Whole-claims billed-DRG check (only when run with --regroup-universe; else None). `not_grouped`:
    the period's claims discharged under an MS-DRG version older than the grouper's, left out of it."""
    from audits.revenue.grouping import msdrg_versions
    from audits.revenue.regroup import claims_outside_grouper

    row = con.execute("""SELECT count(*) FILTER (WHERE return_code = 'OK'), count(*) FILTER (WHERE return_code <> 'OK'),
                                coalesce(sum(abs(difference)), 0), coalesce(sum(difference), 0)
                         FROM billed_drg_validation""").fetchall()[0]
    if not row[0] and not row[1]:
        return None
    out = {"mismatches": int(row[0]), "ungroupable": int(row[1]), "amount_at_stake": round(float(row[2]), 2),
           "net_difference": round(float(row[3]), 2)}
    if audit_period is not None:
        out["not_grouped"] = claims_outside_grouper(con, audit_period, msdrg_versions())
    return out


def revenue_summary(con: duckdb.DuckDBPyConnection) -> dict:
    from audits.revenue.regroup import revenue_summary_from_frame

    frame = con.execute("SELECT * FROM claim_regroup").df()
    totals = revenue_summary_from_frame(frame)
    keys = ("drg_change_rate", "drg_upgrade_rate", "drg_downgrade_rate", "underpaid_amount", "overpaid_amount",
            "net_amount", "billed_drg_mismatch_rate", "not_priced_claims", "not_grouped_claims")
    out = {k: totals[k] for k in keys}
    rows = con.execute("""SELECT measure, point, lower_90, upper_90, universe_count, sample_count
                          FROM revenue_extrapolation WHERE stratum = 'all'""").fetchall()
    by_measure = {r[0]: r for r in rows}
    if "net_delta" in by_measure:
        net, over = by_measure["net_delta"], by_measure.get("overpayment")
        out["extrapolation"] = {
            "point": net[1], "lower_90": net[2], "upper_90": net[3], "universe_claims": net[4],
            "sample_claims": net[5],
            "overpayment_demand_lower_90": over[2] if over else None}
    else:
        out["extrapolation"] = None
        notes = con.execute("SELECT note FROM revenue_extrapolation WHERE note IS NOT NULL").fetchall()
        if notes:
            out["extrapolation_note"] = notes[0][0]
    graders = con.execute("SELECT DISTINCT grouper FROM claim_regroup").fetchall()
    out["grouper"] = graders[0][0] if graders else None
    years = con.execute("SELECT DISTINCT fiscal_year FROM claim_regroup ORDER BY 1").fetchall()
    out["weights_fiscal_years"] = [int(y[0]) for y in years]
    return out


def write_summary(path: Path, figures: dict) -> Path:
    """Write atomically (temp file + rename), so a reader never sees half a summary."""
    path.parent.mkdir(parents=True, exist_ok=True)
    figures = {**figures, "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(figures, indent=2, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path
