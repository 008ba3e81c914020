"""Input layouts users already have (issue 7): Tuva medical_claim, CMS RIF, X12 837I, FHIR EOB.

Each fixture under tests/fixtures/formats/ holds the same four inpatient claims (and two re-coded
ones as reviews), written by hand from the layout's published specification (see the README
there). Loading a fixture must publish exactly the tables the same claims give in the canonical
wide layout, written below field by field. Compared: every column of claims, reviews and
claim_codes except load_id, source_file and source_row (a different file) and extra_columns (each
layout keeps its own extra fields; checked separately where they carry a mapped value).
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from audits.ingest import validation
from audits.errors import InputError
from audits.ingest.loading import load
from audits.ingest.readers import InputFiles
from audits.ingest.readers.detect import detect_format, normalise_format
from tests.helpers import claim, review, write_wide

FIX = Path(__file__).parent / "fixtures" / "formats"
PERIOD = "2026-11"

TABLES = {
    "claims": "SELECT * EXCLUDE (load_id, source_file, source_row, extra_columns) FROM claims ORDER BY claim_id",
    "reviews": "SELECT * EXCLUDE (load_id, source_file, source_row, extra_columns) FROM reviews ORDER BY claim_id",
    "claim_codes": "SELECT * FROM claim_codes ORDER BY ALL",
}


def snapshot(con) -> dict:
    return {name: con.execute(sql).fetchall() for name, sql in TABLES.items()}


# The four claims as each layout carries them. Clinical content is the same everywhere; what a
# layout names differently (facility NPI or CCN, patient key, payer name) is spelled out per layout.
# coder_id is 'UNKNOWN' and service_line blank: none of these layouts carries them.
FACILITY = {"tuva": ("1234567893", "1497758544"), "cms": ("777776", "140186"),
            "x12": ("1234567893", "1497758544"), "fhir": ("1234567893", "1497758544")}
PATIENT = {"tuva": ("P1", "P2", "P3", "P4"), "cms": ("567834", "567835", "567836", "567837"),
           "x12": ("1EG4TE5MK73", "2FH5UF6NK84", "ACM0099123", "ACM0099456"),
           "fhir": ("pat-1", "pat-2", "pat-3", "pat-4")}
PAYER = {"tuva": ("medicare", "acme health plan"), "cms": ("MEDICARE", "MEDICARE"),
         "x12": ("MEDICARE PART A", "ACME HEALTH PLAN"), "fhir": ("MEDICARE PART A", "ACME HEALTH PLAN")}


def expected_claims(fmt: str) -> list[dict]:
    f1, f2 = FACILITY[fmt]
    p1, p2, p3, p4 = PATIENT[fmt]
    medicare, other = PAYER[fmt]
    common = {"coder_id": "UNKNOWN", "service_line": ""}
    return [
        claim("A1", [("I50.23", "Y"), ("N17.9", "N"), ("I10", "Y")], facility_id=f1, patient_id=p1,
              admit_date="2026-01-02", discharge_date="2026-01-06", discharge_status="01", age="70", sex="M",
              payer=medicare, billed_drg="292", **common),
        claim("A2", [("A41.9", "Y"), ("R65.20", "Y"), ("N17.9", "Y"), ("E87.1", "N")],
              px=["5A1935Z", "02HV33Z"], facility_id=f1, patient_id=p2, admit_date="2026-02-10",
              discharge_date="2026-02-15", discharge_status="06", age="77", sex="F", payer=medicare,
              billed_drg="871", **common),
        claim("A3", [("K35.80", "Y")], px=["0DTJ4ZZ"], facility_id=f2, patient_id=p3, admit_date="2026-04-01",
              discharge_date="2026-04-03", discharge_status="01", age="35", sex="F", payer=other,
              billed_drg="343", **common),
        # Tuva's fixture marks I10 POA-exempt ('1'); the DRG is given as 69 there and 069 elsewhere.
        claim("A4", [("G45.9", "Y"), ("I10", "1" if fmt == "tuva" else "Y")], facility_id=f2, patient_id=p4,
              admit_date="2026-03-05", discharge_date="2026-03-06", discharge_status="01", age="84", sex="M",
              payer=other, billed_drg="069", **common),
    ]


NOTES = {"tuva": "N17.9 not supported by the creatinine values", "cms": "N17.9 not supported",
         "x12": "N17.9 NOT SUPPORTED BY LAB VALUES", "fhir": "N17.9 not supported by the creatinine values"}


def expected_reviews(fmt: str) -> list[dict]:
    # An 837I names one submitter and one creation date (BHT04) for the whole file.
    second = ("R01", "2026-03-01") if fmt == "x12" else ("R02", "2026-03-02")
    return [
        review("A1", [("I50.23", "Y"), ("I10", "Y")], reviewer_id="R01", review_date="2026-03-01",
               discharge_status="01", reviewer_drg="293", notes=NOTES[fmt]),
        review("A2", [("A41.51", "Y"), ("R65.20", "Y"), ("N17.9", "Y"), ("E87.1", "N")], px=["5A1935Z", "02HV33Z"],
               reviewer_id=second[0], review_date=second[1], discharge_status="06", reviewer_drg="871", notes=""),
    ]


LAYOUT_FILES = {
    "tuva": ([FIX / "tuva" / "medical_claim.csv", FIX / "tuva" / "eligibility.csv"],
             [FIX / "tuva" / "medical_claim_reviews.csv"]),
    "cms": ([FIX / "cms" / "inpatient_claims.txt", FIX / "cms" / "beneficiaries.txt"],
            [FIX / "cms" / "inpatient_reviews.txt"]),
    "x12": ([FIX / "x12" / "claims_837i.x12"], [FIX / "x12" / "reviews_837i.x12"]),
    "fhir": ([FIX / "fhir" / "claims_bundle.json"], [FIX / "fhir" / "reviews.ndjson"]),
}


def load_layout(fmt: str, con, claims=None, reviews=None, **kw):
    c, r = LAYOUT_FILES[fmt]
    files = InputFiles(claims=claims or c, reviews=r if reviews is None else reviews,
                       formats={"claims": fmt, "reviews": fmt})
    return load(con, files, PERIOD, **kw)


@pytest.mark.parametrize("fmt", ["tuva", "cms", "x12", "fhir"])
def test_layout_yields_the_canonical_tables(fmt, tmp_path):
    con = duckdb.connect(":memory:")
    result = load_layout(fmt, con)
    assert (result.claims_loaded, result.reviews_loaded, len(result.rejections)) == (4, 2, 0)
    assert result.layouts == {"claims": fmt, "reviews": fmt}
    canonical = duckdb.connect(":memory:")
    load(canonical, InputFiles(claims=[write_wide(tmp_path / "claims.csv", expected_claims(fmt))],
                               reviews=[write_wide(tmp_path / "reviews.csv", expected_reviews(fmt))]), PERIOD)
    assert snapshot(con) == snapshot(canonical)
    # Spot checks against the hand-written expectation itself, not only the canonical load.
    assert con.execute("SELECT age, drg_version FROM claims WHERE claim_id = 'A3'").fetchall() == [(35, 431)]
    assert con.execute("SELECT code FROM claim_codes WHERE claim_id = 'A2' AND side = 'original' "
                       "AND kind = 'dx' AND position = 1").fetchall() == [("A419",)]


def test_detection_picks_each_layout(tmp_path):
    for fmt, (claims_files, review_files) in LAYOUT_FILES.items():
        for path in claims_files + review_files:
            assert detect_format(path) == fmt, path
    for path in (FIX / "tuva" / "medical_claim_disagreeing_lines.csv", FIX / "fhir" / "claims_without_principal.ndjson",
                 FIX / "x12" / "claims_837i_truncated.x12"):
        assert detect_format(path) == path.parent.name
    assert detect_format(write_wide(tmp_path / "c.csv", expected_claims("tuva"))) == "canonical"
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="cannot tell the layout"):
        detect_format(tmp_path / "other.csv")


def test_auto_format_loads_like_the_named_one():
    named, auto = duckdb.connect(":memory:"), duckdb.connect(":memory:")
    load_layout("cms", named)
    c, r = LAYOUT_FILES["cms"]
    result = load(auto, InputFiles(claims=c, reviews=r, formats={"claims": "auto", "reviews": "auto"}), PERIOD)
    assert result.layouts == {"claims": "cms", "reviews": "cms"}
    assert snapshot(auto) == snapshot(named)


def test_format_names_and_input_files_api():
    assert [normalise_format(n) for n in ("837I", "CCW", "canonical", None, "Auto")] == [
        "x12", "cms", "canonical", "canonical", "auto"]
    with pytest.raises(InputError, match="unknown input format 'hl7v2'"):
        normalise_format("hl7v2")
    # The canonical layout's record of a load is unchanged; a named layout is recorded.
    assert InputFiles(claims=[Path("c.csv")]).as_dict() == {"claims": ["c.csv"]}
    assert InputFiles(claims=[Path("c.x12")], formats={"claims": "x12"}).as_dict() == {
        "claims": ["c.x12"], "formats": {"claims": "x12"}}


# --- Tuva ---------------------------------------------------------------------------------------

def test_tuva_header_once_per_claim_paid_once_per_line_and_inpatient_only():
    con = duckdb.connect(":memory:")
    load_layout("tuva", con)
    rows = dict(con.execute("SELECT claim_id, extra_columns->>'paid_amount' FROM claims").fetchall())
    # A1: lines 1 and 2 (8000.00 + 1250.50); its line 2 appears twice in the file and counts once.
    # A2: 30000.00 + 100.25 (line 2 leaves the diagnoses blank: not a disagreement).
    assert rows == {"A1": "9250.50", "A2": "30100.25", "A3": "15000.00", "A4": "6400.00"}
    # P9 (professional) and O1 (bill type 131, outpatient) are not inpatient claims: not read.
    assert sorted(rows) == ["A1", "A2", "A3", "A4"]
    assert con.execute("SELECT extra_columns->>'claim_lines' FROM claims WHERE claim_id = 'A1'").fetchall() == [("2",)]


def test_tuva_lines_disagreeing_on_the_principal_diagnosis_are_quarantined():
    con = duckdb.connect(":memory:")
    path = FIX / "tuva" / "medical_claim_disagreeing_lines.csv"
    result = load(con, InputFiles(claims=[path, FIX / "tuva" / "eligibility.csv"], formats={"claims": "tuva"}),
                  PERIOD, max_rejected_share=1.0)
    assert con.execute("SELECT claim_id FROM claims").fetchall() == [("A1",)]
    finding = con.execute('SELECT _source_row, claim_id, "column", rule, value, reason FROM stg_claims_findings'
                          ).fetchall()
    # D1's line 1 (row 3) says I50.23, its line 2 (row 4) I50.22.
    assert finding == [(4, "D1", "diagnosis_code_1", "claim_lines_disagree", "I5023 | I5022",
                        "lines of this claim disagree on diagnosis_code_1, a claim-level field (I5023 from row 3, "
                        "I5022 from row 4); the claim is quarantined rather than one value picked")]
    rejected = sorted(zip(result.rejections["claim_id"], result.rejections["row"].astype(int),
                          result.rejections["rule"]))
    if getattr(validation, "READER_FINDINGS", False):
        assert rejected == [("D1", 4, "claim_lines_disagree")]
    else:  # until validation reads the findings: both versions of D1 rejected as duplicates
        assert rejected == [("D1", 3, "duplicate_claim_id"), ("D1", 4, "duplicate_claim_id")]


def test_tuva_without_eligibility_says_which_file_is_missing():
    with pytest.raises(InputError, match="give the Tuva eligibility file"):
        load(duckdb.connect(":memory:"), InputFiles(claims=[FIX / "tuva" / "medical_claim.csv"],
                                                    formats={"claims": "tuva"}), PERIOD)


# --- CMS ----------------------------------------------------------------------------------------

def test_cms_reads_rif_conventions():
    con = duckdb.connect(":memory:")
    load_layout("cms", con)
    # A1X is FINAL_ACTION N (superseded): not loaded. Upper-case names, '|' and 02-JAN-2026 dates read.
    assert [r[0] for r in con.execute("SELECT claim_id FROM claims ORDER BY 1").fetchall()] == ["A1", "A2", "A3", "A4"]
    assert con.execute("SELECT extra_columns->>'paid_amount', extra_columns->>'claim_lines' FROM claims "
                       "WHERE claim_id = 'A1'").fetchall() == [("7699.48", "2")]  # claim-level: taken once


def test_cms_principal_diagnosis_given_twice_and_differing_is_quarantined(tmp_path):
    text = (FIX / "cms" / "inpatient_claims.txt").read_text().splitlines()
    header = text[0].split("|")
    at = header.index("PRNCPAL_DGNS_CD")
    row = text[4].split("|")  # A2, the 4th data row
    assert row[header.index("CLM_ID")] == "A2"
    row[at] = "A41.51"
    text[4] = "|".join(row)
    path = tmp_path / "inpatient.txt"
    path.write_text("\n".join(text) + "\n")
    con = duckdb.connect(":memory:")
    result = load(con, InputFiles(claims=[path, FIX / "cms" / "beneficiaries.txt"], formats={"claims": "cms"}),
                  PERIOD, max_rejected_share=1.0)
    assert "A2" not in [r[0] for r in con.execute("SELECT claim_id FROM claims").fetchall()]
    assert set(result.rejections["claim_id"]) == {"A2"}
    assert con.execute('SELECT "column", value FROM stg_claims_findings').fetchall() == [
        ("prncpal_dgns_cd", "A41.51 | A419")]


# --- X12 837I -----------------------------------------------------------------------------------

def test_837i_fixtures_conform_to_the_implementation_guide():
    """The hand-written 837I files pass pyx12's 005010X223A2 validator (999 acceptance)."""
    import io

    import pyx12.params
    import pyx12.x12n_document

    for name in ("claims_837i.x12", "reviews_837i.x12"):
        ack = io.StringIO()
        assert pyx12.x12n_document.x12n_document(param=pyx12.params.params(), src_file=str(FIX / "x12" / name),
                                                 fd_997=ack, fd_html=None)
        assert "IK5*A~" in ack.getvalue() and "AK9*A*1*1*1~" in ack.getvalue()


