"""Which reader reads a file: the format registry, format detection, and the helpers the
non-canonical readers share for findings and row buffers (the staging tables themselves are made
by `audits.ingest.readers.base.create_staging`).

Formats (the value of `InputFiles.formats[entity]` and of the CLI's `--format`):

- `canonical`: the contract's own layout, wide or long (`audits.ingest.readers.wide` / `long`).
- `tuva`: Tuva Project input layer `medical_claim` (+ `eligibility` for age and sex).
- `cms`: CMS CCW / BFD inpatient claims RIF (+ the beneficiary file for age and sex).
- `x12`: X12 837I institutional claims, 005010X223A2.
- `fhir`: FHIR R4 ExplanationOfBenefit (CARIN Blue Button inpatient institutional, CMS BFD), NDJSON
  or Bundle JSON, with the Patient, Organization and Coverage resources it references.
- `auto`: detected per file from its first bytes / header row (`detect_format`).

Every reader writes the staging tables of `audits.ingest.readers` (`stg_<entity>`, `stg_<entity>_codes`)
plus `stg_<entity>_findings`: problems the reader found while mapping its layout (lines of one
claim that disagree, two principal diagnoses...), one row per problem with the reason in words.
Validation quarantines the claims named there when it reads that table (`READER_FINDINGS` in
`audits.ingest.validation`); until it does, `finish_staging` makes validation reject those claims through
its existing rules (see there).
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from types import ModuleType

import duckdb
import pyarrow as pa

from audits.errors import InputError
from audits.ingest.readers.base import header_columns

FORMATS = ("canonical", "tuva", "cms", "x12", "fhir")
ALIASES = {"wide": "canonical", "long": "canonical", "837i": "x12", "837": "x12", "edi": "x12",
           "ccw": "cms", "rif": "cms", "bfd": "cms", "carin": "fhir", "eob": "fhir"}
_MODULES = {"tuva": "audits.ingest.readers.tuva", "cms": "audits.ingest.readers.cms", "x12": "audits.ingest.readers.x12",
            "fhir": "audits.ingest.readers.fhir"}

# Payer feeds carry no coder: claims from them get this coder_id (documented in the README), so
# they load; coder scorecards then show them as one "UNKNOWN" coder.
UNKNOWN_CODER = "UNKNOWN"

FINDING_COLUMNS = ("_source_file", "_source_row", "claim_id", "column", "rule", "value", "reason")


def normalise_format(name: str | None) -> str:
    """'837I' -> 'x12'; None -> 'canonical'; an unknown name is an InputError listing the choices."""
    if name is None or not str(name).strip():
        return "canonical"
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    if key not in FORMATS + ("auto",):
        raise InputError(f"unknown input format {name!r}: use one of {', '.join(FORMATS + ('auto',))}")
    return key


def reader(fmt: str) -> ModuleType:
    """The module reading `fmt`; each has `stage(con, entity, paths)`."""
    return importlib.import_module(_MODULES[normalise_format(fmt)])


def entity_format(requested: str | None, paths: list[Path], has_long_files: bool = False) -> str:
    """The format of one entity's files: as requested, or detected when 'auto'."""
    fmt = normalise_format(requested)
    if fmt == "auto":
        if has_long_files or not paths:
            return "canonical"
        found = {detect_format(p) for p in paths}
        if len(found) > 1:
            names = ", ".join(f"{Path(p).name}: {detect_format(p)}" for p in paths)
            raise InputError(f"the files of one entity are in different layouts ({names}); "
                             "give each layout as its own load or name the format", file=paths[0])
        fmt = found.pop()
    if fmt != "canonical" and has_long_files:
        raise InputError(f"the {fmt} layout takes no separate diagnoses/procedures files: "
                         "its codes are in the claim file itself", file=paths[0] if paths else None)
    return fmt


