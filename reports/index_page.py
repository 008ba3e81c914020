"""index.html: the run (inputs, counts, grouper, weights, base rate) and its data quality: rejected
rows by rule with the row-level list, and the run's warnings."""

from __future__ import annotations

import json
from pathlib import PurePath

import pandas as pd

from audits.revenue.pricing import revenue_totals
from reports.audit_page import rate_card
from reports.html import (Column, PageData, Table, count, figure_card, kv_table, links, money, note, page, section)
from reports.revenue_page import extrapolation_cards
from reports.status import placeholder
from reports.warehouse import PeriodWarehouse

PATIENT_COLUMNS = ("patient_id", "member_id", "mrn", "bene_id", "beneficiary_id")
REJECTED_COLUMNS = ["file", "row", "claim_id", "column", "rule", "value", "reason"]


def file_names(value) -> str:
    items = value if isinstance(value, (list, tuple)) else [value]
    return ", ".join(PurePath(str(v).replace("\\", "/")).name for v in items if v) or "\u2014"


def rejected_rows(wh: PeriodWarehouse) -> pd.DataFrame:
    """The period's quarantined rows for rejected_rows.csv: file name (no folder), row, claim_id, column,
    rule, value, reason. The value of a patient-identifier column is never written."""
    if not wh.has("rejected_rows"):
        return pd.DataFrame(columns=REJECTED_COLUMNS)
    cols = wh.columns["rejected_rows"]
    file_expr = "source_file" if "source_file" in cols else "entity"
    frame = wh.df(f"""SELECT {file_expr} AS file, "row", {'claim_id' if 'claim_id' in cols else 'NULL AS claim_id'},
                             "column", rule, CAST(value AS VARCHAR) AS value, reason
                      FROM {wh.scoped('rejected_rows')} ORDER BY file, "row", "column", rule""")
    frame["file"] = frame["file"].map(lambda v: file_names(v) if v is not None and v == v else None)
    patient = frame["column"].astype("string").str.lower().isin(PATIENT_COLUMNS).fillna(False)
    frame["value"] = frame["value"].astype("object").where(~patient, None)
    return frame[REJECTED_COLUMNS]


def _fiscal_year_text(years: dict | None) -> str:
    """'FY2023: 2 audited claims (v40.0 1, v40.1 1), weights shipped; ...' from summary.json fiscal_years."""
    parts = []
    for fy, v in (years or {}).items():
        versions = ", ".join(f"{name} {n:,}" for name, n in (v.get("msdrg_versions") or {}).items())
        text = f"FY{fy}: {v.get('audited_claims', 0):,} audited claims" + (f" ({versions})" if versions else "")
        if v.get("not_grouped_claims"):
            text += f", {v['not_grouped_claims']:,} not regrouped (MS-DRG version older than the grouper's)"
        parts.append(text + f", weights {v.get('weights', 'missing')}")
    return "; ".join(parts)


def _reading_rows(formats, skipped) -> list[tuple[str, str]]:
    """'Layout read' per file (detected or named) and the records the readers left out, by reason."""
    rows = []
    if formats:
        rows.append(("Layout read", "; ".join(
            f"{file_names(f['file'])}: {f['format']}{' (detected)' if f.get('detected') else ''}" for f in formats)))
    if skipped is not None:
        rows.append(("Records skipped (not audited)", "; ".join(
            f"{file_names(s['file'])}: {s['records']:,} {s['reason'].replace('_', ' ')}" for s in skipped) or "none"))
    return rows


