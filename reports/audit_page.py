"""audit.html: coding accuracy for the audit team."""

from __future__ import annotations

import pandas as pd

from reports import figures
from reports.html import (MAX_TABLE_ROWS, Column, PageData, Table, figure_card, figure_div, note, page, section,
                          unavailable)
from reports.warehouse import PeriodWarehouse, with_drg_titles

TREND_METRICS = ("record_error_rate", "principal_dx_error_rate", "secondary_dx_error_rate")
HEADLINE_METRICS = ("record_error_rate", "principal_dx_error_rate", "secondary_dx_error_rate", "procedure_error_rate")
MIN_TREND_PERIODS = 3
# error_rates breakdown -> (table id suffix, the readers' name of the dimension)
DIMENSIONS = {"facility": "facility", "payer": "payer", "service_line": "service line", "coder": "coder",
              "audit_month": "discharge month"}


def rate_card(rates: pd.DataFrame, metric: str, label: str):
    row = rates[rates["metric"] == metric]
    if row.empty:
        return figure_card(metric, label, None, "pct", "not computed")
    r = row.iloc[0]
    from reports.html import pct
    return figure_card(metric, label, float(r["rate"]), "pct",
                       f"95% CI {pct(r['ci_low'])}\u2013{pct(r['ci_high'])} \u00b7 "
                       f"{int(r['errors']):,} of {int(r['n']):,} claims",
                       parts={"errors": int(r["errors"]), "claims": int(r["n"]), "ci_low": float(r["ci_low"]),
                              "ci_high": float(r["ci_high"])})


def breakdown_table(frame: pd.DataFrame) -> pd.DataFrame:
    """error_rates rows of one breakdown -> one row per value: claims, record errors and the four rates."""
    wide = frame.pivot_table(index="breakdown_value", columns="metric", values=["rate", "n", "errors"],
                             aggfunc="first")
    out = pd.DataFrame(index=wide.index)
    out["claims"] = wide[("n", "record_error_rate")] if ("n", "record_error_rate") in wide else pd.NA
    for metric in HEADLINE_METRICS:
        out[metric] = wide[("rate", metric)] if ("rate", metric) in wide else pd.NA
    out["record_errors"] = wide[("errors", "record_error_rate")] if ("errors", "record_error_rate") in wide else pd.NA
    record = frame[frame["metric"] == "record_error_rate"].set_index("breakdown_value")
    out["ci_low"] = record["ci_low"]
    out["ci_high"] = record["ci_high"]
    out["small_cell"] = record["small_cell"].map({True: "yes", False: ""})
    return out.reset_index().sort_values("breakdown_value", kind="stable")


def audit_page(wh: PeriodWarehouse, rates: pd.DataFrame, subtitle: str) -> str:
    data = PageData()
    cards = [rate_card(rates, m, figures.RATE_LABELS[m]) for m in HEADLINE_METRICS]
    if not rates[rates["metric"] == "dx_omitted"].empty:
        cards.append(rate_card(rates, "dx_omitted", "Claims with a missed diagnosis"))
    parts = [data.headline(cards)]

    fig = figures.position_error_figure(rates)
    parts.append(section(
        "Error rate by diagnosis position",
        figure_div(fig, "fig-positions") if fig else unavailable("No position rates for this period."),
        intro="Among audited claims with a code at each original position, the share whose code there was not "
              "supported (position 1: principal result other than match); n under each bar. Positions no audited "
              "claim reaches are left out. Missed codes have no original position and are shown as 'omitted'. "
              "Position rates are never summed into a record rate.", section_id="positions"))

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

    parts.append(_scorecard_section(wh, rates, data))

    trend = wh.df(f"""SELECT audit_period, metric, n, errors, rate, ci_low, ci_high FROM error_rates
                      WHERE breakdown = 'all' AND metric IN {TREND_METRICS} ORDER BY audit_period""")
    periods = trend["audit_period"].nunique()
    if periods >= MIN_TREND_PERIODS:
        fig = figures.trend_figure(trend)
        parts.append(section("Trend across audit periods", figure_div(fig, "fig-trend"),
                             intro=f"{periods} audit periods in the warehouse.", section_id="trend"))
    else:
        parts.append(section("Trend across audit periods", note(
            f"{periods} audit period{'s' if periods != 1 else ''} in the warehouse: the trend is drawn from "
            f"{MIN_TREND_PERIODS} periods on."), section_id="trend"))

    breakdown = wh.df("""SELECT breakdown, breakdown_value, metric, n, errors, rate, ci_low, ci_high, small_cell
                         FROM error_rates WHERE audit_period = $period AND breakdown <> 'all'
                           AND metric IN ('record_error_rate', 'principal_dx_error_rate', 'secondary_dx_error_rate',
                                          'procedure_error_rate')""")
    tables = []
    for key, name in DIMENSIONS.items():
        sub = breakdown[breakdown["breakdown"] == key]
        if sub.empty:
            continue
        tables.append(f"<h3>By {name}</h3>" + data.table(Table(f"table-breakdown-{key}", breakdown_table(sub), [
            Column("breakdown_value", name.capitalize(), "long" if key == "audit_month" else "text"),
            Column("claims", "Audited claims", "int"), Column("record_errors", "Record errors", "int"),
            Column("record_error_rate", "Record error rate", "pct"), Column("ci_low", "95% CI low", "pct"),
            Column("ci_high", "95% CI high", "pct"), Column("principal_dx_error_rate", "Principal dx", "pct"),
            Column("secondary_dx_error_rate", "Secondary dx", "pct"),
            Column("procedure_error_rate", "Procedure", "pct"), Column("small_cell", "Under 11 claims")]),
            f"error_rates breakdown={key}"))
    parts.append(section("Error rates by facility, payer, service line, coder and month",
                         *(tables or [note("No breakdowns for this period.")]),
                         intro="One table per dimension: audited claims, record errors and the four error rates "
                               "(95% Wilson interval of the record rate).", section_id="breakdowns"))

    parts.append(_changed_claims_section(wh, data))
    return page("Coding audit \u2014 accuracy", "audit.html", subtitle, "\n".join(parts), data)


