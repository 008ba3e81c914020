"""revenue.html: payment impact, billed-DRG validation and the worklists, for finance."""

from __future__ import annotations

import pandas as pd

from audits.revenue.pricing import revenue_totals
from reports import figures
from reports.html import (Column, PageData, Table, figure_card, figure_div, links, money, money0, note, page, pct,
                          section, unavailable)
from reports.warehouse import PeriodWarehouse, with_drg_titles

IMPACT_DIMENSIONS = {"service_line": "service line", "payer": "payer", "drg_family": "DRG family",
                     "facility": "facility", "coder": "coder", "audit_month": "discharge month"}
TOP_PAIRS = 25


def extrapolation_cards(extrapolation: pd.DataFrame) -> list:
    """The universe estimate, twice: the net difference, and the overpayments alone (an overpayment
    demand is the lower limit of the latter, not of the net)."""
    out = []
    for measure, key, label in (("net_delta", "universe_net", "Universe estimate: net difference"),
                                ("overpayments_alone", "universe_overpayment",
                                 "Universe estimate: overpayments alone")):
        row = (extrapolation[(extrapolation["measure"] == measure) & (extrapolation["stratum"] == "all")]
               if not extrapolation.empty else extrapolation)
        if row.empty:
            out.append(figure_card(key, label, None, "money0", "no universe loaded"))
            continue
        r = row.iloc[0]
        out.append(figure_card(
            key, label, float(r["point"]), "money0",
            f"90% CI {money0(r['lower_90'])} to {money0(r['upper_90'])} \u00b7 lower limit {money0(r['lower_90'])}"
            f" \u00b7 {int(r['universe_count']):,} claims in universe",
            "bad" if r["point"] < 0 or measure == "overpayment" else "good",
            parts={"lower_90": float(r["lower_90"]), "upper_90": float(r["upper_90"]),
                   "universe_claims": int(r["universe_count"])}))
    return out


def impact_rows(impact: pd.DataFrame, breakdown: str) -> tuple[pd.DataFrame, int]:
    """One breakdown of revenue_impact: groups with money moved, by dollars at stake (months in calendar
    order); the groups with $0 either way are folded into a count."""
    sub = impact[impact["breakdown"] == breakdown].copy()
    sub["at_stake"] = sub["underpaid_amount"].astype(float) + sub["overpaid_amount"].astype(float)
    zero = sub["at_stake"] == 0
    shown = sub[~zero]
    if breakdown == "audit_month":
        shown = shown.sort_values("breakdown_value")
    else:
        shown = shown.sort_values(["at_stake", "breakdown_value"], ascending=[False, True])
    return shown, int(zero.sum())


def billed_pairs(wh: PeriodWarehouse, rows: str, billed: str, regrouped: str, amount: str | None,
                 top_n: int = TOP_PAIRS) -> pd.DataFrame:
    """Billed -> regrouped DRG pairs of `rows` (a subquery) by claims, and dollars both ways when `amount`
    is given: the `top_n` with most dollars at stake, then most claims."""
    value = amount or "0.0"
    return wh.df(f"""
        SELECT {billed} AS billed_drg, {regrouped} AS regrouped_drg, count(*) AS claims,
               round(coalesce(fsum({value}) FILTER (WHERE {value} > 0), 0), 2) AS under_billed,
               round(coalesce(-fsum({value}) FILTER (WHERE {value} < 0), 0), 2) AS over_billed,
               round(coalesce(fsum({value}), 0), 2) AS net
        FROM ({rows}) WHERE {billed} IS NOT NULL AND {regrouped} IS NOT NULL
        GROUP BY ALL ORDER BY under_billed + over_billed DESC, claims DESC, billed_drg, regrouped_drg
        LIMIT {int(top_n)}""")


def billed_validation_sql(wh: PeriodWarehouse) -> str | None:
    """The period's billed-DRG mismatches (every claim regrouped with --regroup-universe), largest
    difference first: billed_drg_mismatches.csv's rows. None when the run did not regroup the universe."""
    if not wh.has("billed_drg_validation"):
        return None
    scoped = (f"SELECT * EXCLUDE (audit_period) FROM {wh.scoped('billed_drg_validation')}"
              if wh.has("billed_drg_validation", "audit_period") else "SELECT * FROM billed_drg_validation")
    return f"{scoped} ORDER BY abs(difference) DESC NULLS LAST, claim_id"


