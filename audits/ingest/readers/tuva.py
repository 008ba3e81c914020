"""Tuva Project input layer: `medical_claim` (one row per claim line) + `eligibility` (age, sex).

Only inpatient institutional claims are read: bill type 11x or 12x (a leading 0 is ignored). A
claim's header fields repeat on each of its lines; they are taken once per claim. Lines of one
claim that disagree on a header field (two different diagnosis_code_1, two discharge dispositions...)
are a finding: the claim is quarantined with the field and both values, never loaded with one value
picked. A blank on one line and a value on another is not a disagreement (some sources fill the
header on the first line only).

Mapping (medical_claim -> contract):

| contract | Tuva |
|---|---|
| claim_id | claim_id |
| facility_id | facility_npi, else billing_npi |
| patient_id | person_id (patient_id in Tuva < 0.14) |
| admit_date, discharge_date | admission_date, discharge_date (else claim_start_date, claim_end_date) |
| discharge_status | discharge_disposition_code |
| age | whole years from eligibility.birth_date to the admission date |
| sex | eligibility.gender: male M, female F, anything else U |
| payer | payer |
| coder_id | a `coder_id` column if the file has one, else 'UNKNOWN' (payer data carries no coder) |
| service_line | a `service_line` column if present, else blank |
| billed_drg | drg_code where drg_code_type = 'ms-drg' (ms_drg_code in older Tuva), zero-padded to 3 |
| dx1..dx25, poa1..poa25 | diagnosis_code_1..25, diagnosis_poa_1..25 (POA '1' = exempt, kept) |
| px1..px25 | procedure_code_1..25 |

extra_columns: paid_amount (sum over the claim's lines, each claim_line_number counted once, so a
line repeated in the file or in two data sources is not counted twice), claim_lines, bill_type_code,
drg_code_type / drg_code when not an MS-DRG, data_source, px{n}_date (procedure_date_n).

Reviews in this layout (a re-coded medical_claim): reviewer_id from a `reviewer_id` column, else
data_source, else 'UNKNOWN'; review_date from a `review_date` column, else file_date; reviewer_drg and
discharge_status as above; notes from a `notes` column.

The line-collapsing engine here (`stage_claim_lines`) is shared with the CMS RIF reader.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import duckdb

from audits.codes import normalise_code_sql, normalise_poa_sql
from audits.contract import MAX_POSITIONS
from audits.errors import InputError
from audits.ingest.readers.base import (FileRead, _csv_source, _sql_str, create_staging, drop_read, header_columns,
                                        header_spelling, number_rows, read_raw)
from audits.ingest.readers.detect import UNKNOWN_CODER, age_sql, finish_staging
from audits.ingest.validation import parse_date_sql
from audits.warehouse import quote_ident

log = logging.getLogger(__name__)

POSITIONS = range(1, MAX_POSITIONS + 1)
# External-cause diagnoses a layout carries apart from dx1..dx25 (CMS ICD_DGNS_E_CD1..12): loaded
# as secondary diagnoses after the others (edx1.., with POA epoa1..), as claims processing passes
# them to the grouper.
EXTERNAL_CAUSES = range(1, 13)
CODE_FIELDS = (tuple(f"{k}{p}" for k in ("dx", "poa", "px", "pxdate") for p in POSITIONS)
               + tuple(f"{k}{p}" for k in ("edx", "epoa") for p in EXTERNAL_CAUSES))


def col(columns: list[str], *names: str) -> str:
    """The first of `names` the file has, quoted, or NULL (text)."""
    for name in names:
        if name in columns:
            return quote_ident(name)
    return "CAST(NULL AS VARCHAR)"


def drg_pad_sql(expr: str) -> str:
    """DRG '69' -> '069' (numeric codes of 1-3 digits); anything else kept for validation to judge."""
    return f"CASE WHEN regexp_full_match({expr}, '[0-9]{{1,3}}') THEN lpad({expr}, 3, '0') ELSE {expr} END"


@dataclass
class LineLayout:
    """How one tabular claim-line layout maps into the contract (see `stage_claim_lines`)."""

    name: str
    is_lines: Callable[[list[str]], bool]
    is_people: Callable[[list[str]], bool]
    # SQL expression per canonical field (claim_id, line_key, line_amount, the contract header
    # fields, person_key, birth_date, sex_code, extras, dx1.., poa1.., px1.., pxdate1..) over the
    # raw line table, and the conditions choosing the lines read: [(skip reason, SQL)], in order
    # (a claim left out is counted under the first condition it fails; see base.SKIP_REASONS).
    line_select: Callable[[list[str], str], dict[str, str]]
    line_filter: Callable[[list[str], str], list[tuple[str, str]]]
    # Canonical field -> name of the column it came from (for quarantine messages).
    source_name: Callable[[str], str]
    people_select: Callable[[list[str]], dict[str, str]]
    people_hint: str
    delim: Callable[[Path], str] = field(default=lambda path: ",")
    # Optional per-line checks: (SQL condition over the raw line, column, value SQL, reason).
    line_checks: Callable[[list[str]], list[tuple[str, str, str, str]]] = field(default=lambda cols: [])


def _header_fields(entity: str, extra: tuple[str, ...]) -> tuple[str, ...]:
    """Fields compared across the lines of a claim: contract header fields (age/sex come from the
    people file), the person key and the layout's extra header fields."""
    skip = {"claim_id", "age", "sex"}
    return tuple(c for c in header_columns(entity) if c not in skip) + ("person_key", "birth_date",
                                                                          "sex_code") + extra


