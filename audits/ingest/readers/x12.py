"""X12 837I institutional claims (005010X223A2) through pyx12.

pyx12 (maintained, BSD) reads the interchange: it finds the delimiters the ISA declares, splits
segments and elements, and checks the envelope: ISA/IEA, GS/GE and ST/SE control numbers and
counts, missing trailers, the HL hierarchy numbering and parents. Any of those errors, a file that
ends inside a segment, or a functional group that is not an 837I (GS08 005010X223*) is an
InputError naming the segment position (row = segment number, 1-based over the file), and nothing
loads. pyx12's full implementation-guide walker (X12ContextReader) is not used: it runs ~380
claims/s here against ~8,000 for the reader underneath, and the few loops we need are identified
without it: HL03 gives the level (20 billing provider, 22 subscriber, 23 patient), CLM opens the
2300 claim loop, and SBR (2320 other payer), LX (2400 service line) or the next HL/CLM/SE close it.

Mapping (837I -> contract), per claim (2300 loop):

| contract | 837I |
|---|---|
| claim_id | CLM01 patient control number |
| facility_id | billing provider NPI, 2010AA NM109 (NM108 = XX) |
| patient_id | subscriber member id, 2010BA NM109 (a dependant patient, 2000C, has no id of its own in 5010) |
| admit_date | DTP*435 admission date (else the statement from date) |
| discharge_date | DTP*434 statement through date |
| discharge_status | CL103 patient status code |
| age | whole years from the patient's DMG02 birth date (2010CA, else 2010BA) to the admission date |
| sex | DMG03 (M, F, U) |
| payer | payer name, 2010BB NM103 |
| coder_id | 'UNKNOWN' (a claim file carries no coder) |
| billed_drg | HI DR |
| dx1 / dx2..dx25 | HI ABK principal / HI ABF other diagnoses in order, then HI ABN external causes of injury (as claims processing passes them to the grouper); POA = C022-9 |
| px1 / px2..px25 | HI BBR principal / HI BBQ other procedures in order |

Only inpatient claims are read: facility type code CLM05-1 11 or 12 (bill type 11x/12x); others
are skipped. ICD-9 qualifiers (BK, BF, BR, BQ) are read the same way and then fail validation's
ICD-10 checks. extra_columns: total_charge (CLM02), bill_type, admitting_dx (HI ABJ), payer_id, claim_filing_indicator (SBR09), px{n}_date (C022-4).

A re-coded 837I is a review: reviewer_id = submitter id (1000A NM109, the auditor who sent the
re-coded claims), review_date = BHT04 (transaction creation date), discharge_status = CL103,
reviewer_drg = HI DR, notes = the claim's NTE texts.

Findings (the claim is quarantined with the reason): a second principal diagnosis or principal
procedure, more than 25 diagnoses or procedures.
"""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path

import duckdb

from audits.contract import MAX_POSITIONS
from audits.errors import InputError
from audits.ingest.readers.base import FileRead, create_staging
from audits.ingest.readers.detect import UNKNOWN_CODER, Records, age_at, finish_staging

log = logging.getLogger(__name__)

# pyx12 segment errors about spacing only: tolerated (the data is read the same).
_TOLERATED = ("leading space", "trailing element terminators")
_PRINCIPAL_DX, _OTHER_DX = {"ABK", "BK"}, {"ABF", "BF"}
# Where each contract column comes from, for messages (the user's file has segments, not columns).
USER_COLUMNS = {
    "claim_id": "CLM01", "facility_id": "2010AA NM109", "patient_id": "2010BA NM109",
    "admit_date": "DTP*435", "discharge_date": "DTP*434", "discharge_status": "CL103",
    "age": "DMG02 birth date", "sex": "DMG03", "payer": "2010BB NM103", "billed_drg": "HI DR",
    "dx1": "HI ABK", "reviewer_id": "1000A NM109", "review_date": "BHT04", "reviewer_drg": "HI DR",
}
_PRINCIPAL_PX, _OTHER_PX = {"BBR", "BR", "CAH"}, {"BBQ", "BQ"}


def stage(con: duckdb.DuckDBPyConnection, entity: str, paths: list[Path]) -> dict[str, FileRead]:
    """Stage 837I files as `entity` ('claims' or 'reviews')."""
    create_staging(con, entity)
    records = Records(entity)
    reads = {str(path): _read_file(Path(path), entity, records) for path in paths}
    records.write(con)
    finish_staging(con, entity)
    return reads


def _elements(seg) -> list[list[str]]:
    """The segment's elements as lists of component values: e[0][0] is element 01, e[4][2] is
    component 3 of element 05 (CLM05-3). Read from pyx12's parsed segment directly, which is
    much faster than its path-based get_value."""
    return [[component.value for component in element.elements] for element in seg.elements]


