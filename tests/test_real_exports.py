"""Real export files read right (issue 16): public example files written by others (CMS BFD / Blue
Button 2.0 responses, a CARIN Blue Button IG example, 837I test files of open-source X12 parsers,
see tests/fixtures/formats/README.md), and the rule that no file without inpatient claims ever
replaces an audit period.

Expected values were written by hand from reading each file, element by element.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from audits.errors import InputError
from audits.ingest.loading import load
from audits.ingest.readers import InputFiles, stage_inputs
from audits.summary import ingest_summary
from tests.helpers import claim, good_claims, write_long, write_wide

FIX = Path(__file__).parent / "fixtures" / "formats"
REAL = FIX / "real"
PERIOD = "2026-11"


def staged(con, entity: str = "claims") -> tuple[list[dict], dict[str, list]]:
    """The staged header rows (as dicts) and each claim's codes in position order."""
    cur = con.execute(f"SELECT * EXCLUDE (_source_file, _source_row, extra_columns) FROM stg_{entity} ORDER BY claim_id")
    names = [d[0] for d in cur.description]
    rows = [dict(zip(names, r)) for r in cur.fetchall()]
    codes: dict[str, list] = {}
    for cid, kind, position, code, poa in con.execute(
            f"SELECT claim_id, kind, position, code_raw, poa_raw FROM stg_{entity}_codes ORDER BY claim_id, kind, position"
    ).fetchall():
        codes.setdefault(f"{cid} {kind}", []).append((position, code, poa) if kind == "dx" else (position, code))
    return rows, codes


def bfd_copy(tmp_path: Path, name: str) -> Path:
    """BFD's endpoint-response fixtures blank volatile fields as the text IGNORED_FIELD (not a
    dateTime, so the FHIR model rejects the EOB); the field-by-field tests put a date there."""
    path = tmp_path / name
    path.write_text((REAL / "bfd" / name).read_text().replace('"IGNORED_FIELD"', '"2016-02-26T00:00:00+00:00"'))
    return path


# --- No load without claims --------------------------------------------------------------------

def _zero_claim_files(tmp_path: Path) -> dict[str, tuple[InputFiles, Path, str]]:
    """One file per layout holding no inpatient claim, with the message it must give."""
    wide = tmp_path / "claims_header_only.csv"
    write_wide(wide, [claim("X1", ["I10"])])
    wide.write_text(wide.read_text().splitlines()[0] + "\n")
    (tmp_path / "long").mkdir()
    long_files = write_long(tmp_path / "long", "claims", [claim("X1", ["I10"])])
    long_files["header"].write_text(long_files["header"].read_text().splitlines()[0] + "\n")
    tuva = tmp_path / "medical_claim.csv"
    lines = (FIX / "tuva" / "medical_claim.csv").read_text().splitlines()
    tuva.write_text("\n".join([lines[0]] + [x for x in lines if x.startswith(("P9,", "O1,"))]) + "\n")
    cms = tmp_path / "inpatient_claims.txt"
    lines = (FIX / "cms" / "inpatient_claims.txt").read_text().splitlines()
    cms.write_text("\n".join([lines[0]] + [x for x in lines if x.split("|")[2] == "A1X"]) + "\n")
    x12 = REAL / "x12" / "two-claims-single-provider.837i"
    snf = REAL / "bfd" / "eobReadSnf.json"
    return {
        "wide": (InputFiles(claims=[wide]), wide, "header but no data rows"),
        "long": (InputFiles(claims=[long_files["header"]], claim_diagnoses=[long_files["dx"]]),
                 long_files["header"], "header but no data rows"),
        "tuva": (InputFiles(claims=[tuva, FIX / "tuva" / "eligibility.csv"], formats={"claims": "tuva"}), tuva,
                 r"2 records skipped \(2 not an inpatient hospital claim"),
        "cms": (InputFiles(claims=[cms, FIX / "cms" / "beneficiaries.txt"], formats={"claims": "cms"}), cms,
                r"1 record skipped \(1 not the final action of the claim"),
        "x12": (InputFiles(claims=[x12], formats={"claims": "x12"}), x12,
                r"2 records skipped \(2 not an inpatient hospital claim"),
        "fhir": (InputFiles(claims=[snf], formats={"claims": "auto"}), snf,
                 r"1 record skipped \(1 not an inpatient hospital claim"),
    }


