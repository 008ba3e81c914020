"""Audits that look back: any audit period from 2015-10, MS-DRG version and Table 5 by discharge date.

Expected DRGs are those of CMS's grouper for the version in force at discharge; weights are read off
each year's Table 5 by hand (FY2023 291 1.2798, 293 0.5603, 923 0.9432; FY2024 292 0.8565, 293
0.5615; FY2025 293 0.5487; FY2026 291 1.2838); payments at a base rate of $10,000.
"""

from __future__ import annotations

import datetime as dt
import json

import duckdb
import pytest

from audits.revenue import weights as weights_module
from audits.revenue.coverage import check_reference_coverage
from audits.errors import InputError
from audits.periods import check_audit_period, last_audit_period
from pipelines.cli import main
from tests.test_bad_input import fingerprint
from tests.helpers import claim, review, write_wide


def _run(tmp_path, claims, reviews, period="2024-03", *extra):
    args = ["run", "--claims", str(write_wide(tmp_path / "claims.csv", claims)),
            "--reviews", str(write_wide(tmp_path / "reviews.csv", reviews)),
            "--workdir", str(tmp_path / "w"), "--period", period, "--base-rate", "10000", *extra]
    return main(args)


def _dates(discharge: str) -> dict:
    day = dt.date.fromisoformat(discharge)
    return {"admit_date": (day - dt.timedelta(days=4)).isoformat(), "discharge_date": discharge}


def test_claims_across_fiscal_years_group_and_price_with_their_own_year(tmp_path):
    claims = [
        claim("V400", ["I50.23", "J96.01"], billed_drg="291", **_dates("2022-12-01")),  # v40.0, FY2023
        claim("V401", ["T74.A1XA"], billed_drg="923", **_dates("2023-05-10")),           # v40.1, FY2023
        claim("V410", ["I50.23"], **_dates("2023-11-15")),                               # v41.0, FY2024
        claim("V421", ["I50.23"], **_dates("2025-05-10")),                               # v42.1, FY2025
        claim("V430", ["I50.23", "J96.01"], billed_drg="291", **_dates("2026-01-06")),  # v43.0, FY2026
        claim("OLD", ["I50.23"], **_dates("2021-06-01")),                                # v38.1, FY2021
    ]
    reviews = [review("V400", ["I50.23"]), review("V401", ["T74.A1XA"]), review("V410", ["I50.23", "N17.9"]),
               review("V421", ["I50.23"]), review("V430", ["I50.23", "J96.01"]),
               review("OLD", ["I50.23", "J96.01"])]
    assert _run(tmp_path, claims, reviews) == 0
    con = duckdb.connect(str(tmp_path / "w" / "warehouse.duckdb"), read_only=True)
    rows = con.execute("""SELECT claim_id, drg_version, fiscal_year, original_drg, audited_drg, original_weight,
                                 audited_weight, original_payment, audited_payment, delta, direction
                          FROM claim_regroup ORDER BY claim_id""").fetchall()
    assert rows == [
        ("OLD", 381, 2021, None, None, None, None, None, None, None, "not_grouped"),
        # T74.A1XA (adult financial abuse, confirmed) became valid on 1 April 2023: v40.1 groups it.
        ("V400", 400, 2023, "291", "293", 1.2798, 0.5603, 12798.0, 5603.0, -7195.0, "overpaid"),
        ("V401", 401, 2023, "923", "923", 0.9432, 0.9432, 9432.0, 9432.0, 0.0, "unchanged"),
        ("V410", 410, 2024, "293", "292", 0.5615, 0.8565, 5615.0, 8565.0, 2950.0, "underpaid"),
        ("V421", 421, 2025, "293", "293", 0.5487, 0.5487, 5487.0, 5487.0, 0.0, "unchanged"),
        ("V430", 430, 2026, "291", "291", 1.2838, 1.2838, 12838.0, 12838.0, 0.0, "unchanged"),
    ]
    findings = con.execute("SELECT claim_id, finding FROM regroup_findings "
                           "WHERE finding = 'grouper_version_unavailable'").fetchall()
    assert findings == [("OLD", "grouper_version_unavailable")]
    # The unregrouped claim's codes still count: J96.01 added on audit is a secondary error.
    added = con.execute("SELECT count(*) FROM code_diffs WHERE claim_id = 'OLD' AND result = 'added'").fetchall()
    con.close()
    assert added == [(1,)]
    summary = json.loads((tmp_path / "w" / "summary.json").read_text())
    assert summary["audited_claims"] == 6
    assert (summary["underpaid_amount"], summary["overpaid_amount"], summary["net_amount"]) == (2950.0, 7195.0, -4245.0)
    # Rates over the 5 regrouped claims; the FY2021 claim is counted apart.
    assert (summary["drg_change_rate"], summary["drg_upgrade_rate"], summary["drg_downgrade_rate"]) == (0.4, 0.2, 0.2)
    assert summary["not_grouped_claims"] == 1
    assert summary["fiscal_years"] == {
        "2021": {"claims": 1, "audited_claims": 1, "priced_claims": 0, "not_grouped_claims": 1,
                 "msdrg_versions": {}, "weights": "shipped"},
        "2023": {"claims": 2, "audited_claims": 2, "priced_claims": 2, "not_grouped_claims": 0,
                 "msdrg_versions": {"v40.0": 1, "v40.1": 1}, "weights": "shipped"},
        "2024": {"claims": 1, "audited_claims": 1, "priced_claims": 1, "not_grouped_claims": 0,
                 "msdrg_versions": {"v41.0": 1}, "weights": "shipped"},
        "2025": {"claims": 1, "audited_claims": 1, "priced_claims": 1, "not_grouped_claims": 0,
                 "msdrg_versions": {"v42.1": 1}, "weights": "shipped"},
        "2026": {"claims": 1, "audited_claims": 1, "priced_claims": 1, "not_grouped_claims": 0,
                 "msdrg_versions": {"v43.0": 1}, "weights": "shipped"},
    }