def test_truncated_837i_is_reported_at_its_segment_and_loads_nothing(tmp_path):
    con = duckdb.connect(":memory:")
    load_layout("x12", con)
    before = snapshot(con)
    with pytest.raises(InputError) as err:
        load_layout("x12", con, claims=[FIX / "x12" / "claims_837i_truncated.x12"], reviews=[])
    # The file stops inside segment 61, 'CLM*A3*21', which has no terminator.
    assert err.value.row == 61 and "truncated" in str(err.value) and "CLM*A3*21" in str(err.value)
    assert snapshot(con) == before


@pytest.mark.parametrize("change,row,message", [
    (("SE*89*0001~", "SE*88*0001~"), 91, "SE count of 88 for SE02=0001 is wrong. I count 89"),
    (("IEA*1*000000101~\n", ""), 93, "Interchange Control Trailer"),
    (("HL*5*4*22*0~", "HL*6*4*22*0~"), 54, "HL count"),
    (("005010X223A2", "005010X222A1"), 2, "837P professional"),
])
def test_837i_envelope_errors_name_the_segment(tmp_path, change, row, message):
    path = tmp_path / "bad.x12"
    path.write_text((FIX / "x12" / "claims_837i.x12").read_text().replace(*change))
    with pytest.raises(InputError, match=message) as err:
        load(duckdb.connect(":memory:"), InputFiles(claims=[path], formats={"claims": "x12"}), PERIOD)
    assert err.value.row == row