@pytest.mark.parametrize("layout", ["wide", "long", "tuva", "cms", "x12", "fhir"])
def test_a_file_without_inpatient_claims_is_refused_and_the_period_kept(layout, tmp_path):
    con = duckdb.connect(":memory:")
    good = write_wide(tmp_path / "good.csv", good_claims())
    load(con, InputFiles(claims=[good]), PERIOD)
    before = con.execute("SELECT claim_id FROM claims WHERE audit_period = ? ORDER BY 1", [PERIOD]).fetchall()
    assert len(before) == len(good_claims())
    files, culprit, message = _zero_claim_files(tmp_path)[layout]
    with pytest.raises(InputError, match=message) as err:
        load(con, files, PERIOD)
    assert err.value.file == str(culprit)
    assert con.execute("SELECT claim_id FROM claims WHERE audit_period = ? ORDER BY 1", [PERIOD]).fetchall() == before
    assert con.execute("SELECT count(*) FROM loads").fetchall()[0][0] == 1


def test_skipped_records_and_detected_formats_reach_summary_json():
    con = duckdb.connect(":memory:")
    files = InputFiles(claims=[FIX / "tuva" / "medical_claim.csv", FIX / "tuva" / "eligibility.csv"],
                       reviews=[FIX / "tuva" / "medical_claim_reviews.csv"],
                       formats={"claims": "auto", "reviews": "tuva"})
    result = load(con, files, PERIOD)
    # P9 (professional, no bill type) and O1 (bill type 131) are the two claims left out.
    expected_skips = [{"entity": "claims", "file": str(FIX / "tuva" / "medical_claim.csv"),
                       "reason": "not_inpatient", "records": 2}]
    assert result.skipped_records == expected_skips
    assert result.formats == [
        {"entity": "claims", "file": str(FIX / "tuva" / "medical_claim.csv"), "format": "tuva", "detected": True},
        {"entity": "claims", "file": str(FIX / "tuva" / "eligibility.csv"), "format": "tuva", "detected": True},
        {"entity": "reviews", "file": str(FIX / "tuva" / "medical_claim_reviews.csv"), "format": "tuva",
         "detected": False}]
    summary = ingest_summary(con, PERIOD)
    assert summary["skipped_records"] == expected_skips
    assert summary["formats"] == result.formats
    assert "read" not in summary["inputs"]


# --- FHIR: CMS BFD (Blue Button 2.0) ------------------------------------------------------------

def test_bfd_inpatient_eob_field_by_field(tmp_path):
    """apps/bfd-server/.../endpoint-responses/v2/eobReadInpatient.json with its Patient."""
    con = duckdb.connect(":memory:")
    reads = stage_inputs(con, InputFiles(claims=[bfd_copy(tmp_path, "eobReadInpatient.json"),
                                                 bfd_copy(tmp_path, "patientRead.json")], formats={"claims": "fhir"}))
    assert reads.skipped_records == []
    rows, codes = staged(con)
    assert rows == [{
        "claim_id": "333333222222",            # identifier typed 'uc', system clm_id
        "facility_id": "0000000000",           # contained #provider-org, us-npi identifier
        "patient_id": "567834",
        "admit_date": "2016-01-15", "discharge_date": "2016-01-27",   # supportingInfo admissionperiod
        "discharge_status": "51",              # supportingInfo discharge-status, ptnt_dschrg_stus_cd
        "age": "34", "sex": "M",               # Patient 567834: born 1981-03-17, male
        "payer": "CMS",                        # insurer has only identifier.value 'CMS'
        "coder_id": "UNKNOWN", "service_line": None,
        "billed_drg": "695",                   # supportingInfo 'info' / clm_drg_cd
    }]
    # Principal A40 (type principal, sequence 2); others by sequence; the external causes A01 and
    # A02 after them; POA from the clm_poa_ind_sw / clm_e_poa_ind_sw extensions. A37 is admitting.
    assert codes["333333222222 dx"] == [(1, "A40", "Y"), (2, "A52", "N"), (3, "A06", "N"), (4, "A15", "N"),
                                        (5, "B01", "N"), (6, "A01", "N"), (7, "A02", "Y")]
    # No procedure is typed: sequence 1 is the principal, the rest in sequence.
    assert codes["333333222222 px"] == [(1, "BQ0HZZZ"), (2, "CD1YYZZ"), (3, "2W52X6Z"), (4, "BP17ZZZ"),
                                        (5, "D9YD8ZZ"), (6, "F00ZCKZ")]
    extra = json.loads(con.execute("SELECT extra_columns FROM stg_claims").fetchall()[0][0])
    assert (extra["admitting_dx"], extra["paid_amount"], extra["px1_date"]) == ("A37", "7699.48", "2016-01-16")