def revenue_page(wh: PeriodWarehouse, regroup: pd.DataFrame, extrapolation: pd.DataFrame, subtitle: str) -> str:
    data = PageData()
    totals = figures.payment_totals(regroup)
    revenue = revenue_totals(regroup)  # the one definition the summary quotes too
    n = len(regroup)
    under = int((regroup["direction"] == "underpaid").sum())
    over = int((regroup["direction"] == "overpaid").sum())
    changed = int(regroup["drg_changed"].fillna(False).astype(bool).sum())
    net = revenue["net_amount"]
    with_billed = int(regroup["billed_drg"].notna().sum())
    mismatched = int(regroup["billed_drg_mismatch"].fillna(False).astype(bool).sum())

    cards = [
        figure_card("underpaid_amount", "Underpaid (lost revenue)", revenue["underpaid_amount"], "money",
                    f"{under:,} claims to rebill", "good", {"claims": under}),
        figure_card("overpaid_amount", "Overpaid (refund liability)", revenue["overpaid_amount"], "money",
                    f"{over:,} claims to refund", "bad", {"claims": over}),
        figure_card("net_amount", "Net (audited \u2212 original)", net, "signed_money",
                    f"on {money(totals['original'])} originally paid", "bad" if net < 0 else "good",
                    {"original_payment": totals["original"]}),
        figure_card("drg_change_rate", "DRG change rate", revenue["drg_change_rate"], "pct",
                    f"{changed:,} of {n:,} audited claims \u00b7 up {pct(revenue['drg_upgrade_rate'])}, "
                    f"down {pct(revenue['drg_downgrade_rate'])}",
                    parts={"changed": changed, "claims": n, "drg_upgrade_rate": revenue["drg_upgrade_rate"],
                           "drg_downgrade_rate": revenue["drg_downgrade_rate"]}),
        figure_card("billed_drg_mismatch_rate", "Billed DRG \u2260 regrouped (audited claims)",
                    mismatched / with_billed if with_billed else None, "pct",
                    f"{mismatched:,} of {with_billed:,} audited claims with a billed DRG",
                    parts={"mismatches": mismatched, "claims_with_billed_drg": with_billed}),
        *extrapolation_cards(extrapolation),
    ]
    if revenue["not_priced_claims"]:
        cards.append(figure_card("not_priced_claims", "Not priced", revenue["not_priced_claims"], "int",
                                 "claims without a payment on one side (excluded)"))
    parts = [data.headline(cards)]

    fig = figures.waterfall_figure(regroup)
    parts.append(section("From original to audited payment",
                         figure_div(fig, "fig-waterfall") if fig else unavailable("No priced audited claims."),
                         intro="Payment = MS-DRG relative weight \u00d7 base rate \u00d7 payer multiplier; "
                               "claims without a payment on either side are left out. The axis starts at $0.",
                         section_id="waterfall"))

    titled = with_drg_titles(wh, regroup, ["original_drg", "audited_drg", "billed_drg"])
    fig = figures.drg_sankey_figure(titled)
    parts.append(section("DRG shifts", figure_div(fig, "fig-sankey") if fig else note("No DRG changed on audit."),
                         intro="Original DRG to audited DRG, link width = dollars moved; green links were paid more "
                               "after audit (under-coded), red links less (over-coded).", section_id="sankey"))

    parts.append(_impact_section(wh, data))
    parts.append(_billed_section(wh, data, titled, mismatched, with_billed))
    parts.append(_universe_section(extrapolation, data))
    parts.append(_findings_section(wh, data))

    changed_rows = titled[(titled["direction"] != "unchanged") | titled["drg_changed"].fillna(False).astype(bool)]
    changed_rows = changed_rows.assign(_abs=changed_rows["delta"].abs()).sort_values(
        ["_abs", "claim_id"], ascending=[False, True], na_position="last")
    parts.append(section(
        "Worklists",
        links([("rebill_worklist.csv", "rebill_worklist.csv", f"{under:,} underpaid claims, largest first"),
               ("refund_worklist.csv", "refund_worklist.csv", f"{over:,} overpaid claims, largest first"),
               ("audit_workbook.xlsx", "audit_workbook.xlsx", "both worklists and the other lists, in one Excel "
                                                              "workbook")]),
        data.table(Table("table-regroup", changed_rows, [
            Column("claim_id", "Claim"), Column("facility_id", "Facility"), Column("payer", "Payer"),
            Column("coder_id", "Coder"), Column("service_line", "Service line"),
            Column("original_drg_label", "Original DRG", "long"), Column("audited_drg_label", "Audited DRG", "long"),
            Column("original_payment", "Original payment", "money"),
            Column("audited_payment", "Audited payment", "money"), Column("delta", "Delta", "money"),
            Column("direction", "Direction"), Column("auditor_changes", "Auditor changes", "long"),
            Column("grouper_effects", "Grouper effects", "long")],
            csv_name="rebill_worklist.csv and refund_worklist.csv"), "claim_regroup"),
        intro="Claims whose DRG or payment changed on audit. Auditor changes: codes the auditor added, removed or "
              "changed, with the CC/MCC level they had; grouper effects: codes whose CC/MCC role changed as a "
              "consequence.", section_id="worklists"))
    return page("Coding audit \u2014 revenue", "revenue.html", subtitle, "\n".join(parts), data)