def stage_claim_lines(con: duckdb.DuckDBPyConnection, entity: str, paths: list[Path], layout: LineLayout,
                      extra_fields: tuple[str, ...]) -> dict[str, FileRead]:
    """Read claim-line files (+ people files) into the staging tables, one claim per claim_id.
    Returns {claim-line file: FileRead} (records = claims read; people files are not listed)."""
    create_staging(con, entity)
    fields = _header_fields(entity, extra_fields)
    compare = fields + CODE_FIELDS
    line_files, people_files = [], []
    for i, path in enumerate(paths):
        raw = f"raw_{layout.name}_{entity}_{i}"
        columns = _read(con, Path(path), raw, layout, entity)
        if layout.is_lines(columns):
            line_files.append((path, raw, columns))
        elif layout.is_people(columns):
            people_files.append((path, raw, columns))
        else:
            raise InputError(f"not a {layout.name} claim-line or {layout.people_hint} file (its columns "
                             "do not match the layout)", file=path, row=0)
    if not line_files:
        if paths:
            raise InputError(f"no {layout.name} claim-line file among the {entity} files", file=paths[0])
        return {}
    con.execute("DROP TABLE IF EXISTS claim_lines")
    reads: dict[str, FileRead] = {}
    for n, (path, raw, columns) in enumerate(line_files):
        select = layout.line_select(columns, entity)
        conditions = layout.line_filter(columns, raw)
        where = " AND ".join(f"coalesce({sql}, false)" for _, sql in conditions) or None
        sql_cols = ", ".join(f"{select.get(name, 'CAST(NULL AS VARCHAR)')} AS {name}"
                             for name in ("claim_id", "line_key", "line_amount") + compare)
        # _ord orders lines across files; version hashes the header fields (identical lines, the
        # usual case, share one version and need no field-by-field comparison).
        body = (f"SELECT _source_file, _source_row, {n} * 10000000000 + _source_row AS _ord, {sql_cols} "
                f"FROM {raw}" + (f" WHERE {where}" if where else ""))
        sql = f"SELECT *, hash({', '.join(compare)}) AS version FROM ({body})"
        if n == 0:
            con.execute(f"CREATE TEMP TABLE claim_lines AS {sql}")
        else:
            con.execute(f"INSERT INTO claim_lines BY NAME {sql}")
        reads[str(path)] = _file_read(con, raw, n, select["claim_id"], conditions)
        reads[str(path)].columns = _user_columns(Path(path), layout, compare, people_files)
        for condition, column, value, reason in layout.line_checks(columns):
            con.execute(f"""
                INSERT INTO stg_{entity}_findings
                SELECT _source_file, _source_row, {select['claim_id']}, {_sql_str(column)}, 'claim_fields_disagree',
                       {value}, {_sql_str(reason)}
                FROM {raw} WHERE {condition}""" + (f" AND ({where})" if where else ""))
        drop_read(con, raw)
    skipped = con.execute("SELECT count(*) FROM claim_lines WHERE claim_id IS NULL").fetchall()[0][0]
    _collapse(con, entity, layout, fields, extra_fields)
    _people(con, entity, layout, people_files, line_files[0][0])
    _stage(con, entity, layout, fields, extra_fields)
    for _, raw, _ in people_files:
        drop_read(con, raw)
    con.execute("DROP TABLE IF EXISTS claim_lines")
    con.execute("DROP TABLE IF EXISTS claim_heads")
    con.execute("DROP TABLE IF EXISTS claim_people")
    if skipped:
        log.info("%s lines without a claim_id were staged as one claim without an id", skipped)
    finish_staging(con, entity)
    return reads