@pytest.mark.parametrize("with_coverage,payer", [
    (True, "Centers for Medicare and Medicaid Services"),   # coverageRead.json payor identifier
    (False, "MEDICARE"),                                     # a BFD EOB: Medicare fee-for-service
])
def test_bfd_payer_from_the_coverage_when_the_insurer_names_none(tmp_path, with_coverage, payer):
    eob = json.loads(bfd_copy(tmp_path, "eobReadInpatient.json").read_text())
    # FHIR requires an insurer: one that names nothing (a reference to no resource in the files).
    eob["insurer"] = {"reference": "Organization/not-in-these-files"}   # coverage: Coverage/part-a-567834
    path = tmp_path / "eob.json"
    path.write_text(json.dumps(eob))
    files = [path] + ([bfd_copy(tmp_path, "coverageRead.json")] if with_coverage else [])
    con = duckdb.connect(":memory:")
    stage_inputs(con, InputFiles(claims=files, formats={"claims": "fhir"}))
    assert con.execute("SELECT payer FROM stg_claims").fetchall() == [(payer,)]


def test_bfd_bundle_reads_the_inpatient_eob_and_skips_the_seven_others(tmp_path):
    """eobByPatientIdAll.json: outpatient (40), DME (82), HHA (10), inpatient (60), SNF (20), Part D,
    carrier (71), hospice (50). SNF, hospice and HHA say subType 'inpatient': the claim type decides."""
    con = duckdb.connect(":memory:")
    path = bfd_copy(tmp_path, "eobByPatientIdAll.json")
    reads = stage_inputs(con, InputFiles(claims=[path], formats={"claims": "fhir"}))
    assert reads.skipped_records == [{"entity": "claims", "file": str(path), "reason": "not_inpatient", "records": 7}]
    assert con.execute("SELECT claim_id, billed_drg FROM stg_claims").fetchall() == [("333333222222", "695")]
    assert con.execute("SELECT count(*) FROM stg_claims_findings").fetchall()[0][0] == 0


def test_verbatim_bundle_other_claim_types_are_skipped_even_when_invalid():
    """Read verbatim, every EOB of the Bundle has IGNORED_FIELD dates; only the inpatient one is
    validated (and rejected), the seven others are skipped, none quarantined."""
    path = REAL / "bfd" / "eobByPatientIdAll.json"
    result = load(duckdb.connect(":memory:"), InputFiles(claims=[path], formats={"claims": "fhir"}), PERIOD,
                  max_rejected_share=1.0)
    assert list(zip(result.rejections["claim_id"], result.rejections["rule"])) == [
        ("333333222222", "invalid_fhir_resource")]
    assert result.skipped_records == [{"entity": "claims", "file": str(path), "reason": "not_inpatient",
                                       "records": 7}]


def test_admission_period_without_end_takes_the_billable_period_end(tmp_path):
    eob = json.loads(bfd_copy(tmp_path, "eobReadInpatient.json").read_text())
    admission = next(s for s in eob["supportingInfo"] if s["category"]["coding"][0]["code"] == "admissionperiod")
    del admission["timingPeriod"]["end"]
    eob["billablePeriod"]["end"] = "2016-01-28"
    path = tmp_path / "eob.json"
    path.write_text(json.dumps(eob))
    con = duckdb.connect(":memory:")
    stage_inputs(con, InputFiles(claims=[path], formats={"claims": "fhir"}))
    assert con.execute("SELECT admit_date, discharge_date FROM stg_claims").fetchall() == [("2016-01-15", "2016-01-28")]


def test_invalid_eob_gives_one_rejection_row_with_the_models_message():
    """The verbatim BFD file: meta.lastUpdated and created are the text IGNORED_FIELD."""
    con = duckdb.connect(":memory:")
    result = load(con, InputFiles(claims=[REAL / "bfd" / "eobReadInpatient.json"], formats={"claims": "fhir"}),
                  PERIOD, max_rejected_share=1.0)
    rejected = result.rejections
    assert len(rejected) == 1
    row = rejected.iloc[0]
    assert (row["rule"], row["claim_id"], row["column"]) == ("invalid_fhir_resource", "333333222222",
                                                             "ExplanationOfBenefit")
    assert row["reason"].startswith("not a valid FHIR R4 ExplanationOfBenefit: meta.lastUpdated")


# --- FHIR: CARIN Blue Button IG example --------------------------------------------------------

