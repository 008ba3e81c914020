"""Reports: figure builders on their data (fig.to_dict(), values worked out by hand), then pages built by
`write_reports` from a warehouse made by the real pipeline with planted hostile values."""

from __future__ import annotations

import csv
import json
import re
import shutil
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from plotly.offline import get_plotlyjs

from reports import figures, write_reports
from reports.chapters import chapter_number
from reports.exports import neutralise_formulas, write_csv
from reports.html import script_json

NOTE = "<script>alert(1)</script>"
FORMULA = '=HYPERLINK("http://x","y")'
PATIENT_PREFIX = "PID-ZQX"
PAGES = ("index.html", "audit.html", "revenue.html", "compliance.html")
FLAG_TABLES = ("upcoding_flags", "coder_funnel", "facility_target_areas", "target_area_peers", "short_stay_rates")


# ------------------------------------------------------------------------------ figure builders


def test_position_figure_shows_given_rates_and_wilson_bounds_in_position_order():
    # Wilson 95% for 20 of 200 worked by hand: centre 0.107538, half 0.041867 -> 0.065671-0.149405.
    rates = pd.DataFrame({
        "metric": ["dx_position_10", "dx_omitted", "dx_position_2", "dx_position_1"],
        "n": [5, 200, 150, 200], "errors": [0, 8, 30, 20], "rate": [0.0, 0.04, 0.2, 0.1],
        "ci_low": [0.0, 0.020, 0.144, 0.065671], "ci_high": [0.434, 0.077, 0.271, 0.149405],
        "small_cell": [True, False, False, False]})
    bar = figures.position_error_figure(rates).to_dict()["data"][0]
    assert list(bar["x"]) == ["1 (principal)<br>n=200", "2<br>n=150", "10<br>n=5", "omitted (missed)<br>n=200"]
    assert list(bar["y"]) == [0.1, 0.2, 0.0, 0.04]
    assert bar["error_y"]["array"] == pytest.approx([0.049405, 0.071, 0.434, 0.037])
    assert bar["error_y"]["arrayminus"] == pytest.approx([0.034329, 0.056, 0.0, 0.020])
    assert bar["error_y"]["symmetric"] is False
    assert list(bar["marker"]["color"])[2] == figures.MUTED_COLOUR  # fewer than 11 claims


def test_waterfall_measures_and_values_are_the_hand_sums():
    regroup = pd.DataFrame({
        "claim_id": ["A", "B", "C", "D"],
        "original_payment": [1000.0, 2000.0, 3000.0, 4000.0],
        "audited_payment": [1500.0, 1200.0, 3000.0, np.nan],
        "delta": [500.0, -800.0, 0.0, np.nan]})  # D is not priced: left out
    trace = figures.waterfall_figure(regroup).to_dict()["data"][0]
    assert list(trace["measure"]) == ["absolute", "relative", "relative", "total"]
    # original 1000+2000+3000 = 6000; underpaid 500; overpaid 800; audited 1500+1200+3000 = 5700
    assert list(trace["y"]) == [6000.0, 500.0, -800.0, 5700.0]
    layout = figures.waterfall_figure(regroup).to_dict()["layout"]
    assert layout["yaxis"]["range"][0] == 0.0  # zero baseline: bar height proportional to dollars
    assert layout["yaxis"]["range"][1] >= 6500.0  # original + underpaid fits


def test_sankey_links_are_dollar_sums_with_the_tail_as_other():
    regroup = pd.DataFrame({
        "claim_id": ["1", "2", "3", "4", "5", "6", "7"],
        "original_drg": ["871", "871", "193", "291", "190", "177", "470"],
        "audited_drg": ["872", "872", "194", "293", "191", "178", "470"],
        "delta": [-3000.50, -2000.25, 1000.0, -4000.0, -300.0, 200.0, 0.0]})
    link = figures.drg_sankey_figure(regroup, top_n=3).to_dict()["data"][0]["link"]
    # 871->872: 3000.50 + 2000.25 = 5000.75; then 291->293 4000; 193->194 1000; other: 300 + 200 = 500
    assert list(link["value"]) == [5000.75, 4000.0, 1000.0, 500.0]
    node = figures.drg_sankey_figure(regroup, top_n=3).to_dict()["data"][0]["node"]["label"]
    labels = [(node[s], node[t]) for s, t in zip(link["source"], link["target"])]
    assert labels == [("Original 871", "Audited 872"), ("Original 291", "Audited 293"),
                      ("Original 193", "Audited 194"), ("Other original DRGs", "Other audited DRGs")]
    titled = regroup.assign(original_drg_label=regroup["original_drg"] + " SEPTICEMIA <WITH> MCC",
                            audited_drg_label=regroup["audited_drg"] + " X")
    node = figures.drg_sankey_figure(titled, top_n=3).to_dict()["data"][0]["node"]["label"]
    assert node[0] == "Original 871 SEPTICEMIA &lt;WITH&gt; MCC"  # number and title, escaped for plotly.js
    # other: net -300 + 200 = -100 -> paid less after audit -> red
    assert [c.startswith("rgba(26,127,55") for c in link["color"]] == [False, False, True, False]


