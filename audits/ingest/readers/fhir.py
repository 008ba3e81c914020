"""FHIR R4 ExplanationOfBenefit: CARIN Blue Button inpatient institutional profile, and CMS Beneficiary
FHIR Data (BFD / Blue Button 2.0) responses, which follow it with CMS codings.

Input: NDJSON (one resource per line, as FHIR Bulk Data exports write them) or JSON (a Bundle or a
single resource). The EOBs' Patient, Organization and Coverage resources may sit in the same files,
in other files of the same entity, or be contained in the EOB.

Only hospital inpatient claims are audited, decided from the EOB's codes before any validation
(`_inpatient_sql`): BFD's claim type when present (nch_clm_type_cd 60/61; BFD's SNF and hospice
EOBs also say subType 'inpatient'), else BFD's EOB type INPATIENT, else a NUBC bill type in
supportingInfo 'typeofbill' (11x/12x), else CARIN type 'institutional' with subType 'inpatient'
(no subType: a CARIN inpatient profile in meta.profile). The other EOBs are skipped and counted
(reason not_inpatient), never validated nor quarantined.

Validation, through the fhir.resources R4B models (fhir.resources 8 ships R5 at the top level and
R4B under `fhir.resources.R4B`; R4B left ExplanationOfBenefit, Patient and Organization as in R4,
which CARIN BB profiles). Building the model costs about 1 ms per EOB, 20-100 times what reading it
costs, so the model is not built for every resource of a large export (set
CODING_AUDIT_FHIR_VALIDATION=full for that). Instead, in DuckDB:
- shape: the resources are grouped by their JSON structure (element names and JSON types at every
  level, DuckDB `json_structure`); the model validates the first resource of each structure in
  full. A structure the model rejects there has every one of its resources validated by the model.
  A bulk export has a few dozen structures, so this is a few dozen model validations;
- values: every value the mapping reads (ids, dates, sequences, codes, the required elements of
  diagnosis, procedure and supportingInfo) is checked against the FHIR datatype patterns fhir_core
  itself uses; a resource with any value out of pattern is validated by the model in full.
An EOB the model rejects is quarantined with the model's message (rule invalid_fhir_resource; that
one row, not a row per blank field); a Patient, Organization or Coverage it rejects stops the load
(InputError, file and row); a line that is not
JSON at all is an InputError. What the fast path does not check: the format of primitive values in
elements the audit does not read (meta, extensions, insurance...), which do not change a figure.

Mapping (EOB -> contract), all in SQL:

| contract | FHIR |
|---|---|
| claim_id | identifier of type 'uc' (unique claim id), else the first identifier, else id |
| facility_id | provider: the referenced Organization's NPI identifier (http://hl7.org/fhir/sid/us-npi), else the reference's identifier, else its id |
| patient_id | patient reference id (Patient/<id>) |
| admit_date, discharge_date | supportingInfo 'admissionperiod' timingPeriod start / end, each else billablePeriod start / end |
| discharge_status | supportingInfo 'discharge-status' code |
| age | whole years from the referenced Patient's birthDate to the admission date |
| sex | Patient.gender: male M, female F, other/unknown U |
| payer | insurer.display, else the insurer Organization's name, else insurer.identifier value, else the EOB's Coverage (insurance focal, else first): its display, else the Coverage resource's payor display or identifier; else 'MEDICARE' for a BFD EOB (Medicare fee-for-service claims) |
| coder_id | 'UNKNOWN' (a payer's EOB carries no coder) |
| billed_drg | supportingInfo 'drg' code (CARIN), else supportingInfo category clm_drg_cd (BFD), else a diagnosis packageCode |
| dx1 | the diagnosis whose type is 'principal' (by type, not by sequence: CARIN says sequence carries no order) |
| dx2..dx25 | diagnoses of type 'other' / 'secondary' (or untyped), in sequence order, then those of type 'externalcauseofinjury' in sequence order (as claims processing passes external causes to the grouper); admitting and reason-for-visit diagnoses go to extra_columns |
| poa1..poa25 | diagnosis.onAdmission code, else BFD's extension clm_poa_ind_sw{n} / clm_e_poa_ind_sw{n} |
| px1 / px2..px25 | the procedure of type 'principal' (when none is typed principal, as in BFD: the first in sequence), then the others in sequence order |

A code is the coding of the ICD-10-CM (diagnoses) / ICD-10-PCS (procedures) system when there is
one, else the first coding with a code. extra_columns: paid_amount (payment.amount, else the first
total 'paidtoprovider'; to the cent, half away from zero), admitting_dx, reason_for_visit_dx,
px{n}_date (procedure.date), eob_id.

An EOB as a review (a re-adjudicated or re-coded EOB): reviewer_id = enterer (identifier value or
reference id), else the insurer; review_date = created; discharge_status and reviewer_drg as above;
notes = processNote texts.

Findings (the EOB's claim is quarantined with the reason): two diagnoses or procedures typed
principal, more than 25 diagnoses or procedures, an EOB the model rejects. An EOB without a
principal diagnosis loads no dx1 and validation quarantines it as principal_dx_missing.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import duckdb

from audits.contract import MAX_POSITIONS
from audits.errors import InputError
from audits.ingest.readers.base import FileRead, _sql_str, create_staging, header_columns
from audits.ingest.readers.detect import UNKNOWN_CODER, age_sql, finish_staging
from audits.ingest.readers.fhir_files import _load_resources, _raise_invalid_json

log = logging.getLogger(__name__)

NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"
ICD10CM_SYSTEMS = ("http://hl7.org/fhir/sid/icd-10-cm", "http://hl7.org/fhir/sid/icd-10")
ICD10PCS_SYSTEMS = ("http://www.cms.gov/Medicare/Coding/ICD10", "http://hl7.org/fhir/sid/icd-10-pcs")
SECONDARY_DX_TYPES = ("other", "secondary", "discharge")
EXTRA_DX_TYPES = {"admitting": "admitting_dx", "patientreasonforvisit": "reason_for_visit_dx"}
# Loaded as secondary diagnoses after the others, as claims processing passes them to the grouper.
EXTERNAL_CAUSE_DX_TYPES = ("externalcauseofinjury",)
KINDS = ("ExplanationOfBenefit", "Patient", "Organization", "Coverage")
# CMS Beneficiary FHIR Data (BFD, Blue Button 2.0) codings: the NCH claim type (60/61 inpatient;
# 20 SNF, 50 hospice, 10 HHA, 40 outpatient, 71/72 carrier, 81/82 DME), BFD's EOB type, the DRG
# as a supportingInfo 'info' category, the POA indicators as diagnosis extensions.
BFD_CLAIM_TYPE = "https://bluebutton.cms.gov/resources/variables/nch_clm_type_cd"
BFD_EOB_TYPE = "https://bluebutton.cms.gov/resources/codesystem/eob-type"
BFD_DRG = "https://bluebutton.cms.gov/resources/variables/clm_drg_cd"
BFD_POA_URL = r"/clm_(e_)?poa_ind_sw[0-9]+$"
INPATIENT_CLAIM_TYPES = ("60", "61")
# Where each contract column comes from, for messages.
USER_COLUMNS = {
    "claim_id": "ExplanationOfBenefit.identifier", "facility_id": "ExplanationOfBenefit.provider",
    "patient_id": "ExplanationOfBenefit.patient",
    "admit_date": "supportingInfo admissionperiod start (else billablePeriod.start)",
    "discharge_date": "supportingInfo admissionperiod end (else billablePeriod.end)",
    "discharge_status": "supportingInfo discharge-status", "age": "Patient.birthDate", "sex": "Patient.gender",
    "payer": "ExplanationOfBenefit.insurer", "billed_drg": "supportingInfo drg",
    "dx1": "diagnosis of type principal", "reviewer_id": "ExplanationOfBenefit.enterer",
    "review_date": "ExplanationOfBenefit.created", "reviewer_drg": "supportingInfo drg",
}

# 'full': the model validates every resource (about 1 ms per EOB); anything else: the fast path
# above. CODING_AUDIT_FHIR_WORKERS=N (opt-in) runs model validation in N spawned processes, worth it
# only for thousands of validations; spawned processes re-import the calling program's main module,
# which a script without an `if __name__ == "__main__":` guard does not survive (the CLI and
# Dagster runs have the guard).
VALIDATION = os.environ.get("CODING_AUDIT_FHIR_VALIDATION", "fast").strip().lower()
WORKERS = int(os.environ.get("CODING_AUDIT_FHIR_WORKERS", "1") or 1)
CHUNK = 2000


def _models():
    try:
        from fhir.resources.R4B.coverage import Coverage
        from fhir.resources.R4B.explanationofbenefit import ExplanationOfBenefit
        from fhir.resources.R4B.organization import Organization
        from fhir.resources.R4B.patient import Patient
    except ImportError:
        raise InputError("reading FHIR needs the fhir.resources package (pip install 'fhir.resources>=8,<9')"
                         ) from None

    return {"ExplanationOfBenefit": ExplanationOfBenefit, "Patient": Patient, "Organization": Organization,
            "Coverage": Coverage}


def _patterns() -> dict[str, str]:
    """The FHIR datatype patterns, from fhir_core (the library fhir.resources validates with)."""
    from fhir_core import types

    return {"date": types.Date.pattern.pattern, "datetime": types.DateTime.pattern.pattern,
            "id": types.Id.pattern,
            "code": r"^[^\s]+(\s[^\s]+)*$",  # fhir_core's Code (a constraint inside its schema hook)
            "positive_int": r"\+?[1-9][0-9]*"}  # fhir_core's PositiveInt


def stage(con: duckdb.DuckDBPyConnection, entity: str, paths: list[Path]) -> dict[str, FileRead]:
    """Stage FHIR EOB files (+ Patient / Organization / Coverage resources) as `entity`. Returns
    {file: FileRead} for the files holding EOBs."""
    create_staging(con, entity)
    try:
        _load_resources(con, [Path(p) for p in paths])
        _define_macros(con)
        _transform(con)
        reads = _keep_inpatient(con)
        invalid = _invalid_resources(con)
        _drop(con, "fhir_resources", "fhir_kinds")  # the documents: what follows reads the typed values
        _stage_summaries(con, invalid)
        _stage_eobs(con, entity, invalid)
    finally:
        _drop(con, "fhir_resources", "fhir_kinds", "fhir_eob", "fhir_summaries", "fhir_codes",
              "fhir_claim", "fhir_keyed")
    finish_staging(con, entity)
    return reads


def _drop(con: duckdb.DuckDBPyConnection, *names: str) -> None:
    for name in names:
        kind = "VIEW" if name == "fhir_resources" else "TABLE"
        con.execute(f"DROP {kind} IF EXISTS {name}")


# ---------------------------------------------------------------------------------------------
# Validation: {rid: the model's message} for the resources fhir.resources rejects
# ---------------------------------------------------------------------------------------------

_CC = '{"coding":[{"system":"VARCHAR","code":"VARCHAR"}]}'
_REF = '{"reference":"VARCHAR","display":"VARCHAR","identifier":{"value":"VARCHAR"}}'
_PERIOD = '{"start":"VARCHAR","end":"VARCHAR"}'
# What the mapping reads of an EOB, typed for DuckDB's json_transform (one parse per resource).
EOB_SHAPE = (
    '{"id":"VARCHAR","meta":{"profile":["VARCHAR"]},"identifier":[{"type":CC,"value":"VARCHAR"}],"type":CC,"subType":CC,'
    '"created":"VARCHAR","billablePeriod":PERIOD,'
    '"supportingInfo":[{"sequence":"VARCHAR","category":CC,"timingPeriod":PERIOD,"code":CC}],'
    '"diagnosis":[{"sequence":"VARCHAR","diagnosisCodeableConcept":CC,"diagnosisReference":"JSON",'
    '"type":[CC],"onAdmission":CC,"packageCode":CC,'
    '"extension":[{"url":"VARCHAR","valueCoding":{"code":"VARCHAR"}}]}],'
    '"procedure":[{"sequence":"VARCHAR","date":"VARCHAR","procedureCodeableConcept":CC,'
    '"procedureReference":"JSON","type":[CC]}],'
    '"patient":REF,"provider":REF,"insurer":REF,"enterer":REF,"payment":{"amount":{"value":"VARCHAR"}},'
    '"insurance":[{"focal":"VARCHAR","coverage":REF}],'
    '"total":[{"category":CC,"amount":{"value":"VARCHAR"}}],"processNote":[{"text":"VARCHAR"}],'
    '"contained":["JSON"]}'
).replace("CC", _CC).replace("REF", _REF).replace("PERIOD", _PERIOD)
SUMMARY_SHAPE = ('{"id":"VARCHAR","gender":"VARCHAR","birthDate":"VARCHAR","name":"VARCHAR",'
                 '"identifier":[{"system":"VARCHAR","value":"VARCHAR","type":CC}],"payor":[REF]}'
                 ).replace("CC", _CC).replace("REF", _REF)


def _define_macros(con: duckdb.DuckDBPyConnection) -> None:
    code = _sql_str(_patterns()["code"])
    con.execute(f"""
        CREATE OR REPLACE TEMP MACRO fhir_codes(cc) AS
            list_filter(list_transform(cc.coding, lambda c: c.code), lambda x: coalesce(x, '') <> '');
        CREATE OR REPLACE TEMP MACRO fhir_type_codes(ccs) AS
            flatten(list_transform(ccs, lambda t: fhir_codes(t)));
        CREATE OR REPLACE TEMP MACRO fhir_code(cc, systems) AS coalesce(
            list_filter(cc.coding, lambda c: list_contains(systems, c.system) AND coalesce(c.code, '') <> '')[1].code,
            fhir_codes(cc)[1]);
        CREATE OR REPLACE TEMP MACRO fhir_info(e, category) AS
            list_filter(e.supportingInfo, lambda s: list_contains(fhir_codes(s.category), category))[1];
        CREATE OR REPLACE TEMP MACRO fhir_drg(e) AS coalesce(
            fhir_codes(fhir_info(e, 'drg').code)[1], fhir_codes(fhir_info(e, {_sql_str(BFD_DRG)}).code)[1],
            list_filter(list_transform(e.diagnosis, lambda d: fhir_codes(d.packageCode)[1]),
                        lambda x: x IS NOT NULL)[1]);
        CREATE OR REPLACE TEMP MACRO fhir_ref_id(r) AS CASE
            WHEN coalesce(r.reference, '') <> '' THEN ltrim(regexp_replace(regexp_extract(r.reference, '[^/]*$'),
                                                                      '^urn:uuid:', ''), '#')
            ELSE r.identifier.value END;
        CREATE OR REPLACE TEMP MACRO fhir_day(v) AS CASE WHEN regexp_matches(v, '^\\d{{4}}-\\d{{2}}-\\d{{2}}T')
            THEN left(v, 10) ELSE v END;
        CREATE OR REPLACE TEMP MACRO fhir_date_ok(v, pattern) AS v IS NULL OR (regexp_full_match(v, pattern)
            AND (length(v) < 10 OR TRY_CAST(left(v, 10) AS DATE) IS NOT NULL));
        CREATE OR REPLACE TEMP MACRO fhir_text_ok(v) AS v IS NULL OR v <> '';
        CREATE OR REPLACE TEMP MACRO fhir_codes_ok(cc) AS
            coalesce(list_bool_and(list_transform(cc.coding, lambda c: fhir_text_ok(c.system)
                                                  AND (c.code IS NULL OR regexp_full_match(c.code, {code})))), true);
        CREATE OR REPLACE TEMP MACRO fhir_ref_ok(r) AS
            fhir_text_ok(r.reference) AND fhir_text_ok(r.display) AND fhir_text_ok(r.identifier.value);
        CREATE OR REPLACE TEMP MACRO fhir_every(l) AS coalesce(list_bool_and(l), true);
        """)


def _values_ok_sql() -> tuple[str, str]:
    """SQL: true when every value the mapping reads of an EOB (`e`) / a Patient or Organization
    (`s`) is well formed."""
    p = {k: _sql_str(v) for k, v in _patterns().items()}
    dt_ok = lambda v: f"fhir_date_ok({v}, {p['datetime']})"  # noqa: E731
    seq_ok = lambda v: f"coalesce(regexp_full_match({v}, {p['positive_int']}), false)"  # noqa: E731
    eob = " AND ".join([
        f"(e.id IS NULL OR regexp_full_match(e.id, {p['id']}))",
        dt_ok("e.created"), dt_ok("e.billablePeriod.start"), dt_ok("e.billablePeriod.end"),
        "fhir_codes_ok(e.type)", "fhir_codes_ok(e.subType)",
        "fhir_every(list_transform(e.identifier, lambda i: fhir_codes_ok(i.type) AND fhir_text_ok(i.value)))",
        "fhir_ref_ok(e.patient) AND fhir_ref_ok(e.provider) AND fhir_ref_ok(e.insurer) AND fhir_ref_ok(e.enterer)",
        "fhir_every(list_transform(e.processNote, lambda n: fhir_text_ok(n.text)))",
        "fhir_every(list_transform(e.supportingInfo, lambda s: "
        f"{seq_ok('s.sequence')} AND s.category IS NOT NULL AND fhir_codes_ok(s.category) "
        f"AND fhir_codes_ok(s.code) AND {dt_ok('s.timingPeriod.start')} AND {dt_ok('s.timingPeriod.end')}))",
        "fhir_every(list_transform(e.diagnosis, lambda d: "
        f"{seq_ok('d.sequence')} AND (d.diagnosisCodeableConcept IS NOT NULL OR d.diagnosisReference IS NOT NULL) "
        "AND fhir_codes_ok(d.diagnosisCodeableConcept) AND fhir_codes_ok(d.onAdmission) "
        "AND fhir_every(list_transform(d.type, lambda t: fhir_codes_ok(t)))))",
        "fhir_every(list_transform(e.procedure, lambda x: "
        f"{seq_ok('x.sequence')} AND (x.procedureCodeableConcept IS NOT NULL OR x.procedureReference IS NOT NULL) "
        f"AND fhir_codes_ok(x.procedureCodeableConcept) AND {dt_ok('x.date')} "
        "AND fhir_every(list_transform(x.type, lambda t: fhir_codes_ok(t)))))",
        "fhir_every(list_transform(e.total, lambda t: fhir_codes_ok(t.category)))",
        "(e.payment.amount.value IS NULL OR TRY_CAST(e.payment.amount.value AS DOUBLE) IS NOT NULL)",
    ])
    summary = " AND ".join([
        f"(s.id IS NULL OR regexp_full_match(s.id, {p['id']}))",
        f"fhir_date_ok(s.birthDate, {p['date']})",
        f"(s.gender IS NULL OR regexp_full_match(s.gender, {p['code']}))",
        "fhir_every(list_transform(s.identifier, lambda i: fhir_codes_ok(i.type) AND fhir_text_ok(i.system) "
        "AND fhir_text_ok(i.value)))", "fhir_text_ok(s.name)",
    ])
    return eob, summary


def _transform(con: duckdb.DuckDBPyConnection) -> None:
    """fhir_eob (EOBs) and fhir_summaries (Patients, Organizations, Coverages): the values the
    mapping reads, typed, with `values_ok` (see the module docstring) and the JSON shape."""
    eob_ok, summary_ok = _values_ok_sql()
    shape = "json_structure(doc)" if VALIDATION != "full" else "NULL::VARCHAR"
    try:
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE fhir_eob AS
            SELECT *, {eob_ok} AS values_ok, coalesce({_inpatient_sql()}, false) AS inpatient FROM (
                SELECT rid, _source_file, _source_row, {shape} AS shape,
                       json_transform(doc, {_sql_str(EOB_SHAPE)}) AS e
                FROM fhir_resources WHERE kind = 'ExplanationOfBenefit')""")
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE fhir_summaries AS
            SELECT *, {summary_ok} AS values_ok FROM (
                SELECT rid, _source_file, _source_row, kind, full_url, {shape} AS shape,
                       json_transform(doc, {_sql_str(SUMMARY_SHAPE)}) AS s
                FROM fhir_resources WHERE kind <> 'ExplanationOfBenefit')""")
    except duckdb.Error:
        _raise_invalid_json(con)
        raise


def _inpatient_sql() -> str:
    """SQL over an EOB `e`: is it a hospital inpatient claim? BFD's claim type when the EOB has one
    (60/61; its SNF and hospice EOBs also carry subType 'inpatient'), else BFD's EOB type, else a
    NUBC bill type in supportingInfo 'typeofbill' (11x/12x), else CARIN: type 'institutional'
    and subType 'inpatient' (an EOB without subType: a CARIN inpatient profile in meta.profile,
    as the IG's first examples had)."""
    def coded(cc: str, system: str) -> str:
        return f"list_filter({cc}.coding, lambda c: c.system = {_sql_str(system)} AND coalesce(c.code, '') <> '')[1].code"

    bill = ("list_filter(list_transform(fhir_codes(fhir_info(e, 'typeofbill').code), "
            "lambda b: CASE WHEN length(b) = 4 THEN substr(b, 2) ELSE b END), "
            "lambda b: regexp_full_match(b, '[0-9]{3}'))[1]")
    types = ", ".join(_sql_str(t) for t in INPATIENT_CLAIM_TYPES)
    return f"""CASE
        WHEN {coded('e.type', BFD_CLAIM_TYPE)} IS NOT NULL THEN {coded('e.type', BFD_CLAIM_TYPE)} IN ({types})
        WHEN {coded('e.type', BFD_EOB_TYPE)} IS NOT NULL THEN upper({coded('e.type', BFD_EOB_TYPE)}) = 'INPATIENT'
        WHEN {bill} IS NOT NULL THEN left({bill}, 2) IN ('11', '12')
        ELSE coalesce(list_contains(fhir_codes(e.type), 'institutional')
                      AND (list_contains(fhir_codes(e.subType), 'inpatient')
                           OR (coalesce(len(fhir_codes(e.subType)), 0) = 0
                               AND list_bool_or(list_transform(e.meta.profile,
                                                               lambda p: regexp_matches(p, 'Inpatient'))))),
                      false) END"""


def _keep_inpatient(con: duckdb.DuckDBPyConnection) -> dict[str, FileRead]:
    """Decide each EOB's claim type before any validation: EOBs that are not hospital inpatient
    claims are dropped (counted per file as skipped, never validated nor quarantined)."""
    reads: dict[str, FileRead] = {}
    for source, kept, skipped in con.execute(
            "SELECT _source_file, count(*) FILTER (WHERE inpatient), count(*) FILTER (WHERE NOT inpatient) "
            "FROM fhir_eob GROUP BY ALL ORDER BY min(rid)").fetchall():
        read = reads[source] = FileRead(records=int(kept), columns=dict(USER_COLUMNS))
        read.skip("not_inpatient", skipped)
    con.execute("DELETE FROM fhir_eob WHERE NOT inpatient")
    return reads


def _invalid_resources(con: duckdb.DuckDBPyConnection) -> dict[int, str]:
    """{rid: the model's message} for the resources fhir.resources rejects among those it is
    asked to validate (see the module docstring), of the EOBs left in fhir_eob and the resources
    of fhir_summaries."""
    fast = VALIDATION != "full"
    checked = """SELECT rid, 'ExplanationOfBenefit' AS kind, shape, values_ok FROM fhir_eob
                 UNION ALL SELECT rid, kind, shape, values_ok FROM fhir_summaries"""
    if not fast:
        suspects = [r[0] for r in con.execute(f"SELECT rid FROM ({checked}) ORDER BY rid").fetchall()]
        return _validate(suspects, con)
    firsts = con.execute(f"SELECT kind, shape, min(rid) FROM ({checked}) GROUP BY ALL ORDER BY 3").fetchall()
    invalid = _validate([rid for _, _, rid in firsts], con)
    rejected = [(kind, shape) for kind, shape, rid in firsts if rid in invalid]
    suspects = [r[0] for r in con.execute(f"""
        SELECT rid FROM ({checked})
        WHERE NOT coalesce(values_ok, false) OR list_contains(?, struct_pack(kind := kind, shape := shape))
        ORDER BY rid""", [[{"kind": k, "shape": s} for k, s in rejected]]).fetchall()]
    invalid.update(_validate([rid for rid in suspects if rid not in invalid], con))
    return invalid


def _validate(rids: list[int], con: duckdb.DuckDBPyConnection) -> dict[int, str]:
    """Model-validate the resources `rids`; {rid: message} for those the model rejects."""
    if not rids:
        return {}
    rows = con.execute("SELECT rid, kind, doc FROM fhir_resources WHERE rid IN (SELECT unnest(?)) ORDER BY rid",
                       [rids]).fetchall()
    return dict(_run(_validate_chunk, rows))


def _validate_chunk(chunk: list) -> list:
    models = _models()
    out = []
    for rid, kind, doc in chunk:
        try:
            models[kind].model_validate(json.loads(doc))
        except Exception as exc:  # noqa: BLE001 - pydantic's ValidationError, reported plainly
            out.append((rid, _first_error(exc)))
    return out


def _run(function, items):
    """function(chunk) over chunks of `items` (in a process pool when WORKERS > 1)."""
    chunks = [items[i:i + CHUNK] for i in range(0, len(items), CHUNK)]
    if WORKERS > 1 and len(chunks) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=WORKERS, mp_context=multiprocessing.get_context("spawn")) as pool:
            for result in pool.map(function, chunks):
                yield from result
    else:
        for chunk in chunks:
            yield from function(chunk)


