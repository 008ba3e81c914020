"""compliance.html: the flagged cases (one row per claim, coder or facility, all its rules), the funnel,
target areas and short stays, for compliance officers.

Flag tables are read by column name: the flags step may add columns (p0, tau2, z...) without breaking
this page, and a missing optional column leaves its cell empty.
"""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd

from audits.flags.common import Q_THRESHOLD
from reports import figures
from reports.html import (SUPPRESSED, Column, PageData, Table, figure_card, figure_div, links, note, page, section,
                          unavailable)
from reports.names import rule_explanation, rule_name, target_area_explanation, target_area_name
from reports.warehouse import PeriodWarehouse, with_drg_titles

FLAG_TABLES = ("upcoding_flags", "coder_funnel", "facility_target_areas", "short_stay_rates")
SEVERITY_ORDER = "CASE severity WHEN 'high' THEN 0 WHEN 'medium' THEN 1 WHEN 'low' THEN 2 ELSE 3 END"
SEVERITY_RANK = {"high": 0, "medium": 1, "low": 2}
MIN_CELL = 11
LEVEL_ORDER = {"claim": 0, "coder": 1, "facility": 2}
FLAGGED_CLAIMS_COLUMNS = [
    "claim_id", "flag_id", "level", "rule", "severity", "flagged_entity", "facility_id", "coder_id", "payer",
    "service_line", "original_drg", "audited_drg", "original_payment", "audited_payment", "delta",
    "original_mcc_codes", "audited_mcc_codes", "change_drivers", "description"]


def flag_data(wh: PeriodWarehouse) -> dict:
    """The period's flag tables (None when absent), the case list, and the flag-claim rows as a query.

    A facility flag cites every claim of its target area, audited or not, so the flag-claim rows grow
    with the universe (about a tenth of a million per million claims): they stay in DuckDB. The CSV streams
    them (`flagged_claim_batches`); the case list, the exposure and the row count aggregate them in SQL."""
    data: dict = {name: None for name in FLAG_TABLES}
    data["flagged_claims_sql"], data["flagged_claims_rows"], data["exposure"] = None, 0, 0.0
    data["cases"] = None
    if wh.has("upcoding_flags"):
        cols = wh.columns["upcoding_flags"]
        opt = lambda c: c if c in cols else f"NULL AS {c}"  # noqa: E731
        flags = wh.df(f"""
            SELECT flag_id, level, entity, rule, {opt('n')}, {opt('p_value')}, {opt('q_value')}, {opt('exposure')},
                   severity, description
            FROM {wh.scoped('upcoding_flags')}
            ORDER BY {SEVERITY_ORDER}, exposure DESC NULLS LAST, flag_id""")
        data["upcoding_flags"] = flags
        query = data["flagged_claims_sql"] = flagged_claims_sql(wh)
        data["cases"] = cases(flags, cited_by_entity(wh, query))
        totals = wh.df(f"""
            SELECT coalesce(sum(n), 0) AS flag_claim_rows,
                   coalesce(round(fsum(CASE WHEN delta < 0 THEN -delta ELSE 0 END), 2), 0) AS exposure
            FROM (SELECT claim_id, count(*) AS n, any_value(delta) AS delta FROM ({query}) GROUP BY claim_id)""")
        data["flagged_claims_rows"] = int(totals["flag_claim_rows"].iloc[0])
        data["exposure"] = float(totals["exposure"].iloc[0])
    for table, order in (("coder_funnel", "coder_id"), ("facility_target_areas", "target_area, facility_id"),
                         ("short_stay_rates", "level, entity")):
        if wh.has(table):
            data[table] = wh.df(f"SELECT * FROM {wh.scoped(table)} ORDER BY {order}").drop(
                columns=["audit_period"], errors="ignore")
    data["target_area_peers"] = (wh.df(f"SELECT * FROM {wh.scoped('target_area_peers')} WHERE complete")
                                 .drop(columns=["audit_period"], errors="ignore")
                                 if wh.has("target_area_peers") else None)
    return data


