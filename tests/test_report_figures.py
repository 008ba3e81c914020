"""Every figure on every page equals the warehouse: each card's number and every numeric cell of every
table, read back from the page's embedded data and recomputed here with SQL written independently of
the report code. Also the Excel workbook (sheets, totals = summary.json) and rejected_rows.csv."""

from __future__ import annotations

import csv
import json
import math
import re

import duckdb
import pytest

from tests.test_reports import PATIENT_PREFIX, run  # noqa: F401 - the module fixture: a real pipeline run

PERIOD = "2026-11"
PAGES = ("index", "audit", "revenue", "compliance")
TEXT_TYPES = ("text", "long")
DIMENSION_TABLES = ("facility", "payer", "service_line", "coder", "audit_month")


def _blocks(html: str) -> dict[str, dict]:
    return {m.group(1): json.loads(m.group(2)) for m in
            re.finditer(r'<script type="application/json" id="([^"]+)">(.*?)</script>', html, re.S)}


def _q(con, sql: str) -> list[tuple]:
    return con.execute(sql.replace("$period", f"'{PERIOD}'")).fetchall()


def _breakdown_sql(dimension: str) -> str:
    pick = lambda metric, col: f"max({col}) FILTER (WHERE metric = '{metric}')"  # noqa: E731
    return f"""SELECT breakdown_value, {pick('record_error_rate', 'n')}, {pick('record_error_rate', 'errors')},
                      {pick('record_error_rate', 'rate')}, {pick('record_error_rate', 'ci_low')},
                      {pick('record_error_rate', 'ci_high')}, {pick('principal_dx_error_rate', 'rate')},
                      {pick('secondary_dx_error_rate', 'rate')}, {pick('procedure_error_rate', 'rate')}, false
               FROM error_rates WHERE audit_period = $period AND breakdown = '{dimension}' GROUP BY 1"""