def test_april_2023_code_needs_v40_1():
    """msdrg carries v40.1 (the 42 ICD-10-CM and 34 ICD-10-PCS codes of 1 April 2023): the same
    principal is invalid under v40.0. So v40.1 dates are grouped with v40.1, not v40.0."""
    from audits.revenue.grouping import MsdrgAdapter, msdrg_versions

    assert 401 in msdrg_versions()
    import pandas as pd
    sides = pd.DataFrame({"key": ["a", "b"], "version": [400, 401], "age": [70, 70], "sex": ["M", "M"],
                          "discharge_status": ["01", "01"], "dx": [["T74A1XA"], ["T74A1XA"]],
                          "poa": [["Y"], ["Y"]], "px": [[], []], "hospital_poa_exempt": [False, False]})
    out = MsdrgAdapter(mode="threads").group_many(sides)
    assert list(out["drg"]) == ["999", "923"]


def test_missing_fiscal_year_stops_before_publishing_and_changes_nothing(tmp_path, monkeypatch, capsys):
    assert _run(tmp_path, [claim("A", ["I50.23"])], [review("A", ["I50.23"])], "2026-01") == 0
    warehouse = tmp_path / "w" / "warehouse.duckdb"
    before = fingerprint(warehouse)  # every table's rows but `runs`, where the failed run is recorded
    summary_before = (tmp_path / "w" / "summary.json").read_bytes()
    monkeypatch.setattr(weights_module, "PACKAGED_WEIGHTS",
                        {fy: name for fy, name in weights_module.PACKAGED_WEIGHTS.items() if fy != 2025})
    capsys.readouterr()
    new = [claim("B", ["I50.23"], **_dates("2025-05-10")), claim("C", ["I50.23"], **_dates("2025-06-10")),
           claim("D", ["I50.23"])]
    assert _run(tmp_path, new, [review("B", ["I50.23"])], "2026-01") == 2
    err = capsys.readouterr().err
    assert "FY 2025 (2 claims affected)" in err and "Table 5" in err and "--weights-dir" in err
    assert fingerprint(warehouse) == before
    assert (tmp_path / "w" / "summary.json").read_bytes() == summary_before
    con = duckdb.connect(str(warehouse), read_only=True)
    status = con.execute("SELECT status, failure_reason FROM runs ORDER BY started_at DESC LIMIT 1").fetchall()
    con.close()
    assert status[0][0] == "failed" and "FY 2025" in status[0][1]