def flagged_claims_sql(wh: PeriodWarehouse) -> str:
    """Every claim cited as evidence by a flag, one row per flag and claim, with its regroup when the claim
    was audited (`fiscal_year` last, for the DRG titles), in the CSV's order."""
    drivers = "g.change_drivers" if wh.has("claim_regroup", "change_drivers") else "NULL AS change_drivers"
    year = "g.fiscal_year" if wh.has("claim_regroup", "fiscal_year") else "NULL AS fiscal_year"
    return f"""
        WITH f AS (
            SELECT flag_id, level, rule, severity, entity, description,
                   unnest(json_extract_string(evidence, '$.claims[*]')) AS claim_id
            FROM {wh.scoped('upcoding_flags')} WHERE json_valid(evidence))
        SELECT f.claim_id, f.flag_id, f.level, f.rule, f.severity, f.entity AS flagged_entity,
               g.facility_id, g.coder_id, g.payer, g.service_line, g.original_drg, g.audited_drg,
               g.original_payment, g.audited_payment, g.delta, g.original_mcc_codes, g.audited_mcc_codes,
               {drivers}, f.description, {year}
        FROM f LEFT JOIN {wh.scoped('claim_regroup', 'g')} ON g.claim_id = f.claim_id
        ORDER BY {SEVERITY_ORDER}, f.rule, f.claim_id, f.flag_id"""


def flagged_claim_batches(wh: PeriodWarehouse, query: str | None, rows: int = 100_000) -> Iterator[pd.DataFrame]:
    """flagged_claims.csv's rows, `rows` at a time, each DRG followed by its Table 5 title."""
    if query is None:
        yield _titled(wh, pd.DataFrame(columns=[*FLAGGED_CLAIMS_COLUMNS, "fiscal_year"]))
        return
    for batch in wh.batches(query, rows):
        yield _titled(wh, batch)


def _titled(wh: PeriodWarehouse, frame: pd.DataFrame) -> pd.DataFrame:
    """Each DRG column followed by its Table 5 title (fiscal year of the claim)."""
    out = with_drg_titles(wh, frame, ["original_drg", "audited_drg"])
    for column in ("original_drg", "audited_drg"):
        title = [t.split(" ", 1)[1] if isinstance(t, str) and " " in t else None for t in out.pop(f"{column}_label")]
        out.insert(out.columns.get_loc(column) + 1, f"{column}_title", title)
    return out.drop(columns="fiscal_year")


def cited_by_entity(wh: PeriodWarehouse, query: str) -> pd.DataFrame:
    """Per flagged entity (level, entity) over the flag-claim rows of `query`: the distinct claims cited,
    how many were audited, the exposure = overpaid dollars of those audited, each claim counted once
    however many rules cite it, and the first ten claim ids in the CSV's order."""
    return wh.df(f"""
        WITH d AS (
            SELECT level, flagged_entity AS entity, claim_id, any_value(delta) AS delta,
                   min(CAST(({SEVERITY_ORDER}) AS VARCHAR) || rule) AS first_at
            FROM ({query}) GROUP BY level, flagged_entity, claim_id),
        r AS (SELECT *, row_number() OVER (PARTITION BY level, entity ORDER BY first_at, claim_id) AS k FROM d)
        SELECT level, entity, count(*) AS claims_cited, count(delta) AS audited_claims_cited,
               round(fsum(CASE WHEN delta < 0 THEN -delta ELSE 0 END), 2) AS exposure,
               string_agg(claim_id, ', ' ORDER BY k) FILTER (WHERE k <= 10)
                   || CASE WHEN count(*) > 10 THEN format(' (+{{}} more)', count(*) - 10) ELSE '' END AS claim_ids
        FROM r GROUP BY level, entity""")


def cases(flags: pd.DataFrame, cited: pd.DataFrame) -> pd.DataFrame:
    """One row per flagged entity (level + entity): its rules (names), the evidence sentences, the
    highest severity, and the claims it cites (`cited_by_entity`)."""
    if flags.empty:
        return pd.DataFrame(columns=["level", "entity", "severity", "rules", "rule_ids", "flags", "evidence",
                                     "claims_cited", "audited_claims_cited", "exposure", "claim_ids"])
    f = flags.assign(_rank=flags["severity"].map(SEVERITY_RANK).fillna(3),
                     rule_label=flags["rule"].map(rule_name))
    f = f.sort_values(["_rank", "rule"])
    grouped = f.groupby(["level", "entity"], sort=False)
    out = grouped.agg(severity_rank=("_rank", "min"), rules=("rule_label", lambda s: "; ".join(dict.fromkeys(s))),
                      rule_ids=("rule", lambda s: " ".join(dict.fromkeys(s))), flags=("flag_id", "count"),
                      evidence=("description", lambda s: "\n".join(dict.fromkeys(str(x) for x in s if x)))
                      ).reset_index()
    out["severity"] = out["severity_rank"].map({v: k for k, v in SEVERITY_RANK.items()}).fillna("")
    out = out.merge(cited, on=["level", "entity"], how="left")
    out["claims_cited"] = out["claims_cited"].fillna(0).astype(int)
    out["audited_claims_cited"] = out["audited_claims_cited"].fillna(0).astype(int)
    out["exposure"] = out["exposure"].fillna(0.0)
    out["_level"] = out["level"].map(LEVEL_ORDER).fillna(9)
    out = out.sort_values(["severity_rank", "_level", "exposure", "entity"], ascending=[True, True, False, True])
    return out.drop(columns=["severity_rank", "_level"]).reset_index(drop=True)