def _first_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        try:
            first = errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            return f"{where}: {first.get('msg')}" if where else str(first.get("msg"))
        except Exception:  # noqa: BLE001
            pass
    return str(exc).splitlines()[0]


# ---------------------------------------------------------------------------------------------
# Mapping: Patient / Organization summaries, then EOBs -> staging tables
# ---------------------------------------------------------------------------------------------

def _stage_summaries(con: duckdb.DuckDBPyConnection, invalid: dict[int, str]) -> None:
    """fhir_keyed(scope, key, who): what a claim needs of each Patient (birth, gender) and
    Organization (npi, name), under every key a reference may use: 'Patient/<id>' and the Bundle
    fullUrl (scope 0; the last resource of a key wins), and '#<id>' for resources contained in an
    EOB (scope = the EOB's rid; the first wins)."""
    bad = con.execute("SELECT rid, kind, _source_file, _source_row FROM fhir_summaries "
                      "WHERE list_contains(?, rid) ORDER BY rid LIMIT 1", [list(invalid)]).fetchall()
    if bad:
        rid, kind, source, row = bad[0]
        raise InputError(f"{kind} resource is not valid FHIR R4: {invalid[rid]}", file=source, row=row)
    who = f"""struct_pack(kind := kind,
        birth := CASE WHEN kind = 'Patient' THEN s.birthDate END,
        gender := CASE WHEN kind = 'Patient' THEN s.gender END,
        npi := CASE WHEN kind = 'Organization' THEN coalesce(
            list_filter(s.identifier, lambda i: i.system = {_sql_str(NPI_SYSTEM)} AND coalesce(i.value, '') <> '')[1].value,
            list_filter(s.identifier, lambda i: list_contains(fhir_codes(i.type), 'NPI')
                                           AND coalesce(i.value, '') <> '')[1].value) END,
        name := CASE WHEN kind = 'Organization' THEN s.name END,
        payor := CASE WHEN kind = 'Coverage' THEN coalesce(nullif(s.payor[1].display, ''),
                                                           nullif(s.payor[1].identifier.value, '')) END)"""
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE fhir_keyed AS
        WITH global AS (
            SELECT rid, kind || '/' || s.id AS key, {who} AS who FROM fhir_summaries WHERE coalesce(s.id, '') <> ''
            UNION ALL
            SELECT rid, full_url, {who} FROM fhir_summaries WHERE coalesce(full_url, '') <> ''),
        contained AS (
            SELECT cc.rid, cc.ord, '#' || (cc.doc->>'$.id') AS key, coalesce(cc.doc->>'$.resourceType', '') AS kind,
                   json_transform(cc.doc, {_sql_str(SUMMARY_SHAPE)}) AS s
            FROM (SELECT rid, unnest(e.contained) AS doc, generate_subscripts(e.contained, 1) AS ord
                  FROM fhir_eob WHERE len(e.contained) > 0) cc
            WHERE cc.doc->>'$.id' IS NOT NULL)
        SELECT 0::BIGINT AS scope, key, arg_max(who, rid) AS who FROM global GROUP BY key
        UNION ALL
        SELECT rid, key, arg_min({who}, ord) FROM contained GROUP BY rid, key""")


def _stage_eobs(con: duckdb.DuckDBPyConnection, entity: str, invalid: dict[int, str]) -> None:
    """Map the inpatient EOBs into stg_<entity>, stg_<entity>_codes and stg_<entity>_findings."""
    cm, pcs = (f"[{', '.join(_sql_str(s) for s in systems)}]" for systems in (ICD10CM_SYSTEMS, ICD10PCS_SYSTEMS))
    extra_types = f"[{', '.join(_sql_str(t) for t in EXTRA_DX_TYPES)}]"
    secondary = f"[{', '.join(_sql_str(t) for t in SECONDARY_DX_TYPES)}]"
    external = f"[{', '.join(_sql_str(t) for t in EXTERNAL_CAUSE_DX_TYPES)}]"

    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE fhir_claim AS
        SELECT rid, _source_file, _source_row, list_contains(?, rid) AS rejected,
               coalesce(
                   list_filter(e.identifier, lambda i: list_contains(fhir_codes(i.type), 'uc')
                                                  AND coalesce(i.value, '') <> '')[1].value,
                   nullif(e.identifier[1].value, ''), e.id) AS claim_id,
               struct_pack(start := coalesce(nullif(fhir_info(e, 'admissionperiod').timingPeriod.start, ''),
                                             e.billablePeriod.start),
                           "end" := coalesce(nullif(fhir_info(e, 'admissionperiod').timingPeriod."end", ''),
                                             e.billablePeriod."end")) AS period,
               list_contains(list_transform(e.type.coding, lambda c: c.system), {_sql_str(BFD_CLAIM_TYPE)})
                   AS from_bfd
        FROM fhir_eob""", [list(invalid)])

    # One row per diagnosis / procedure, with its role and its contract position.
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE fhir_codes AS
        WITH items AS (
            SELECT dd.rid, dd.claim_id, 'dx' AS kind, dd.ord - 1 AS number, 'diagnosis[' || (dd.ord - 1) || ']' AS "column",
                   coalesce(TRY_CAST(dd.v.sequence AS BIGINT), 0) AS seq, fhir_type_codes(dd.v.type) AS types,
                   fhir_code(dd.v.diagnosisCodeableConcept, {cm}) AS code,
                   coalesce(fhir_code(dd.v.onAdmission, []::VARCHAR[]),
                            list_filter(dd.v.extension, lambda x: regexp_matches(x.url, {_sql_str(BFD_POA_URL)})
                                        AND coalesce(x.valueCoding.code, '') <> '')[1].valueCoding.code) AS poa,
                   NULL::VARCHAR AS date
            FROM (SELECT rid, claim_id, unnest(e.diagnosis) AS v, generate_subscripts(e.diagnosis, 1) AS ord
                  FROM fhir_claim JOIN fhir_eob USING (rid) WHERE NOT rejected) dd
            UNION ALL
            SELECT pp.rid, pp.claim_id, 'px', pp.ord - 1, 'procedure[' || (pp.ord - 1) || ']',
                   coalesce(TRY_CAST(pp.v.sequence AS BIGINT), 0), fhir_type_codes(pp.v.type),
                   fhir_code(pp.v.procedureCodeableConcept, {pcs}), NULL, fhir_day(pp.v.date)
            FROM (SELECT rid, claim_id, unnest(e.procedure) AS v, generate_subscripts(e.procedure, 1) AS ord
                  FROM fhir_claim JOIN fhir_eob USING (rid) WHERE NOT rejected) pp),
        typed AS (
            SELECT *, coalesce(bool_or(list_contains(types, 'principal')) OVER (PARTITION BY rid, kind), false)
                          AS typed_principal,
                      row_number() OVER (PARTITION BY rid, kind ORDER BY seq, number) AS in_sequence
            FROM items),
        roles AS (
            SELECT * EXCLUDE (typed_principal, in_sequence),
                   CASE WHEN list_contains(types, 'principal') THEN 'principal'
                        -- procedures without a type (BFD): the first in sequence is the principal
                        WHEN kind = 'px' AND NOT typed_principal AND in_sequence = 1 THEN 'principal'
                        WHEN kind = 'dx' AND list_has_any(types, {extra_types})
                             AND NOT list_has_any(types, {secondary}) THEN 'extra'
                        ELSE 'other' END AS role
            FROM typed),
        ranked AS (
            SELECT *, CASE role WHEN 'principal' THEN row_number() OVER (PARTITION BY rid, kind, role ORDER BY number)
                                WHEN 'other' THEN row_number() OVER (
                                    PARTITION BY rid, kind, role
                                    ORDER BY list_has_any(types, {external}), seq, number)
                      END AS rank
            FROM roles)
        SELECT *, CASE WHEN role = 'principal' AND rank = 1 THEN 1 WHEN role = 'other' THEN rank + 1 END AS position
        FROM ranked""")
    _stage_findings(con, entity, invalid)
    con.execute(f"""
        INSERT INTO stg_{entity}_codes BY NAME
        SELECT claim_id, kind, position::INTEGER AS position, position::VARCHAR AS position_raw,
               nullif(code, '') AS code_raw, nullif(poa, '') AS poa_raw, _source_file, _source_row,
               "column" AS _source_column
        FROM fhir_codes JOIN fhir_claim USING (rid, claim_id)
        WHERE position BETWEEN 1 AND {MAX_POSITIONS}
        ORDER BY rid, kind, position""")
    _stage_headers(con, entity)


def _stage_findings(con: duckdb.DuckDBPyConnection, entity: str, invalid: dict[int, str]) -> None:
    rejected = con.execute("SELECT rid, _source_file, _source_row, claim_id, e.id FROM fhir_claim JOIN fhir_eob "
                           "USING (rid, _source_file, _source_row) WHERE rejected ORDER BY rid").fetchall()
    if rejected:
        con.executemany(
            f"INSERT INTO stg_{entity}_findings VALUES (?, ?, ?, 'ExplanationOfBenefit', 'invalid_fhir_resource', ?, ?)",
            [(source, row, claim_id, eob_id, f"not a valid FHIR R4 ExplanationOfBenefit: {invalid[rid]}")
             for rid, source, row, claim_id, eob_id in rejected])
    con.execute(f"""
        INSERT INTO stg_{entity}_findings
        WITH principal AS (
            SELECT rid, kind, list("column" ORDER BY number)[2] AS "column",
                   string_agg(coalesce(code, 'None'), ', ' ORDER BY number) AS value
            FROM fhir_codes WHERE role = 'principal' GROUP BY rid, kind HAVING count(*) > 1),
        too_many AS (
            SELECT rid, kind, list("column" ORDER BY position)[{MAX_POSITIONS + 1}] AS "column", count(*) AS n
            FROM fhir_codes WHERE position IS NOT NULL GROUP BY rid, kind HAVING count(*) > {MAX_POSITIONS}),
        found AS (
            SELECT rid, kind, 0 AS sort, "column", 'second_principal_' || kind AS rule, value,
                   'more than one ' || CASE kind WHEN 'dx' THEN 'diagnosis' ELSE 'procedure' END
                   || ' has type ''principal''; the claim is quarantined rather than one of them picked' AS reason
            FROM principal
            UNION ALL
            SELECT rid, kind, 1, "column", 'too_many_' || kind, n::VARCHAR,
                   n || ' ' || CASE kind WHEN 'dx' THEN 'diagnoses' ELSE 'procedures' END
                   || '; the contract holds {MAX_POSITIONS}'
            FROM too_many)
        SELECT c._source_file, c._source_row, c.claim_id, f."column", f.rule, f.value, f.reason
        FROM found f JOIN fhir_claim c USING (rid) ORDER BY f.rid, f.kind, f.sort""")


def _stage_headers(con: duckdb.DuckDBPyConnection, entity: str) -> None:
    def who(ref: str, element: str | None = None) -> str:
        """Join the summary a reference points to: contained ('#id', in this EOB) or by key."""
        element = element or f"c.e.{ref}"
        return f"""LEFT JOIN fhir_keyed k_{ref} ON k_{ref}.key = {element}.reference
                   AND k_{ref}.scope = CASE WHEN starts_with({element}.reference, '#') THEN c.rid ELSE 0 END"""

    def status(category: str) -> str:
        return f"fhir_codes(fhir_info(c.e, {_sql_str(category)}).code)[1]"

    day = lambda v: f"TRY_CAST(CASE WHEN length({v}) >= 10 THEN left({v}, 10) END AS DATE)"  # noqa: E731
    if entity == "claims":
        values = {
            "facility_id": "coalesce(nullif(provider.npi, ''), nullif(c.e.provider.identifier.value, ''), "
                           "fhir_ref_id(c.e.provider))",
            "patient_id": "fhir_ref_id(c.e.patient)",
            "admit_date": "admit", "discharge_date": "fhir_day(c.period.end)",
            "discharge_status": status("discharge-status"),
            "age": age_sql(day("patient.birth"), day("admit")),
            "sex": "CASE WHEN patient IS NULL THEN NULL WHEN patient.gender = 'male' THEN 'M' "
                   "WHEN patient.gender = 'female' THEN 'F' ELSE 'U' END",
            "payer": "coalesce(nullif(c.e.insurer.display, ''), nullif(insurer.name, ''), "
                     "nullif(c.e.insurer.identifier.value, ''), nullif(c.coverage_ref.display, ''), coverage.payor, "
                     "CASE WHEN c.from_bfd THEN 'MEDICARE' END)",
            "coder_id": _sql_str(UNKNOWN_CODER), "billed_drg": "fhir_drg(c.e)",
        }
        coverage = ("coalesce(list_filter(e.insurance, lambda i: i.focal = 'true')[1], "
                    "e.insurance[1]).coverage")
        joins = {"patient": who("patient"), "provider": who("provider"), "insurer": who("insurer"),
                 "coverage": who("coverage", "c.coverage_ref")}
    else:
        values = {
            "reviewer_id": "coalesce(nullif(c.e.enterer.identifier.value, ''), nullif(fhir_ref_id(c.e.enterer), ''), "
                           "nullif(c.e.insurer.display, ''), fhir_ref_id(c.e.insurer))",
            "review_date": "fhir_day(c.e.created)", "discharge_status": status("discharge-status"),
            "reviewer_drg": "fhir_drg(c.e)",
            "notes": "nullif(array_to_string(list_filter(list_transform(c.e.processNote, lambda n: n.text), "
                     "lambda t: coalesce(t, '') <> ''), ' / '), '')",
        }
        joins, coverage = {}, "NULL"
    values["claim_id"] = "c.claim_id"
    columns = ", ".join(f"CASE WHEN c.rejected AND '{name}' <> 'claim_id' THEN NULL "
                        f"ELSE nullif(CAST({values.get(name, 'NULL')} AS VARCHAR), '') END AS {name}"
                        for name in header_columns(entity))
    paid = ("coalesce(c.e.payment.amount.value, list_filter(c.e.total, lambda t: list_contains(fhir_codes(t.category), "
            "'paidtoprovider') AND t.amount.value IS NOT NULL)[1].amount.value)")
    dx_extra = lambda t: (f"list(fc.code ORDER BY fc.number) FILTER (WHERE fc.kind = 'dx' AND fc.role = 'extra' "  # noqa: E731
                          f"AND list_contains(fc.types, {_sql_str(t)}))")
    # The admitting diagnosis is one (the first); external causes and reasons for visit are lists.
    extra_dx = ", ".join(f"{dx_extra(t)}[1] AS {name}" if t == "admitting" else f"nullif({dx_extra(t)}, []) AS {name}"
                         for t, name in EXTRA_DX_TYPES.items())
    extra_dx_pairs = ", ".join(f"'{name}', CASE WHEN NOT c.rejected THEN xc.{name} END"
                               for name in EXTRA_DX_TYPES.values())
    con.execute(f"""
        INSERT INTO stg_{entity} BY NAME
        WITH extra_codes AS (
            SELECT rid,
                   {extra_dx},
                   to_json(map_from_entries(list(struct_pack(k := 'px' || fc.position || '_date', v := fc.date)
                                                 ORDER BY fc.position)
                       FILTER (WHERE fc.kind = 'px' AND fc.position <= {MAX_POSITIONS})))::VARCHAR AS px_dates
            FROM fhir_codes fc GROUP BY rid),
        claim AS (
            SELECT c.*, fhir_day(c.period.start) AS admit,
                   {', '.join(f'k_{name}.who AS {name}' for name in joins) or 'NULL AS no_references'}
            FROM (SELECT *, {coverage} AS coverage_ref
                  FROM fhir_claim JOIN fhir_eob USING (rid, _source_file, _source_row)) c
            {' '.join(joins.values())})
        SELECT c._source_file, c._source_row, {columns},
               nullif(json_merge_patch('{{}}', json_object(
                   'eob_id', c.e.id,
                   {extra_dx_pairs},
                   'paid_amount', CASE WHEN NOT c.rejected
                       THEN CAST(round(TRY_CAST({paid} AS DECIMAL(38, 10)), 2) AS DECIMAL(38, 2))::VARCHAR END),
                   CASE WHEN NOT c.rejected THEN coalesce(xc.px_dates, '{{}}') ELSE '{{}}' END), '{{}}') AS extra_columns
        FROM claim c LEFT JOIN extra_codes xc USING (rid)
        ORDER BY c.rid""")
