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

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest, false_discovery_control

from audits import flags
from audits.regroup import EMPTY_SCHEMAS

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

def test_binomial_p_value_by_hand():
    # x = 5 overpaid of n = 12, p0 = 0.1: P(X >= 5) = 1 - sum_{k=0..4} C(12,k) .1^k .9^(12-k)
    #   k=0: .9^12                 = 0.282429536481
    #   k=1: 12  x .1    x .9^11   = 0.376572715308
    #   k=2: 66  x .01   x .9^10   = 0.230127770466
    #   k=3: 220 x .001  x .9^9    = 0.085232507580
    #   k=4: 495 x .0001 x .9^8    = 0.021308126895
    #   sum = 0.995670656730 -> P = 0.004329343270
    assert flags.binomial_p_greater(5, 12, 0.1) == pytest.approx(0.00432934327, rel=1e-9)
    assert binomtest(5, 12, 0.1, alternative="greater").pvalue == pytest.approx(0.00432934327, rel=1e-9)
    assert flags.binomial_p_greater(0, 12, 0.1) == 1.0


def test_bh_qvalues_by_hand():
    # sorted p: .01 .03 .04 .20 (m = 4): p*m/rank = .04 .06 .0533 .20; running minimum from the top:
    # q(.20) = .20, q(.04) = .0533, q(.03) = min(.06, .0533) = .0533 (monotone), q(.01) = .04
    q = flags.bh_qvalues([0.01, 0.04, 0.03, 0.20])
    assert q == pytest.approx([0.04, 0.04 * 4 / 3, 0.04 * 4 / 3, 0.20])
    assert q == pytest.approx(false_discovery_control([0.01, 0.04, 0.03, 0.20]))
    with_nan = flags.bh_qvalues([0.01, np.nan, 0.04, 0.03, 0.20])
    assert np.isnan(with_nan[1]) and with_nan[[0, 2, 3, 4]] == pytest.approx(q)


def test_funnel_limits_by_hand():
    # Binomial(12, 0.1) CDF (terms above): F(0)=.2824 F(1)=.6590 F(2)=.8891 F(3)=.97436 F(4)=.99567
    # F(5) = F(4) + 792 x .1^5 x .9^7 = .99567 + .00379 = .99946
    # 97.5% quantile: first k with F(k) >= .975 -> 4; 99.9%: -> 5; 2.5% and 0.1%: -> 0
    lim = flags.funnel_limits(0.1, 12)
    assert float(lim["upper_95"]) == pytest.approx(4 / 12)
    assert float(lim["upper_998"]) == pytest.approx(5 / 12)
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


def test_coder_rule_binomial_bh_and_evidence(con):
    # A: 12 claims, 5 overpaid; B: 20, 2; C: 25, 3; D: 5, 0 (under 11: not tested, but in the others' rest)
    # p0(A) = (2+3+0)/(20+25+5) = 5/50 = 0.1   -> P(X>=5 | 12, .1)      = 0.0043293 (hand, test above)
    # p0(B) = (5+3+0)/(12+25+5) = 8/42         -> P(X>=2 | 20, .190476) = 1 - .809524^20 - 20(.190476).809524^19
    #                                             = 1 - 0.014610 - 0.068750 = 0.91664
    # p0(C) = (5+2+0)/(12+20+5) = 7/37         -> P(X>=3 | 25, .189189) = 1 - (.005284 + .030824 + .086311)
    #                                             = 0.87758
    # BH (m = 3): sorted A .0043293, C .87758, B .91664 -> q(B) = .91664, q(C) = min(.87758 x 3/2, .91664)
    #             = .91664, q(A) = .0043293 x 3 = .012988 < .05: A flagged
    regroup = pd.concat([_regroup_rows("A", 12, [-100, -200, -300, -400, -500]), _regroup_rows("B", 20, [-50, -60]),
                         _regroup_rows("C", 25, [-10, -20, -30]), _regroup_rows("D", 5, [])], ignore_index=True)
    warehouse(con, regroup=regroup)
    assert flags.build_flags(con) == {"claim": 0, "coder": 1, "facility": 0}
    funnel = con.execute("SELECT * FROM coder_funnel ORDER BY coder_id").df().set_index("coder_id")
    assert funnel.loc["A", "expected"] == pytest.approx(0.1)
    assert funnel.loc["B", "expected"] == pytest.approx(8 / 42)
    assert funnel.loc["A", "p_value"] == pytest.approx(0.00432934327, rel=1e-6)
    assert funnel.loc["B", "p_value"] == pytest.approx(0.91664, abs=2e-5)
    assert funnel.loc["C", "p_value"] == pytest.approx(0.87758, abs=2e-5)
    assert funnel.loc["A", "q_value"] == pytest.approx(3 * 0.00432934327, rel=1e-6)
    assert funnel.loc["C", "q_value"] == pytest.approx(funnel.loc["B", "p_value"])
    assert np.isnan(funnel.loc["D", "p_value"]) and not funnel.loc["D", "flagged"]
    assert funnel["flagged"].tolist() == [True, False, False, False]
    assert funnel.loc["A", "upper_95"] == pytest.approx(4 / 12)   # same limits as the hand-worked funnel

    flag = con.execute("SELECT * FROM upcoding_flags").df().iloc[0]
    assert flag["flag_id"] == "coder:coder_overpaid_share:A" and flag["rule"] == "coder_overpaid_share"
    assert flag["observed"] == pytest.approx(5 / 12) and flag["expected"] == pytest.approx(0.1) and flag["n"] == 12
    assert flag["statistic"] == pytest.approx((5 - 1.2) / math.sqrt(12 * 0.1 * 0.9))
    assert evidence(flag)["claims"] == ["A-00", "A-01", "A-02", "A-03", "A-04"]
    assert flag["exposure"] == pytest.approx(1500.0)       # 100 + 200 + 300 + 400 + 500
    assert flag["severity"] == "low"                        # 0.01 <= q = 0.013 < 0.05


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


