"""The revenue capability end to end through the CLI, priced by hand."""

from __future__ import annotations

import csv
import json

import duckdb
import pytest

from pipelines.cli import main
from tests.helpers import claim, review, write_wide


def _run(tmp_path, claims, reviews, *extra, universe=None):
    args = ["run", "--claims", str(write_wide(tmp_path / "claims.csv", claims)),
            "--reviews", str(write_wide(tmp_path / "reviews.csv", reviews)),
            "--workdir", str(tmp_path / "w"), "--period", "2026-11", *extra]
    if universe:
        args += ["--universe", str(universe)]
    return main(args)


def test_two_claims_priced_by_hand_with_base_rate_override(tmp_path):
    claims = [claim("A", ["I50.23", ("J96.01", "Y")], billed_drg="291"),
              claim("B", ["J18.9"], billed_drg="194", service_line="Pulmonology")]
    reviews = [review("A", ["I50.23"]), review("B", ["J18.9", "N17.9"])]
    universe = tmp_path / "universe.csv"
    with open(universe, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["claim_id", "facility_id", "discharge_date"])
        for cid in ["A", "B"] + [f"U{i}" for i in range(8)]:
            w.writerow([cid, "F001", "2026-01-06"])
    assert _run(tmp_path, claims, reviews, "--base-rate", "10000", universe=universe) == 0
    summary = json.loads((tmp_path / "w" / "summary.json").read_text())
    # FY2026 Table 5 weights: 291 1.2838, 293 0.5660, 195 0.6285, 194 0.8059; base rate 10,000.
    # A: 12,838.00 -> 5,660.00 = -7,178.00 (J96.01 MCC not supported: overpaid)
    # B:  6,285.00 -> 8,059.00 = +1,774.00 (N17.9 CC missed: underpaid)
    assert summary["base_rate"] == 10000
    assert (summary["underpaid_amount"], summary["overpaid_amount"], summary["net_amount"]) == (1774.0, 7178.0, -5404.0)
    assert (summary["drg_change_rate"], summary["drg_upgrade_rate"], summary["drg_downgrade_rate"]) == (1.0, 0.5, 0.5)
    assert summary["billed_drg_mismatch_rate"] == 0.5  # B billed 194, its codes group to 195
    # Universe of 10 claims, simple random sample of the 2 audited: point = 10 x mean(-7178, 1774)
    # = -27,020; s^2 = 2 x 4476^2 = 40,069,152; SE = sqrt(10 x 8 x s^2 / 2) = 40,034.56;
    # t(0.95, 1 df) = 6.313752 -> limits -279,788 and 225,748.
    assert summary["extrapolation"]["point"] == -27020
    assert (summary["extrapolation"]["lower_90"], summary["extrapolation"]["upper_90"]) == (-279788, 225748)
    con = duckdb.connect(str(tmp_path / "w" / "warehouse.duckdb"), read_only=True)
    rows = con.execute("""SELECT claim_id, original_drg, audited_drg, original_payment, audited_payment, delta,
                                 direction, change_drivers FROM claim_regroup ORDER BY claim_id""").fetchall()
    assert rows == [("A", "291", "293", 12838.0, 5660.0, -7178.0, "overpaid", "-J9601:MCC"),
                    ("B", "195", "194", 6285.0, 8059.0, 1774.0, "underpaid", "+N179:CC")]
    findings = con.execute("SELECT claim_id, finding FROM regroup_findings").fetchall()
    assert findings == [("B", "billed_drg_mismatch")]
    impact = con.execute("""SELECT breakdown_value, claims, underpaid_amount, overpaid_amount, net_amount
                            FROM revenue_impact WHERE breakdown = 'service_line' ORDER BY 1""").fetchall()
    assert impact == [("Cardiology", 1, 0.0, 7178.0, -7178.0), ("Pulmonology", 1, 1774.0, 0.0, 1774.0)]
    con.close()


def test_without_universe_extrapolation_is_null(tmp_path):
    assert _run(tmp_path, [claim("A", ["I50.23"])], [review("A", ["I50.23"])]) == 0
    summary = json.loads((tmp_path / "w" / "summary.json").read_text())
    assert summary["extrapolation"] is None
    assert summary["net_amount"] == 0.0 and summary["drg_change_rate"] == 0.0


def test_fiscal_year_without_weights_stops_with_a_clear_message(tmp_path, capsys):
    # Discharged 15 Oct 2026: FY2027 (MS-DRG v44.0), whose Table 5 is not shipped (users bring it).
    new = claim("NEW", ["I50.23"], admit_date="2026-10-10", discharge_date="2026-10-15")
    assert _run(tmp_path, [new], [review("NEW", ["I50.23"])]) == 2
    err = capsys.readouterr().err
    assert "FY 2027 (1 claims affected)" in err and "weights" in err.lower()


def test_audited_poa_left_blank_inherits_the_claims_poa(tmp_path):
    # N17.9 coded POA N on the claim; the review re-lists it without a POA. It must not be
    # treated as a different chart: no DRG change, no delta.
    claims = [claim("P", ["I50.23", ("N17.9", "N")])]
    reviews = [review("P", ["I50.23", ("N17.9", "")])]
    assert _run(tmp_path, claims, reviews) == 0
    con = duckdb.connect(str(tmp_path / "w" / "warehouse.duckdb"), read_only=True)
    assert con.execute("SELECT original_drg, audited_drg, delta FROM claim_regroup").fetchall() == [("292", "292", 0.0)]
    con.close()


def test_regroup_universe_lists_billed_drg_mismatches_with_dollars(tmp_path):
    # Not audited: U1 billed 194 but its codes (J18.9 alone) group to 195; U2 billed right.
    claims = [claim("A", ["I50.23"], billed_drg="293"), claim("U1", ["J18.9"], billed_drg="194"),
              claim("U2", ["J18.9", "N17.9"], billed_drg="194")]
    assert _run(tmp_path, claims, [review("A", ["I50.23"])], "--base-rate", "10000", "--regroup-universe") == 0
    con = duckdb.connect(str(tmp_path / "w" / "warehouse.duckdb"), read_only=True)
    rows = con.execute("""SELECT claim_id, billed_drg, regrouped_drg, billed_payment, regrouped_payment, difference
                          FROM billed_drg_validation""").fetchall()
    con.close()
    # 194: 0.8059 x 10,000 = 8,059.00; 195: 0.6285 x 10,000 = 6,285.00 -> billed 1,774.00 too high.
    assert rows == [("U1", "194", "195", 8059.0, 6285.0, -1774.0)]
    summary = json.loads((tmp_path / "w" / "summary.json").read_text())
    assert summary["billed_drg_validation"] == {"mismatches": 1, "ungroupable": 0, "amount_at_stake": 1774.0,
                                                "net_difference": -1774.0, "not_grouped": 0}