def index_page(wh: PeriodWarehouse, run_info: dict, rates: pd.DataFrame, regroup: pd.DataFrame,
               extrapolation: pd.DataFrame, flag_data: dict, audited_claims: int, generated: str,
               rejected: pd.DataFrame) -> str:
    data = PageData()
    period = wh.period
    revenue = revenue_totals(regroup)  # the one definition summary.json and the revenue page quote
    net, under, over = revenue["net_amount"], revenue["underpaid_amount"], revenue["overpaid_amount"]
    cards = [rate_card(rates, "record_error_rate", "Record error rate"),
             figure_card("net_amount", "Net revenue impact", net, "signed_money",
                         f"underpaid {money(under)} \u00b7 overpaid {money(over)}", "bad" if net < 0 else "good",
                         {"underpaid_amount": under, "overpaid_amount": over}),
             extrapolation_cards(extrapolation)[0]]
    cases = flag_data.get("cases")
    if cases is not None:
        by = cases["level"].value_counts()
        entities = int(len(cases))
        cards.append(figure_card(
            "flagged_entities", "Flagged cases", entities, "int",
            f"claims {int(by.get('claim', 0)):,} \u00b7 coders {int(by.get('coder', 0)):,} \u00b7 "
            f"facilities {int(by.get('facility', 0)):,}", "bad" if entities else "",
            {level: int(by.get(level, 0)) for level in ("claim", "coder", "facility")}))
    cards.append(figure_card("rejected_rows", "Rejected rows", len(rejected), "int",
                             "quarantined by validation (rejected_rows.csv)", "bad" if len(rejected) else ""))

    inputs = run_info.get("inputs")
    if not inputs and wh.has("loads"):
        loads = wh.df("SELECT inputs FROM loads WHERE audit_period = $period ORDER BY loaded_at DESC LIMIT 1")
        if not loads.empty and loads.iloc[0, 0]:
            inputs = json.loads(loads.iloc[0, 0])
    read = (inputs or {}).get("read") or {}
    input_rows = [(f"{kind} file(s)", file_names(files)) for kind, files in (inputs or {}).items()
                  if files and kind not in ("formats", "read")]
    if (inputs or {}).get("formats"):
        input_rows.append(("Layout asked (--format)", ", ".join(f"{k}: {v}" for k, v in inputs["formats"].items())))
    input_rows += _reading_rows(run_info.get("formats", read.get("formats")),
                                run_info.get("skipped_records", read.get("skipped_records")))

    def info(key, fallback="\u2014"):
        value = run_info.get(key)
        return fallback if value is None else value

    rates_info = run_info.get("rates") or {}
    base_rate = run_info.get("base_rate")
    years = run_info.get("weights_fiscal_years") or []
    grouper = run_info.get("grouper") or (
        ", ".join(wh.df(f"SELECT DISTINCT grouper FROM {wh.scoped('claim_regroup')} ORDER BY 1")["grouper"].astype(str))
        if wh.has("claim_regroup", "grouper") else "\u2014")
    load = (wh.df("SELECT * FROM loads WHERE audit_period = $period ORDER BY loaded_at DESC LIMIT 1")
            if wh.has("loads") else pd.DataFrame())
    load_rows = []
    if not load.empty:
        row = load.iloc[0]
        for entity in ("claims", "reviews", "universe"):
            read, kept = row.get(f"{entity}_in"), row.get(f"{entity}_loaded")
            if pd.notna(read) and (entity != "universe" or read):
                bad = row.get(f"{entity}_rejected")
                load_rows.append((f"{entity.capitalize()} rows read / loaded / rejected",
                                  f"{count(read)} / {count(kept)} / "
                                  f"{count(bad) if pd.notna(bad) else count(read - kept)}"))
    claims_count = run_info.get("claims")
    meta_rows = [
        ("Audit period", period),
        ("Run id", str(info("run_id"))),
        ("Ran at", str(info("generated_at", generated))),
        ("Load id", str(info("load_id"))),
        *input_rows,
        *load_rows,
        ("Claims of the period", count(claims_count) if claims_count is not None else "\u2014"),
        ("Reviews of the period", count(run_info["reviews"]) if run_info.get("reviews") is not None else "\u2014"),
        ("Audited claims", count(run_info.get("audited_claims", audited_claims))),
        ("Rejected rows", count(len(rejected))),
        ("MS-DRG grouper", str(grouper)),
        ("Relative weights (fiscal years)", ", ".join(f"FY{y}" for y in years) or "\u2014"),
        ("Fiscal years of discharge", _fiscal_year_text(run_info.get("fiscal_years")) or "\u2014"),
        ("Base rate", money(base_rate) if isinstance(base_rate, (int, float)) else "\u2014"),
        ("Rates source", str(rates_info.get("rates_source", "\u2014"))),
        ("Facility base rates configured", str(rates_info.get("facility_base_rates", "\u2014"))),
        ("Payer multipliers configured", str(rates_info.get("payer_multipliers", "\u2014"))),
    ]
    parts = [data.headline(cards), section("Reports", links([
        ("audit.html", "Audit accuracy", "error rates by diagnosis position, error types, ICD-10 chapter changes, "
                                         "coder scorecards, breakdowns, trend"),
        ("revenue.html", "Revenue impact", "waterfall, DRG shifts, impact by group, billed-DRG validation, "
                                           "universe estimate, rebill and refund worklists"),
        ("compliance.html", "Compliance", "flagged cases with evidence, coder funnel, facility target areas, "
                                          "short stays")]), section_id="reports"),
        section("This run", placeholder(period), kv_table(meta_rows), section_id="run"),
        _quality_section(rejected, run_info, data)]
    parts.append(section("Downloads", links([
        ("audit_workbook.xlsx", "audit_workbook.xlsx", "Excel: summary, worklists, flagged cases, error rates, "
                                                       "rejected rows"),
        ("rebill_worklist.csv", "rebill_worklist.csv", "underpaid claims"),
        ("refund_worklist.csv", "refund_worklist.csv", "overpaid claims"),
        ("flagged_claims.csv", "flagged_claims.csv", "claims cited by upcoding flags"),
        ("rejected_rows.csv", "rejected_rows.csv", "rows quarantined by validation")]), section_id="downloads"))
    subtitle = (f"Audit period {period} \u00b7 {audited_claims:,} audited claims \u00b7 "
                f"ran {info('generated_at', generated)}")
    return page("Coding audit \u2014 overview", "index.html", subtitle, "\n".join(parts), data)