def _small(frame: pd.DataFrame, counts: list[str], derived: list[str]) -> pd.DataFrame:
    """Cells under 11 shown as '<11'; the rates made from them too (they would give the count away)."""
    out = frame.astype({c: "object" for c in counts + derived if c in frame})
    any_small = pd.Series(False, index=frame.index)
    for column in counts:
        if column in frame:
            small = pd.to_numeric(frame[column], errors="coerce").fillna(MIN_CELL) < MIN_CELL
            out.loc[small, column] = SUPPRESSED
            any_small |= small
    for column in derived:
        if column in frame:
            out.loc[any_small, column] = SUPPRESSED
    return out


def compliance_page(wh: PeriodWarehouse, data: dict, subtitle: str) -> str:
    page_data = PageData()
    flags, funnel = data["upcoding_flags"], data["coder_funnel"]
    areas, short = data["facility_target_areas"], data["short_stay_rates"]
    case_list = data["cases"]
    cards = []
    if flags is not None:
        for level, label in (("claim", "Flagged claims"), ("coder", "Flagged coders"),
                             ("facility", "Flagged facilities")):
            sub = case_list[case_list["level"] == level]
            rules = flags[flags["level"] == level]["rule"].value_counts()
            detail = " \u00b7 ".join(f"{rule_name(r)} {int(k):,}" for r, k in rules.items()) or "no rule raised"
            cards.append(figure_card(f"flagged_{level}", label, len(sub), "int", detail,
                                     "bad" if len(sub) else "",
                                     {f"rule:{r}": int(k) for r, k in rules.items()}))
        exposure = data["exposure"]
        cards.append(figure_card("exposure", "Exposure, each claim once", exposure, "money",
                                 "overpaid dollars of the audited claims cited by any flag", "bad" if exposure else ""))
    else:
        cards.append(figure_card("flagged_claim", "Upcoding flags", None, "int", "not available for this run"))
    if short is not None:
        fac = short[short["level"] == "facility"]
        stays, shorts = int(fac["highest_severity_stays"].fillna(0).sum()), int(fac["short_stays"].fillna(0).sum())
        small = stays < MIN_CELL or shorts < MIN_CELL
        cards.append(figure_card(
            "short_stay_rate", "Highest-severity short stays", None if small or not stays else shorts / stays, "pct",
            f"{shorts:,} of {stays:,} highest-severity stays, all facilities" if not small
            else "fewer than 11 stays or short stays: not shown", parts={} if small else
            {"short_stays": shorts, "highest_severity_stays": stays}))
    parts = [page_data.headline(cards)]

    if flags is None:
        parts.append(section("Flagged cases", unavailable(
            "Upcoding flags are not available for this run (no upcoding_flags table in the warehouse).")))
    else:
        fig = figures.severity_figure(flags.assign(rule=flags["rule"].map(rule_name)))
        parts.append(section(
            "Flagged cases",
            figure_div(fig, "fig-severity") if fig else note("No upcoding flag raised in this period."),
            page_data.table(Table("table-cases", case_list.assign(level=case_list["level"].str.capitalize()), [
                Column("severity", "Severity"), Column("level", "Level"), Column("entity", "Claim / coder / facility"),
                Column("rules", "Rules", "long"), Column("evidence", "Evidence", "long"),
                Column("exposure", "Exposure (each claim once)", "money"),
                Column("claims_cited", "Claims cited", "int"),
                Column("audited_claims_cited", "of them audited", "int"),
                Column("claim_ids", "Claims", "long")], csv_name="flagged_claims.csv"), "upcoding_flags by entity"),
            intro="One row per flagged claim, coder or facility, with every rule it met and the evidence to follow. "
                  "Exposure = overpaid dollars of the audited claims cited, each claim counted once. A facility "
                  "flag rests on billed DRGs of all its claims, most of them never audited, so its exposure "
                  "covers only the audited ones.", section_id="flags"))
        parts.append(_rules_section(wh, flags, page_data))

    if funnel is None:
        parts.append(section("Coder funnel plot", unavailable("The coder funnel is not available for this run.")))
    else:
        fig = figures.funnel_figure(funnel)
        n_flagged = int(funnel["flagged"].fillna(False).astype(bool).sum()) if "flagged" in funnel else 0
        funnel_table = funnel.assign(flagged=funnel["flagged"].map({True: "yes", False: ""})) \
            if "flagged" in funnel else funnel
        parts.append(section(
            "Coder funnel plot", figure_div(fig, "fig-funnel") if fig else note("No coder audited."),
            page_data.table(Table("table-funnel", funnel_table, [
                Column("coder_id", "Coder"), Column("n", "Audited claims", "int"),
                Column("overpaid", "Overpaid", "int"),
                Column("rate", "Overpaid share", "pct"), Column("expected", "Rest of audit", "pct"),
                Column("lower_95", "95% low", "pct"), Column("upper_95", "95% high", "pct"),
                Column("lower_998", "99.8% low", "pct"), Column("upper_998", "99.8% high", "pct"),
                Column("p_value", "p", "p"), Column("q_value", "q (BH)", "p"), Column("flagged", "Flagged")]),
                "coder_funnel"),
            intro=f"{n_flagged:,} of {len(funnel):,} coders flagged. Each coder's share of audited claims that were "
                  "overpaid against the number audited, tested against the rest of the audit (Fisher's exact "
                  "test). The limits are the same test's: a coder above the 99.8% line has p of 0.001 or less.",
            section_id="funnel"))

    if areas is None:
        parts.append(section("Facility target areas", unavailable(
            "Facility target-area percentiles are not available for this run (no peer file or flags step).")))
    else:
        titles = wh.drg_titles()
        # percent and the peer percentiles are 0-100 in the warehouse; the page's percent format wants 0-1
        scaled = {c: pd.to_numeric(areas[c], errors="coerce") / 100 for c in ("percent", "peer_p20", "peer_p80")
                  if c in areas}
        named = areas.assign(area_name=areas["target_area"].map(lambda a: target_area_name(a, titles)),
                             area_explanation=areas["target_area"].map(target_area_explanation),
                             suppressed=areas["suppressed"].map({True: "yes", False: ""}), **scaled)
        named = named.sort_values(["area_name", "facility_id"])
        shown = areas[~areas["suppressed"].fillna(False).astype(bool)]
        beyond = int(shown["outlier"].isin(["high", "low"]).sum())
        if "flagged" in named:
            named["flagged"] = named["flagged"].map({True: "yes", False: ""})
        fig = figures.target_area_funnel_figure(areas, data.get("target_area_peers"))
        parts.append(section(
            "Facility target areas against peers",
            figure_div(fig, "fig-target-areas") if fig else note("No target area has an unsuppressed facility "
                                                                 "and at least two complete peers."),
            page_data.table(Table("table-target-areas", _small(named, ["numerator", "denominator"], ["percent"]), [
                Column("facility_id", "Facility"), Column("area_name", "Target area", "long"),
                Column("target_area", "Area id"),
                Column("area_explanation", "What is counted", "long"),
                Column("numerator", "Numerator", "int"), Column("denominator", "Denominator", "int"),
                Column("percent", "Percent", "pct"),
                Column("peer_p20", "Peers 20th", "pct"), Column("peer_p80", "Peers 80th", "pct"),
                Column("peers", "Complete peers", "int"), Column("peers_incomplete", "Peers left out", "int"),
                Column("direction", "Direction"), Column("outlier", "Beyond 80th / 20th"),
                Column("p0", "Peers pooled", "pct"), Column("tau2", "\u03c4\u00b2", "float"),
                Column("z_d", "z (overdispersed)", "float"), Column("p_value", "p", "p"),
                Column("q_value", "q (BH)", "p"), Column("flagged", "Flagged"),
                Column("suppressed", "Suppressed")]),
                "facility_target_areas"),
            intro=f"PEPPER target areas: the facility's percent against its complete peers (denominator of 11 or "
                  "more, and every DRG cell of the area reported when the peer file suppresses small cells). At "
                  f"or above the peers' 80th percentile is a high outlier, at or below the 20th a low one ({beyond:,} "
                  "facility-area cells here). A percentile alone is not a flag: a facility is flagged when it is an "
                  "outlier and its overdispersed test (Spiegelhalter 2005: the peers' pooled rate plus the real "
                  f"variation between hospitals, \u03c4\u00b2) has a Benjamini-Hochberg q under {Q_THRESHOLD}. The funnel "
                  "shows each complete peer, the 95% and 99.8% limits and the audited facilities (pick the area in "
                  "the menu). Counts under 11 show as <11.",
            section_id="target-areas"))

    if short is None:
        parts.append(section("Highest-severity short stays", unavailable(
            "Short-stay rates are not available for this run.")))
    else:
        parts.append(_short_stay_section(short, page_data))

    parts.append(section("Downloads", links([
        ("flagged_claims.csv", "flagged_claims.csv",
         f"{data['flagged_claims_rows']:,} flag-claim rows: every claim cited as evidence, with its DRGs and payment "
         "change" if flags is not None else "empty: upcoding flags not available for this run"),
        ("audit_workbook.xlsx", "audit_workbook.xlsx", "the flagged cases and the other lists in one workbook")]),
        section_id="flagged-claims"))
    return page("Coding audit \u2014 compliance", "compliance.html", subtitle, "\n".join(parts), page_data)


