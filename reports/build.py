"""Write the four report pages and the CSV worklists of one audit period.

`write_reports(con, audit_period, out_dir, run_info)` reads the published warehouse tables (filtered to
the period wherever a table has an audit_period column; `error_rates` of every period for the trend),
and writes index.html, audit.html, revenue.html, compliance.html, rebill_worklist.csv,
refund_worklist.csv and flagged_claims.csv into out_dir.

Privacy: no query here reads `claims` (the only table with patient_id) nor any extra_columns; claim
attributes come from claim_regroup. Input file paths are shown by file name only.
The upcoding-flag tables (upcoding_flags, coder_funnel, facility_target_areas, short_stay_rates) are
optional: when one is absent the compliance page says so instead of failing.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path, PurePath

import duckdb
import pandas as pd

from audits.pricing import revenue_totals
from reports import figures
from reports.exports import write_csv
from reports.status import placeholder
from reports.html import (MAX_TABLE_ROWS, Card, Column, Table, count, esc, figure_div, headline, kv_table, links,
                          money, money0, note, page, pct, section, unavailable)

CORE_TABLES = ("error_rates", "code_diffs", "claim_regroup", "reviews")
FLAG_TABLES = ("upcoding_flags", "coder_funnel", "facility_target_areas", "short_stay_rates")
TREND_METRICS = ("record_error_rate", "principal_dx_error_rate", "secondary_dx_error_rate")
HEADLINE_METRICS = ("record_error_rate", "principal_dx_error_rate", "secondary_dx_error_rate", "procedure_error_rate")
BREAKDOWN_NAMES = {"audit_month": "discharge month", "service_line": "service line", "drg_family": "DRG family"}
SEVERITY_ORDER = "CASE severity WHEN 'high' THEN 0 WHEN 'medium' THEN 1 WHEN 'low' THEN 2 ELSE 3 END"

WORKLIST_COLUMNS = """g.claim_id, g.facility_id, g.payer, g.coder_id, g.service_line, g.discharge_month,
    g.drg_version, g.billed_drg, g.original_drg, g.audited_drg, g.original_payment, g.audited_payment, g.delta,
    {amount}, g.change_drivers, g.original_mcc_codes, g.audited_mcc_codes, g.original_cc_codes,
    g.audited_cc_codes, r.reviewer_id, CAST(r.review_date AS VARCHAR) AS review_date, r.notes AS reviewer_notes"""


class _Warehouse:
    """Period-filtered reads of the warehouse; knows which tables and columns exist."""

    def __init__(self, con: duckdb.DuckDBPyConnection, period: str):
        self.con, self.period = con, period
        rows = con.execute("""SELECT table_name, column_name FROM information_schema.columns
                              WHERE table_catalog = current_database()
                                AND table_schema = current_schema()""").fetchall()
        self.columns: dict[str, set[str]] = {}
        for table, column in rows:
            self.columns.setdefault(table, set()).add(column)

    def has(self, table: str) -> bool:
        return table in self.columns

    def scoped(self, table: str, alias: str = "") -> str:
        """`table [alias]` as a subquery limited to the period when the table has the column."""
        name = f"{table} {alias}".strip()
        if "audit_period" in self.columns.get(table, ()):
            return f"(SELECT * FROM {table} WHERE audit_period = $period) {alias or table}"
        return name

    def df(self, sql: str, **params) -> pd.DataFrame:
        used = {k: v for k, v in {"period": self.period, **params}.items() if f"${k}" in sql}
        return self.con.execute(sql, used).df()

    def scalar(self, sql: str, **params):
        used = {k: v for k, v in {"period": self.period, **params}.items() if f"${k}" in sql}
        return self.con.execute(sql, used).fetchone()[0]


def write_reports(con: duckdb.DuckDBPyConnection, audit_period: str, out_dir: Path,
                  run_info: dict | None = None) -> dict[str, Path]:
    """Write the reports of `audit_period` into `out_dir`; returns {name: path} of every file written.

    `run_info` is the run summary (summary.json's content): inputs, counts, grouper, weights fiscal years,
    base rate, generated_at... shown on index.html. Only reads the connection."""
    wh = _Warehouse(con, audit_period)
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
    regroup = wh.df(f"""SELECT claim_id, facility_id, payer, coder_id, service_line, discharge_month, drg_family,
                               billed_drg, original_drg, audited_drg, original_payment, audited_payment, delta,
                               direction, drg_changed, change_drivers, billed_drg_mismatch
                        FROM {wh.scoped('claim_regroup')}""")
    extrapolation = (wh.df(f"SELECT * EXCLUDE (audit_period) FROM {wh.scoped('revenue_extrapolation')} "
                           "ORDER BY measure, stratum = 'all' DESC, stratum")
                     if wh.has("revenue_extrapolation") else pd.DataFrame())
    audited_claims = int(wh.scalar(f"SELECT count(*) FROM {wh.scoped('reviews')}"))
    subtitle = f"Audit period {audit_period} \u00b7 {audited_claims:,} audited claims \u00b7 generated {generated}"

    paths: dict[str, Path] = {}
    paths.update(_write_worklists(wh, out_dir))
    flag_data = _flag_data(wh)
    paths["flagged_claims"] = write_csv(flag_data["flagged_claims"], out_dir / "flagged_claims.csv")

    pages = {
        "audit": _audit_page(wh, rates, subtitle),
        "revenue": _revenue_page(wh, regroup, extrapolation, subtitle),
        "compliance": _compliance_page(flag_data, subtitle),
        "index": _index_page(wh, run_info, rates, regroup, extrapolation, flag_data, audited_claims, generated),
    }
    for name, text in pages.items():
        paths[name] = _write_text(out_dir / f"{name}.html", text)
    return paths


def _write_text(path: Path, text: str) -> Path:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def _rate_card(rates: pd.DataFrame, metric: str, label: str) -> Card:
    row = rates[rates["metric"] == metric]
    if row.empty:
        return Card(label, "n/a", "not computed")
    r = row.iloc[0]
    return Card(label, pct(r["rate"]), f"95% CI {pct(r['ci_low'])}\u2013{pct(r['ci_high'])} \u00b7 "
                                       f"{int(r['errors']):,} of {int(r['n']):,} claims")


def _extrapolation_card(extrapolation: pd.DataFrame) -> Card:
    row = extrapolation[(extrapolation["measure"] == "net_delta") & (extrapolation["stratum"] == "all")] \
        if not extrapolation.empty else extrapolation
    if row.empty:
        return Card("Universe estimate (net)", "n/a", "no universe loaded")
    r = row.iloc[0]
    return Card("Universe estimate (net)", money0(r["point"]),
                f"90% CI {money0(r['lower_90'])} to {money0(r['upper_90'])} \u00b7 "
                f"{int(r['universe_count']):,} claims in universe", "bad" if r["point"] < 0 else "good")


# ------------------------------------------------------------------------------------------ audit


def _audit_page(wh: _Warehouse, rates: pd.DataFrame, subtitle: str) -> str:
    omitted = rates[rates["metric"] == "dx_omitted"]
    cards = [_rate_card(rates, m, figures.RATE_LABELS[m]) for m in HEADLINE_METRICS]
    if not omitted.empty:
        cards.append(_rate_card(rates, "dx_omitted", "Claims with a missed diagnosis"))
    parts = [headline(cards)]

    fig = figures.position_error_figure(rates)
    parts.append(section(
        "Error rate by diagnosis position",
        figure_div(fig, "fig-positions") if fig else unavailable("No position rates for this period."),
        intro="Among audited claims with a code at each original position, the share whose code there was not "
              "supported (position 1: principal result other than match). Missed codes have no original position "
              "and are shown as 'omitted'. Position rates are never summed into a record rate.",
        section_id="positions"))

    fig = figures.error_type_figure(rates)
    parts.append(section("Error types", figure_div(fig, "fig-error-types") if fig else unavailable("No differences."),
                         section_id="types"))

    pairs = wh.df(f"""SELECT original_code, audited_code, count(*) AS claims FROM {wh.scoped('code_diffs')}
                      WHERE kind = 'dx' AND role = 'principal' AND result <> 'match' GROUP BY ALL""")
    fig = figures.chapter_confusion_figure(pairs)
    parts.append(section(
        "Principal diagnosis changes by ICD-10-CM chapter",
        figure_div(fig, "fig-chapters") if fig else note("No principal diagnosis was changed in this period."),
        intro="Claims whose principal diagnosis the audit changed, resequenced or made more specific: chapter "
              "of the original code (rows) against chapter of the audited code (columns).", section_id="chapters"))

    parts.append(_scorecard_section(wh, rates))

    trend = wh.df(f"""SELECT audit_period, metric, n, errors, rate, ci_low, ci_high FROM error_rates
                      WHERE breakdown = 'all' AND metric IN {TREND_METRICS} ORDER BY audit_period""")
    fig = figures.trend_figure(trend)
    periods = trend["audit_period"].nunique()
    parts.append(section(
        "Trend across audit periods",
        figure_div(fig, "fig-trend") if fig else unavailable("No error rates recorded."),
        intro=f"{periods} audit period{'s' if periods != 1 else ''} in the warehouse."
              + (" The trend fills in as more periods are audited." if periods < 2 else ""), section_id="trend"))

    breakdown = wh.df("""SELECT breakdown, breakdown_value, metric, n, errors, rate, ci_low, ci_high, small_cell
                         FROM error_rates WHERE audit_period = $period AND breakdown <> 'all'
                           AND metric IN ('record_error_rate', 'principal_dx_error_rate', 'secondary_dx_error_rate',
                                          'procedure_error_rate')
                         ORDER BY breakdown, metric, breakdown_value""")
    breakdown["small_cell"] = breakdown["small_cell"].map({True: "yes", False: ""})
    breakdown["breakdown"] = breakdown["breakdown"].replace(BREAKDOWN_NAMES)
    breakdown["metric"] = breakdown["metric"].replace(figures.RATE_LABELS)
    parts.append(section("Error rates by facility, payer, service line, coder and month", Table(
        "table-breakdowns", breakdown,
        [Column("breakdown", "Breakdown"), Column("breakdown_value", "Value", "long"), Column("metric", "Metric"),
         Column("n", "Claims", "int"), Column("errors", "Errors", "int"), Column("rate", "Rate", "pct"),
         Column("ci_low", "95% CI low", "pct"), Column("ci_high", "95% CI high", "pct"),
         Column("small_cell", "Under 11 claims")]).render(), section_id="breakdowns"))

    parts.append(_changed_claims_section(wh))
    return page("Coding audit \u2014 accuracy", "audit.html", subtitle, "\n".join(parts))


def _scorecard_section(wh: _Warehouse, rates: pd.DataFrame) -> str:
    if not wh.has("coder_scorecard"):
        return section("Coder scorecards", unavailable("Coder scorecards are not available for this run."))
    card = wh.df(f"SELECT * FROM {wh.scoped('coder_scorecard')} ORDER BY record_error_rate DESC, coder_id")
    record = rates[rates["metric"] == "record_error_rate"]["rate"]
    fig = figures.coder_scorecard_figure(card, float(record.iloc[0]) if not record.empty else None)
    card["small_cell"] = card["small_cell"].map({True: "yes", False: ""})
    table = Table("table-coders", card, [
        Column("coder_id", "Coder"), Column("audited_claims", "Audited claims", "int"),
        Column("record_errors", "Record errors", "int"), Column("record_error_rate", "Record error rate", "pct"),
        Column("record_error_ci_low", "95% CI low", "pct"), Column("record_error_ci_high", "95% CI high", "pct"),
        Column("principal_dx_error_rate", "Principal dx", "pct"),
        Column("secondary_dx_error_rate", "Secondary dx", "pct"), Column("procedure_error_rate", "Procedure", "pct"),
        Column("top_error_types", "Top error types", "long"), Column("top_changed_codes", "Top changed codes", "long"),
        Column("small_cell", "Under 11 claims")])
    return section("Coder scorecards", figure_div(fig, "fig-coders") if fig else note("No coders audited."),
                   table.render(), section_id="coders")


def _changed_claims_section(wh: _Warehouse) -> str:
    changes = f"""
        SELECT claim_id,
               count(*) FILTER (WHERE result <> 'poa_changed') AS differences,
               max(CASE WHEN kind = 'dx' AND role = 'principal' THEN result END) AS principal_result,
               string_agg(CASE result
                    WHEN 'added' THEN kind || CASE WHEN role = 'principal' THEN ' principal' ELSE '' END
                                      || ' added ' || audited_code
                    WHEN 'deleted' THEN kind || CASE WHEN role = 'principal' THEN ' principal' ELSE '' END
                                        || ' deleted ' || original_code
                    WHEN 'poa_changed' THEN kind || ' ' || original_code || ' POA '
                                            || coalesce(original_poa, '-') || '\u2192' || coalesce(audited_poa, '-')
                    ELSE kind || CASE WHEN role = 'principal' THEN ' principal ' ELSE ' ' END || original_code
                         || '\u2192' || audited_code || ' (' || result || ')' END,
                    '; ' ORDER BY kind, role, coalesce(original_position, audited_position)) AS changes
        FROM {wh.scoped('code_diffs')} WHERE result <> 'match' GROUP BY claim_id"""
    base = f"""
        FROM ({changes}) d
        LEFT JOIN {wh.scoped('claim_regroup', 'g')} ON g.claim_id = d.claim_id
        LEFT JOIN {wh.scoped('reviews', 'r')} ON r.claim_id = d.claim_id"""
    total = int(wh.scalar(f"SELECT count(*) {base}"))
    frame = wh.df(f"""SELECT d.claim_id, g.coder_id, g.facility_id, g.service_line,
                             coalesce(d.principal_result, 'match') AS principal_result, d.differences, d.changes,
                             g.original_drg, g.audited_drg, g.delta, r.reviewer_id, r.notes
                      {base}
                      ORDER BY abs(g.delta) DESC NULLS LAST, d.differences DESC, d.claim_id
                      LIMIT {MAX_TABLE_ROWS}""")
    table = Table("table-changed-claims", frame, [
        Column("claim_id", "Claim"), Column("coder_id", "Coder"), Column("facility_id", "Facility"),
        Column("service_line", "Service line"), Column("principal_result", "Principal dx"),
        Column("differences", "Differences", "int"), Column("changes", "What changed", "long"),
        Column("original_drg", "Original DRG"), Column("audited_drg", "Audited DRG"),
        Column("delta", "Delta", "money"), Column("reviewer_id", "Reviewer"), Column("notes", "Reviewer note", "long")],
        total_rows=total, csv_name="the warehouse table code_diffs")
    return section("Audited claims with differences", table.render(),
                   intro="Claims where the audit changed at least one code or POA indicator, largest payment change "
                         "first. Click a column header to sort; type to filter.", section_id="changed-claims")


# ---------------------------------------------------------------------------------------- revenue


def _write_worklists(wh: _Warehouse, out_dir: Path) -> dict[str, Path]:
    out = {}
    for name, direction, amount, order in (
            ("rebill_worklist", "underpaid", "g.delta AS rebill_amount", "g.delta DESC"),
            ("refund_worklist", "overpaid", "-g.delta AS refund_amount", "g.delta ASC")):
        frame = wh.df(f"""SELECT {WORKLIST_COLUMNS.format(amount=amount)}
                          FROM {wh.scoped('claim_regroup', 'g')}
                          LEFT JOIN {wh.scoped('reviews', 'r')} ON r.claim_id = g.claim_id
                          WHERE g.direction = $direction ORDER BY {order}, g.claim_id""", direction=direction)
        out[name] = write_csv(frame, out_dir / f"{name}.csv")
    return out


def _revenue_page(wh: _Warehouse, regroup: pd.DataFrame, extrapolation: pd.DataFrame, subtitle: str) -> str:
    totals = figures.payment_totals(regroup)
    revenue = revenue_totals(regroup)  # the one definition the summary quotes too
    n = len(regroup)
    under = int((regroup["direction"] == "underpaid").sum())
    over = int((regroup["direction"] == "overpaid").sum())
    changed = int(regroup["drg_changed"].fillna(False).astype(bool).sum())
    net = revenue["net_amount"]
    nan = float("nan")

    def rate(value):
        return nan if value is None else value

    cards = [
        Card("Underpaid (lost revenue)", money(revenue["underpaid_amount"]), f"{under:,} claims to rebill", "good"),
        Card("Overpaid (refund liability)", money(revenue["overpaid_amount"]), f"{over:,} claims to refund", "bad"),
        Card("Net (audited \u2212 original)", money(net, signed=True),
             f"on {money(totals['original'])} originally paid", "bad" if net < 0 else "good"),
        Card("DRG change rate", pct(rate(revenue["drg_change_rate"])),
             f"{changed:,} of {n:,} audited claims \u00b7 up {pct(rate(revenue['drg_upgrade_rate']))}, "
             f"down {pct(rate(revenue['drg_downgrade_rate']))}"),
        _extrapolation_card(extrapolation),
    ]
    if revenue["not_priced_claims"]:
        cards.append(Card("Not priced", f"{revenue['not_priced_claims']:,}",
                          "claims without a payment on one side (excluded)"))
    parts = [headline(cards)]

    fig = figures.waterfall_figure(regroup)
    parts.append(section("From original to audited payment",
                         figure_div(fig, "fig-waterfall") if fig else unavailable("No priced audited claims."),
                         intro="Payment = MS-DRG relative weight \u00d7 base rate \u00d7 payer multiplier; "
                               "claims without a payment on either side are left out.", section_id="waterfall"))

    fig = figures.drg_sankey_figure(regroup)
    parts.append(section("DRG shifts", figure_div(fig, "fig-sankey") if fig else note("No DRG changed on audit."),
                         intro="Original DRG to audited DRG, link width = dollars moved; green links were paid more "
                               "after audit (under-coded), red links less (over-coded).", section_id="sankey"))

    impact = (wh.df(f"""SELECT breakdown, breakdown_value, claims, changed, upgraded, downgraded, underpaid_amount,
                               overpaid_amount, net_amount FROM {wh.scoped('revenue_impact')}
                        ORDER BY breakdown, net_amount""") if wh.has("revenue_impact") else pd.DataFrame())
    impact_parts = []
    for key, what, fid in (("service_line", "service line", "fig-impact-service-line"),
                           ("payer", "payer", "fig-impact-payer"),
                           ("drg_family", "DRG family", "fig-impact-drg-family")):
        sub = impact[impact["breakdown"] == key] if not impact.empty else impact
        fig = figures.impact_figure(sub, what) if not sub.empty else None
        impact_parts.append(figure_div(fig, fid) if fig else note(f"No revenue impact by {what}."))
    if not impact.empty:
        impact_table = impact[impact["breakdown"] != "all"]
        impact_parts.append(Table("table-impact", impact_table.assign(
            breakdown=impact_table["breakdown"].replace(BREAKDOWN_NAMES)), [
            Column("breakdown", "Breakdown"), Column("breakdown_value", "Value", "long"),
            Column("claims", "Claims", "int"),
            Column("changed", "DRG changed", "int"), Column("upgraded", "Upgraded", "int"),
            Column("downgraded", "Downgraded", "int"), Column("underpaid_amount", "Underpaid", "money"),
            Column("overpaid_amount", "Overpaid", "money"), Column("net_amount", "Net", "money")]).render())
    parts.append(section("Impact by service line, payer and DRG family", *impact_parts, section_id="impact"))

    if extrapolation.empty:
        parts.append(section("Universe estimate", unavailable(
            "No universe loaded: the audited claims are not extrapolated. Load the claims population the "
            "sample was drawn from (--universe) to estimate the total."), section_id="universe"))
    else:
        fig = figures.extrapolation_figure(extrapolation)
        parts.append(section("Universe estimate", figure_div(fig, "fig-extrapolation") if fig else "",
                             Table("table-extrapolation", extrapolation, [
                                 Column("measure", "Measure"), Column("stratum", "Stratum"),
                                 Column("universe_count", "Universe claims", "int"),
                                 Column("sample_count", "Sample claims", "int"), Column("point", "Point", "money"),
                                 Column("lower_90", "90% lower", "money"), Column("upper_90", "90% upper", "money"),
                                 Column("standard_error", "Std. error", "money"),
                                 Column("distribution", "Distribution"),
                                 Column("degrees_of_freedom", "df", "int"),
                                 Column("not_priced_in_sample", "Not priced in sample", "int")]).render(),
                             intro="Difference estimator of the total delta over the universe (stratified where "
                                   "strata exist, finite population correction), two-sided 90% interval. "
                                   "An overpayment demand is usually set at the lower limit.", section_id="universe"))

    changed_rows = regroup[(regroup["direction"] != "unchanged") | regroup["drg_changed"].fillna(False).astype(bool)]
    changed_rows = changed_rows.assign(_abs=changed_rows["delta"].abs()).sort_values(
        ["_abs", "claim_id"], ascending=[False, True], na_position="last")
    parts.append(section(
        "Worklists",
        links([("rebill_worklist.csv", "rebill_worklist.csv", f"{under:,} underpaid claims, largest first"),
               ("refund_worklist.csv", "refund_worklist.csv", f"{over:,} overpaid claims, largest first")]),
        Table("table-regroup", changed_rows, [
            Column("claim_id", "Claim"), Column("facility_id", "Facility"), Column("payer", "Payer"),
            Column("coder_id", "Coder"), Column("service_line", "Service line"),
            Column("original_drg", "Original DRG"), Column("audited_drg", "Audited DRG"),
            Column("original_payment", "Original payment", "money"),
            Column("audited_payment", "Audited payment", "money"), Column("delta", "Delta", "money"),
            Column("direction", "Direction"), Column("change_drivers", "Drivers", "long")],
            csv_name="rebill_worklist.csv and refund_worklist.csv").render(),
        intro="Claims whose DRG or payment changed on audit.", section_id="worklists"))
    return page("Coding audit \u2014 revenue", "revenue.html", subtitle, "\n".join(parts))


# -------------------------------------------------------------------------------------- compliance


def _flag_data(wh: _Warehouse) -> dict:
    data: dict = {name: None for name in FLAG_TABLES}
    if wh.has("upcoding_flags"):
        flags = wh.df(f"""
            SELECT flag_id, level, entity, rule, observed, expected, n, statistic, p_value, q_value, exposure,
                   severity, description,
                   CASE WHEN json_valid(evidence) THEN json_extract_string(evidence, '$.claims[*]') END AS claims,
                   CASE WHEN json_valid(evidence) THEN json_extract_string(evidence, '$.detail') END AS detail,
                   CASE WHEN json_valid(evidence)
                        THEN array_to_string(json_extract_string(evidence, '$.codes[*]'), ', ') END AS codes
            FROM {wh.scoped('upcoding_flags')}
            ORDER BY {SEVERITY_ORDER}, exposure DESC NULLS LAST, q_value NULLS LAST, flag_id""")
        n_claims = flags["claims"].map(lambda c: 0 if c is None or not hasattr(c, "__len__") else len(c))
        flags["evidence_claims"] = [
            ", ".join(list(c)[:10]) + (f" (+{len(c) - 10} more)" if len(c) > 10 else "")
            if c is not None and hasattr(c, "__len__") else "" for c in flags["claims"]]
        flags["evidence_claim_count"] = n_claims
        # observed/expected: payments for claim rules, proportions for coder and facility rules.
        is_claim = flags["level"] == "claim"
        for column in ("observed", "expected"):
            value = flags[column].astype("float64")
            as_money = value.map(lambda v: money(v), na_action="ignore")
            as_pct = value.map(lambda v: pct(v), na_action="ignore")
            flags[f"{column}_text"] = as_money.where(is_claim, as_pct)
        data["upcoding_flags"] = flags.drop(columns=["claims"])
        data["flagged_claims"] = wh.df(f"""
            WITH f AS (
                SELECT flag_id, level, rule, severity, entity, description,
                       unnest(json_extract_string(evidence, '$.claims[*]')) AS claim_id
                FROM {wh.scoped('upcoding_flags')} WHERE json_valid(evidence))
            SELECT f.claim_id, f.flag_id, f.level, f.rule, f.severity, f.entity AS flagged_entity,
                   g.facility_id, g.coder_id, g.payer, g.service_line, g.original_drg, g.audited_drg,
                   g.original_payment, g.audited_payment, g.delta, g.original_mcc_codes, g.audited_mcc_codes,
                   g.change_drivers, f.description
            FROM f LEFT JOIN {wh.scoped('claim_regroup', 'g')} ON g.claim_id = f.claim_id
            ORDER BY {SEVERITY_ORDER}, f.rule, f.claim_id""")
    else:
        data["flagged_claims"] = pd.DataFrame(columns=[
            "claim_id", "flag_id", "level", "rule", "severity", "flagged_entity", "facility_id", "coder_id", "payer",
            "service_line", "original_drg", "audited_drg", "original_payment", "audited_payment", "delta",
            "original_mcc_codes", "audited_mcc_codes", "change_drivers", "description"])
    for table, order in (("coder_funnel", "q_value NULLS LAST, rate DESC, coder_id"),
                         ("facility_target_areas", "target_area, peer_percentile DESC NULLS LAST, facility_id"),
                         ("short_stay_rates", "level, short_stay_rate DESC NULLS LAST, entity")):
        if wh.has(table):
            frame = wh.df(f"SELECT * FROM {wh.scoped(table)} ORDER BY {order}")
            data[table] = frame.drop(columns=["audit_period"], errors="ignore")
    return data


def _yes(series: pd.Series) -> pd.Series:
    return series.map({True: "yes", False: ""})


def _compliance_page(data: dict, subtitle: str) -> str:
    flags, funnel = data["upcoding_flags"], data["coder_funnel"]
    areas, short = data["facility_target_areas"], data["short_stay_rates"]
    flagged = data["flagged_claims"]
    cards = []
    if flags is not None:
        by = flags["severity"].value_counts()
        cards.append(Card("Upcoding flags", f"{len(flags):,}",
                          f"high {int(by.get('high', 0)):,} \u00b7 medium {int(by.get('medium', 0)):,} \u00b7 "
                          f"low {int(by.get('low', 0)):,}", "bad" if by.get("high", 0) else ""))
        distinct = flagged.drop_duplicates("claim_id")
        exposure = float(-distinct["delta"][distinct["delta"] < 0].sum()) if "delta" in distinct else 0.0
        audited = int(distinct["original_drg"].notna().sum()) if "original_drg" in distinct else 0
        cards.append(Card("Claims cited as evidence", f"{len(distinct):,}",
                          f"{audited:,} audited, {money(exposure)} overpaid among them", "bad" if exposure > 0 else ""))
    else:
        cards.append(Card("Upcoding flags", "n/a", "not available for this run"))
    if funnel is not None:
        n_flagged = int(funnel["flagged"].fillna(False).astype(bool).sum()) if "flagged" in funnel else 0
        cards.append(Card("Coders flagged", f"{n_flagged:,} of {len(funnel):,}",
                          "overpaid share above the rest of the audit (BH q-value)", "bad" if n_flagged else ""))
    if areas is not None:
        shown = areas[~areas["suppressed"].fillna(False).astype(bool)]
        cards.append(Card("Facility target-area outliers", f"{int((shown['outlier'] == 'high').sum()):,} high",
                          f"{int((shown['outlier'] == 'low').sum()):,} low \u00b7 {len(shown):,} facility-areas rated"))
    if short is not None:
        fac = short[(short["level"] == "facility") & ~short["suppressed"].fillna(False).astype(bool)]
        stays, shorts = fac["highest_severity_stays"].sum(), fac["short_stays"].sum()
        cards.append(Card("Highest-severity short stays", pct(shorts / stays if stays else float("nan")),
                          f"{int(shorts):,} of {int(stays):,} highest-severity stays"))
    parts = [headline(cards)]

    if flags is None:
        parts.append(section("Flags by severity", unavailable(
            "Upcoding flags are not available for this run (no upcoding_flags table in the warehouse).")))
    else:
        fig = figures.severity_figure(flags)
        parts.append(section(
            "Flags by severity",
            figure_div(fig, "fig-severity") if fig else note("No upcoding flag raised in this period."),
            Table("table-flags", flags, [
                Column("severity", "Severity"), Column("level", "Level"), Column("entity", "Entity"),
                Column("rule", "Rule"), Column("description", "Finding", "long"),
                Column("observed_text", "Observed"), Column("expected_text", "Expected"), Column("n", "n", "int"),
                Column("p_value", "p", "p"),
                Column("q_value", "q (BH)", "p"), Column("exposure", "Exposure", "money"),
                Column("evidence_claim_count", "Evidence claims", "int"),
                Column("evidence_claims", "Evidence claim ids", "long"), Column("codes", "Codes"),
                Column("detail", "Detail", "long")], csv_name="flagged_claims.csv").render(),
            intro="Each flag with the evidence a compliance officer can follow: the claims, codes and the test "
                  "behind it. Exposure = overpaid dollars of the evidence claims.", section_id="flags"))

    if funnel is None:
        parts.append(section("Coder funnel plot", unavailable("The coder funnel is not available for this run.")))
    else:
        fig = figures.funnel_figure(funnel)
        funnel_table = funnel.assign(flagged=_yes(funnel["flagged"].fillna(False).astype(bool))) \
            if "flagged" in funnel else funnel
        parts.append(section(
            "Coder funnel plot", figure_div(fig, "fig-funnel") if fig else note("No coder audited."),
            Table("table-funnel", funnel_table, [
                Column("coder_id", "Coder"), Column("n", "Audited claims", "int"),
                Column("overpaid", "Overpaid", "int"),
                Column("rate", "Overpaid share", "pct"), Column("expected", "Rest of audit", "pct"),
                Column("lower_95", "95% low", "pct"), Column("upper_95", "95% high", "pct"),
                Column("lower_998", "99.8% low", "pct"), Column("upper_998", "99.8% high", "pct"),
                Column("p_value", "p", "p"), Column("q_value", "q (BH)", "p"), Column("flagged", "Flagged")]).render(),
            intro="Each coder's share of audited claims that were overpaid against the number audited. Control "
                  "limits are exact binomial quantiles around the overall share; a coder above the 99.8% line is "
                  "unlikely to be there by chance.", section_id="funnel"))

    if areas is None:
        parts.append(section("Facility target areas", unavailable(
            "Facility target-area percentiles are not available for this run (no peer file or flags step).")))
    else:
        fig = figures.target_area_figure(areas)
        parts.append(section(
            "Facility target areas against peers",
            figure_div(fig, "fig-target-areas") if fig else note("Every target area is suppressed (counts under 11)."),
            Table("table-target-areas", areas.assign(suppressed=_yes(areas["suppressed"].fillna(False).astype(bool))), [
                Column("facility_id", "Facility"), Column("target_area", "Target area"),
                Column("numerator", "Numerator", "int"), Column("denominator", "Denominator", "int"),
                Column("percent", "Percent", "pct"), Column("peer_percentile", "Peer percentile", "float"),
                Column("peer_p20", "Peers 20th", "pct"), Column("peer_p80", "Peers 80th", "pct"),
                Column("peers", "Peers", "int"), Column("direction", "Direction"), Column("outlier", "Outlier"),
                Column("suppressed", "Suppressed (<11)")]).render(),
            intro="PEPPER-style: the facility's percent for each target area ranked among peers; at or above the "
                  "80th percentile is a high outlier, at or below the 20th a low one. Counts under 11 are "
                  "suppressed.", section_id="target-areas"))

    if short is None:
        parts.append(section("Highest-severity short stays", unavailable(
            "Short-stay rates are not available for this run.")))
    else:
        fig = figures.short_stay_figure(short)
        parts.append(section(
            "Highest-severity short stays",
            figure_div(fig, "fig-short-stays") if fig else note("Every facility cell is suppressed (counts under 11)."),
            Table("table-short-stays", short.assign(suppressed=_yes(short["suppressed"].fillna(False).astype(bool))), [
                Column("level", "Level"), Column("entity", "Entity"),
                Column("highest_severity_stays", "Highest-severity stays", "int"),
                Column("short_stays", "Short stays", "int"), Column("short_stay_rate", "Short-stay rate", "pct"),
                Column("single_mcc_stays", "Single-MCC stays", "int"),
                Column("single_mcc_rate", "Single-MCC rate", "pct"),
                Column("suppressed", "Suppressed (<11)")]).render(),
            intro="Highest-severity DRG stays shorter than 0.8 \u00d7 the DRG's geometric mean length of stay, and "
                  "stays whose severity rests on a single MCC (OIG OEI-02-18-00380).", section_id="short-stays"))

    parts.append(section("Flagged claims", links([(
        "flagged_claims.csv", "flagged_claims.csv",
        f"{len(flagged):,} flag-claim rows: every claim cited as evidence, with its DRGs and payment change"
        if flags is not None else "empty: upcoding flags not available for this run")]), section_id="flagged-claims"))
    return page("Coding audit \u2014 compliance", "compliance.html", subtitle, "\n".join(parts))


# ------------------------------------------------------------------------------------------ index


def _file_names(value) -> str:
    items = value if isinstance(value, (list, tuple)) else [value]
    return ", ".join(PurePath(str(v).replace("\\", "/")).name for v in items if v) or "\u2014"


def _index_page(wh: _Warehouse, run_info: dict, rates: pd.DataFrame, regroup: pd.DataFrame,
                extrapolation: pd.DataFrame, flag_data: dict, audited_claims: int, generated: str) -> str:
    period = wh.period
    totals = figures.payment_totals(regroup)
    net = totals["underpaid"] - totals["overpaid"]
    cards = [_rate_card(rates, "record_error_rate", "Record error rate"),
             Card("Net revenue impact", money(net, signed=True),
                  f"underpaid {money(totals['underpaid'])} \u00b7 overpaid {money(totals['overpaid'])}",
                  "bad" if net < 0 else "good"),
             _extrapolation_card(extrapolation)]
    flags = flag_data["upcoding_flags"]
    if flags is not None:
        high = int((flags["severity"] == "high").sum())
        cards.append(Card("Upcoding flags", f"{len(flags):,}", f"{high:,} high severity", "bad" if high else ""))

    inputs = run_info.get("inputs")
    if not inputs and wh.has("loads"):
        loads = wh.df("SELECT inputs FROM loads WHERE audit_period = $period ORDER BY loaded_at DESC LIMIT 1")
        if not loads.empty and loads.iloc[0, 0]:
            import json
            inputs = json.loads(loads.iloc[0, 0])
    input_rows = [(f"{kind} file(s)", _file_names(files)) for kind, files in (inputs or {}).items()
                  if files and kind != "formats"]
    if (inputs or {}).get("formats"):
        input_rows.append(("Layout asked (--format)", ", ".join(f"{k}: {v}" for k, v in inputs["formats"].items())))

    def info(key, fallback="\u2014"):
        value = run_info.get(key)
        return fallback if value is None else value

    claims_count = run_info.get("claims")
    rejected_total = run_info.get("rejected_rows")
    if rejected_total is None and wh.has("rejected_rows"):
        rejected_total = int(wh.scalar(f"SELECT count(*) FROM {wh.scoped('rejected_rows')}"))
    rates_info = run_info.get("rates") or {}
    base_rate = run_info.get("base_rate")
    years = run_info.get("weights_fiscal_years") or []
    grouper = run_info.get("grouper") or (
        ", ".join(wh.df(f"SELECT DISTINCT grouper FROM {wh.scoped('claim_regroup')} ORDER BY 1")["grouper"].astype(str))
        if "grouper" in wh.columns.get("claim_regroup", ()) else "\u2014")
    load = (wh.df("SELECT * FROM loads WHERE audit_period = $period ORDER BY loaded_at DESC LIMIT 1")
            if wh.has("loads") else pd.DataFrame())
    load_rows = []
    if not load.empty:
        row = load.iloc[0]
        for entity in ("claims", "reviews", "universe"):
            read, kept = row.get(f"{entity}_in"), row.get(f"{entity}_loaded")
            if pd.notna(read) and (entity != "universe" or read):
                rejected = row.get(f"{entity}_rejected")
                load_rows.append((f"{entity.capitalize()} rows read / loaded / rejected",
                                  f"{count(read)} / {count(kept)} / "
                                  f"{count(rejected) if pd.notna(rejected) else count(read - kept)}"))
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
        ("Rejected rows", count(rejected_total) if rejected_total is not None else "\u2014"),
        ("MS-DRG grouper", str(grouper)),
        ("Relative weights (fiscal years)", ", ".join(f"FY{y}" for y in years) or "\u2014"),
        ("Base rate", money(base_rate) if isinstance(base_rate, (int, float)) else "\u2014"),
        ("Rates source", str(rates_info.get("rates_source", "\u2014"))),
        ("Facility base rates configured", str(rates_info.get("facility_base_rates", "\u2014"))),
        ("Payer multipliers configured", str(rates_info.get("payer_multipliers", "\u2014"))),
    ]
    parts = [headline(cards), section("Reports", links([
        ("audit.html", "Audit accuracy", "error rates by diagnosis position, error types, ICD-10 chapter changes, "
                                         "coder scorecards, trend"),
        ("revenue.html", "Revenue impact", "waterfall, DRG shifts, impact by service line / payer / DRG family, "
                                           "universe estimate, rebill and refund worklists"),
        ("compliance.html", "Compliance", "upcoding flags with evidence, coder funnel, facility target areas, "
                                          "short stays")]), section_id="reports"),
        section("This run", placeholder(period), kv_table(meta_rows), section_id="run")]
    warnings = run_info.get("warnings") or []
    if warnings:
        parts.append(section("Warnings", "<ul>" + "".join(
            f"<li>{esc(w.get('message'))} <span class=\"note\">({esc(w.get('code'))}, {count(w.get('count'))})</span></li>"
            for w in warnings) + "</ul>", intro="What did not stop the run but changes how to read it.",
            section_id="warnings"))

    if wh.has("rejected_rows"):
        rejected = wh.df(f"""SELECT entity, rule, "column", count(*) AS rows, count(DISTINCT "row") AS source_rows,
                                    any_value(reason) AS example_reason
                             FROM {wh.scoped('rejected_rows')} GROUP BY entity, rule, "column"
                             ORDER BY rows DESC, entity, rule""")
        body = (Table("table-rejected", rejected, [
            Column("entity", "File"), Column("rule", "Rule"), Column("column", "Column"),
            Column("rows", "Rejections", "int"), Column("source_rows", "Rows", "int"),
            Column("example_reason", "Example reason", "long")]).render()
            if not rejected.empty else note("No row was rejected."))
        parts.append(section("Rejected rows by rule", body, intro="Rows quarantined by validation "
                             "(table rejected_rows), counted by file and rule.", section_id="rejected"))
    parts.append(section("Downloads", links([
        ("rebill_worklist.csv", "rebill_worklist.csv", "underpaid claims"),
        ("refund_worklist.csv", "refund_worklist.csv", "overpaid claims"),
        ("flagged_claims.csv", "flagged_claims.csv", "claims cited by upcoding flags")]), section_id="downloads"))
    subtitle = (f"Audit period {period} \u00b7 {audited_claims:,} audited claims \u00b7 "
                f"ran {info('generated_at', generated)}")
    return page("Coding audit \u2014 overview", "index.html", subtitle, "\n".join(parts))