def _impact_section(wh: PeriodWarehouse, data: PageData) -> str:
    impact = (wh.df(f"""SELECT breakdown, breakdown_value, claims, changed, upgraded, downgraded, underpaid_amount,
                               overpaid_amount, net_amount FROM {wh.scoped('revenue_impact')}""")
              if wh.has("revenue_impact") else pd.DataFrame())
    if impact.empty:
        return section("Impact by service line, payer and DRG family", note("No revenue impact recorded."),
                       section_id="impact")
    parts = []
    for key, what, fid in (("service_line", "service line", "fig-impact-service-line"),
                           ("payer", "payer", "fig-impact-payer"),
                           ("drg_family", "DRG family", "fig-impact-drg-family")):
        shown, _ = impact_rows(impact, key)
        fig = figures.impact_figure(shown, what) if not shown.empty else None
        parts.append(figure_div(fig, fid) if fig else note(f"No money moved by {what}."))
    for key, what in IMPACT_DIMENSIONS.items():
        shown, zero = impact_rows(impact, key)
        if shown.empty and not zero:
            continue
        folded = (f"{zero:,} {what} group{'s' if zero != 1 else ''} with no payment change "
                  "(folded; in the warehouse table revenue_impact)." if zero else "")
        parts.append(f"<h3>By {what}</h3>" + data.table(Table(f"table-impact-{key}", shown, [
            Column("breakdown_value", what.capitalize(), "long"), Column("claims", "Claims", "int"),
            Column("changed", "DRG changed", "int"), Column("upgraded", "Upgraded", "int"),
            Column("downgraded", "Downgraded", "int"), Column("underpaid_amount", "Underpaid", "money"),
            Column("overpaid_amount", "Overpaid", "money"), Column("net_amount", "Net", "money")],
            extra_note=folded), f"revenue_impact breakdown={key}"))
    return section("Impact by service line, payer, DRG family, facility, coder and month", *parts,
                   intro="Groups with money at stake, most dollars first (months in calendar order).",
                   section_id="impact")


def _billed_section(wh: PeriodWarehouse, data: PageData, titled: pd.DataFrame, mismatched: int,
                    with_billed: int) -> str:
    parts = []
    audited = f"SELECT * FROM {wh.scoped('claim_regroup')} WHERE billed_drg_mismatch"
    pairs = with_drg_titles(wh, billed_pairs(wh, audited, "billed_drg", "original_drg", None),
                            ["billed_drg", "regrouped_drg"], default_year=_one_year(titled))
    parts.append(note(f"Audited claims: {mismatched:,} of {with_billed:,} with a billed DRG "
                      f"({pct(mismatched / with_billed if with_billed else None)}) grouped, from their original "
                      "codes, to another DRG than the one billed."))
    if not pairs.empty:
        parts.append(data.table(Table("table-billed-audited", pairs, [
            Column("billed_drg_label", "Billed DRG", "long"), Column("regrouped_drg_label", "Regrouped DRG", "long"),
            Column("claims", "Claims", "int")]), "claim_regroup billed_drg_mismatch"))
    validation = billed_validation_sql(wh)
    counts = wh.df(f"""
        SELECT count(*) AS claims, count(*) FILTER (WHERE return_code IS DISTINCT FROM 'OK') AS ungroupable,
               count(*) FILTER (WHERE return_code = 'OK') AS grouped,
               count(*) FILTER (WHERE return_code = 'OK' AND difference > 0) AS under_claims,
               count(*) FILTER (WHERE return_code = 'OK' AND difference < 0) AS over_claims,
               round(coalesce(fsum(difference) FILTER (WHERE return_code = 'OK' AND difference > 0), 0), 2) AS under,
               round(coalesce(-fsum(difference) FILTER (WHERE return_code = 'OK' AND difference < 0), 0), 2) AS over
        FROM ({validation})""").iloc[0] if validation else None
    if counts is None or not counts["claims"]:
        parts.append(note("Every claim of the period (audited or not) is regrouped with "
                          "`coding-audit run --regroup-universe`; this run did not."))
    else:
        under_claims, over_claims = int(counts["under_claims"]), int(counts["over_claims"])
        parts.append(data.headline([
            figure_card("billed_mismatches", "Billed-DRG mismatches (all claims)", int(counts["grouped"]), "int",
                        f"{int(counts['ungroupable']):,} claims could not be grouped",
                        parts={"ungroupable": int(counts["ungroupable"])}),
            figure_card("billed_under", "Billed below what the codes support", float(counts["under"]), "money",
                        f"{under_claims:,} claims", "good", {"claims": under_claims}),
            figure_card("billed_over", "Billed above what the codes support", float(counts["over"]), "money",
                        f"{over_claims:,} claims", "bad", {"claims": over_claims})]))
        top = with_drg_titles(wh, billed_pairs(wh, f"SELECT * FROM ({validation}) WHERE return_code = 'OK'",
                                               "billed_drg", "regrouped_drg", "difference"),
                              ["billed_drg", "regrouped_drg"], default_year=_one_year(titled))
        parts.append(data.table(Table("table-billed-pairs", top, [
            Column("billed_drg_label", "Billed DRG", "long"), Column("regrouped_drg_label", "Regrouped DRG", "long"),
            Column("claims", "Claims", "int"), Column("under_billed", "Billed below", "money"),
            Column("over_billed", "Billed above", "money"), Column("net", "Net (regrouped \u2212 billed)", "money")],
            csv_name="billed_drg_mismatches.csv"), "billed_drg_validation"))
        parts.append(links([("billed_drg_mismatches.csv", "billed_drg_mismatches.csv",
                             f"{int(counts['claims']):,} claims: billed and regrouped DRG, payments, difference")]))
    return section("Billed-DRG validation", *parts,
                   intro="The DRG on the bill against the DRG the grouper assigns to the claim's own codes. "
                         "Difference = regrouped payment \u2212 billed payment: positive where the bill is below "
                         "what the codes support, negative where above.", section_id="billed-drg")