def _rules_section(wh: PeriodWarehouse, flags: pd.DataFrame, data: PageData) -> str:
    described = (wh.df(f"SELECT rule, description FROM {wh.scoped('upcoding_rules')}")
                 .drop_duplicates("rule").set_index("rule")["description"] if wh.has("upcoding_rules")
                 else pd.Series(dtype="object"))
    counts = flags.groupby("rule").agg(flags=("flag_id", "count"), entities=("entity", "nunique"),
                                       level=("level", "first")).reset_index()
    counts["name"] = counts["rule"].map(rule_name)
    counts["explanation"] = [rule_explanation(r, described.get(r)) for r in counts["rule"]]
    counts = counts.sort_values(["level", "name"])
    return section("Rules", data.table(Table("table-rules", counts, [
        Column("name", "Rule"), Column("explanation", "What it means", "long"), Column("level", "Level"),
        Column("entities", "Entities flagged", "int"), Column("rule", "Rule id")]), "upcoding_flags by rule"),
        intro="The rules behind the flags, in a line each (thresholds and sources: warehouse table "
              "upcoding_rules).", section_id="rules")


def _short_stay_section(short: pd.DataFrame, data: PageData) -> str:
    frame = short.copy()
    if "audited_mcc_stays" in frame:
        audited = pd.to_numeric(frame["audited_mcc_stays"], errors="coerce")
    else:  # single_mcc_rate = single_mcc_stays / audited highest-severity stays
        rate = pd.to_numeric(frame["single_mcc_rate"], errors="coerce")
        audited = (pd.to_numeric(frame["single_mcc_stays"], errors="coerce") / rate.where(rate > 0)).round()
    frame["audited_stays"] = audited
    fig = figures.short_stay_figure(frame)
    shown = _small(frame, ["highest_severity_stays", "short_stays"], ["short_stay_rate"])
    shown = _small(shown.assign(audited_stays=frame["audited_stays"], single_mcc_stays=frame["single_mcc_stays"]),
                   ["audited_stays"], ["single_mcc_stays", "single_mcc_rate"])
    return section(
        "Highest-severity short stays",
        figure_div(fig, "fig-short-stays") if fig else note("Every facility cell is suppressed (counts under 11)."),
        data.table(Table("table-short-stays", shown.assign(level=shown["level"].str.capitalize()), [
            Column("level", "Level"), Column("entity", "Facility / coder"),
            Column("highest_severity_stays", "Highest-severity stays (all claims)", "int"),
            Column("short_stays", "Short stays", "int"), Column("short_stay_rate", "Short-stay rate", "pct"),
            Column("audited_stays", "Audited highest-severity stays", "int"),
            Column("single_mcc_stays", "of them on a single MCC", "int"),
            Column("single_mcc_rate", "Single-MCC share", "pct")]), "short_stay_rates"),
        intro="Two populations, each with its own count: all the period's claims billed at a highest-severity "
              "(WITH MCC) DRG and how many stayed shorter than 0.8 \u00d7 the DRG's geometric mean length of stay; "
              "and the audited claims grouped (original codes) to such a DRG and how many rest on a single MCC "
              "(OIG OEI-02-18-00380). Counts under 11 show as <11.", section_id="short-stays")