def test_837i_second_principal_diagnosis_is_a_finding(tmp_path):
    path = tmp_path / "two.x12"
    text = (FIX / "x12" / "claims_837i.x12").read_text()
    text = text.replace("HI*ABK:K3580:::::::Y~\n", "HI*ABK:K3580:::::::Y~\nHI*ABK:K3589:::::::Y~\n")
    text = text.replace("SE*89*0001~", "SE*90*0001~")
    path.write_text(text)
    con = duckdb.connect(":memory:")
    load(con, InputFiles(claims=[path], formats={"claims": "x12"}), PERIOD, max_rejected_share=1.0)
    assert "A3" not in [r[0] for r in con.execute("SELECT claim_id FROM claims").fetchall()]
    assert con.execute('SELECT _source_row, claim_id, rule, value FROM stg_claims_findings').fetchall() == [
        (66, "A3", "second_principal_dx", "K3589")]


# --- FHIR EOB -----------------------------------------------------------------------------------

def test_eob_without_principal_diagnosis_is_quarantined_not_a_traceback():
    con = duckdb.connect(":memory:")
    result = load(con, InputFiles(claims=[FIX / "fhir" / "claims_without_principal.ndjson"],
                                  formats={"claims": "fhir"}), PERIOD, max_rejected_share=1.0)
    assert list(zip(result.rejections["claim_id"], result.rejections["row"].astype(int),
                    result.rejections["rule"])) == [("B1", 3, "principal_dx_missing")]
    assert [r[0] for r in con.execute("SELECT claim_id FROM claims ORDER BY 1").fetchall()] == ["A3", "A4"]