def _one_year(frame: pd.DataFrame) -> int | None:
    years = pd.to_numeric(frame.get("fiscal_year", pd.Series(dtype=float)), errors="coerce").dropna().unique()
    return int(years.max()) if len(years) else None


def _universe_section(extrapolation: pd.DataFrame, data: PageData) -> str:
    if extrapolation.empty:
        return section("Universe estimate", unavailable(
            "No universe loaded: the audited claims are not extrapolated. Load the claims population the "
            "sample was drawn from (--universe) to estimate the total."), section_id="universe")
    fig = figures.extrapolation_figure(extrapolation)
    table = extrapolation.assign(measure=extrapolation["measure"].replace(
        {"net_delta": "net difference (audited \u2212 original)",
         "overpayment": "net overpayment (original \u2212 audited)", "overpayments_alone": "overpayments alone"}))
    return section(
        "Universe estimate", figure_div(fig, "fig-extrapolation") if fig else "",
        data.table(Table("table-extrapolation", table, [
            Column("measure", "Measure"), Column("stratum", "Stratum"),
            Column("universe_count", "Universe claims", "int"),
            Column("sample_count", "Sample claims", "int"), Column("point", "Point", "money"),
            Column("lower_90", "90% lower limit", "money"), Column("upper_90", "90% upper", "money"),
            Column("standard_error", "Std. error", "money"), Column("distribution", "Distribution"),
            Column("degrees_of_freedom", "df", "int"),
            Column("not_priced_in_sample", "Not priced in sample", "int")]), "revenue_extrapolation"),
        intro="What the audited sample says about every claim of the universe it was drawn from: the difference "
              "estimator of the total payment change (audited \u2212 original; stratified where strata exist, "
              "finite population correction), with a two-sided 90% interval. Two figures: the net difference "
              "(underpayments offset overpayments: a net recovery estimate) and the overpayments alone (what an "
              "overpayment demand rests on, usually set at its 90% lower limit).", section_id="universe")


def _findings_section(wh: PeriodWarehouse, data: PageData) -> str:
    if not wh.has("regroup_findings"):
        return ""
    findings = wh.df(f"""SELECT finding, side, count(*) AS claims, any_value(detail ORDER BY claim_id) AS example
                         FROM {wh.scoped('regroup_findings')} GROUP BY ALL ORDER BY claims DESC, finding, side""")
    detail = wh.df(f"""SELECT claim_id, side, finding, detail FROM {wh.scoped('regroup_findings')}
                       ORDER BY finding, claim_id, side""")
    if findings.empty:
        return section("Regroup findings", note("Every audited claim grouped and priced on both sides; no billed "
                                                "DRG differed."), section_id="findings")
    return section(
        "Regroup findings",
        data.table(Table("table-findings", findings, [
            Column("finding", "Finding"), Column("side", "Side"), Column("claims", "Claims", "int"),
            Column("example", "Example", "long")]), "regroup_findings by finding"),
        data.table(Table("table-findings-claims", detail, [
            Column("claim_id", "Claim"), Column("side", "Side"), Column("finding", "Finding"),
            Column("detail", "Detail", "long")]), "regroup_findings"),
        intro="What needs a look: sides the grouper could not group, billed DRGs that differ from the regrouped "
              "original, POA handling applied, claims that could not be priced.", section_id="findings")