# Column names that identify a tabular layout (lower case). A file matches the first layout that
# has all the names of one of its signatures.
_SIGNATURES = (
    ("tuva", ({"claim_id", "claim_line_number", "diagnosis_code_1"},
              {"person_id", "birth_date", "gender", "enrollment_start_date"},
              {"patient_id", "birth_date", "gender", "enrollment_start_date"})),
    ("cms", ({"clm_id", "icd_dgns_cd1"}, {"clm_id", "prncpal_dgns_cd"},
             {"bene_id", "bene_birth_dt"})),
    ("canonical", ({"claim_id", "dx1"}, {"claim_id", "position", "code"},
                   {"claim_id", "facility_id", "discharge_date"}, {"claim_id", "reviewer_id"})),
)


def detect_format(path: Path) -> str:
    """Guess a file's layout from its first bytes (X12 'ISA', FHIR JSON) or its column names."""
    path = Path(path)
    if not path.exists():
        raise InputError("file not found", file=path)
    if path.suffix.lower() in (".parquet", ".pq"):
        columns = _parquet_columns(path)
    else:
        with open(path, "rb") as fh:
            head = fh.read(65536)
        text = head.decode("utf-8-sig", errors="replace").lstrip()
        if text.startswith("ISA"):
            return "x12"
        if text.startswith(("{", "[")):
            if '"resourceType"' in text:
                return "fhir"
            raise InputError("JSON file without a FHIR resourceType: not a layout this tool reads",
                             file=path)
        first = text.splitlines()[0] if text else ""
        delim = "|" if first.count("|") > first.count(",") else ","
        columns = {c.strip().strip('"').lower() for c in first.split(delim)}
    for fmt, signatures in _SIGNATURES:
        if any(sig <= columns for sig in signatures):
            return fmt
    raise InputError("cannot tell the layout of this file (not the canonical layout, Tuva "
                     "medical_claim/eligibility, a CMS inpatient or beneficiary file, an X12 837I or "
                     "FHIR JSON): name the format", file=path, row=0)


def _parquet_columns(path: Path) -> set[str]:
    import pyarrow.parquet as pq

    try:
        return {name.strip().lower() for name in pq.read_schema(path).names}
    except Exception as exc:  # noqa: BLE001 - any unreadable parquet is the user's file problem
        raise InputError(f"cannot read Parquet file: {exc}", file=path) from None


# ---------------------------------------------------------------------------------------------
# Staging helpers shared by the readers
# ---------------------------------------------------------------------------------------------

class Records:
    """Column-wise buffers of staging rows built in Python (X12 and FHIR readers), written to
    DuckDB in one Arrow insert per table."""

    def __init__(self, entity: str):
        self.entity = entity
        self.header: dict[str, list] = {c: [] for c in ("_source_file", "_source_row")
                                        + header_columns(entity) + ("extra_columns",)}
        self.codes: dict[str, list] = {c: [] for c in ("claim_id", "kind", "position", "position_raw",
                                                       "code_raw", "poa_raw", "_source_file",
                                                       "_source_row", "_source_column")}
        self.findings: dict[str, list] = {c: [] for c in FINDING_COLUMNS}

    def add_header(self, source_file: str, source_row: int, values: dict, extra: dict | None) -> None:
        self.header["_source_file"].append(source_file)
        self.header["_source_row"].append(source_row)
        for column in header_columns(self.entity):
            value = values.get(column)
            self.header[column].append(None if value is None or value == "" else str(value))
        extra = {k: v for k, v in (extra or {}).items() if v not in (None, "", [], {})}
        self.header["extra_columns"].append(json.dumps(extra, separators=(",", ":")) if extra else None)

    def add_code(self, claim_id, kind: str, position: int, code, poa, source_file: str,
                 source_row: int, source_column: str) -> None:
        c = self.codes
        c["claim_id"].append(claim_id)
        c["kind"].append(kind)
        c["position"].append(position)
        c["position_raw"].append(str(position))
        c["code_raw"].append(code or None)
        c["poa_raw"].append(poa or None)
        c["_source_file"].append(source_file)
        c["_source_row"].append(source_row)
        c["_source_column"].append(source_column)

    def add_finding(self, source_file: str, source_row: int, claim_id, column: str, rule: str,
                    value, reason: str) -> None:
        for key, item in zip(FINDING_COLUMNS, (source_file, source_row, claim_id, column, rule,
                                               None if value is None else str(value), reason)):
            self.findings[key].append(item)

    def write(self, con: duckdb.DuckDBPyConnection) -> None:
        """Append the buffered rows to the staging tables (created by `create_staging`)."""
        for suffix, data, types in (
            ("", self.header, {"_source_row": pa.int64()}),
            ("_codes", self.codes, {"_source_row": pa.int64(), "position": pa.int32()}),
            ("_findings", self.findings, {"_source_row": pa.int64()}),
        ):
            if not next(iter(data.values())):
                continue
            table = pa.table({k: pa.array(v, type=types.get(k, pa.string())) for k, v in data.items()})
            name = f"records_{self.entity}{suffix}"
            con.register(name, table)
            try:
                con.execute(f"INSERT INTO stg_{self.entity}{suffix} BY NAME SELECT * FROM {name}")
            finally:
                con.unregister(name)