def rejected_by_rule(rejected: pd.DataFrame) -> pd.DataFrame:
    if rejected.empty:
        return pd.DataFrame(columns=["file", "rule", "column", "rows", "example_reason"])
    return (rejected.assign(column=rejected["column"].fillna(""))
            .groupby(["file", "rule", "column"], dropna=False, as_index=False)
            .agg(rows=("row", "count"), example_reason=("reason", "first"))
            .sort_values(["rows", "file", "rule"], ascending=[False, True, True]))


def _quality_section(rejected: pd.DataFrame, run_info: dict, data: PageData) -> str:
    parts = []
    if rejected.empty:
        parts.append(note("No row was rejected."))
    else:
        parts.append(data.table(Table("table-rejected", rejected_by_rule(rejected), [
            Column("file", "File"), Column("rule", "Rule"), Column("column", "Column"),
            Column("rows", "Rows rejected", "int"), Column("example_reason", "Example reason", "long")]),
            "rejected_rows by rule"))
        parts.append(data.table(Table("table-rejected-rows", rejected, [
            Column("file", "File"), Column("row", "Row", "int"), Column("claim_id", "Claim"),
            Column("column", "Column"), Column("rule", "Rule"), Column("value", "Value", "long"),
            Column("reason", "Reason", "long")], csv_name="rejected_rows.csv"), "rejected_rows"))
        parts.append(links([("rejected_rows.csv", "rejected_rows.csv",
                             f"{len(rejected):,} rejected rows: file, row, claim, column, rule, value, reason")]))
    warnings = run_info.get("warnings")
    if warnings:
        frame = pd.DataFrame([w if isinstance(w, dict) else {"message": str(w)} for w in warnings])
        for column in ("code", "message", "count"):
            if column not in frame:
                frame[column] = None
        parts.append("<h3>Warnings of this run</h3>" + data.table(Table("table-warnings", frame, [
            Column("code", "Warning"), Column("message", "What it means", "long"), Column("count", "Count", "int")]),
            "summary.json warnings"))
    elif warnings is not None:
        parts.append(note("The run raised no warning."))
    return section("Data quality", *parts,
                   intro="Rows quarantined by validation (row 1 is the first data row under the header), by file and "
                         "rule, then row by row; and what the run warned about.", section_id="rejected")
