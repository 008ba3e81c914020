"""The FHIR EOB reader's fast path (issue 7 speed target): mapping in DuckDB SQL, the fhir.resources
model built only for the first resource of each JSON structure and for resources with a value out
of pattern. Expected values are written from the hand-made fixture, not from the reader's output."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from audits.errors import InputError
from audits.ingest.readers import fhir

FIX = Path(__file__).parent / "fixtures" / "formats" / "fhir"
LINES = (FIX / "claims_without_principal.ndjson").read_text().splitlines()
A3, A4, B1 = (json.loads(line) for line in LINES[:3])
OTHERS = LINES[3:]  # 4 Patients, 4 Organizations


def stage(path: Path, entity: str = "claims") -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:")
    fhir.stage(con, entity, [path])
    return con


def write(tmp_path: Path, *resources, name: str = "eob.ndjson") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in resources) + "\n")
    return path


def findings(con) -> list[tuple]:
    return con.execute('SELECT claim_id, _source_row, "column", rule FROM stg_claims_findings ORDER BY ALL').fetchall()


def test_model_validates_one_resource_per_structure_not_every_resource(tmp_path, monkeypatch):
    validated: list[int] = []
    real = fhir._validate_chunk

    def counting(chunk):
        validated.extend(rid for rid, _, _ in chunk)
        return real(chunk)

    monkeypatch.setattr(fhir, "_validate_chunk", counting)
    eobs = []
    for n in range(40):
        eob = json.loads(json.dumps(A3))
        eob["identifier"][0]["value"] = f"A3-{n}"
        eobs.append(eob)
    con = stage(write(tmp_path, *eobs, *OTHERS))
    assert con.execute("SELECT count(*) FROM stg_claims").fetchall() == [(40,)]
    # 40 EOBs of one structure, 4 Patients of one, 4 Organizations of two (providers carry an
    # NPI, payers do not): one model validation per (resource type, structure).
    assert len(validated) == 4
    assert findings(con) == []


def test_value_out_of_pattern_is_quarantined_with_the_models_message(tmp_path):
    bad_date, empty_id, spaced_code = (json.loads(json.dumps(A3)) for _ in range(3))
    bad_date["identifier"][0]["value"], bad_date["created"] = "D1", "2026-13-01"
    empty_id["identifier"].append({"value": ""})
    empty_id["identifier"][0]["value"] = "D2"
    spaced_code["identifier"][0]["value"] = "D3"
    spaced_code["diagnosis"][0]["diagnosisCodeableConcept"]["coding"][0]["code"] = "K35.80 "
    con = stage(write(tmp_path, A4, bad_date, empty_id, spaced_code, *OTHERS))
    assert findings(con) == [("D1", 2, "ExplanationOfBenefit", "invalid_fhir_resource"),
                             ("D2", 3, "ExplanationOfBenefit", "invalid_fhir_resource"),
                             ("D3", 4, "ExplanationOfBenefit", "invalid_fhir_resource")]
    reasons = [r[0] for r in con.execute("SELECT reason FROM stg_claims_findings ORDER BY claim_id").fetchall()]
    assert reasons[0].startswith("not a valid FHIR R4 ExplanationOfBenefit: created:")
    assert reasons[1].startswith("not a valid FHIR R4 ExplanationOfBenefit: identifier.1.value:")
    assert reasons[2].startswith("not a valid FHIR R4 ExplanationOfBenefit: diagnosis.0.diagnosisCodeableConcept")
    # A quarantined EOB stages its claim id only: no codes that could be mistaken for its coding.
    assert con.execute("SELECT count(*) FROM stg_claims_codes WHERE claim_id LIKE 'D%'").fetchall() == [(0,)]


def test_wrong_json_shape_is_caught_by_the_structure_check(tmp_path):
    """diagnosis.type as an object instead of an array: the mapping would read no type (a
    secondary diagnosis); the structure differs from every valid EOB's, the model rejects it."""
    wrong = json.loads(json.dumps(A4))
    wrong["identifier"][0]["value"] = "S1"
    wrong["diagnosis"][0]["type"] = wrong["diagnosis"][0]["type"][0]
    con = stage(write(tmp_path, A3, wrong, *OTHERS))
    assert findings(con) == [("S1", 2, "ExplanationOfBenefit", "invalid_fhir_resource")]
    assert "diagnosis.0.type" in con.execute("SELECT reason FROM stg_claims_findings").fetchall()[0][0]