def _get(e: list[list[str]], element: int, component: int = 1) -> str | None:
    """Element `element` (1-based), component `component` (1-based); None when absent or blank."""
    if element > len(e) or component > len(e[element - 1]):
        return None
    return e[element - 1][component - 1] or None


def _iso(ccyymmdd: str | None) -> str | None:
    """'20260102' -> '2026-01-02'; anything else as given (validation reports it)."""
    if not ccyymmdd:
        return None
    text = ccyymmdd[:8]
    if len(text) == 8 and text.isdigit():
        return f"{text[:4]}-{text[4:6]}-{text[6:]}"
    return ccyymmdd


class _Claim:
    __slots__ = ("row", "values", "extra", "dx", "external", "px", "notes", "findings", "inpatient")

    def __init__(self, row: int):
        self.row = row
        self.values: dict = {}
        self.extra: dict = {}
        self.dx: list = []   # (principal?, code, poa, segment, column)
        self.external: list = []  # external causes of injury (HI ABN), same shape
        self.px: list = []
        self.notes: list[str] = []
        self.findings: list = []
        self.inpatient = True


def _read_file(path: Path, entity: str, records: Records) -> FileRead:
    try:
        import pyx12.errors
        import pyx12.x12file
    except ImportError:
        raise InputError("reading X12 837I needs the pyx12 package (pip install 'pyx12>=4,<5')") from None

    if not path.exists():
        raise InputError("file not found", file=path)
    if path.stat().st_size == 0:
        raise InputError("file is empty", file=path)
    source = str(path)
    data = path.read_bytes()
    text, interchange = _normalise(data, path)
    n = 0  # segment number in the file, 1-based

    def at(segment: int) -> str:
        return f"segment {segment}, byte offset {_segment_offset(data, interchange, segment)}"

    try:
        reader = pyx12.x12file.X12Reader(io.StringIO(text))
    except pyx12.errors.X12Error as exc:
        raise InputError(f"not a readable X12 interchange ({at(1)}): {exc}", file=path, row=1) from None
    reader.check_837_lx = True
    state = {"submitter": None, "submitter_name": None, "bht_date": None, "provider": {}, "subscriber": {},
             "patient": None, "level": None}
    claim: _Claim | None = None
    in_2300 = False
    read = FileRead(columns=dict(USER_COLUMNS))

    def close_claim():
        nonlocal claim
        if claim is not None:
            if claim.inpatient:
                _emit(claim, entity, source, state, records)
                read.records += 1
            else:
                read.skip("not_inpatient", 1)
        claim = None

    try:
        with reader:
            for seg in reader:
                n += 1
                if reader.err_list:
                    _raise_errors(reader.pop_errors(), path, n, seg, at)
                sid = seg.seg_id
                e = _elements(seg)
                if sid == "GS":
                    version = _get(e, 8) or ""
                    if not version.startswith("005010X223"):
                        kind = " (837P professional)" if version.startswith("005010X222") else ""
                        raise InputError(f"functional group is {version or 'unversioned'}{kind}, not an 837I "
                                         f"institutional claim (005010X223A2) ({at(n)})", file=path, row=n,
                                         column="GS08")
                elif sid == "ST":
                    if _get(e, 1) != "837":
                        raise InputError(f"transaction set {_get(e, 1)} is not an 837 claim ({at(n)})",
                                         file=path, row=n, column="ST01")
                elif sid == "BHT":
                    state["bht_date"] = _iso(_get(e, 4))
                elif sid == "HL":
                    close_claim()
                    in_2300 = False
                    level = _get(e, 3)
                    state["level"] = level
                    if level == "20":
                        state["provider"] = {}
                    elif level == "22":
                        state["subscriber"], state["patient"] = {}, None
                    elif level == "23":
                        state["patient"] = {}
                elif sid == "CLM":
                    close_claim()
                    claim = _Claim(n)
                    in_2300 = True
                    facility = _get(e, 5, 1) or ""
                    frequency = _get(e, 5, 3) or ""
                    claim.values["claim_id"] = _get(e, 1)
                    claim.extra["total_charge"] = _get(e, 2)
                    claim.extra["bill_type"] = facility + frequency
                    claim.inpatient = facility in ("11", "12") or not facility
                elif sid in ("SE", "LX", "SBR") and in_2300:
                    in_2300 = False
                    if sid == "SE":
                        close_claim()
                elif sid == "SE":
                    close_claim()
                elif in_2300:
                    _claim_segment(e, sid, claim, n)
                elif claim is None:  # 2310-2430 (providers, other payers, lines) are not context
                    _context_segment(e, sid, state)
            close_claim()
            reader.cleanup()
            leftover = reader.raw.buffer.strip() if hasattr(reader, "raw") else ""
            errors = reader.pop_errors()
            if leftover:
                raise InputError(f"the file ends inside segment {n + 1} ({leftover[:30]!r} has no segment "
                                 f"terminator {reader.seg_term!r}; {at(n + 1)}): truncated? Nothing was loaded "
                                 "from this file", file=path, row=n + 1)
            if errors:
                _raise_errors(errors, path, n + 1, None, at, at_end=True)
    except pyx12.errors.X12Error as exc:
        raise InputError(f"malformed X12 ({at(n + 1)}): {exc}", file=path, row=n + 1) from None
    return read