def _scorecard_section(wh: PeriodWarehouse, rates: pd.DataFrame, data: PageData) -> str:
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
                   data.table(table, "coder_scorecard"), section_id="coders")


def changed_claims(wh: PeriodWarehouse, limit: int | None = MAX_TABLE_ROWS) -> tuple[pd.DataFrame, int]:
    """Audited claims with a difference, largest payment change first: the principal diagnosis as
    original -> audited code with its result, the other changes, DRGs with titles."""
    changes = f"""
        SELECT claim_id,
               count(*) FILTER (WHERE result NOT IN ('match', 'poa_changed')) AS differences,
               max(CASE WHEN kind = 'dx' AND role = 'principal' THEN
                        coalesce(original_code, '-') || CASE WHEN result = 'match' THEN ''
                        ELSE ' \u2192 ' || coalesce(audited_code, '-') END || ' (' || result || ')' END)
                   AS principal,
               string_agg(CASE result
                    WHEN 'added' THEN kind || ' added ' || audited_code
                    WHEN 'deleted' THEN kind || ' deleted ' || original_code
                    WHEN 'poa_changed' THEN kind || ' ' || original_code || ' POA '
                                            || coalesce(original_poa, '-') || '\u2192' || coalesce(audited_poa, '-')
                    ELSE kind || ' ' || original_code || '\u2192' || audited_code || ' (' || result || ')' END,
                    '; ' ORDER BY kind, coalesce(original_position, audited_position))
                    FILTER (WHERE NOT (kind = 'dx' AND role = 'principal') AND result <> 'match') AS changes
        FROM {wh.scoped('code_diffs')} GROUP BY claim_id
        HAVING count(*) FILTER (WHERE result <> 'match') > 0"""
    base = f"""
        FROM ({changes}) d
        LEFT JOIN {wh.scoped('claim_regroup', 'g')} ON g.claim_id = d.claim_id
        LEFT JOIN {wh.scoped('reviews', 'r')} ON r.claim_id = d.claim_id"""
    total = int(wh.scalar(f"SELECT count(*) {base}"))
    drivers = ", ".join(f"g.{c}" for c in ("auditor_changes", "grouper_effects") if wh.has("claim_regroup", c))
    frame = wh.df(f"""SELECT d.claim_id, g.coder_id, g.facility_id, g.service_line, g.fiscal_year,
                             d.principal, d.differences, d.changes,
                             g.original_drg, g.audited_drg, g.delta, {drivers + ',' if drivers else ''}
                             r.reviewer_id, r.notes
                      {base}
                      ORDER BY abs(g.delta) DESC NULLS LAST, d.differences DESC, d.claim_id
                      {f'LIMIT {int(limit)}' if limit else ''}""")
    return with_drg_titles(wh, frame, ["original_drg", "audited_drg"]), total


def _changed_claims_section(wh: PeriodWarehouse, data: PageData) -> str:
    frame, total = changed_claims(wh)
    table = Table("table-changed-claims", frame, [
        Column("claim_id", "Claim"), Column("coder_id", "Coder"), Column("facility_id", "Facility"),
        Column("service_line", "Service line"), Column("principal", "Principal dx (original \u2192 audited)"),
        Column("differences", "Differences", "int"), Column("changes", "Other changes", "long"),
        Column("original_drg_label", "Original DRG", "long"), Column("audited_drg_label", "Audited DRG", "long"),
        Column("delta", "Delta", "money"), Column("auditor_changes", "Auditor changes", "long"),
        Column("grouper_effects", "Grouper effects", "long"),
        Column("reviewer_id", "Reviewer"), Column("notes", "Reviewer note", "long")],
        total_rows=total, csv_name="the warehouse table code_diffs")
    return section("Audited claims with differences", data.table(table, "code_diffs + claim_regroup"),
                   intro="Claims where the audit changed at least one code or POA indicator, largest payment change "
                         "first. Click a column header to sort; type to filter.", section_id="changed-claims")