def test_grouper_older_than_the_claims_is_refused_before_publishing(tmp_path):
    (tmp_path / "table5_fy2027.tsv").write_text(
        "MS-DRG\tMDC\tTYPE\tMS-DRG Title\tWeights\tGeometric mean LOS\tArithmetic mean LOS\n"
        "291\t05\tMED\tHEART FAILURE AND SHOCK WITH MCC\t1.3000\t3.9\t5.0\n", encoding="utf-8")
    con = duckdb.connect()
    con.execute("CREATE TEMP TABLE ok_claims AS SELECT * FROM (VALUES ('A', DATE '2027-05-03'), "
                "('B', DATE '2026-11-01'), ('C', DATE '2019-01-01')) t(claim_id, discharge_date)")
    msdrg_1_2 = (400, 401, 410, 411, 420, 421, 430, 431, 440)
    # A: 3 May 2027 is MS-DRG v44.1, newer than msdrg 1.2.0's v44.0.
    with pytest.raises(InputError, match=r"MS-DRG v44\.1 \(1 claims\).*upgrade msdrg"):
        check_reference_coverage(con, ["ok_claims"], msdrg_1_2, tmp_path)
    con.execute("DELETE FROM ok_claims WHERE claim_id = 'A'")
    con.execute("CREATE TEMP TABLE more AS SELECT 'B' AS claim_id, DATE '2026-11-01' AS discharge_date")
    coverage = check_reference_coverage(con, ["ok_claims", "more"], msdrg_1_2, tmp_path)
    # B counted once; C (1 Jan 2019: v36.0, older than the grouper) loads and is reported.
    assert coverage == {"fiscal_years": {2019: {"claims": 1, "weights": "shipped"},
                                         2027: {"claims": 1, "weights": f"file {tmp_path / 'table5_fy2027.tsv'}"}},
                        "not_groupable": {"v36.0": 1}}


def test_audit_period_range():
    today = dt.date(2026, 11, 29)
    assert last_audit_period(today) == "2026-12"
    assert last_audit_period(dt.date(2026, 12, 5)) == "2027-01"
    assert check_audit_period("2015-10", today) == "2015-10"
    assert check_audit_period("2026-12", today) == "2026-12"
    for bad in ("2015-09", "2027-01"):
        with pytest.raises(InputError, match=r"from 2015-10 \(the start of ICD-10\) to 2026-12"):
            check_audit_period(bad, today)
    for bad in ("2024-13", "2024-3", "March"):
        with pytest.raises(InputError, match="YYYY-MM"):
            check_audit_period(bad, today)


def test_period_outside_the_range_is_exit_2_with_the_range(tmp_path, capsys):
    assert _run(tmp_path, [claim("A", ["I50.23"])], [review("A", ["I50.23"])], "2015-09") == 2
    err = capsys.readouterr().err
    assert "internal error" not in err and "from 2015-10" in err
    assert not (tmp_path / "w" / "warehouse.duckdb").exists()


def test_dagster_partitions_cover_every_audit_period():
    from assets.resources import audit_periods

    keys = audit_periods.get_partition_keys()
    assert keys[0] == "2015-10" and keys[-1] == last_audit_period()
    assert "2024-03" in keys


def test_universe_regroup_leaves_out_claims_older_than_the_grouper(tmp_path):
    """OLD (FY2021, v38.1) billed 291 while its codes alone would group to 293: not regrouped, so not
    listed as a mismatch; NEW (FY2026) billed 291 with I50.23 alone (293) is."""
    claims = [claim("OLD", ["I50.23"], billed_drg="291", **_dates("2021-06-01")),
              claim("NEW", ["I50.23"], billed_drg="291")]
    assert _run(tmp_path, claims, [review("NEW", ["I50.23"])], "2026-01", "--regroup-universe") == 0
    con = duckdb.connect(str(tmp_path / "w" / "warehouse.duckdb"), read_only=True)
    rows = con.execute("SELECT claim_id, billed_drg, regrouped_drg FROM billed_drg_validation").fetchall()
    con.close()
    assert rows == [("NEW", "291", "293")]
    summary = json.loads((tmp_path / "w" / "summary.json").read_text())
    assert summary["billed_drg_validation"]["mismatches"] == 1
    assert summary["billed_drg_validation"]["not_grouped"] == 1