def test_percentile_rank_suppression_and_flag(con, tmp_path):
    # Percent (871 over 871-872, 100 discharges each): F1 60, F2 10, F3 20, F4 20, F5 25, F6 15.
    # F3 among its five peers (60, 10, 20, 25, 15): 2 lower + 1 tie -> 50th percentile.
    # F1 among (10, 20, 20, 25, 15): 100th; peer 20th/80th percentiles (linear, sorted 10 15 20 20 25):
    #   p20 at 0.8 -> 10 + 0.8 x 5 = 14.0; p80 at 3.2 -> 20 + 0.2 x 5 = 21.0; middle peers 15, 20, 20:
    #   pooled 55 / 300 -> expected 0.18333. 60/100 against it: flagged high.
    # F6 (15) among (60, 10, 20, 20, 25): 1 lower -> 20th percentile: a low outlier (direction both) whose
    #   Fisher test against its middle peers (20, 20, 25 -> 65/300) is far from significant: no flag.
    # F2: numerator 10 < 11 -> suppressed, never an outlier although it is the lowest.
    path = tmp_path / "areas.csv"
    path.write_text(AREA_CSV)
    parts = []
    for fac, num in (("F1", 60), ("F2", 10), ("F3", 20), ("F4", 20), ("F5", 25), ("F6", 15)):
        parts += [stays(fac, "871", num), stays(fac, "872", 100 - num)]
    warehouse(con, universe=pd.concat(parts, ignore_index=True))
    counts = flags.build_flags(con, target_areas_path=path)
    rows = con.execute("SELECT * FROM facility_target_areas").df().set_index("facility_id")
    assert rows.loc["F3", "peer_percentile"] == 50.0 and rows.loc["F3", "peers"] == 5
    assert rows.loc["F1", "peer_percentile"] == 100.0 and rows.loc["F1", "outlier"] == "high"
    assert rows.loc["F1", "peer_p20"] == pytest.approx(14.0) and rows.loc["F1", "peer_p80"] == pytest.approx(21.0)
    assert rows.loc["F6", "peer_percentile"] == 20.0 and rows.loc["F6", "outlier"] == "low"
    assert rows.loc["F2", "suppressed"] and pd.isna(rows.loc["F2", "outlier"])
    assert not rows.drop(index="F2")["suppressed"].any()
    got = con.execute("SELECT * FROM upcoding_flags").df()
    assert counts == {"claim": 0, "coder": 0, "facility": 1}
    flag = got.iloc[0]
    assert flag["flag_id"] == "facility:target_area_outlier:F1:test_area"
    assert flag["observed"] == pytest.approx(0.60) and flag["expected"] == pytest.approx(55 / 300)
    assert flag["n"] == 100 and flag["statistic"] == 100.0 and flag["q_value"] < 0.05
    assert pd.isna(flag["exposure"])
    ev = evidence(flag)
    assert len(ev["claims"]) == 60 and all(c.startswith("F1-871") for c in ev["claims"]) and ev["codes"] == ["871"]