# table id -> (number of key columns, SQL: the key columns, then the page's numeric columns in page order,
# then a boolean: cells of this row may read '<11'). A DRG key cell ('291 HEART FAILURE...') is keyed
# by its number.
TABLES = {
    "table-coders": (1, """SELECT coder_id, audited_claims, record_errors, record_error_rate, record_error_ci_low,
                                  record_error_ci_high, principal_dx_error_rate, secondary_dx_error_rate,
                                  procedure_error_rate, false FROM coder_scorecard WHERE audit_period = $period"""),
    **{f"table-breakdown-{d}": (1, _breakdown_sql(d)) for d in DIMENSION_TABLES},
    "table-changed-claims": (1, """
        SELECT d.claim_id, count(*) FILTER (WHERE d.result NOT IN ('match', 'poa_changed')), any_value(g.delta), false
        FROM code_diffs d LEFT JOIN claim_regroup g ON g.claim_id = d.claim_id AND g.audit_period = d.audit_period
        WHERE d.audit_period = $period GROUP BY d.claim_id HAVING count(*) FILTER (WHERE d.result <> 'match') > 0"""),
    **{f"table-impact-{d}": (1, f"""SELECT breakdown_value, claims, changed, upgraded, downgraded, underpaid_amount,
                                           overpaid_amount, net_amount, false
                                    FROM revenue_impact WHERE audit_period = $period AND breakdown = '{d}'
                                      AND underpaid_amount + overpaid_amount > 0""")
       for d in ("service_line", "payer", "drg_family", "facility", "coder", "audit_month")},
    "table-billed-audited": (2, """SELECT billed_drg, original_drg, count(*), false FROM claim_regroup
                                   WHERE audit_period = $period AND billed_drg_mismatch GROUP BY ALL"""),
    "table-billed-pairs": (2, """SELECT billed_drg, regrouped_drg, count(*),
                                        round(coalesce(sum(difference) FILTER (WHERE difference > 0), 0), 2),
                                        round(coalesce(-sum(difference) FILTER (WHERE difference < 0), 0), 2),
                                        round(sum(difference), 2), false
                                 FROM billed_drg_validation WHERE return_code = 'OK' GROUP BY ALL"""),
    "table-extrapolation": (2, """SELECT CASE measure WHEN 'net_delta' THEN 'net difference (audited − original)'
                                       WHEN 'overpayment' THEN 'net overpayment (original − audited)'
                                       WHEN 'overpayments_alone' THEN 'overpayments alone' END, stratum,
                                  universe_count, sample_count, point, lower_90, upper_90, standard_error,
                                  degrees_of_freedom, not_priced_in_sample, false
                                  FROM revenue_extrapolation WHERE audit_period = $period"""),
    "table-findings": (2, """SELECT finding, side, count(*), false FROM regroup_findings
                             WHERE audit_period = $period GROUP BY ALL"""),
    "table-regroup": (1, """SELECT claim_id, original_payment, audited_payment, delta, false FROM claim_regroup
                            WHERE audit_period = $period AND (direction <> 'unchanged' OR drg_changed)"""),
    "table-cases": (("Level", "Claim / coder / facility"), """
        WITH cited AS (SELECT DISTINCT level, entity, unnest(json_extract_string(evidence, '$.claims[*]')) AS claim_id
                       FROM upcoding_flags WHERE audit_period = $period AND json_valid(evidence)),
        entities AS (SELECT DISTINCT level, entity FROM upcoding_flags WHERE audit_period = $period)
        SELECT upper(e.level[1]) || e.level[2:], e.entity, round(coalesce(sum(greatest(-g.delta, 0)), 0), 2),
               count(c.claim_id), count(g.delta), false
        FROM entities e LEFT JOIN cited c ON c.level = e.level AND c.entity = e.entity
        LEFT JOIN claim_regroup g ON g.claim_id = c.claim_id AND g.audit_period = $period
        GROUP BY ALL"""),
    "table-funnel": (1, """SELECT coder_id, n, overpaid, rate, expected, lower_95, upper_95, lower_998, upper_998,
                                  p_value, q_value, false FROM coder_funnel WHERE audit_period = $period"""),
    "table-target-areas": (("Facility", "Area id"), """
        SELECT facility_id, target_area, numerator, denominator, percent / 100, peer_p20 / 100, peer_p80 / 100,
               peers, peers_incomplete, p0, tau2, z_d, p_value, q_value, least(numerator, denominator) < 11
        FROM facility_target_areas WHERE audit_period = $period"""),
    "table-short-stays": (2, """
        SELECT upper(level[1]) || level[2:], entity, highest_severity_stays, short_stays, short_stay_rate,
               audited_mcc_stays, single_mcc_stays, single_mcc_rate,
               least(highest_severity_stays, short_stays, coalesce(audited_mcc_stays, 99)) < 11
        FROM short_stay_rates WHERE audit_period = $period"""),
    "table-rules": (("Rule id",), """SELECT rule, count(DISTINCT entity), false FROM upcoding_flags
                                     WHERE audit_period = $period GROUP BY ALL"""),
    "table-rejected": (3, """SELECT regexp_extract(source_file, '[^/\\\\]+$'), rule, coalesce("column", ''), count(*),
                                    false FROM rejected_rows WHERE audit_period = $period GROUP BY ALL"""),
    "table-rejected-rows": (("File", "Row", "Column", "Rule"), """
        SELECT regexp_extract(source_file, '[^/\\\\]+$'), CAST("row" AS VARCHAR), "column", rule, false
        FROM rejected_rows WHERE audit_period = $period"""),
}


def _key(label: str, value) -> str:
    text = "" if value is None else str(value)
    if isinstance(value, float) and value.is_integer():
        text = str(int(value))
    return text.split(" ", 1)[0] if "DRG" in label else text


def _same(page_value, expected, abs_tol: float = 1e-6) -> bool:
    if expected is None or (isinstance(expected, float) and math.isnan(expected)):
        return page_value is None
    if page_value is None:
        return False
    return math.isclose(float(page_value), float(expected), rel_tol=1e-9, abs_tol=abs_tol)