def findings_hook_available() -> bool:
    """True once validation quarantines the claims of `stg_<entity>_findings` itself."""
    from audits.ingest import validation

    return bool(getattr(validation, "READER_FINDINGS", False))


def finish_staging(con: duckdb.DuckDBPyConnection, entity: str) -> None:
    """Make sure every claim named in `stg_<entity>_findings` is quarantined.

    Once validation reads the findings table (READER_FINDINGS) this does nothing: the finding is
    the quarantine reason. Before that, the claim is made to fail an existing rule: a second copy
    of its header row at the row of the finding (validation rejects both copies as
    duplicate_claim_id / duplicate_review), or, where the finding sits on the header's own row
    (one JSON resource), its diagnoses are withheld (principal_dx_missing).
    """
    if findings_hook_available():
        return
    if not con.execute(f"SELECT count(*) FROM stg_{entity}_findings").fetchall()[0][0]:
        return
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE finding_rows AS
        SELECT DISTINCT ON (f.claim_id) f.claim_id, f._source_file, f._source_row
        FROM stg_{entity}_findings f
        WHERE f.claim_id IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM stg_{entity} s
            WHERE s._source_file = f._source_file AND s._source_row = f._source_row)
        ORDER BY f.claim_id, f._source_file, f._source_row""")
    con.execute(f"""
        INSERT INTO stg_{entity}
        SELECT s.* REPLACE (r._source_file AS _source_file, r._source_row AS _source_row)
        FROM (SELECT DISTINCT ON (claim_id) * FROM stg_{entity} ORDER BY claim_id, _source_file, _source_row) s
        JOIN finding_rows r USING (claim_id)""")
    con.execute(f"""
        DELETE FROM stg_{entity}_codes WHERE kind = 'dx' AND claim_id IN (
            SELECT claim_id FROM stg_{entity}_findings WHERE claim_id IS NOT NULL
            EXCEPT SELECT claim_id FROM finding_rows)""")
    con.execute("DROP TABLE finding_rows")


def age_at(birth: str | None, on: str | None) -> int | None:
    """Whole years from ISO date `birth` to ISO date `on` (age at admission), None if unknown."""
    if not birth or not on or len(birth) < 10 or len(on) < 10:
        return None
    try:
        by, bm, bd = int(birth[:4]), int(birth[5:7]), int(birth[8:10])
        y, m, d = int(on[:4]), int(on[5:7]), int(on[8:10])
    except ValueError:
        return None
    return y - by - ((m, d) < (bm, bd))


def age_sql(birth: str, on: str) -> str:
    """Age in whole years at date `on` as SQL over two DATE expressions (NULL if either is)."""
    return (f"CAST(year({on}) - year({birth}) - CASE WHEN strftime({on}, '%m%d') < strftime({birth}, '%m%d') "
            f"THEN 1 ELSE 0 END AS VARCHAR)")