def test_impact_figure_keeps_top_groups_and_sums_the_rest():
    impact = pd.DataFrame({"breakdown_value": ["Cardiology", "Ortho", "Neuro", "<b>ENT</b>"],
                           "claims": [10, 5, 3, 2], "underpaid_amount": [100.0, 0.0, 30.0, 5.0],
                           "overpaid_amount": [900.0, 50.0, 0.0, 1.0], "net_amount": [-800.0, -50.0, 30.0, 4.0]})
    data = figures.impact_figure(impact, "service line", top_n=2).to_dict()["data"]
    assert list(data[0]["y"]) == ["Cardiology", "Ortho", "Other (2 groups)"]
    assert list(data[0]["x"]) == [100.0, 0.0, 35.0]
    assert list(data[1]["x"]) == [-900.0, -50.0, -1.0]
    assert list(data[2]["x"]) == [-800.0, -50.0, 34.0]
    escaped = figures.impact_figure(impact, "service line", top_n=5).to_dict()["data"][0]["y"]
    assert "&lt;b&gt;ENT&lt;/b&gt;" in list(escaped)  # plotly.js would render <b> as markup


def test_funnel_limits_are_the_coder_tests_hypergeometric_quantiles():
    # Audit 40 claims, 4 overpaid; a coder with n = 10: X ~ Hypergeometric(40, 4, 10),
    # P(X = k) = C(4,k) C(36,10-k) / C(40,10) (= 847,660,528): k = 0..4 254,186,856 / 376,573,120 /
    # 181,562,040 / 33,390,720 / 1,947,792 -> CDF .29987 .74412 .95831 .99770 1.
    # 97.5%: first k with F(k) >= .975 -> 3 (0.3); 99.9% -> 4 (0.4); 2.5% and 0.1% -> 0.
    low95, high95 = figures.funnel_limits(40, 4, [10], 0.95)
    low998, high998 = figures.funnel_limits(40, 4, [10], 0.998)
    assert (low95[0], high95[0]) == (0.0, 0.3)
    assert (low998[0], high998[0]) == (0.0, 0.4)
    funnel = pd.DataFrame({"coder_id": ["A", "B"], "n": [10, 30], "overpaid": [1, 3], "rate": [0.1, 0.1],
                           "audit_claims": [40, 40], "audit_overpaid": [4, 4],
                           "q_value": [1.0, 1.0], "flagged": [False, False]})
    data = figures.funnel_figure(funnel).to_dict()["data"]
    upper95 = next(t for t in data if t["name"] == "95% limits" and t["showlegend"])
    assert dict(zip(upper95["x"], upper95["y"]))[10] == pytest.approx(0.3)
    upper998 = next(t for t in data if t["name"] == "99.8% limits" and t["showlegend"])
    assert dict(zip(upper998["x"], upper998["y"]))[10] == pytest.approx(0.4)
    points = next(t for t in data if t["name"] == "coder")
    assert list(points["x"]) == [10, 30] and list(points["y"]) == [0.1, 0.1]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_chapters_agree_with_the_icd10cm_tabular_list():
    import simple_icd_10_cm as cm

    categories = [c for c in cm.get_all_codes(False) if cm.is_category(c)]
    expected = np.array([int(cm.get_ancestors(c)[-1]) for c in categories])
    assert (chapter_number(categories) == expected).all()
    assert list(chapter_number(["I50.23", "i5023", "O9A1", "C4A0", "", None])) == [9, 9, 15, 2, 0, 0]