def test_eob_with_two_principal_diagnoses_or_invalid_fhir_is_quarantined(tmp_path):
    import json

    lines = (FIX / "fhir" / "claims_without_principal.ndjson").read_text().splitlines()
    a3, a4 = json.loads(lines[0]), json.loads(lines[1])
    a3["diagnosis"].append({"sequence": 2, "diagnosisCodeableConcept": {"coding": [{"code": "K35.89"}]},
                            "type": [{"coding": [{"code": "principal"}]}]})
    a4["created"] = "yesterday"
    path = tmp_path / "eob.ndjson"
    path.write_text("\n".join([json.dumps(a3), json.dumps(a4)] + lines[3:]) + "\n")
    con = duckdb.connect(":memory:")
    result = load(con, InputFiles(claims=[path], formats={"claims": "fhir"}), PERIOD, max_rejected_share=1.0)
    assert con.execute("SELECT count(*) FROM claims").fetchall() == [(0,)]
    assert set(result.rejections["claim_id"]) == {"A3", "A4"}
    findings = con.execute('SELECT claim_id, "column", rule FROM stg_claims_findings ORDER BY 1').fetchall()
    assert findings == [("A3", "diagnosis[1]", "second_principal_dx"),
                        ("A4", "ExplanationOfBenefit", "invalid_fhir_resource")]
    reason = con.execute("SELECT reason FROM stg_claims_findings WHERE claim_id = 'A4'").fetchall()[0][0]
    assert reason.startswith("not a valid FHIR R4 ExplanationOfBenefit: created:")


def test_eob_paid_amount_and_admitting_diagnosis_kept():
    con = duckdb.connect(":memory:")
    load_layout("fhir", con)
    assert con.execute("SELECT extra_columns->>'paid_amount', extra_columns->>'admitting_dx' FROM claims "
                       "WHERE claim_id = 'A1'").fetchall() == [("7699.48", "R06.02")]