_BOM = b"\xef\xbb\xbf"
_ISA_LENGTH = 106  # the ISA segment is fixed length; its last character is the segment terminator
_BETWEEN_SEGMENTS = rb"[ \t\r\n\f\v]*"


def _interchange(data: bytes) -> tuple[int, bytes]:
    """(byte offset of 'ISA', the segment terminator): after a UTF-8 byte-order mark and white
    space, which some tools write before the interchange."""
    start = len(_BOM) if data.startswith(_BOM) else 0
    while start < len(data) and data[start:start + 1].isspace():
        start += 1
    return start, data[start + _ISA_LENGTH - 1:start + _ISA_LENGTH]


def _normalise(data: bytes, path: Path) -> tuple[str, tuple[int, bytes]]:
    """The interchange as pyx12 reads it: byte-order mark and leading white space dropped, and
    line breaks, indentation or blank lines after each segment terminator removed (printers and
    editors add them; they are not data). Non-ASCII bytes are an InputError at their byte offset."""
    start, term = _interchange(data)
    if data[start:start + 3] != b"ISA" or not term:
        raise InputError(f"not an X12 interchange: it must start with a {_ISA_LENGTH}-character ISA segment "
                         f"(byte offset {start})", file=path, row=1)
    body = data[start:]
    if not term.isspace():
        body = re.sub(re.escape(term) + _BETWEEN_SEGMENTS, lambda m: term, body)
    try:
        return body.decode("ascii"), (start, term)
    except UnicodeDecodeError:
        bad = next(i for i in range(start, len(data)) if data[i] > 127)
        segment = data[start:bad].count(term) + 1
        raise InputError(f"the file is not ASCII text, as X12 requires: byte {data[bad]:#04x} at segment "
                         f"{segment}, byte offset {bad}", file=path, row=segment) from None


def _segment_offset(data: bytes, interchange: tuple[int, bytes], segment: int) -> int:
    """Byte offset in the file as given of segment number `segment` (1 = ISA); read again only
    when a refusal names it."""
    start, term = interchange
    if segment <= 1:
        return start
    pattern = re.compile(re.escape(term) + (b"" if term.isspace() else _BETWEEN_SEGMENTS))
    for number, match in enumerate(pattern.finditer(data, start), start=2):
        if number == segment:
            return match.end()
    return len(data)


def _raise_errors(errors, path: Path, n: int, seg, at, at_end: bool = False) -> None:
    for kind, code, message, _value, _line in errors:
        if kind == "seg" and any(text in message for text in _TOLERATED):
            continue
        where = (f"at the end of the file ({at(n)})" if at_end
                 else f"at {at(n)} ({seg.get_seg_id() if seg else ''})")
        raise InputError(f"X12 envelope error {where}: {message}; nothing was loaded from this file",
                         file=path, row=n)


def _context_segment(e: list[list[str]], sid: str, state: dict) -> None:
    """Segments outside the claim loop that a claim inherits: submitter, provider, subscriber, patient."""
    level = state["level"]
    if sid == "NM1":
        entity = _get(e, 1)
        if entity == "41":
            state["submitter"] = _get(e, 9)
            state["submitter_name"] = _get(e, 3)
        elif entity == "85" and level == "20":
            state["provider"]["npi"] = _get(e, 9) if _get(e, 8) == "XX" else None
            state["provider"]["id"] = _get(e, 9)
        elif entity == "IL" and level == "22":
            state["subscriber"]["member_id"] = _get(e, 9)
        elif entity == "PR" and level == "22":
            state["subscriber"]["payer"] = _get(e, 3)
            state["subscriber"]["payer_id"] = _get(e, 9)
    elif sid == "DMG":
        person = state["patient"] if level == "23" and state["patient"] is not None else state["subscriber"]
        person["birth"] = _iso(_get(e, 2))
        person["sex"] = _get(e, 3)
    elif sid == "SBR" and level == "22":
        state["subscriber"]["filing"] = _get(e, 9)