def _user_columns(path: Path, layout: LineLayout, fields: tuple[str, ...], people_files) -> dict[str, str]:
    """Contract column -> the file's column it came from, as the file spells it (age and sex: the
    people file's birth date and sex columns); also each column's own spelling (CMS is upper case)."""
    spelled = header_spelling(path, layout.delim(path))
    for people_path, _, _ in people_files[:1]:
        spelled = {**header_spelling(Path(people_path), layout.delim(Path(people_path))), **spelled}
    out = dict(spelled)
    for ours in ("claim_id",) + fields + ("age", "sex"):
        source = layout.source_name({"age": "birth_date", "sex": "sex_code"}.get(ours, ours))
        if source in spelled and ours != source:
            out[ours] = spelled[source]
    return out


def _file_read(con: duckdb.DuckDBPyConnection, raw: str, n: int, claim_id: str,
               conditions: list[tuple[str, str]]) -> FileRead:
    """Claims of line file number `n` read (in claim_lines), and those left out by the first
    condition they fail (counted from the raw lines only when some were left out)."""
    kept_lines, kept = con.execute(
        "SELECT count(*), count(DISTINCT coalesce(claim_id, '#' || _source_row)) FROM claim_lines "
        f"WHERE _ord BETWEEN {n} * 10000000000 AND {n + 1} * 10000000000 - 1").fetchall()[0]
    if kept_lines == con.execute(f"SELECT count(*) FROM {raw}").fetchall()[0][0]:
        return FileRead(records=int(kept))
    key = f"coalesce({claim_id}, '#' || _source_row)"  # a line without claim_id counts once
    counts = []
    for n, (_, sql) in enumerate(conditions):
        before = "".join(f" AND coalesce({c}, false)" for _, c in conditions[:n])
        counts.append(f"count(DISTINCT {key}) FILTER (WHERE NOT coalesce({sql}, false){before})")
    kept = " AND ".join(f"coalesce({c}, false)" for _, c in conditions) or "true"
    row = con.execute(f"SELECT count(DISTINCT {key}) FILTER (WHERE {kept}) "
                      f"{''.join(', ' + c for c in counts)} FROM {raw}").fetchall()[0]
    read = FileRead(records=int(row[0]))
    for (reason, _), count in zip(conditions, row[1:]):
        read.skip(reason, count)
    return read


def _read(con: duckdb.DuckDBPyConnection, path: Path, raw: str, layout: LineLayout, entity: str) -> list[str]:
    """Like `read_raw` (columns lower-cased, text, trimmed, blank -> NULL, `_source_file`,
    `_source_row`), but keeping only the columns the layout reads: claim-line extracts are wide (a
    CMS RIF has ~230 columns). Any problem with the file falls back to `read_raw`, which says
    where it is."""
    delim = layout.delim(path)
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            source = f"read_parquet({_sql_str(str(path))})"
        elif suffix in (".csv", ".txt") and path.exists() and path.stat().st_size:
            source = _csv_source(con, path, delim)
        else:
            return read_raw(con, path, raw, delim=delim)
        names = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()]
        lowered = [n.strip().lower() for n in names]
        if len(set(lowered)) != len(lowered):
            return read_raw(con, path, raw, delim=delim)
        if layout.is_lines(lowered):
            wanted = " ".join(list(layout.line_select(lowered, entity).values())
                              + [sql for _, sql in layout.line_filter(lowered, raw)]
                              + [" ".join(check[:3]) for check in layout.line_checks(lowered)])
        elif layout.is_people(lowered):
            wanted = " ".join(layout.people_select(lowered).values())
        else:
            return lowered
        keep = [(orig, low) for orig, low in zip(names, lowered) if re.search(rf"\b{re.escape(low)}\b", wanted)]
        select = ", ".join(f"nullif(trim(CAST({quote_ident(orig)} AS VARCHAR)), '') AS {quote_ident(low)}"
                           for orig, low in keep)
        drop_read(con, raw)
        con.execute(f"CREATE TEMP TABLE {raw}__file AS SELECT {select} FROM {source}")
        number_rows(con, raw, path)
        return lowered
    except (duckdb.Error, InputError):
        return read_raw(con, path, raw, delim=delim)


