"""Write the four report pages, the CSV lists and the Excel workbook of one audit period.

`write_reports(con, audit_period, out_dir, run_info)` reads the published warehouse tables (filtered to
the period wherever a table has an audit_period column; `error_rates` of every period for the trend),
and writes index.html, audit.html, revenue.html, compliance.html, rebill_worklist.csv,
refund_worklist.csv, flagged_claims.csv, rejected_rows.csv, billed_drg_mismatches.csv (with
--regroup-universe) and audit_workbook.xlsx into out_dir.

One source per figure: every page embeds the figures it shows as data (its cards with their numbers,
its tables as JSON rows, `<script type="application/json">`), made by the same code that renders them,
and the tests compare those with the warehouse.

Privacy: no query reads `claims` (the only table with patient_id) nor any extra_columns; claim
attributes come from claim_regroup. Input file paths are shown by file name only.
The upcoding-flag tables (upcoding_flags, coder_funnel, facility_target_areas, short_stay_rates) are
optional: when one is absent the compliance page says so instead of failing.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import duckdb
import pandas as pd

from reports.audit_page import audit_page
from reports.compliance_page import compliance_page, flag_data, flagged_claim_batches
from reports.exports import write_csv
from reports.index_page import index_page, rejected_rows
from reports.revenue_page import billed_validation_sql, revenue_page
from reports.warehouse import PeriodWarehouse, with_drg_titles
from reports.workbook import write_workbook

CORE_TABLES = ("error_rates", "code_diffs", "claim_regroup", "reviews")
WORKLIST_COLUMNS = """g.claim_id, g.facility_id, g.payer, g.coder_id, g.service_line, g.discharge_month,
    g.drg_version, g.fiscal_year, g.billed_drg, g.original_drg, g.audited_drg, g.original_payment,
    g.audited_payment, g.delta, {amount}, {drivers}, g.original_mcc_codes, g.audited_mcc_codes,
    g.original_cc_codes, g.audited_cc_codes, r.reviewer_id, CAST(r.review_date AS VARCHAR) AS review_date,
    r.notes AS reviewer_notes"""
DRIVER_COLUMNS = ("auditor_changes", "grouper_effects", "change_drivers")


def write_reports(con: duckdb.DuckDBPyConnection, audit_period: str, out_dir: Path,
                  run_info: dict | None = None) -> dict[str, Path]:
    """Write the reports of `audit_period` into `out_dir`; returns {name: path} of every file written.

    `run_info` is the run summary (summary.json's content): inputs, counts, grouper, weights fiscal years,
    base rate, generated_at, warnings... shown on index.html. Only reads the connection."""
    wh = PeriodWarehouse(con, audit_period)
    missing = [t for t in CORE_TABLES if not wh.has(t)]
    if missing:
        raise RuntimeError(f"cannot write reports: warehouse tables missing: {', '.join(missing)} "
                           "(run the audit first)")
    run_info = dict(run_info or {})
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    generated = run_info.get("generated_at") or dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")

    rates = wh.df("""SELECT metric, n, errors, rate, ci_low, ci_high, small_cell FROM error_rates
                     WHERE audit_period = $period AND breakdown = 'all'""")
    optional = ", ".join(f"{c}" for c in ("fiscal_year", *DRIVER_COLUMNS[:2]) if wh.has("claim_regroup", c))
    regroup = wh.df(f"""SELECT claim_id, facility_id, payer, coder_id, service_line, discharge_month, drg_family,
                               billed_drg, original_drg, audited_drg, original_payment, audited_payment, delta,
                               direction, drg_changed, change_drivers, billed_drg_mismatch
                               {', ' + optional if optional else ''}
                        FROM {wh.scoped('claim_regroup')}""")
    extrapolation = (wh.df(f"SELECT * EXCLUDE (audit_period) FROM {wh.scoped('revenue_extrapolation')} "
                           "ORDER BY measure, stratum = 'all' DESC, stratum")
                     if wh.has("revenue_extrapolation") else pd.DataFrame())
    audited_claims = int(wh.scalar(f"SELECT count(*) FROM {wh.scoped('reviews')}"))
    subtitle = f"Audit period {audit_period} \u00b7 {audited_claims:,} audited claims \u00b7 generated {generated}"

    paths: dict[str, Path] = {}
    worklists = _worklists(wh)
    for name, frame in worklists.items():
        paths[name] = write_csv(frame, out_dir / f"{name}.csv")
    flags = flag_data(wh)
    paths["flagged_claims"] = write_csv(flagged_claim_batches(wh, flags["flagged_claims_sql"]),
                                        out_dir / "flagged_claims.csv")
    rejected = rejected_rows(wh)
    paths["rejected_rows"] = write_csv(rejected, out_dir / "rejected_rows.csv")
    validation = billed_validation_sql(wh)
    if validation and wh.scalar(f"SELECT count(*) FROM ({validation})"):
        year = _latest_year(regroup)
        titled = (with_drg_titles(wh, batch, ["billed_drg", "regrouped_drg"], default_year=year)
                  for batch in wh.batches(validation))
        paths["billed_drg_mismatches"] = write_csv(titled, out_dir / "billed_drg_mismatches.csv")

    pages = {
        "audit": audit_page(wh, rates, subtitle),
        "revenue": revenue_page(wh, regroup, extrapolation, subtitle),
        "compliance": compliance_page(wh, flags, subtitle),
        "index": index_page(wh, run_info, rates, regroup, extrapolation, flags, audited_claims, generated,
                            rejected),
    }
    for name, text in pages.items():
        paths[name] = _write_text(out_dir / f"{name}.html", text)
    error_rates = wh.df("""SELECT breakdown, breakdown_value, metric, n, errors, rate, ci_low, ci_high, small_cell
                           FROM error_rates WHERE audit_period = $period
                           ORDER BY breakdown <> 'all', breakdown, metric, breakdown_value""")
    paths["audit_workbook"] = write_workbook(out_dir / "audit_workbook.xlsx", run_info | {"audit_period": audit_period},
                                             worklists, flags["cases"], error_rates, rejected)
    return paths


def _latest_year(regroup: pd.DataFrame) -> int | None:
    if "fiscal_year" not in regroup:
        return None
    years = pd.to_numeric(regroup["fiscal_year"], errors="coerce").dropna()
    return int(years.max()) if len(years) else None


def _write_text(path: Path, text: str) -> Path:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def _worklists(wh: PeriodWarehouse) -> dict[str, pd.DataFrame]:
    """Rebill (underpaid) and refund (overpaid) claims, largest first, with DRG titles."""
    drivers = ", ".join(f"g.{c}" for c in DRIVER_COLUMNS if wh.has("claim_regroup", c)) or "NULL AS change_drivers"
    out = {}
    for name, direction, amount, order in (
            ("rebill_worklist", "underpaid", "g.delta AS rebill_amount", "g.delta DESC"),
            ("refund_worklist", "overpaid", "-g.delta AS refund_amount", "g.delta ASC")):
        frame = wh.df(f"""SELECT {WORKLIST_COLUMNS.format(amount=amount, drivers=drivers)}
                          FROM {wh.scoped('claim_regroup', 'g')}
                          LEFT JOIN {wh.scoped('reviews', 'r')} ON r.claim_id = g.claim_id
                          WHERE g.direction = $direction ORDER BY {order}, g.claim_id""", direction=direction)
        titled = with_drg_titles(wh, frame, ["billed_drg", "original_drg", "audited_drg"])
        titled = titled.rename(columns={"billed_drg_label": "billed_drg_title", "original_drg_label":
                                        "original_drg_title", "audited_drg_label": "audited_drg_title"})
        for column in ("billed_drg", "original_drg", "audited_drg"):  # title next to its number
            title = titled.pop(f"{column}_title").where(titled[column].notna())
            titled.insert(titled.columns.get_loc(column) + 1, f"{column}_title",
                          [t.split(" ", 1)[1] if isinstance(t, str) and " " in t else None for t in title])
        out[name] = titled
    return out
