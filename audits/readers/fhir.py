"""FHIR R4 ExplanationOfBenefit, CARIN Blue Button inpatient institutional profile, via fhir.resources.

Input: NDJSON (one resource per line, as FHIR Bulk Data exports write them) or JSON (a Bundle or a
single resource). The EOBs' Patient and Organization resources may sit in the same files, in other
files of the same entity, or be contained in the EOB. Each EOB, Patient and Organization is
validated with the fhir.resources R4B models (fhir.resources 8 ships R5 at the top level and R4B
under `fhir.resources.R4B`; R4B left ExplanationOfBenefit, Patient and Organization as in R4, which
CARIN BB profiles). An EOB the model rejects is quarantined with the model's message
(rule invalid_fhir_resource); a line that is not JSON at all is an InputError. EOBs that are not
institutional inpatient (type 'institutional' and subType 'inpatient' when given) are skipped.

Mapping (EOB -> contract):

| contract | FHIR |
|---|---|
| claim_id | identifier of type 'uc' (unique claim id), else the first identifier, else id |
| facility_id | provider: the referenced Organization's NPI identifier (http://hl7.org/fhir/sid/us-npi), else the reference's identifier, else its id |
| patient_id | patient reference id (Patient/<id>) |
| admit_date, discharge_date | supportingInfo 'admissionperiod' timingPeriod start/end, else billablePeriod |
| discharge_status | supportingInfo 'discharge-status' code |
| age | whole years from the referenced Patient's birthDate to the admission date |
| sex | Patient.gender: male M, female F, other/unknown U |
| payer | insurer.display, else the insurer Organization's name |
| coder_id | 'UNKNOWN' (a payer's EOB carries no coder) |
| billed_drg | supportingInfo 'drg' code |
| dx1 | the diagnosis whose type is 'principal' (by type, not by sequence: CARIN says sequence carries no order) |
| dx2..dx25 | diagnoses of type 'other' / 'secondary' (or untyped), in sequence order; admitting, external-cause and reason-for-visit diagnoses go to extra_columns |
| poa1..poa25 | diagnosis.onAdmission code |
| px1 / px2..px25 | procedure of type 'principal' / 'other' (or untyped), in sequence order |

extra_columns: paid_amount (payment.amount, else total 'paidtoprovider'), admitting_dx,
external_cause_dx, px{n}_date (procedure.date), eob_id.

An EOB as a review (a re-adjudicated or re-coded EOB): reviewer_id = enterer (identifier value or
reference id), else the insurer; review_date = created; discharge_status and reviewer_drg from
supportingInfo; notes = processNote texts.

Findings (the EOB's claim is quarantined with the reason): two diagnoses or procedures typed
principal, more than 25 diagnoses or procedures, an EOB the model rejects. An EOB without a
principal diagnosis loads no dx1 and validation quarantines it as principal_dx_missing.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
import os
from pathlib import Path

import duckdb

from audits.contract import MAX_POSITIONS
from audits.errors import InputError
from audits.readers.detect import UNKNOWN_CODER, Records, age_at, create_staging, finish_staging

log = logging.getLogger(__name__)

NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"
ICD10CM_SYSTEMS = ("http://hl7.org/fhir/sid/icd-10-cm", "http://hl7.org/fhir/sid/icd-10")
ICD10PCS_SYSTEMS = ("http://www.cms.gov/Medicare/Coding/ICD10", "http://hl7.org/fhir/sid/icd-10-pcs")
_SEX = {"male": "M", "female": "F"}
_SECONDARY_DX = {"other", "secondary", "discharge"}
_EXTRA_DX = {"admitting": "admitting_dx", "externalcauseofinjury": "external_cause_dx",
             "patientreasonforvisit": "reason_for_visit_dx"}


def _models():
    try:
        from fhir.resources.R4B.explanationofbenefit import ExplanationOfBenefit
        from fhir.resources.R4B.organization import Organization
        from fhir.resources.R4B.patient import Patient
    except ImportError:
        raise InputError("reading FHIR needs the fhir.resources package (pip install 'fhir.resources>=8,<9')"
                         ) from None

    return {"ExplanationOfBenefit": ExplanationOfBenefit, "Patient": Patient, "Organization": Organization}


# Model validation costs ~0.5-1 ms per EOB (pydantic builds ~80 element objects), far more than
# reading. CODING_AUDIT_FHIR_WORKERS=N (opt-in) validates in N spawned processes, one chunk of
# resources per task (worth it from a few thousand EOBs). Off by default: spawned processes re-import the calling
# program's main module, which a script without an `if __name__ == "__main__":` guard does not
# survive; the CLI and Dagster runs have the guard.
WORKERS = int(os.environ.get("CODING_AUDIT_FHIR_WORKERS", "1") or 1)
CHUNK = 2000


def stage(con: duckdb.DuckDBPyConnection, entity: str, paths: list[Path]) -> None:
    """Stage FHIR EOB files (+ Patient / Organization resources) as `entity`.

    Two passes over the files, so memory holds one chunk of EOBs at a time, not the whole
    export: the first validates and summarises the Patient and Organization resources (an EOB may
    come before the Patient it references), the second maps the EOBs chunk by chunk."""
    create_staging(con, entity)

    def resources(kinds: tuple[str, ...]):
        for path in paths:
            for source, row, full_url, resource in _resources(Path(path)):
                if resource.get("resourceType") in kinds:
                    yield source, row, full_url, resource

    summaries: dict[str, dict] = {}
    for keys, summary, error in _run(_summarise_chunk, resources(("Patient", "Organization")), ()):
        if error is not None:
            raise InputError(error[2], file=error[0], row=error[1])
        for key in keys:
            summaries[key] = summary
    records = Records(entity)
    skipped = 0
    eobs = ((source, row, resource) for source, row, _, resource in resources(("ExplanationOfBenefit",)))
    for mapped in _run(_map_chunk, eobs, (entity,)):
        if mapped is None:
            skipped += 1
        else:
            _finish(mapped, entity, summaries, records)
    records.write(con)
    finish_staging(con, entity)
    if skipped:
        log.info("%s ExplanationOfBenefit resources that are not institutional inpatient skipped", skipped)


def _run(function, items, args: tuple):
    """function(chunk, *args) over chunks of the iterable `items` (in a process pool when
    WORKERS > 1); the results in input order."""
    def chunks():
        iterator = iter(items)
        while chunk := list(itertools.islice(iterator, CHUNK)):
            yield chunk

    if WORKERS > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=WORKERS, mp_context=multiprocessing.get_context("spawn")) as pool:
            pending = []
            for chunk in chunks():  # at most 2 chunks per worker in flight: bounded memory
                pending.append(pool.submit(function, chunk, *args))
                if len(pending) >= 2 * WORKERS:
                    yield from pending.pop(0).result()
            for future in pending:
                yield from future.result()
    else:
        for chunk in chunks():
            yield from function(chunk, *args)


def _summarise_chunk(chunk: list) -> list:
    """Validate Patient / Organization resources; keep what a claim needs from them."""
    models = _models()
    out = []
    for source, row, full_url, resource in chunk:
        kind = resource["resourceType"]
        try:
            model = models[kind].model_validate(resource)
        except Exception as exc:  # noqa: BLE001 - pydantic's ValidationError, reported plainly
            out.append(((), None, (source, row, f"{kind} resource is not valid FHIR R4: {_first_error(exc)}")))
            continue
        keys = tuple(k for k in (f"{kind}/{resource['id']}" if resource.get("id") else None, full_url) if k)
        out.append((keys, _summary(model), None))
    return out


def _summary(model) -> dict:
    if model.get_resource_type() == "Patient":
        return {"birth": _iso(model.birthDate), "gender": model.gender}
    if model.get_resource_type() == "Organization":
        return {"npi": _npi(model), "name": model.name}
    return {}


def _map_chunk(chunk: list, entity: str) -> list:
    models = _models()
    return [_eob(source, row, resource, entity, models) for source, row, resource in chunk]


def _resources(path: Path):
    """(file, row, fullUrl, resource dict) for every resource: NDJSON row = line number; Bundle
    row = entry number (1-based); a single JSON resource is row 1."""
    if not path.exists():
        raise InputError("file not found", file=path)
    source = str(path)
    with open(path, "rb") as fh:
        first = fh.readline()
    try:
        json.loads(first)
        ndjson = True
    except ValueError:
        ndjson = False
    if ndjson:
        with open(path, encoding="utf-8-sig") as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    resource = json.loads(line)
                except ValueError as exc:
                    raise InputError(f"line is not valid JSON ({exc.msg}); NDJSON wants one resource "
                                     "per line", file=path, row=number) from None
                yield from _unbundle(source, number, resource)
    else:
        try:
            with open(path, encoding="utf-8-sig") as fh:
                resource = json.load(fh)
        except ValueError as exc:
            raise InputError(f"not valid JSON: {exc}", file=path,
                             row=getattr(exc, "lineno", None)) from None
        yield from _unbundle(source, None, resource)


def _unbundle(source: str, row: int | None, resource):
    if not isinstance(resource, dict) or "resourceType" not in resource:
        raise InputError("not a FHIR resource (no resourceType)", file=source, row=row)
    if resource["resourceType"] == "Bundle":
        for number, entry in enumerate(resource.get("entry") or [], start=1):
            item = entry.get("resource") if isinstance(entry, dict) else None
            if isinstance(item, dict):
                yield source, row if row is not None else number, entry.get("fullUrl"), item
    else:
        yield source, row if row is not None else 1, None, resource


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


def _iso(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def _codes(concept) -> list:
    return list(concept.coding or []) if concept is not None else []


def _code(concept, systems: tuple[str, ...] = ()) -> str | None:
    """The code of a CodeableConcept: the coding of one of `systems` if any, else the first."""
    codings = _codes(concept)
    for coding in codings:
        if coding.system in systems and coding.code:
            return coding.code
    return next((c.code for c in codings if c.code), None)


def _type_codes(types) -> set[str]:
    return {c.code for t in (types or []) for c in _codes(t) if c.code}


def _ref_key(reference) -> str | None:
    return reference.reference if reference is not None else None


def _ref_id(reference) -> str | None:
    """'Patient/pat-1' -> 'pat-1'; a logical reference -> its identifier value."""
    if reference is None:
        return None
    if reference.reference:
        return reference.reference.rsplit("/", 1)[-1].removeprefix("urn:uuid:").lstrip("#")
    if reference.identifier is not None:
        return reference.identifier.value
    return None


def _reference(reference, eob) -> dict:
    """What a claim needs of a referenced resource: a contained one is summarised here, any other
    is looked up by key in the main process (`_finish`)."""
    if reference is None:
        return {}
    key = reference.reference
    out = {"key": key, "id": _ref_id(reference), "display": reference.display,
           "identifier": reference.identifier.value if reference.identifier is not None else None}
    if key and key.startswith("#"):
        found = next((c for c in (eob.contained or []) if getattr(c, "id", None) == key[1:]), None)
        out["summary"] = _summary(found) if found is not None else None
    return out


def _npi(org) -> str | None:
    for identifier in getattr(org, "identifier", None) or []:
        if identifier.system == NPI_SYSTEM and identifier.value:
            return identifier.value
    for identifier in getattr(org, "identifier", None) or []:
        if "NPI" in _type_codes([identifier.type] if identifier.type else []) and identifier.value:
            return identifier.value
    return None


def _claim_id(resource: dict, eob=None) -> str | None:
    identifiers = (eob.identifier if eob is not None else None) or []
    for identifier in identifiers:
        if "uc" in _type_codes([identifier.type] if identifier.type else []) and identifier.value:
            return identifier.value
    if identifiers and identifiers[0].value:
        return identifiers[0].value
    if eob is None:
        for identifier in resource.get("identifier") or []:
            if isinstance(identifier, dict) and identifier.get("value"):
                return identifier["value"]
    return resource.get("id")


def _eob(source: str, row: int, resource: dict, entity: str, models: dict) -> dict | None:
    """Validate and map one EOB into plain values (picklable: this runs in pool workers); None if
    it is not an inpatient institutional EOB (skipped)."""
    try:
        eob = models["ExplanationOfBenefit"].model_validate(resource)
    except Exception as exc:  # noqa: BLE001 - pydantic ValidationError: quarantine, not a traceback
        claim_id = _claim_id(resource)
        return {"source": source, "row": row, "claim_id": claim_id, "values": {},
                "extra": {"eob_id": resource.get("id")}, "dx": [], "px": [], "refs": {},
                "findings": [("ExplanationOfBenefit", "invalid_fhir_resource", resource.get("id"),
                              f"not a valid FHIR R4 ExplanationOfBenefit: {_first_error(exc)}")]}
    claim_type = _type_codes([eob.type] if eob.type else [])
    sub_type = _type_codes([eob.subType] if eob.subType else [])
    if "institutional" not in claim_type or (sub_type and "inpatient" not in sub_type):
        return None
    claim_id = _claim_id(resource, eob)
    info = {}
    for item in eob.supportingInfo or []:
        for category in _type_codes([item.category]):
            info.setdefault(category, item)
    period = info.get("admissionperiod")
    period = period.timingPeriod if period is not None and period.timingPeriod is not None else eob.billablePeriod
    findings: list[tuple[str, str, object, str]] = []
    extra: dict = {"eob_id": eob.id}

    principal_dx, other_dx = [], []
    for number, diagnosis in enumerate(eob.diagnosis or []):
        types = _type_codes(diagnosis.type)
        code = _code(diagnosis.diagnosisCodeableConcept, ICD10CM_SYSTEMS)
        poa = _code(diagnosis.onAdmission)
        column = f"diagnosis[{number}]"
        if "principal" in types:
            principal_dx.append((code, poa, column))
        elif types & set(_EXTRA_DX) and not types & _SECONDARY_DX:
            for t in types & set(_EXTRA_DX):
                if t == "admitting":
                    extra.setdefault("admitting_dx", code)
                else:
                    extra.setdefault(_EXTRA_DX[t], []).append(code)
        else:
            other_dx.append((diagnosis.sequence or 0, number, code, poa, column))
    principal_px, other_px = [], []
    for number, procedure in enumerate(eob.procedure or []):
        types = _type_codes(procedure.type)
        code = _code(procedure.procedureCodeableConcept, ICD10PCS_SYSTEMS)
        item = (procedure.sequence or 0, number, code, _iso(procedure.date), f"procedure[{number}]")
        (principal_px if "principal" in types else other_px).append(item)

    dx = [(1, *principal_dx[0])] if principal_dx else []
    dx += [(p, code, poa, column) for p, (_, _, code, poa, column) in enumerate(sorted(other_dx), start=2)]
    px = [(1, *principal_px[0][2:])] if principal_px else []
    px += [(p, code, date, column) for p, (_, _, code, date, column) in enumerate(sorted(other_px), start=2)]
    if len(principal_dx) > 1:
        findings.append((principal_dx[1][2], "second_principal_dx", ", ".join(str(x[0]) for x in principal_dx),
                         "more than one diagnosis has type 'principal'; the claim is quarantined rather "
                         "than one of them picked"))
    if len(principal_px) > 1:
        findings.append((principal_px[1][4], "second_principal_px", ", ".join(str(x[2]) for x in principal_px),
                         "more than one procedure has type 'principal'; the claim is quarantined rather "
                         "than one of them picked"))
    for kind, codes in (("dx", dx), ("px", px)):
        if len(codes) > MAX_POSITIONS:
            findings.append((codes[MAX_POSITIONS][3], f"too_many_{kind}", str(len(codes)),
                             f"{len(codes)} {'diagnoses' if kind == 'dx' else 'procedures'}; the contract "
                             f"holds {MAX_POSITIONS}"))
    dx, px = dx[:MAX_POSITIONS], px[:MAX_POSITIONS]
    for position, _code_, date, _column in px:
        extra[f"px{position}_date"] = date
    if eob.payment is not None and eob.payment.amount is not None and eob.payment.amount.value is not None:
        extra["paid_amount"] = f"{eob.payment.amount.value:.2f}"
    else:
        for total in eob.total or []:
            if "paidtoprovider" in _type_codes([total.category]) and total.amount is not None:
                extra["paid_amount"] = f"{total.amount.value:.2f}"
    values = {"admit": _iso(period.start) if period is not None else None,
              "discharge": _iso(period.end) if period is not None else None,
              "status": _code(info["discharge-status"].code) if "discharge-status" in info else None,
              "drg": _code(info["drg"].code) if "drg" in info else None,
              "created": _iso(eob.created),
              "notes": " / ".join(n.text for n in (eob.processNote or []) if n.text) or None}
    refs = {name: _reference(getattr(eob, name), eob) for name in ("patient", "provider", "insurer", "enterer")}
    return {"source": source, "row": row, "claim_id": claim_id, "values": values, "extra": extra,
            "dx": dx, "px": px, "refs": refs, "findings": findings}


def _finish(m: dict, entity: str, summaries: dict, records: Records) -> None:
    """Resolve the EOB's references (Patient, Organizations) and write its staging rows."""
    source, row, claim_id, v, refs = m["source"], m["row"], m["claim_id"], m["values"], m["refs"]

    def resolved(name: str) -> dict | None:
        ref = refs.get(name) or {}
        if "summary" in ref:
            return ref["summary"]
        return summaries.get(ref.get("key")) if ref.get("key") else None

    if not v:  # an EOB the model rejected: only its claim_id, so the finding can name it
        values = {"claim_id": claim_id}
    elif entity == "claims":
        patient, provider, insurer = resolved("patient"), resolved("provider"), resolved("insurer")
        age = age_at((patient or {}).get("birth"), v["admit"])
        provider_ref = refs.get("provider") or {}
        values = {
            "claim_id": claim_id,
            "facility_id": (provider or {}).get("npi") or provider_ref.get("identifier") or provider_ref.get("id"),
            "patient_id": (refs.get("patient") or {}).get("id"), "admit_date": v["admit"],
            "discharge_date": v["discharge"], "discharge_status": v["status"],
            "age": None if age is None else str(age),
            "sex": None if patient is None else _SEX.get(patient.get("gender") or "", "U"),
            "payer": (refs.get("insurer") or {}).get("display") or (insurer or {}).get("name"),
            "coder_id": UNKNOWN_CODER, "billed_drg": v["drg"],
        }
    else:
        enterer, insurer = refs.get("enterer") or {}, refs.get("insurer") or {}
        values = {"claim_id": claim_id,
                  "reviewer_id": enterer.get("identifier") or enterer.get("id") or insurer.get("display")
                  or insurer.get("id"),
                  "review_date": v["created"], "discharge_status": v["status"], "reviewer_drg": v["drg"],
                  "notes": v["notes"]}
    records.add_header(source, row, values, m["extra"])
    for position, code, poa, column in m["dx"]:
        records.add_code(claim_id, "dx", position, code, poa, source, row, column)
    for position, code, _date, column in m["px"]:
        records.add_code(claim_id, "px", position, code, None, source, row, column)
    for column, rule, value, reason in m["findings"]:
        records.add_finding(source, row, claim_id, column, rule, value, reason)