def test_carin_inpatient_example_field_by_field():
    """ExplanationOfBenefit-EOBInpatient1.json as the IG published it: no subType (its profile says
    inpatient institutional), no admission period (the billable period gives both dates), the claim
    number typed 'cn' (no 'uc'), no DRG, no discharge status."""
    con = duckdb.connect(":memory:")
    reads = stage_inputs(con, InputFiles(claims=[REAL / "carin" / "ExplanationOfBenefit-EOBInpatient1.json"],
                                         formats={"claims": "auto"}))
    assert reads.formats[0]["format"] == "fhir" and reads.formats[0]["detected"]
    rows, codes = staged(con)
    assert rows == [{
        "claim_id": "AW123412341234123412341234123412", "facility_id": "OrganizationProvider1",
        "patient_id": "Patient1", "admit_date": "2019-01-01", "discharge_date": "2019-10-31",
        "discharge_status": None, "age": None, "sex": None, "payer": "XXX Health Plan",
        "coder_id": "UNKNOWN", "service_line": None, "billed_drg": None}]
    assert codes == {"AW123412341234123412341234123412 dx": [(1, "S06.0x1A", None)]}


# --- X12 837I ----------------------------------------------------------------------------------

def test_imsweb_837i_is_refused_at_its_wrong_se_count_with_segment_and_byte_offset():
    """imsweb/x12-parser x223-test.txt says SE*25 for 48 segments: the envelope is wrong."""
    path = REAL / "x12" / "x223-test.txt"
    with pytest.raises(InputError, match=r"segment 50, byte offset 1389 \(SE\): SE count of 25") as err:
        stage_inputs(duckdb.connect(":memory:"), InputFiles(claims=[path], formats={"claims": "x12"}))
    assert err.value.row == 50
    assert path.read_bytes()[1389:1395] == b"SE*25*"


def test_imsweb_837i_field_by_field_once_its_se_count_is_right(tmp_path):
    """The same file with SE01 corrected to 48. It has a space after many segment terminators and
    two segments on one line; ICD-9 qualifiers (BK) are read the same way and fail validation later."""
    path = tmp_path / "x223-test.txt"
    path.write_bytes((REAL / "x12" / "x223-test.txt").read_bytes().replace(b"SE*25*987654~", b"SE*48*987654~"))
    con = duckdb.connect(":memory:")
    stage_inputs(con, InputFiles(claims=[path], formats={"claims": "x12"}))
    rows, codes = staged(con)
    assert rows == [{
        "claim_id": "A37YH556", "facility_id": "1234567890",   # NM1*85 ... XX*1234567890
        "patient_id": "123456",                                 # subscriber NM1*IL ... MI*123456
        "admit_date": "2015-03-30",                             # DTP*435*D8*20150330
        "discharge_date": "2012-03-30",                         # DTP*434*D8*20120330 (as written)
        "discharge_status": "30",                               # CL1*1*7*30
        "age": "53", "sex": "M",                                # DMG*D8*19611124*M at 2015-03-30
        "payer": "HEALTH INSURANCE COMPANY", "coder_id": "UNKNOWN", "service_line": None,
        "billed_drg": None}]
    assert codes == {"A37YH556 dx": [(1, "1739", None)]}        # HI*BK:1739**


def test_837i_with_bom_tabs_and_blank_lines_between_segments_reads_the_same(tmp_path):
    source = (FIX / "x12" / "claims_837i.x12").read_bytes()
    plain = duckdb.connect(":memory:")
    stage_inputs(plain, InputFiles(claims=[FIX / "x12" / "claims_837i.x12"], formats={"claims": "x12"}))
    messy = tmp_path / "messy.x12"
    messy.write_bytes(b"\xef\xbb\xbf" + source.replace(b"~\n", b"~\r\n\r\n\t  "))
    con = duckdb.connect(":memory:")
    stage_inputs(con, InputFiles(claims=[messy], formats={"claims": "auto"}))
    assert staged(con) == staged(plain)
    assert len(staged(con)[0]) == 4


def test_837i_refusals_give_segment_number_and_byte_offset(tmp_path):
    source = (FIX / "x12" / "claims_837i.x12").read_bytes()
    bad = tmp_path / "bad.x12"
    # A non-ASCII byte inside segment 3 (ST), after a BOM and an indented line.
    text = b"\xef\xbb\xbf" + source.replace(b"~\n", b"~\n  ", 2).replace(b"ST*837", b"ST*8\xe97", 1)
    bad.write_bytes(text)
    offset = text.index(b"\xe9")
    with pytest.raises(InputError, match=rf"byte 0xe9 at segment 3, byte offset {offset}") as err:
        stage_inputs(duckdb.connect(":memory:"), InputFiles(claims=[bad], formats={"claims": "x12"}))
    assert err.value.row == 3