def _check_table(con, table_id: str, payload: dict) -> int:
    keys, sql = TABLES[table_id]
    columns = payload["columns"]
    key_idx = ([next(i for i, c in enumerate(columns) if c["label"] == k) for k in keys]
               if isinstance(keys, tuple) else list(range(keys)))
    numeric = [i for i, c in enumerate(columns) if c["type"] not in TEXT_TYPES and i not in key_idx]
    expected = {}
    for row in _q(con, sql):
        key = tuple(_key(columns[i]["label"], v) for i, v in zip(key_idx, row))
        expected[key] = (row[len(key_idx):-1], bool(row[-1]))
    assert all(len(v[0]) == len(numeric) for v in expected.values()), (table_id, "SQL columns != numeric columns")
    for row in payload["rows"]:
        key = tuple(_key(columns[i]["label"], row[i]) for i in key_idx)
        assert key in expected, (table_id, key)
        values, small = expected[key]
        for i, want in zip(numeric, values):
            got = row[i]
            if got == "<11":
                assert small, (table_id, key, columns[i]["label"], "suppressed without a cell under 11")
                continue
            assert _same(got, want), (table_id, key, columns[i]["label"], got, want)
    if payload["rows"] and len(payload["rows"]) < 5000:
        assert len(payload["rows"]) == len(expected), (table_id, len(payload["rows"]), len(expected))
    return len(payload["rows"]) * len(numeric)


def _expected_cards(con, info: dict) -> dict:
    one = lambda sql: _q(con, sql)[0][0]  # noqa: E731
    extrapolated = {m: (p, lo, hi) for m, p, lo, hi in _q(con, """
        SELECT measure, point, lower_90, upper_90 FROM revenue_extrapolation
        WHERE audit_period = $period AND stratum = 'all'""")}
    entities = dict(_q(con, "SELECT level, count(DISTINCT entity) FROM upcoding_flags "
                            "WHERE audit_period = $period GROUP BY 1"))
    hs, ss = _q(con, "SELECT sum(highest_severity_stays), sum(short_stays) FROM short_stay_rates "
                     "WHERE audit_period = $period AND level = 'facility'")[0]
    validation = info["billed_drg_validation"]
    return {
        **{k: info[k] for k in ("record_error_rate", "principal_dx_error_rate", "secondary_dx_error_rate",
                                "procedure_error_rate", "underpaid_amount", "overpaid_amount", "net_amount",
                                "drg_change_rate", "billed_drg_mismatch_rate", "rejected_rows")},
        "dx_omitted": info["error_rate_by_position"]["omitted"],
        "universe_net": info["extrapolation"]["point"],
        "universe_overpayment": extrapolated["overpayments_alone"][0],
        "flagged_entities": sum(entities.values()),
        "flagged_claim": entities.get("claim", 0), "flagged_coder": entities.get("coder", 0),
        "flagged_facility": entities.get("facility", 0),
        "exposure": one("""WITH c AS (SELECT DISTINCT unnest(json_extract_string(evidence, '$.claims[*]')) AS claim_id
                                     FROM upcoding_flags WHERE audit_period = $period)
                           SELECT round(sum(greatest(-g.delta, 0)), 2) FROM c
                           JOIN claim_regroup g ON g.claim_id = c.claim_id AND g.audit_period = $period"""),
        "short_stay_rate": ss / hs,
        "billed_mismatches": validation["mismatches"],
        "billed_under": one("SELECT round(sum(difference), 2) FROM billed_drg_validation "
                            "WHERE return_code = 'OK' AND difference > 0"),
        "billed_over": one("SELECT round(-sum(difference), 2) FROM billed_drg_validation "
                           "WHERE return_code = 'OK' AND difference < 0"),
    }


def test_every_card_and_numeric_cell_equals_the_warehouse(run):  # noqa: F811
    info, out = run["run_info"], run["out"]["flags"]
    con = duckdb.connect(str(run["db"]), read_only=True)
    try:
        cards = _expected_cards(con, info)
        checked_cells, checked_cards = 0, 0
        for name in PAGES:
            html = out[name].read_text(encoding="utf-8")
            blocks = _blocks(html)
            figures = blocks.pop("page-figures")
            for card in figures["cards"]:
                assert card["key"] in cards, (name, card["key"], "card without a warehouse check")
                # summary.json rounds rates to 4 decimals; dollars and counts are exact
                tol = 5e-5 if card["format"] == "pct" else 1e-6
                assert _same(card["value"], cards[card["key"]], tol), (name, card["key"], card["value"],
                                                                  cards[card["key"]])
                assert f'<div class="value">{card["text"]}</div>' in html.replace("&#x27;", "'")
                checked_cards += 1
            tables = {k.removesuffix("-data"): v for k, v in blocks.items() if k.endswith("-data")}
            assert set(tables) == set(figures["tables"]), name  # every table declares its source
            for table_id, payload in tables.items():
                numeric = [c for c in payload["columns"] if c["type"] not in TEXT_TYPES]
                if not numeric and table_id not in TABLES:
                    continue  # text only (e.g. the findings list)
                assert table_id in TABLES, (name, table_id, "table without a warehouse check")
                checked_cells += _check_table(con, table_id, payload)
    finally:
        con.close()
    assert checked_cards >= 20 and checked_cells > 1000