def _claim_segment(e: list[list[str]], sid: str, claim: _Claim, n: int) -> None:
    """Segments of the 2300 loop."""
    if sid == "DTP":
        qualifier, fmt, value = _get(e, 1), _get(e, 2), _get(e, 3) or ""
        if qualifier == "434":
            start, _, end = value.partition("-")
            claim.values["statement_from"] = _iso(start)
            claim.values["discharge_date"] = _iso(end or start)
        elif qualifier == "435":
            claim.values["admit_date"] = _iso(value[:8]) if fmt in ("D8", "DT") else value
    elif sid == "CL1":
        claim.values["discharge_status"] = _get(e, 3)
    elif sid == "NTE":
        if _get(e, 2):
            claim.notes.append(_get(e, 2))
    elif sid == "HI":
        for i, parts in enumerate(e, start=1):
            qualifier = parts[0]
            if not qualifier:
                continue
            code = parts[1] if len(parts) > 1 else None
            column = f"HI{i:02d}-2 ({qualifier})"
            if qualifier in _PRINCIPAL_DX or qualifier in _OTHER_DX:
                poa = parts[8] if len(parts) > 8 else None
                claim.dx.append((qualifier in _PRINCIPAL_DX, code, poa, n, column))
            elif qualifier in _PRINCIPAL_PX or qualifier in _OTHER_PX:
                date = parts[3] if len(parts) > 3 else None
                claim.px.append((qualifier in _PRINCIPAL_PX, code, _iso(date), n, column))
            elif qualifier == "DR":
                claim.values["drg"] = code
            elif qualifier in ("ABJ", "BJ"):
                claim.extra["admitting_dx"] = code
            elif qualifier in ("ABN", "BN"):  # after the other diagnoses (see _emit)
                poa = parts[8] if len(parts) > 8 else None
                claim.external.append((False, code, poa, n, column))


def _positions(items: list, kind: str, claim: _Claim) -> list:
    """Principal at 1, the others in file order from 2; a second principal or more than 25 codes
    is a finding."""
    principal = [x for x in items if x[0]]
    others = [x for x in items if not x[0]]
    what = "diagnosis" if kind == "dx" else "procedure"
    for extra in principal[1:]:
        claim.findings.append((extra[3], extra[4], f"second_principal_{kind}", extra[1],
                               f"more than one principal {what} on this claim; the claim is quarantined "
                               "rather than one of them picked"))
    placed = [(1, *principal[0][1:])] if principal else []
    placed += [(p, *x[1:]) for p, x in enumerate(others, start=2)]
    if len(placed) > MAX_POSITIONS:
        last = placed[MAX_POSITIONS]
        claim.findings.append((last[3], last[4], f"too_many_{kind}", str(len(placed)),
                               f"{len(placed)} {what} codes; the contract holds {MAX_POSITIONS}"))
        placed = placed[:MAX_POSITIONS]
    return placed


def _emit(claim: _Claim, entity: str, source: str, state: dict, records: Records) -> None:
    v = claim.values
    claim_id = v.get("claim_id")
    dx = _positions(claim.dx + claim.external, "dx", claim)
    px = _positions(claim.px, "px", claim)
    extra = dict(claim.extra)
    for position, code, date, *_ in px:
        extra[f"px{position}_date"] = date
    if entity == "claims":
        subscriber, provider = state["subscriber"], state["provider"]
        person = state["patient"] if state["patient"] else subscriber
        admit = v.get("admit_date") or v.get("statement_from")
        age = age_at(person.get("birth"), admit)
        values = {
            "claim_id": claim_id, "facility_id": provider.get("npi") or provider.get("id"),
            "patient_id": subscriber.get("member_id"), "admit_date": admit,
            "discharge_date": v.get("discharge_date"), "discharge_status": v.get("discharge_status"),
            "age": None if age is None else str(age), "sex": person.get("sex"),
            "payer": subscriber.get("payer"), "coder_id": UNKNOWN_CODER, "billed_drg": v.get("drg"),
        }
        extra.update(payer_id=subscriber.get("payer_id"), claim_filing_indicator=subscriber.get("filing"))
        if claim.notes:
            extra["notes"] = " / ".join(claim.notes)
    else:
        values = {
            "claim_id": claim_id, "reviewer_id": state["submitter"] or state["submitter_name"],
            "review_date": state["bht_date"], "discharge_status": v.get("discharge_status"),
            "reviewer_drg": v.get("drg"), "notes": " / ".join(claim.notes) or None,
        }
    records.add_header(source, claim.row, values, extra)
    for kind, placed in (("dx", dx), ("px", px)):
        for position, code, poa_or_date, segment, column in placed:
            records.add_code(claim_id, kind, position, code, poa_or_date if kind == "dx" else None,
                             source, segment, column)
    for segment, column, rule, value, reason in claim.findings:
        records.add_finding(source, segment, claim_id, column, rule, value, reason)