# --- CMS RIF -----------------------------------------------------------------------------------

def _cms_with(tmp_path: Path, name: str, edit) -> Path:
    lines = (FIX / "cms" / name).read_text().splitlines()
    header = lines[0].split("|")
    rows = [dict(zip(header, line.split("|"))) for line in lines[1:]]
    header, rows = edit(header, rows)
    path = tmp_path / name
    path.write_text("\n".join(["|".join(header)] + ["|".join(r.get(h, "") for h in header) for r in rows]) + "\n")
    return path


def test_cms_reviews_without_reviewer_id_load_as_unknown(tmp_path):
    def drop_reviewer(header, rows):
        return [h for h in header if h != "REVIEWER_ID"], rows
    reviews = _cms_with(tmp_path, "inpatient_reviews.txt", drop_reviewer)
    con = duckdb.connect(":memory:")
    result = load(con, InputFiles(claims=[FIX / "cms" / "inpatient_claims.txt", FIX / "cms" / "beneficiaries.txt"],
                                  reviews=[reviews], formats={"claims": "cms", "reviews": "cms"}), PERIOD)
    assert result.reviews_loaded == 2
    assert con.execute("SELECT DISTINCT reviewer_id FROM reviews").fetchall() == [("UNKNOWN",)]


def test_cms_external_causes_follow_the_other_diagnoses(tmp_path):
    """A2 gets two external-cause codes (W19.XXXA POA Y, Y92.009 POA exempt '1') on both its lines."""
    def add_causes(header, rows):
        for r in rows:
            if r["CLM_ID"] == "A2":
                r.update({"ICD_DGNS_E_CD1": "W19XXXA", "CLM_E_POA_IND_SW1": "Y",
                          "ICD_DGNS_E_CD2": "Y92009", "CLM_E_POA_IND_SW2": "1"})
        return header, rows
    claims = _cms_with(tmp_path, "inpatient_claims.txt", add_causes)
    con = duckdb.connect(":memory:")
    stage_inputs(con, InputFiles(claims=[claims, FIX / "cms" / "beneficiaries.txt"], formats={"claims": "cms"}))
    dx = con.execute("SELECT position, code_raw, poa_raw, _source_column FROM stg_claims_codes "
                     "WHERE claim_id = 'A2' AND kind = 'dx' ORDER BY position").fetchall()
    regular = [r for r in dx if not r[3].startswith("icd_dgns_e")]
    assert dx[len(regular):] == [(len(regular) + 1, "W19XXXA", "Y", "icd_dgns_e_cd1"),
                                 (len(regular) + 2, "Y92009", "1", "icd_dgns_e_cd2")]
    assert [r[0] for r in regular] == list(range(1, len(regular) + 1))


# --- Messages name the user's column -----------------------------------------------------------

def test_rejections_name_the_users_column_beside_ours(tmp_path):
    import csv

    with open(FIX / "tuva" / "medical_claim.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        if row["claim_id"] == "A2":
            row["diagnosis_poa_2"] = "X"   # not a POA value
    tuva = tmp_path / "medical_claim.csv"
    with open(tuva, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    def bad_principal(header, rows):
        for r in rows:
            if r["CLM_ID"] == "A3":
                r["ICD_DGNS_CD1"] = r["PRNCPAL_DGNS_CD"] = "ZZZ99"
        return header, rows
    cms = _cms_with(tmp_path, "inpatient_claims.txt", bad_principal)
    for files, expected in (
        (InputFiles(claims=[tuva, FIX / "tuva" / "eligibility.csv"], formats={"claims": "tuva"}),
         ("A2", "diagnosis_poa_2 (poa2)", "invalid_poa")),
        (InputFiles(claims=[cms, FIX / "cms" / "beneficiaries.txt"], formats={"claims": "cms"}),
         ("A3", "ICD_DGNS_CD1 (dx1)", "invalid_code_format")),
    ):
        result = load(duckdb.connect(":memory:"), files, PERIOD)
        got = list(zip(result.rejections["claim_id"], result.rejections["column"], result.rejections["rule"]))
        assert got == [expected]


def test_cli_exits_2_naming_the_file_and_its_skipped_records(tmp_path):
    import contextlib
    import io

    from pipelines.cli import main

    snf = REAL / "bfd" / "eobReadSnf.json"
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(["run", "--claims", str(snf), "--format", "auto", "--workdir", str(tmp_path / "work"),
                     "--period", PERIOD])
    assert code == 2
    assert str(snf) in err.getvalue()
    assert "1 record skipped (1 not an inpatient hospital claim" in err.getvalue()