def test_target_area_percent_is_shown_once_as_a_percent(run):  # noqa: F811
    html = run["out"]["flags"]["compliance"].read_text(encoding="utf-8")
    payload = _blocks(html)["table-target-areas-data"]
    labels = [c["label"] for c in payload["columns"]]
    f001 = next(r for r in payload["rows"] if r[0] == "F001" and r[labels.index("Area id")] == "septicemia")
    # synthetic F001 septicemia: 30 of 100 = percent 30.0 in the warehouse -> 0.30, shown as 30.0%
    assert f001[labels.index("Percent")] == pytest.approx(0.30)
    assert f001[labels.index("Peers 80th")] == pytest.approx(0.25)
    f004 = next(r for r in payload["rows"] if r[0] == "F004")  # 3 of 40: suppressed
    assert f004[labels.index("Numerator")] == "<11" and f004[labels.index("Percent")] == "<11"
    assert f004[labels.index("Denominator")] == 40
    assert f001[labels.index("Target area")] == "Septicemia"


def test_short_stay_card_counts_every_facility(run):  # noqa: F811
    figures = _blocks(run["out"]["flags"]["compliance"].read_text(encoding="utf-8"))["page-figures"]
    card = next(c for c in figures["cards"] if c["key"] == "short_stay_rate")
    # synthetic facilities: stays 120 + 80 + 5 = 205, short 30 + 12 + 2 = 44 (F003's suppressed cell counts too)
    assert card["parts"] == {"short_stays": 44, "highest_severity_stays": 205}
    assert card["value"] == pytest.approx(44 / 205) and card["text"] == "21.5%"


def test_workbook_opens_has_the_sheets_and_totals_equal_the_summary(run):  # noqa: F811
    import openpyxl

    info, path = run["run_info"], run["out"]["flags"]["audit_workbook"]
    book = openpyxl.load_workbook(path)
    assert book.sheetnames == ["Summary", "Rebill worklist", "Refund worklist", "Flagged cases", "Error rates",
                               "Rejected rows"]
    summary = {row[2]: row[1] for row in book["Summary"].iter_rows(min_row=2, values_only=True)}
    for key in ("claims", "audited_claims", "underpaid_amount", "overpaid_amount", "net_amount",
                "record_error_rate"):
        assert summary[key] == info[key], key
    assert summary["extrapolation.point"] == info["extrapolation"]["point"]

    def column(sheet, name):
        header = [c.value for c in sheet[1]]
        return [r[header.index(name)] for r in sheet.iter_rows(min_row=2, values_only=True)], \
            sheet.cell(row=2, column=header.index(name) + 1)

    rebill, cell = column(book["Rebill worklist"], "rebill_amount")
    assert round(sum(rebill), 2) == info["underpaid_amount"]
    assert cell.number_format.startswith('"$"#,##0.00')
    refund, _ = column(book["Refund worklist"], "refund_amount")
    assert round(sum(refund), 2) == info["overpaid_amount"]
    for sheet in book.worksheets:
        assert sheet.freeze_panes == "A2", sheet.title
        assert sheet.auto_filter.ref and sheet.auto_filter.ref.startswith("A1:"), sheet.title
        assert sheet["A1"].font.bold, sheet.title
    rates, rate_cell = column(book["Error rates"], "rate")
    assert rate_cell.number_format == "0.0%"
    payers = {v for v in column(book["Refund worklist"], "payer")[0] + column(book["Rebill worklist"], "payer")[0]}
    assert "'" + '=HYPERLINK("http://x","y")' in payers and '=HYPERLINK("http://x","y")' not in payers
    rejected = list(book["Rejected rows"].iter_rows(values_only=True))
    assert rejected[0] == ("file", "row", "claim_id", "column", "rule", "value", "reason")
    assert ("claims.csv", 3, "sex", "invalid_sex", "Q") in {(r[0], r[1], r[3], r[4], r[5]) for r in rejected[1:]}