def _compare_key(name: str) -> str:
    """The value compared across lines: codes normalised, POA upper case, the rest as given."""
    if (name[:2] in ("dx", "px") and name[2:].isdigit()) or (name[:3] == "edx" and name[3:].isdigit()):
        return normalise_code_sql(name)
    if name.lstrip("e").startswith("poa") and name.lstrip("e")[3:].isdigit():
        return normalise_poa_sql(name)
    return name


def _collapse(con: duckdb.DuckDBPyConnection, entity: str, layout: LineLayout, fields: tuple[str, ...],
              extra_fields: tuple[str, ...]) -> None:
    """One row per claim: its header fields, a `conflict` flag, the first line's file/row, and the
    amount summed over distinct lines (claim_line_number counted once).

    Claims whose lines all carry the same header (one version) take their first line. The others
    take, per field, the one non-blank value, and are in conflict where a field has two."""
    compare = fields + CODE_FIELDS
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE claim_heads AS
        WITH claims AS (
            SELECT claim_id, min(_ord) AS first_ord, count(DISTINCT version) AS versions
            FROM claim_lines GROUP BY claim_id),
        per_line AS (
            SELECT claim_id, line_key, arg_min(TRY_CAST(line_amount AS DECIMAL(18, 2)), _ord) AS amount
            FROM claim_lines GROUP BY claim_id, line_key),
        amounts AS (
            SELECT claim_id, sum(amount) AS line_amount_sum, count(*) AS line_count
            FROM per_line GROUP BY claim_id)
        SELECT l._source_file, l._source_row, l.claim_id, {", ".join(f"l.{c}" for c in compare)},
               c.versions > 1 AS mixed, false AS conflict, a.line_amount_sum, a.line_count
        FROM claims c JOIN claim_lines l ON l._ord = c.first_ord AND l.claim_id IS NOT DISTINCT FROM c.claim_id
        JOIN amounts a ON a.claim_id IS NOT DISTINCT FROM c.claim_id""")
    if not con.execute("SELECT count(*) FROM claim_heads WHERE mixed").fetchall()[0][0]:
        return
    values = ", ".join(f"max({c}) AS {c}" for c in compare)
    conflict = " OR ".join(f"(min({_compare_key(c)}) IS DISTINCT FROM max({_compare_key(c)}))"
                           for c in compare)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE claim_merged AS
        SELECT claim_id, {values}, ({conflict}) AS conflict FROM claim_lines
        WHERE claim_id IN (SELECT claim_id FROM claim_heads WHERE mixed) GROUP BY claim_id""")
    con.execute(f"""
        UPDATE claim_heads h SET {", ".join(f"{c} = m.{c}" for c in compare)}, conflict = m.conflict
        FROM claim_merged m WHERE h.claim_id = m.claim_id""")
    con.execute("DROP TABLE claim_merged")
    if not con.execute("SELECT count(*) FROM claim_heads WHERE conflict").fetchall()[0][0]:
        return
    # Findings: for each disagreeing field, its distinct values in line order; the finding points at
    # the first line that brings the second value.
    keyed = ", ".join(f"CAST({_compare_key(c)} AS VARCHAR) AS {c}" for c in compare)
    source_names = ", ".join(f"({_sql_str(c)}, {_sql_str(layout.source_name(c))})" for c in compare)
    con.execute(f"""
        INSERT INTO stg_{entity}_findings
        WITH l AS (
            SELECT _source_file, _source_row, _ord, claim_id, {keyed} FROM claim_lines
            WHERE claim_id IN (SELECT claim_id FROM claim_heads WHERE conflict)),
        u AS (UNPIVOT l ON {", ".join(compare)} INTO NAME field VALUE value),
        firsts AS (
            SELECT claim_id, field, value, arg_min(_source_file, _ord) AS f, arg_min(_source_row, _ord) AS r,
                   min(_ord) AS o
            FROM u GROUP BY ALL),
        ranked AS (
            SELECT *, row_number() OVER (PARTITION BY claim_id, field ORDER BY o) AS k,
                   count(*) OVER (PARTITION BY claim_id, field) AS n
            FROM firsts),
        names(field, source) AS (VALUES {source_names})
        SELECT any_value(f) FILTER (WHERE k = 2), any_value(r) FILTER (WHERE k = 2), claim_id,
               any_value(names.source), 'claim_lines_disagree',
               string_agg(value, ' | ' ORDER BY k),
               'lines of this claim disagree on ' || any_value(names.source)
                   || ', a claim-level field (' || string_agg(value || ' from row ' || r, ', ' ORDER BY k)
                   || '); the claim is quarantined rather than one value picked'
        FROM ranked JOIN names USING (field)
        WHERE n > 1
        GROUP BY claim_id, field
        ORDER BY claim_id, field""")