def test_short_stay_rates_by_hand(con):
    # DRG 871 (highest severity: WITH MCC member of a two-DRG family), gmlos 4.8 -> short below 3.84 days.
    # F1: 12 stays of 3 days (short) + 8 of 4 days (not short): 12 / 20 = 0.6, not suppressed (12 >= 11).
    # F2: 15 stays of 5 days: 0 short -> suppressed (short stays under 11). 872 stays are not highest severity.
    # Single MCC (audited F1 claims regrouped to 871): MCC lists "R6520", "R6520 J9601", "A419" -> 2 of 3.
    universe = pd.concat([stays("F1", "871", 12, los=3), stays("F1", "871", 8, los=4, coder="C02"),
                          stays("F2", "871", 15, los=5), stays("F2", "872", 30, los=1)], ignore_index=True)
    regroup = pd.DataFrame({"claim_id": ["A1", "A2", "A3", "A4"], "fiscal_year": 2026, "facility_id": "F1",
                            "coder_id": "C01", "original_drg": ["871", "871", "871", "872"],
                            "original_mcc_codes": ["R6520", "R6520 J9601", "A419", ""],
                            "direction": "unchanged", "delta": 0.0})
    warehouse(con, universe=universe, regroup=regroup)
    flags.build_flags(con)
    rates = con.execute("SELECT * FROM short_stay_rates").df().set_index(["level", "entity"])
    f1, f2 = rates.loc[("facility", "F1")], rates.loc[("facility", "F2")]
    assert (f1["highest_severity_stays"], f1["short_stays"], f1["short_stay_rate"]) == (20, 12, 0.6)
    assert not f1["suppressed"]
    assert (f2["highest_severity_stays"], f2["short_stays"]) == (15, 0) and f2["suppressed"]
    assert f1["single_mcc_stays"] == 2 and f1["single_mcc_rate"] == pytest.approx(2 / 3)
    assert pd.isna(f2["single_mcc_stays"]) and pd.isna(f2["single_mcc_rate"])
    c01 = rates.loc[("coder", "C01")]   # 12 short F1 stays + 15 F2 stays, all coded by C01
    assert (c01["highest_severity_stays"], c01["short_stays"]) == (27, 12)


def _peer_cells(rows: list[tuple[str, str, int]]) -> pd.DataFrame:
    """CMS 'by Provider and Service' column names."""
    return pd.DataFrame(rows, columns=["Rndrng_Prvdr_CCN", "DRG_Cd", "Tot_Dschrgs"])


PEERS = [("P1", "871", 20), ("P1", "193", 30), ("P1", "690", 50),
         ("P2", "871", 25), ("P2", "193", 25), ("P2", "690", 50),
         ("P3", "871", 30), ("P3", "193", 20), ("P3", "690", 50),
         ("P4", "871", 35), ("P4", "193", 15), ("P4", "690", 50),
         ("P5", "193", 40), ("P5", "690", 60)]


def _peer_universe() -> pd.DataFrame:
    return pd.concat([stays("F1", "871", 40), stays("F1", "872", 5), stays("F1", "193", 30), stays("F1", "690", 30),
                      stays("F1", "177", 20), stays("F1", "179", 15)], ignore_index=True)


def test_peers_file_suppressed_like_for_like(con):
    # Every peer cell >= 11 (a CMS-suppressed file): F1's own 872 cell (5 discharges) is dropped too.
    # F1 septicemia = 40 / (40 + 30 + 30) = 40%. Peers: P1 20%, P2 25%, P3 30%, P4 35%, P5 0% (no 870-872 cell)
    # -> F1 above all five: 100th percentile; 1 of 5 peers without a numerator cell: not marked.
    # Respiratory infections: F1 20 / (20 + 15 + 30) = 30.8%, but every peer reports only 193 (no 177-178
    # cell): 5 of 5 peers without numerator > half -> the area is marked, F1's row suppressed.
    warehouse(con, universe=_peer_universe())
    flags.build_flags(con, peers=_peer_cells(PEERS))
    rows = con.execute("SELECT * FROM facility_target_areas").df().set_index("target_area")
    sep = rows.loc["septicemia"]
    assert (sep["numerator"], sep["denominator"], sep["percent"]) == (40, 100, 40.0)
    assert sep["peers"] == 5 and sep["peer_percentile"] == 100.0 and sep["outlier"] == "high"
    assert not sep["suppressed"]
    resp = rows.loc["respiratory_infections"]
    assert (resp["numerator"], resp["denominator"]) == (20, 65) and resp["suppressed"] and pd.isna(resp["outlier"])


def test_peers_file_with_small_cells_is_taken_as_complete(con):
    # A peer cell under 11 means nothing was suppressed: F1's 872 x5 counts.
    # septicemia = (40 + 5) / (45 + 30 + 30) = 45 / 105 = 42.857%
    warehouse(con, universe=_peer_universe())
    flags.build_flags(con, peers=_peer_cells(PEERS + [("P6", "872", 5), ("P6", "690", 40)]))
    sep = con.execute("SELECT * FROM facility_target_areas WHERE target_area = 'septicemia'").df().iloc[0]
    assert (sep["numerator"], sep["denominator"]) == (45, 105)
    assert sep["percent"] == pytest.approx(100 * 45 / 105)


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