@pytest.mark.parametrize("mode", ["fast", "full"])
def test_full_model_validation_stages_the_same_tables(tmp_path, monkeypatch, mode):
    """CODING_AUDIT_FHIR_VALIDATION=full (the model on every resource) and the fast path agree."""
    monkeypatch.setattr(fhir, "VALIDATION", mode)
    bad = json.loads(json.dumps(A4))
    bad["created"] = "yesterday"
    con = stage(write(tmp_path, A3, bad, B1, *OTHERS))
    assert con.execute("SELECT claim_id, patient_id, admit_date, discharge_date, discharge_status, age, sex, "
                       "billed_drg FROM stg_claims ORDER BY claim_id").fetchall() == [
        ("A3", "pat-3", "2026-04-01", "2026-04-03", "01", "35", "F", "343"),  # born 1990-11-20
        ("A4", None, None, None, None, None, None, None),
        ("B1", "pat-1", "2026-01-02", "2026-01-06", "01", "70", "M", "292")]  # born 1955-06-15
    assert findings(con) == [("A4", 2, "ExplanationOfBenefit", "invalid_fhir_resource")]


def test_blank_lines_and_bom_keep_line_numbers(tmp_path):
    path = tmp_path / "eob.ndjson"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(A3).encode() + b"\r\n\r\n   \n"
                     + json.dumps(B1).encode() + b"\n" + "\n".join(OTHERS).encode())
    con = stage(path)
    assert con.execute("SELECT claim_id, _source_row FROM stg_claims ORDER BY 2").fetchall() == [
        ("A3", 1), ("B1", 4)]
    assert con.execute("SELECT DISTINCT _source_row FROM stg_claims_codes WHERE claim_id = 'B1'").fetchall() == [(4,)]


def test_bad_json_and_bad_encoding_name_the_line(tmp_path):
    path = write(tmp_path, A3, '{"resourceType": "ExplanationOfBenefit", "id": ', *OTHERS)
    with pytest.raises(InputError) as err:
        stage(path)
    assert err.value.row == 2 and "not valid JSON" in str(err.value) and str(path) in str(err.value)
    path = tmp_path / "latin1.ndjson"
    path.write_bytes(json.dumps(A3).encode() + b"\n" + json.dumps(B1).encode().replace(b"pat-1", b"p\xe9t-1") + b"\n")
    with pytest.raises(InputError) as err:
        stage(path)
    assert err.value.row == 2 and "UTF-8" in str(err.value)
    with pytest.raises(InputError) as err:
        stage(write(tmp_path, A3, '["not", "a", "resource"]'))
    assert err.value.row == 2 and "resourceType" in str(err.value)


def test_contained_and_full_url_references_resolve(tmp_path):
    """Patient contained in the EOB ('#p'), provider by a Bundle entry's fullUrl (urn:uuid)."""
    eob = json.loads(json.dumps(B1))
    eob["contained"] = [{"resourceType": "Patient", "id": "p", "gender": "female", "birthDate": "1990-04-02"}]
    eob["patient"] = {"reference": "#p"}
    eob["provider"] = {"reference": "urn:uuid:6f1c2a3e-1d4b-4c5a-9e8f-000000000001"}
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:6f1c2a3e-1d4b-4c5a-9e8f-000000000001",
         "resource": {"resourceType": "Organization", "id": "org-x", "name": "X",
                      "identifier": [{"system": fhir.NPI_SYSTEM, "value": "1558444216"}]}},
        {"resource": eob}]}
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle, indent=2))
    con = stage(path)
    # Admitted 2026-01-02, born 1990-04-02: 35 (the 36th birthday comes in April).
    assert con.execute("SELECT claim_id, _source_row, facility_id, patient_id, age, sex FROM stg_claims").fetchall() == [
        ("B1", 2, "1558444216", "p", "35", "F")]


def test_resource_type_need_not_come_first(tmp_path):
    """The reader reads resourceType from the start of the text when it is the first key (bulk
    exports write it first); anywhere else in the object it is found by a full parse."""
    last = {k: v for k, v in A3.items() if k != "resourceType"} | {"resourceType": "ExplanationOfBenefit"}
    patient = json.loads(OTHERS[2])  # pat-3
    patient = {k: v for k, v in patient.items() if k != "resourceType"} | {"resourceType": "Patient"}
    con = stage(write(tmp_path, last, patient, *OTHERS[4:]))
    assert con.execute("SELECT claim_id, patient_id, age, sex FROM stg_claims").fetchall() == [
        ("A3", "pat-3", "35", "F")]