def test_chapter_heatmap_counts_principal_changes_by_chapter():
    pairs = pd.DataFrame({"original_code": ["A419", "A4189", "I5032", "E43"],
                          "audited_code": ["J189", "J690", "I5033", "R627"], "claims": [1, 1, 3, 1]})
    heat = figures.chapter_confusion_figure(pairs).to_dict()["data"][0]
    assert [label.split()[0] for label in heat["y"]] == ["1", "4", "9", "10", "18"]
    z = np.array(heat["z"])
    assert z[0, 3] == 2   # infectious -> respiratory: A41.9 -> J18.9, A41.89 -> J69.0
    assert z[2, 2] == 3   # circulatory stays circulatory
    assert z[1, 4] == 1   # E43 -> R62.7
    assert z.sum() == 6


def test_trend_has_one_point_per_period_and_metric():
    trend = pd.DataFrame({"audit_period": ["2026-10", "2026-11"] * 3,
                          "metric": ["record_error_rate"] * 2 + ["principal_dx_error_rate"] * 2
                          + ["secondary_dx_error_rate"] * 2,
                          "n": [100, 200] * 3, "errors": [30, 50, 10, 20, 25, 40],
                          "rate": [0.3, 0.25, 0.1, 0.1, 0.25, 0.2],
                          "ci_low": [0.22, 0.19, 0.05, 0.07, 0.17, 0.15],
                          "ci_high": [0.39, 0.31, 0.17, 0.15, 0.34, 0.26]})
    data = figures.trend_figure(trend).to_dict()["data"]
    assert [t["name"] for t in data] == ["Record error rate", "Principal dx error rate", "Secondary dx error rate"]
    assert list(data[0]["x"]) == ["2026-10", "2026-11"] and list(data[0]["y"]) == [0.3, 0.25]
    assert data[0]["error_y"]["array"] == pytest.approx([0.09, 0.06])


def test_csv_neutralises_formula_text_and_keeps_numbers(tmp_path):
    frame = pd.DataFrame({"claim_id": [FORMULA, "C2", "C3", "C4"], "delta": [-2552.68, 10.5, 0.0, -1.0],
                          "notes": ["-G9341:MCC", "@SUM(A1)", "+1", "\tcmd"],
                          "text_number": ["-12.5", "ok", None, "x"]})
    out = neutralise_formulas(frame)
    assert out["claim_id"].tolist() == ["'" + FORMULA, "C2", "C3", "C4"]
    assert out["notes"].tolist() == ["'-G9341:MCC", "'@SUM(A1)", "+1", "'\tcmd"]  # "+1" is a plain number
    assert out["text_number"].iloc[0] == "-12.5"
    assert out["delta"].tolist() == [-2552.68, 10.5, 0.0, -1.0]
    written = write_csv(frame, tmp_path / "worklist.csv").read_text(encoding="utf-8").splitlines()
    assert written[0] == "claim_id,delta,notes,text_number"
    assert written[1] == "\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\",-2552.68,'-G9341:MCC,-12.5"
    assert written[2] == "C2,10.5,'@SUM(A1),ok"


def test_csv_in_batches_has_one_header_and_every_batch_neutralised(tmp_path):
    """A list that grows with the universe is written batch by batch: the header once, then each batch's
    rows in order, each neutralised (the formula sits in the second batch)."""
    batches = iter([pd.DataFrame({"claim_id": ["C1", "C2"], "delta": [-1.5, None]}),
                    pd.DataFrame({"claim_id": ["=1+1"], "delta": [2.0]})])
    written = write_csv(batches, tmp_path / "flagged.csv").read_text(encoding="utf-8")
    assert written == "claim_id,delta\nC1,-1.5\nC2,\n'=1+1,2.0\n"
    assert list(tmp_path.iterdir()) == [tmp_path / "flagged.csv"]  # no temporary file left behind


def test_a_failed_csv_leaves_no_file_and_no_temporary(tmp_path):
    def batches():
        yield pd.DataFrame({"claim_id": ["C1"]})
        raise RuntimeError("warehouse went away")

    with pytest.raises(RuntimeError):
        write_csv(batches(), tmp_path / "flagged.csv")
    assert list(tmp_path.iterdir()) == []


def test_figure_labels_cannot_break_out_of_the_figure_script():
    from reports.html import figure_div

    hostile = "</script><script>alert(1)</script>"
    card = pd.DataFrame({"coder_id": [hostile], "audited_claims": [20], "record_errors": [5],
                         "record_error_rate": [0.25], "record_error_ci_low": [0.11], "record_error_ci_high": [0.47]})
    markup = figure_div(figures.coder_scorecard_figure(card), "fig-test")
    assert markup.lower().count("</script") == 1 and markup.lower().count("<script") == 1
    assert "alert(1)" in markup  # still there, as inert text
    assert "&lt;\\u002fscript&gt;" in markup  # escaped for plotly.js text, then by plotly's JSON encoder