def test_rejected_rows_csv_lists_each_row_without_patient_ids(run, tmp_path):  # noqa: F811
    with open(run["out"]["flags"]["rejected_rows"], newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["file", "row", "claim_id", "column", "rule", "value", "reason"]
    # the planted bad sex is the third data row of claims.csv (i == 2, row 1 = first data row); its claim's
    # review (first row of reviews.csv: the demo writes reviews in claim order) is quarantined with it
    assert [(r["file"], r["row"], r["column"], r["rule"], r["value"]) for r in rows] == [
        ("claims.csv", "3", "sex", "invalid_sex", "Q"), ("reviews.csv", "1", "claim_id", "claim_rejected",
                                                         rows[1]["claim_id"])]
    from reports.index_page import rejected_rows
    from reports.warehouse import PeriodWarehouse

    db = tmp_path / "rejected.duckdb"
    con = duckdb.connect(str(db))
    con.execute("""CREATE TABLE rejected_rows AS SELECT * FROM (VALUES
        ('2026-11', 'claims', '/secret/folder/claims.csv', 7, 'C9', 'patient_id', 'invalid_x', 'PID-ZQX1', 'bad'),
        ('2026-11', 'claims', 'claims.csv', 8, 'C10', 'payer', 'invalid_x', '=1+1', 'bad'))
        t(audit_period, entity, source_file, "row", claim_id, "column", rule, value, reason)""")
    frame = rejected_rows(PeriodWarehouse(con, "2026-11"))
    con.close()
    assert frame["file"].tolist() == ["claims.csv", "claims.csv"]  # no folder
    assert frame["value"].tolist()[0] is None  # a patient identifier's value is never written
    from reports.exports import write_csv

    text = write_csv(frame, tmp_path / "r.csv").read_text(encoding="utf-8")
    assert PATIENT_PREFIX not in text and ",'=1+1," in text


def test_case_list_has_one_row_per_entity_with_exposure_counted_once():
    import duckdb
    import pandas as pd

    from reports.compliance_page import cases, cited_by_entity
    from reports.warehouse import PeriodWarehouse

    flags = pd.DataFrame({
        "flag_id": ["claim:severity_code_removed:C1", "claim:high_risk_mcc_removed:C1", "coder:coder_overpaid_share:K"],
        "level": ["claim", "claim", "coder"], "entity": ["C1", "C1", "K"],
        "rule": ["severity_code_removed", "high_risk_mcc_removed", "coder_overpaid_share"],
        "severity": ["medium", "high", "low"], "description": ["MCC removed.", "E43 removed.", "Coder K high."]})
    # C1 overpaid 3,000.00 cited by both claim rules; coder K cites C1 and C2 (overpaid 500.25) and C3 (unaudited)
    cited = pd.DataFrame({"level": ["claim", "claim", "coder", "coder", "coder"],
                          "flagged_entity": ["C1", "C1", "K", "K", "K"], "claim_id": ["C1", "C1", "C1", "C2", "C3"],
                          "severity": ["medium", "high", "low", "low", "low"],
                          "rule": ["severity_code_removed", "high_risk_mcc_removed"] + ["coder_overpaid_share"] * 3,
                          "delta": [-3000.0, -3000.0, -3000.0, -500.25, None]})
    con = duckdb.connect()
    con.register("cited_rows", cited)
    out = cases(flags, cited_by_entity(PeriodWarehouse(con, "2026-11"), "SELECT * FROM cited_rows")
                ).set_index("entity")
    assert len(out) == 2
    assert out.loc["C1", "rules"] == "High-risk MCC removed; Severity code removed"  # high first
    assert out.loc["C1", "severity"] == "high" and out.loc["C1", "flags"] == 2
    assert out.loc["C1", "exposure"] == 3000.0  # once, not 6,000 for two rules
    assert out.loc["C1", "claims_cited"] == 1 and out.loc["C1", "claim_ids"] == "C1"
    assert out.loc["K", "exposure"] == 3500.25 and out.loc["K", "claims_cited"] == 3
    assert out.loc["K", "audited_claims_cited"] == 2 and out.loc["K", "claim_ids"] == "C1, C2, C3"
    assert list(out.index) == ["C1", "K"]  # high before low


def test_case_claim_ids_are_the_first_ten_in_the_csv_order_then_a_count():
    """A facility cites 12 claims: 11 by a high rule (F01..F11) and F00 by a medium one only. The CSV
    lists high before medium, so the first ten are F01..F10 and F00 is among the two counted."""
    import duckdb
    import pandas as pd

    from reports.compliance_page import cited_by_entity
    from reports.warehouse import PeriodWarehouse

    ids = [f"F{i:02d}" for i in range(1, 12)]
    cited = pd.DataFrame({"level": "facility", "flagged_entity": "H1", "claim_id": ids + ["F00"],
                          "severity": ["high"] * 11 + ["medium"], "rule": "target_area_outlier",
                          "delta": [None] * 12})
    con = duckdb.connect()
    con.register("cited_rows", cited)
    out = cited_by_entity(PeriodWarehouse(con, "2026-11"), "SELECT * FROM cited_rows").iloc[0]
    assert out["claim_ids"] == "F01, F02, F03, F04, F05, F06, F07, F08, F09, F10 (+2 more)"
    assert out["claims_cited"] == 12 and out["audited_claims_cited"] == 0 and out["exposure"] == 0.0


def test_impact_rows_fold_zero_groups_and_keep_months_in_order():
    import pandas as pd

    from reports.revenue_page import impact_rows

    impact = pd.DataFrame({
        "breakdown": ["audit_month"] * 4 + ["drg_family"] * 3,
        "breakdown_value": ["2026-10", "2026-08", "2026-09", "2026-07", "SEPSIS", "HEART FAILURE", "COPD"],
        "underpaid_amount": [10.0, 0.0, 5.0, 0.0, 100.0, 0.0, 0.0],
        "overpaid_amount": [0.0, 7.0, 0.0, 0.0, 50.0, 400.0, 0.0]})
    months, folded = impact_rows(impact, "audit_month")
    assert months["breakdown_value"].tolist() == ["2026-08", "2026-09", "2026-10"] and folded == 1
    families, folded = impact_rows(impact, "drg_family")
    assert families["breakdown_value"].tolist() == ["HEART FAILURE", "SEPSIS"] and folded == 1  # $400, then $150


def test_run_warnings_are_shown_escaped(run, tmp_path):  # noqa: F811
    from reports import write_reports

    hostile = '<img src=x onerror=alert(3)> "=cmd"'
    info = dict(run["run_info"], warnings=[{"code": "dates_guessed", "message": hostile, "count": 12}])
    con = duckdb.connect(str(run["db"]), read_only=True)
    try:
        paths = write_reports(con, PERIOD, tmp_path / "out", info)
    finally:
        con.close()
    html = paths["index"].read_text(encoding="utf-8")
    assert hostile not in html and "<img" not in html
    payload = _blocks(html)["table-warnings-data"]
    assert payload["rows"] == [["dates_guessed", hostile, 12]]


def test_worklists_carry_the_drg_title_of_the_claims_fiscal_year(run):  # noqa: F811
    from audits.revenue.weights import load_weights

    with open(run["out"]["flags"]["refund_worklist"], newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    titles = load_weights([2026]).set_index("drg")["title"]
    assert rows and all(r["fiscal_year"] == "2026" for r in rows)
    for row in rows:
        assert row["original_drg_title"] == titles[row["original_drg"].zfill(3)]
        assert row["audited_drg_title"] == titles[row["audited_drg"].zfill(3)]
    # FY2026 Table 5: DRG 871 = SEPTICEMIA OR SEVERE SEPSIS WITHOUT MV >96 HOURS WITH MCC
    assert titles["871"] == "SEPTICEMIA OR SEVERE SEPSIS WITHOUT MV >96 HOURS WITH MCC"