def _people(con: duckdb.DuckDBPyConnection, entity: str, layout: LineLayout, people_files,
            first_file: Path) -> None:
    """Birth date and sex per person, from the people files (eligibility / beneficiary)."""
    con.execute("CREATE OR REPLACE TEMP TABLE claim_people (person_key VARCHAR, birth_date VARCHAR, "
                "sex_code VARCHAR, _order VARCHAR)")
    for path, raw, columns in people_files:
        sel = layout.people_select(columns)
        con.execute(f"""INSERT INTO claim_people SELECT {sel['person_key']}, {sel['birth_date']},
                        {sel['sex_code']}, {sel.get('order', 'NULL')} FROM {raw}""")
    if entity == "claims" and not people_files:
        has_inline = con.execute("SELECT count(birth_date) FROM claim_heads").fetchall()[0][0]
        if not has_inline:
            raise InputError(f"no birth date for age and sex: give the {layout.people_hint} file with "
                             "the claims (both as claims files)", file=first_file)


def _stage(con: duckdb.DuckDBPyConnection, entity: str, layout: LineLayout, fields: tuple[str, ...],
           extra_fields: tuple[str, ...]) -> None:
    known = header_columns(entity)
    birth = "coalesce(h.birth_date, p.birth_date)"
    parts = []
    for c in known:
        if c == "claim_id":
            parts.append("h.claim_id")
        elif c == "age":
            parts.append(f"{age_sql(parse_date_sql(birth), parse_date_sql('h.admit_date'))} AS age")
        elif c == "sex":
            parts.append("coalesce(h.sex_code, p.sex_code) AS sex")
        elif c in ("coder_id", "reviewer_id"):  # payer data names no coder or reviewer
            parts.append(f"coalesce(h.{c}, '{UNKNOWN_CODER}') AS {c}")
        else:
            parts.append(f"h.{c}")
    extras = [(e, f"h.{e}") for e in extra_fields]
    if "paid_amount" not in extra_fields:  # a line-level amount, summed once per line
        extras.append(("paid_amount", "CAST(h.line_amount_sum AS VARCHAR)"))
    extras.append(("claim_lines", "CAST(h.line_count AS VARCHAR)"))
    extras += [(f"px{p}_date", f"h.pxdate{p}") for p in POSITIONS]
    # Only the keys that have a value, as text like the wide reader's extra_columns (concat_ws
    # skips the NULL pairs).
    pairs = ", ".join(f"'\"{k}\":' || to_json({v})" for k, v in extras)
    extra_sql = f"CAST(nullif('{{' || concat_ws(',', {pairs}) || '}}', '{{}}') AS JSON)"
    people = ("(SELECT DISTINCT ON (person_key) * FROM claim_people WHERE person_key IS NOT NULL "
              "ORDER BY person_key, _order DESC NULLS LAST)")
    con.execute(f"""
        INSERT INTO stg_{entity}
        SELECT h._source_file, h._source_row, {", ".join(parts)}, {extra_sql} AS extra_columns
        FROM claim_heads h LEFT JOIN {people} p ON p.person_key = h.person_key""")
    selects = []
    for kind in ("dx", "px"):
        codes = ", ".join(f"{kind}{p}" for p in POSITIONS)
        poas = ", ".join(f"poa{p}" if kind == "dx" else "CAST(NULL AS VARCHAR)" for p in POSITIONS)
        names = ", ".join(_sql_str(f"{kind}{p}") for p in POSITIONS)
        selects.append(f"""
            SELECT claim_id, '{kind}' AS kind, position, CAST(position AS VARCHAR) AS position_raw,
                   code_raw, poa_raw, _source_file, _source_row, _source_column
            FROM (SELECT claim_id, _source_file, _source_row,
                         unnest(range(1, {MAX_POSITIONS + 1})) AS position,
                         unnest([{codes}]) AS code_raw, unnest([{poas}]) AS poa_raw,
                         unnest([{names}]) AS _source_column
                  FROM claim_heads)
            WHERE code_raw IS NOT NULL OR poa_raw IS NOT NULL""")
    con.execute(f"INSERT INTO stg_{entity}_codes BY NAME {' UNION ALL '.join(selects)}")
    _stage_external_causes(con, entity, layout)