def test_script_json_cannot_close_its_script_element():
    text = script_json({"rows": [[NOTE, "</SCRIPT>", "<!--", "a\u2028b"]]})
    assert "<" not in text and ">" not in text and "\u2028" not in text
    assert json.loads(text)["rows"][0] == [NOTE, "</SCRIPT>", "<!--", "a\u2028b"]


# -------------------------------------------------------------------------- pages from a run


def _rewrite_csv(path: Path, change) -> None:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for i, row in enumerate(rows):
        change(i, row)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _synthetic_flag_tables(con: duckdb.DuckDBPyConnection, period: str) -> dict:
    """The four flag tables of the contract, with a hostile description; replaces any that exist."""
    from scipy.stats import hypergeom

    for table in FLAG_TABLES:
        con.execute(f"DROP TABLE IF EXISTS {table}")
    regroup = con.execute("SELECT claim_id, coder_id, delta FROM claim_regroup WHERE audit_period = ?",
                          [period]).df()
    worst = regroup.sort_values("delta").iloc[0]
    coder_claims = regroup[(regroup["coder_id"] == worst["coder_id"]) & (regroup["delta"] < 0)]["claim_id"].tolist()
    hostile = 'Facility <b>F001</b> & "septicemia" <img src=x onerror=alert(2)>'
    flags = pd.DataFrame([
        {"flag_id": f"claim:severity_code_removed:{worst['claim_id']}", "level": "claim",
         "entity": worst["claim_id"], "rule": "severity_code_removed", "observed": 9000.0, "expected": 6000.0,
         "n": 1, "statistic": None, "p_value": None, "q_value": None, "exposure": -float(worst["delta"]),
         "severity": "high", "evidence": json.dumps({"claims": [worst["claim_id"]], "codes": ["E43"],
                                                      "detail": "MCC removed"}),
         "description": "Audit removed the MCC that set the DRG's severity."},
        {"flag_id": f"coder:coder_overpaid_share:{worst['coder_id']}", "level": "coder",
         "entity": worst["coder_id"], "rule": "coder_overpaid_share", "observed": 0.4, "expected": 0.05, "n": 20,
         "statistic": 8.0, "p_value": 0.0001, "q_value": 0.001, "exposure": 1234.5, "severity": "medium",
         "evidence": json.dumps({"claims": coder_claims, "codes": [], "detail": "overpaid share"}),
         "description": "Coder overpaid share above the rest of the audit."},
        {"flag_id": "facility:target_area_outlier:F001:septicemia", "level": "facility", "entity": "F001",
         "rule": "target_area_outlier", "observed": 0.3, "expected": 0.1, "n": 50, "statistic": None,
         "p_value": 0.001, "q_value": 0.01, "exposure": None, "severity": "low",
         "evidence": json.dumps({"claims": [], "codes": [], "detail": hostile}), "description": hostile}])
    funnel = (regroup[regroup["delta"].notna()].assign(over=lambda f: f["delta"] < 0)
              .groupby("coder_id", as_index=False).agg(n=("claim_id", "count"), overpaid=("over", "sum")))
    funnel["rate"] = funnel["overpaid"] / funnel["n"]
    total_n, total_x = funnel["n"].sum(), funnel["overpaid"].sum()
    funnel["expected"] = (total_x - funnel["overpaid"]) / (total_n - funnel["n"])
    funnel["audit_claims"], funnel["audit_overpaid"] = total_n, total_x
    for name, q in (("lower_95", 0.025), ("upper_95", 0.975), ("lower_998", 0.001), ("upper_998", 0.999)):
        funnel[name] = hypergeom.ppf(q, total_n, total_x, funnel["n"]) / funnel["n"]
    funnel["p_value"] = 0.5
    funnel["q_value"] = 0.9
    funnel["flagged"] = funnel["coder_id"] == worst["coder_id"]
    areas = pd.DataFrame({
        "facility_id": ["F001", "F002", "F003", "F004"], "target_area": ["septicemia"] * 3 + ["simple_pneumonia"],
        "numerator": [30, 12, 11, 3], "denominator": [100, 90, 95, 40], "percent": [30.0, 13.3, 11.6, 7.5],
        "peer_percentile": [95.0, 50.0, 10.0, None], "peer_p20": [11.0] * 4, "peer_p80": [25.0] * 4,
        "peers": [4] * 4, "peers_incomplete": [1] * 4, "direction": ["both"] * 4,
        "outlier": ["high", None, "low", None], "suppressed": [False, False, False, True],
        "p0": [0.15] * 4, "tau2": [0.001] * 4, "z": [4.2, -0.5, -1.0, None], "z_d": [3.5, -0.4, -0.9, None],
        "p_value": [0.0005, 0.7, 0.4, None], "q_value": [0.0015, 0.7, 0.6, None],
        "flagged": [True, False, False, False]})
    peers = pd.DataFrame({"target_area": ["septicemia"] * 4, "peer_id": ["P1", "P2", "P3", "P4"],
                          "numerator": [12, 20, 15, 30], "denominator": [100, 150, 110, 180],
                          "percent": [12.0, 13.3, 13.6, 16.7], "complete": [True] * 4})
    short = pd.DataFrame({
        "level": ["facility", "facility", "facility", "coder"], "entity": ["F001", "F002", "F003", "C01"],
        "highest_severity_stays": [120, 80, 5, 40], "short_stays": [30, 12, 2, 11],
        "short_stay_rate": [0.25, 0.15, 0.4, 0.275], "audited_mcc_stays": [20, 10, None, 10],
        "single_mcc_stays": [10, 4, None, 3],
        "single_mcc_rate": [0.5, 0.4, None, 0.3], "suppressed": [False, False, True, False]})
    for name, frame in (("upcoding_flags", flags), ("coder_funnel", funnel),
                        ("facility_target_areas", areas), ("target_area_peers", peers),
                        ("short_stay_rates", short)):
        con.register("frame_view", frame)
        con.execute(f"CREATE TABLE {name} AS SELECT CAST(? AS VARCHAR) AS audit_period, * FROM frame_view", [period])
        con.unregister("frame_view")
    return {"evidence_claims": 1 + len(coder_claims), "hostile": hostile}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The real pipeline on a small demo with a script note, a formula payer and patient ids planted."""
    from audits.demo.config import DemoConfig
    from audits.demo.generate import generate_demo
    from pipelines.cli import main

    root = tmp_path_factory.mktemp("reports_run")
    paths = generate_demo(root / "input", DemoConfig(n_claims=600, audit_sample=120))

    def claims(i, row):
        row["patient_id"] = f"{PATIENT_PREFIX}{i:05d}"
        if i % 2:
            row["payer"] = FORMULA
        if i == 2:
            row["sex"] = "Q"  # one row quarantined: rejected_rows has a rule to count

    def reviews(i, row):
        row["notes"] = NOTE

    _rewrite_csv(paths["claims"], claims)
    _rewrite_csv(paths["reviews"], reviews)
    workdir = root / "work"
    assert main(["run", "--claims", str(paths["claims"]), "--reviews", str(paths["reviews"]),
                 "--universe", str(paths["claims"]), "--workdir", str(workdir), "--period", "2026-11",
                 "--regroup-universe"]) == 0
    run_info = json.loads((workdir / "summary.json").read_text(encoding="utf-8"))

    # With flags (synthetic, per the contract) and a second audit period for the trend.
    flagged_db = root / "with_flags.duckdb"
    shutil.copy(workdir / "warehouse.duckdb", flagged_db)
    con = duckdb.connect(str(flagged_db))
    planted = _synthetic_flag_tables(con, "2026-11")
    for earlier in ("2026-09", "2026-10"):
        con.execute(f"""INSERT INTO error_rates SELECT * REPLACE ('{earlier}' AS audit_period, rate / 2 AS rate)
                        FROM error_rates WHERE audit_period = '2026-11' AND breakdown = 'all'""")
    con.close()
    plain_db = root / "without_flags.duckdb"
    shutil.copy(workdir / "warehouse.duckdb", plain_db)
    con = duckdb.connect(str(plain_db))
    for table in FLAG_TABLES:
        con.execute(f"DROP TABLE IF EXISTS {table}")
    con.close()

    outputs = {}
    for name, db in (("flags", flagged_db), ("plain", plain_db)):
        out = workdir / "reports" if name == "flags" else root / "reports_plain"
        con = duckdb.connect(str(db), read_only=True)  # the reports only read
        try:
            write_reports(con, "2026-11", out, run_info)
            outputs[name] = write_reports(con, "2026-11", out, run_info)  # files already there: replaced
        finally:
            con.close()
    return {"root": root, "workdir": workdir, "run_info": run_info, "out": outputs, "planted": planted,
            "db": flagged_db}


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _table_payload(html: str, table_id: str) -> dict:
    match = re.search(rf'<script type="application/json" id="{table_id}-data">(.*?)</script>', html, re.S)
    assert match, f"no data block for {table_id}"
    return json.loads(match.group(1))


def _workbook_text(path: Path) -> str:
    import openpyxl

    book = openpyxl.load_workbook(path, read_only=True)
    return "\n".join(str(v) for sheet in book.worksheets for row in sheet.iter_rows(values_only=True)
                     for v in row if v is not None)


def _outside_bundle(html: str) -> str:
    bundle = get_plotlyjs()
    assert html.count(bundle) <= 1
    return html.replace(bundle, "")


def test_every_file_is_written(run):
    for outputs in run["out"].values():
        assert set(outputs) == {"index", "audit", "revenue", "compliance", "rebill_worklist", "refund_worklist",
                                "flagged_claims", "rejected_rows", "billed_drg_mismatches", "audit_workbook"}
        assert all(p.exists() and p.stat().st_size > 0 for p in outputs.values())


def test_planted_patient_id_appears_in_no_report_file(run):
    files = [p for outputs in run["out"].values() for p in outputs.values()]
    assert len(files) == 20
    for path in files:
        assert PATIENT_PREFIX not in (_workbook_text(path) if path.suffix == ".xlsx" else _text(path)), path.name


def test_review_note_is_escaped_never_markup(run):
    html = _text(run["out"]["flags"]["audit"])
    assert NOTE not in html
    rows = _table_payload(html, "table-changed-claims")
    columns = [c["label"] for c in rows["columns"]]
    notes = {row[columns.index("Reviewer note")] for row in rows["rows"]}
    assert notes == {NOTE}  # the exact text, shown by the table script with textContent
    assert "\\u003cscript\\u003ealert(1)\\u003c/script\\u003e" in html
    # The only script elements are ours: plotly config + bundle, one per figure, one per table, the table code.
    rest = _outside_bundle(html)
    figures_n = rest.count('class="plotly-graph-div"')
    tables_n = rest.count('class="datatable"')
    # ... and the page's figures as data (page-figures).
    assert len(re.findall(r"<script\b", rest, re.I)) == 2 + figures_n + tables_n + 1 + 1


def test_hostile_flag_text_is_escaped(run):
    html = _text(run["out"]["flags"]["compliance"])
    assert run["planted"]["hostile"] not in html
    assert "<img" not in _outside_bundle(html)
    cases = _table_payload(html, "table-cases")
    assert any(run["planted"]["hostile"] in row[4] for row in cases["rows"])


def test_csv_exports_neutralise_formulas_and_keep_negative_numbers(run):
    out = run["out"]["flags"]
    with open(out["refund_worklist"], newline="", encoding="utf-8") as fh:
        refund = list(csv.DictReader(fh))
    with open(out["rebill_worklist"], newline="", encoding="utf-8") as fh:
        rebill = list(csv.DictReader(fh))
    con = duckdb.connect(str(run["db"]), read_only=True)
    expected = con.execute("""SELECT direction, count(*), round(sum(delta), 2) FROM claim_regroup
                              WHERE audit_period = '2026-11' GROUP BY direction""").fetchall()
    con.close()
    by = {d: (n, s) for d, n, s in expected}
    assert len(refund) == by["overpaid"][0] and len(rebill) == by["underpaid"][0]
    assert round(sum(float(r["delta"]) for r in refund), 2) == by["overpaid"][1]
    assert all(float(r["delta"]) < 0 and re.fullmatch(r"-\d+(\.\d+)?", r["delta"]) for r in refund)
    assert all(float(r["refund_amount"]) == -float(r["delta"]) for r in refund)
    payers = {r["payer"] for r in refund + rebill}
    assert "'" + FORMULA in payers and FORMULA not in payers
    text = "".join(_text(out[name]) for name in ("refund_worklist", "rebill_worklist", "flagged_claims",
                                                 "rejected_rows", "billed_drg_mismatches"))
    assert not re.search(r'(^|,)"?[=+@]', text, re.M)  # no cell starts a formula


def test_pages_reference_nothing_remote_and_embed_plotly_once(run):
    bundle = get_plotlyjs()
    for outputs in run["out"].values():
        for name in PAGES:
            html = _text(outputs[name.removesuffix(".html")])
            has_figures = 'class="plotly-graph-div"' in html
            assert html.count(bundle) == (1 if has_figures else 0), name
            rest = html.replace(bundle, "")
            assert not re.search(r"<script\b[^>]*\bsrc\s*=", rest, re.I), name      # no external script at all
            assert not re.search(r"<link\b", rest, re.I), name                        # no stylesheet or font link
            assert not re.search(r"<(img|iframe|object|embed|audio|video|source)\b", rest, re.I), name
            css = " ".join(re.findall(r"<style\b[^>]*>(.*?)</style>", rest, re.S | re.I)
                           + re.findall(r'style="([^"]*)"', rest))
            assert not re.search(r"@import|@font-face|url\s*\(", css, re.I), name
            assert "cdn.plot.ly" not in rest and "fonts.googleapis" not in rest, name
    # plotly.js itself: URL strings in code (map tiles, licences) but no script, link, import or CSS url().
    for pattern in (r"<script[^>]*src\s*=\s*[\"']?https?:", r"<link[^>]*href\s*=\s*[\"']?https?:",
                    r"@import\s+(url\()?\s*[\"']?https?:", r"url\(\s*[\"']?https?:"):
        assert not re.search(pattern, bundle, re.I), pattern
    assert "</script" not in bundle.lower()


def test_headlines_match_the_run_summary(run):
    info, out = run["run_info"], run["out"]["flags"]
    audit = _text(out["audit"])
    assert f"{info['record_error_rate'] * 100:.1f}%" in audit
    revenue = _text(out["revenue"])
    assert f"${info['underpaid_amount']:,.2f}" in revenue and f"${info['overpaid_amount']:,.2f}" in revenue
    extrapolation = info["extrapolation"]
    assert f"${abs(extrapolation['point']):,.0f}" in revenue and "90% CI" in revenue
    assert "rebill_worklist.csv" in revenue and "refund_worklist.csv" in revenue


def test_index_shows_run_metadata_with_file_names_only(run):
    info, index = run["run_info"], _text(run["out"]["flags"]["index"])
    for page in ("audit.html", "revenue.html", "compliance.html"):
        assert f'href="{page}"' in index
    assert "claims.csv" in index and "reviews.csv" in index
    assert str(run["root"]) not in index  # no directory paths
    assert f"{info['claims']:,}" in index and info["grouper"] in index and "FY2026" in index
    assert f"${info['base_rate']:,.2f}" in index and info["generated_at"] in index
    rejected = _table_payload(index, "table-rejected")
    assert [row[:2] for row in rejected["rows"] if row[1] == "invalid_sex"] == [["claims.csv", "invalid_sex"]]
    assert re.search(r"Claims rows read / loaded / rejected</td><td>600 / 599 / 1<", index)


def test_index_and_summary_say_which_layout_each_file_was_read_as(run):
    info, index = run["run_info"], _text(run["out"]["flags"]["index"])
    assert [(f["entity"], Path(f["file"]).name, f["format"], f["detected"]) for f in info["formats"]] == [
        ("claims", "claims.csv", "wide", False), ("reviews", "reviews.csv", "wide", False)]
    assert info["skipped_records"] == []
    assert re.search(r"Layout read</td><td>claims.csv: wide; reviews.csv: wide<", index)
    assert re.search(r"Records skipped \(not audited\)</td><td>none<", index)


def test_audit_page_has_its_figures_and_a_three_period_trend(run):
    html = _text(run["out"]["flags"]["audit"])
    for div in ("fig-positions", "fig-error-types", "fig-chapters", "fig-coders", "fig-trend"):
        assert f'id="{div}"' in html
    trend = re.search(r'Plotly.newPlot\(\s*"fig-trend",\s*(\[.*?\]),\s*\{', html, re.S).group(1)
    assert json.loads(trend)[0]["x"] == ["2026-09", "2026-10", "2026-11"]


def test_compliance_page_with_flags(run):
    html = _text(run["out"]["flags"]["compliance"])
    for div in ("fig-severity", "fig-funnel", "fig-target-areas", "fig-short-stays"):
        assert f'id="{div}"' in html
    assert 'class="unavailable"' not in html
    with open(run["out"]["flags"]["flagged_claims"], newline="", encoding="utf-8") as fh:
        flagged = list(csv.DictReader(fh))
    assert len(flagged) == run["planted"]["evidence_claims"]
    cases = _table_payload(html, "table-cases")
    # one row per flagged entity: the claim, the coder and the facility of the three synthetic flags
    assert sorted(row[1] for row in cases["rows"]) == ["Claim", "Coder", "Facility"]
    assert {r["level"] for r in flagged} == {"claim", "coder"}


def test_flagged_claims_stream_in_batches_in_the_csv_order(run):
    """One row per batch: every evidence claim planted comes through, in the CSV's order, each batch with
    the CSV's columns (the DRG titles included)."""
    from reports.compliance_page import flag_data, flagged_claim_batches
    from reports.warehouse import PeriodWarehouse

    with open(run["out"]["flags"]["flagged_claims"], newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        columns, ids = reader.fieldnames, [r["claim_id"] for r in reader]
    con = duckdb.connect(str(run["db"]), read_only=True)
    try:
        wh = PeriodWarehouse(con, "2026-11")
        batches = list(flagged_claim_batches(wh, flag_data(wh)["flagged_claims_sql"], rows=1))
    finally:
        con.close()
    assert len(batches) == run["planted"]["evidence_claims"] and {len(b) for b in batches} == {1}
    assert [b["claim_id"].iloc[0] for b in batches] == ids
    assert all(list(b.columns) == columns for b in batches) and "audited_drg_title" in columns


def test_compliance_page_without_flag_tables_says_not_available(run):
    out = run["out"]["plain"]
    html = _text(out["compliance"])
    assert _outside_bundle(html).count('class="unavailable"') == 4
    assert 'class="plotly-graph-div"' not in html and get_plotlyjs() not in html
    assert _text(out["flagged_claims"]).strip().startswith("claim_id,flag_id")
    assert len(_text(out["flagged_claims"]).strip().splitlines()) == 1


def test_universe_missing_says_no_universe_loaded(run, tmp_path):
    db = tmp_path / "no_universe.duckdb"
    shutil.copy(run["db"], db)
    con = duckdb.connect(str(db))
    con.execute("DELETE FROM revenue_extrapolation")
    con.close()
    con = duckdb.connect(str(db), read_only=True)
    paths = write_reports(con, "2026-11", tmp_path / "out", {})
    con.close()
    assert "No universe loaded" in _text(paths["revenue"])


def test_pages_stay_small_with_100000_audited_claims(run, tmp_path):
    """Inflate the audit to >= 100,000 audited claims: figures stay aggregated, tables capped, CSVs full."""
    db = tmp_path / "large.duckdb"
    shutil.copy(run["db"], db)
    con = duckdb.connect(str(db))
    audited = con.execute("SELECT count(*) FROM claim_regroup WHERE audit_period = '2026-11'").fetchone()[0]
    copies = -(-100_000 // audited)
    con.execute(f"CREATE TEMP TABLE k AS SELECT range AS i FROM range(1, {copies})")
    for table in ("claim_regroup", "code_diffs", "reviews"):
        con.execute(f"""INSERT INTO {table} SELECT t.* REPLACE (t.claim_id || '-' || k.i AS claim_id)
                        FROM {table} t, k WHERE t.audit_period = '2026-11'""")
    total = con.execute("SELECT count(*) FROM claim_regroup WHERE audit_period = '2026-11'").fetchone()[0]
    overpaid = con.execute("SELECT count(*) FROM claim_regroup WHERE audit_period = '2026-11' "
                           "AND direction = 'overpaid'").fetchone()[0]
    con.close()
    assert total >= 100_000
    con = duckdb.connect(str(db), read_only=True)
    started = time.monotonic()
    paths = write_reports(con, "2026-11", tmp_path / "out", run["run_info"])
    elapsed = time.monotonic() - started
    con.close()
    assert elapsed < 20, f"write_reports took {elapsed:.1f}s"
    for name in ("audit", "revenue", "compliance"):
        html = _text(paths[name])
        assert len(html.encode()) < 10_000_000, name  # plotly.js is ~4.8 MB of it
        for match in re.finditer(r'<script type="application/json" id="([^"]+)-data">', html):
            assert len(_table_payload(html, match.group(1))["rows"]) <= 5000
        for match in re.finditer(r'Plotly.newPlot\(\s*"([^"]+)",\s*(\[.*?\]),\s*\{"', html, re.S):
            traces = json.loads(match.group(2))
            points = sum(len(t.get("x") or t.get("link", {}).get("value") or t.get("z") or []) for t in traces)
            assert points < 2000, (name, match.group(1), points)
    audit = _text(paths["audit"])
    assert re.search(r"Showing 5,000 of [\d,]+ rows", audit)
    with open(paths["refund_worklist"], newline="", encoding="utf-8") as fh:
        assert sum(1 for _ in fh) == overpaid + 1