def _stage_external_causes(con: duckdb.DuckDBPyConnection, entity: str, layout: LineLayout) -> None:
    """External-cause diagnoses after the claim's last diagnosis, in their order; past position
    25 the claim is quarantined (too_many_dx), as in the other layouts."""
    codes = ", ".join(f"edx{k}" for k in EXTERNAL_CAUSES)
    if not con.execute(f"SELECT count(*) FROM claim_heads WHERE coalesce({codes}) IS NOT NULL").fetchall()[0][0]:
        return
    poas = ", ".join(f"epoa{k}" for k in EXTERNAL_CAUSES)
    names = ", ".join(_sql_str(layout.source_name(f"edx{k}")) for k in EXTERNAL_CAUSES)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE external_causes AS
        WITH e AS (
            SELECT claim_id, _source_file, _source_row, unnest(range(1, {len(EXTERNAL_CAUSES) + 1})) AS k,
                   unnest([{codes}]) AS code_raw, unnest([{poas}]) AS poa_raw, unnest([{names}]) AS _source_column
            FROM claim_heads WHERE coalesce({codes}) IS NOT NULL),
        last AS (SELECT claim_id, max(position) AS last FROM stg_{entity}_codes WHERE kind = 'dx' GROUP BY claim_id)
        SELECT e.claim_id, 'dx' AS kind,
               (coalesce(last.last, 0) + row_number() OVER (PARTITION BY e.claim_id ORDER BY e.k))::INTEGER AS position,
               code_raw, poa_raw, _source_file, _source_row, _source_column
        FROM e LEFT JOIN last USING (claim_id) WHERE code_raw IS NOT NULL""")
    con.execute(f"""
        INSERT INTO stg_{entity}_codes BY NAME
        SELECT *, position::VARCHAR AS position_raw FROM external_causes
        WHERE position <= {MAX_POSITIONS}""")
    con.execute(f"""
        INSERT INTO stg_{entity}_findings
        SELECT any_value(_source_file), any_value(_source_row), claim_id, any_value(_source_column) , 'too_many_dx',
               max(position)::VARCHAR,
               max(position) || ' diagnosis codes with the external causes; the contract holds {MAX_POSITIONS}'
        FROM external_causes WHERE position > {MAX_POSITIONS} GROUP BY claim_id""")
    con.execute("DROP TABLE external_causes")


# ---------------------------------------------------------------------------------------------
# The Tuva layout
# ---------------------------------------------------------------------------------------------

EXTRA_FIELDS = ("bill_type_code", "drg_code_type", "drg_code_other", "data_source")

_SOURCE_NAMES = {
    "facility_id": "facility_npi", "patient_id": "person_id", "admit_date": "admission_date",
    "discharge_date": "discharge_date", "discharge_status": "discharge_disposition_code",
    "payer": "payer", "coder_id": "coder_id", "service_line": "service_line", "billed_drg": "drg_code",
    "reviewer_id": "reviewer_id", "review_date": "review_date", "reviewer_drg": "drg_code",
    "notes": "notes", "person_key": "person_id", "birth_date": "birth_date", "sex_code": "gender",
    "drg_code_other": "drg_code", "data_source": "data_source", "bill_type_code": "bill_type_code",
    "drg_code_type": "drg_code_type",
}


def _source_name(name: str) -> str:
    if name[:2] in ("dx", "px") and name[2:].isdigit():
        return ("diagnosis_code_" if name[:2] == "dx" else "procedure_code_") + name[2:]
    if name.startswith("poa") and name[3:].isdigit():
        return "diagnosis_poa_" + name[3:]
    if name.startswith("pxdate"):
        return "procedure_date_" + name[6:]
    return _SOURCE_NAMES.get(name, name)


def _sex_sql(expr: str) -> str:
    return (f"CASE lower(trim({expr})) WHEN 'male' THEN 'M' WHEN 'm' THEN 'M' WHEN 'female' THEN 'F' "
            f"WHEN 'f' THEN 'F' WHEN NULL THEN NULL ELSE CASE WHEN {expr} IS NULL THEN NULL ELSE 'U' END END")


def _line_select(columns: list[str], entity: str) -> dict[str, str]:
    c = lambda *names: col(columns, *names)  # noqa: E731
    if "drg_code_type" in columns:
        is_ms = f"lower(trim({c('drg_code_type')})) IN ('ms-drg', 'msdrg', 'ms_drg')"
        drg = f"CASE WHEN {is_ms} THEN {drg_pad_sql(c('drg_code'))} END"
        drg_other = f"CASE WHEN NOT {is_ms} THEN {c('drg_code')} END"
    else:
        drg = drg_pad_sql(c("ms_drg_code", "drg_code"))
        drg_other = c("apr_drg_code")
    person = c("person_id", "patient_id")
    out = {
        "claim_id": c("claim_id"), "line_key": c("claim_line_number"), "line_amount": c("paid_amount"),
        "person_key": person, "birth_date": c("birth_date"), "sex_code": _sex_sql(c("gender")),
        "discharge_status": c("discharge_disposition_code"),
        "bill_type_code": c("bill_type_code"), "drg_code_type": c("drg_code_type"),
        "drg_code_other": drg_other, "data_source": c("data_source"),
    }
    if entity == "claims":
        out.update({
            "facility_id": f"coalesce({c('facility_npi')}, {c('billing_npi')})", "patient_id": person,
            "admit_date": f"coalesce({c('admission_date')}, {c('claim_start_date')})",
            "discharge_date": f"coalesce({c('discharge_date')}, {c('claim_end_date')})",
            "payer": c("payer"), "coder_id": c("coder_id"), "service_line": c("service_line"),
            "billed_drg": drg,
        })
    else:
        out.update({
            "reviewer_id": f"coalesce({c('reviewer_id')}, {c('data_source')})",
            "review_date": f"coalesce({c('review_date')}, {c('file_date')})",
            "reviewer_drg": drg, "notes": c("notes"),
        })
    for p in POSITIONS:
        out[f"dx{p}"] = c(f"diagnosis_code_{p}")
        out[f"poa{p}"] = c(f"diagnosis_poa_{p}")
        out[f"px{p}"] = c(f"procedure_code_{p}")
        out[f"pxdate{p}"] = c(f"procedure_date_{p}")
    return out


def _line_filter(columns: list[str], raw: str) -> list[tuple[str, str]]:
    """Inpatient institutional claims: a line with bill type 11x/12x marks the whole claim."""
    if "bill_type_code" not in columns:
        log.warning("Tuva medical_claim has no bill_type_code: every claim is taken as inpatient")
        return []
    bill = "regexp_replace(trim(bill_type_code), '^0', '')"
    return [("not_inpatient",
             f"claim_id IN (SELECT claim_id FROM {raw} WHERE {bill} LIKE '11%' OR {bill} LIKE '12%')")]


def _people_select(columns: list[str]) -> dict[str, str]:
    return {"person_key": col(columns, "person_id", "patient_id"), "birth_date": col(columns, "birth_date"),
            "sex_code": _sex_sql(col(columns, "gender")),
            "order": col(columns, "enrollment_end_date")}


TUVA = LineLayout(
    name="tuva",
    is_lines=lambda cols: {"claim_id", "claim_line_number"} <= set(cols),
    is_people=lambda cols: bool({"person_id", "patient_id"} & set(cols)) and "birth_date" in cols,
    line_select=_line_select,
    line_filter=_line_filter,
    source_name=_source_name,
    people_select=_people_select,
    people_hint="Tuva eligibility",
)


def stage(con: duckdb.DuckDBPyConnection, entity: str, paths: list[Path]) -> dict[str, FileRead]:
    """Stage Tuva medical_claim (+ eligibility) files as `entity` ('claims' or 'reviews')."""
    return stage_claim_lines(con, entity, paths, TUVA, EXTRA_FIELDS)
