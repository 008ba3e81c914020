"""Reading FHIR files into DuckDB for the FHIR reader (`audits.ingest.readers.fhir`): NDJSON lines or
whole JSON documents (Bundles unpacked) to one row per resource, with file and row, any text that
is not JSON or not UTF-8 located."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from audits.errors import InputError

BLOCK_BYTES = 64 << 20
# A resource's type. Bulk exports write "resourceType" first: read it from the start of the text
# (a full JSON parse of every document just for this cost ~15% of the reader); else parse.
KIND_SQL = (r"""CASE WHEN regexp_matches(doc, '^\s*\{\s*"resourceType"\s*:\s*"[A-Za-z]+"')"""
            r""" THEN regexp_extract(doc, '^\s*\{\s*"resourceType"\s*:\s*"([A-Za-z]+)"', 1)"""
            """ ELSE json_extract_string(doc, '$.resourceType') END""")
BOM = b"\xef\xbb\xbf"


# ---------------------------------------------------------------------------------------------
# Reading: files -> fhir_resources (one row per resource, Bundles unpacked)
# ---------------------------------------------------------------------------------------------

def _load_resources(con: duckdb.DuckDBPyConnection, paths: list[Path]) -> None:
    """fhir_resources(rid, _source_file, _source_row, full_url, kind, doc): NDJSON row = line
    number; Bundle row = entry number (1-based); a single JSON resource is row 1."""
    con.execute("CREATE OR REPLACE TEMP TABLE fhir_kinds "
                "(file_index BIGINT, _source_file VARCHAR, _source_row BIGINT, doc VARCHAR, kind VARCHAR)")
    for index, path in enumerate(paths):
        if not path.exists():
            raise InputError("file not found", file=path)
        for rows, docs, blank in _documents(path):
            table = pa.table({"file_index": pa.array([index] * len(rows), pa.int64()),
                              "_source_file": pa.array([str(path)] * len(rows), pa.string()),
                              "_source_row": pa.array(rows, pa.int64()), "doc": docs, "blank": blank})
            con.register("fhir_batch", table)
            try:  # a document that is not JSON is located, in this batch or when first parsed
                con.execute(f"INSERT INTO fhir_kinds SELECT * EXCLUDE (blank), {KIND_SQL} "
                            "FROM fhir_batch WHERE NOT blank")
            except duckdb.Error:
                _raise_invalid_json(con, "fhir_batch")
                raise
            finally:
                con.unregister("fhir_batch")
    bad = con.execute("SELECT _source_file, _source_row FROM fhir_kinds WHERE kind IS NULL "
                      "ORDER BY file_index, _source_row LIMIT 1").fetchall()
    if bad:
        raise InputError("not a FHIR resource (no resourceType)", file=bad[0][0], row=bad[0][1])
    # rid: the resource's place in the input (file, line, Bundle entry) as one number, so "the
    # first resource of..." needs no sort of the documents. A view: no copy of the documents
    # (Bundles, rare in bulk exports, are unpacked on each of its three reads).
    con.execute("""
        CREATE OR REPLACE TEMP VIEW fhir_resources AS
        WITH resources AS (
            SELECT file_index, _source_row AS line, coalesce(_source_row, 1) AS _source_row, 0 AS entry,
                   _source_file, NULL::VARCHAR AS full_url, kind, doc
            FROM fhir_kinds WHERE kind <> 'Bundle'
            UNION ALL
            SELECT b.file_index, b._source_row, coalesce(b._source_row, b.entry), b.entry, b._source_file,
                   b.item->>'$.fullUrl',
                   b.item->'$.resource'->>'$.resourceType', (b.item->'$.resource')::VARCHAR
            FROM (SELECT file_index, _source_file, _source_row, unnest(json_extract(doc, '$.entry[*]')) AS item,
                         generate_subscripts(json_extract(doc, '$.entry[*]'), 1) AS entry
                  FROM fhir_kinds WHERE kind = 'Bundle') b
            WHERE json_type(b.item, '$.resource') = 'OBJECT')
        SELECT file_index * 1000000000000000 + coalesce(line, 0) * 10000000 + entry AS rid,
               _source_file, _source_row, full_url, kind, doc
        FROM resources WHERE kind IN ('ExplanationOfBenefit', 'Patient', 'Organization', 'Coverage')""")


def _raise_invalid_json(con: duckdb.DuckDBPyConnection, table: str = "fhir_kinds") -> None:
    """InputError naming the first document of `table` that is not JSON (file, line)."""
    blank = "NOT blank AND" if table == "fhir_batch" else ""
    bad = con.execute(f"SELECT _source_file, _source_row, doc FROM {table} WHERE {blank} NOT json_valid(doc) "
                      "ORDER BY file_index, _source_row LIMIT 1").fetchall()
    if not bad:
        return
    source, row, doc = bad[0]
    error = _json_error(doc)
    message = error.msg if error is not None else "not valid JSON"
    if row is None:
        raise InputError(f"not valid JSON: {message}", file=source, row=getattr(error, "lineno", None))
    raise InputError(f"line is not valid JSON ({message}); NDJSON wants one resource per line",
                     file=source, row=row)


def _json_error(doc: str):
    try:
        json.loads(doc)
    except ValueError as exc:
        return exc
    return None


def _documents(path: Path):
    """(row numbers, Arrow strings) batches: NDJSON lines with their line numbers (each with its
    line break, which JSON ignores; blank lines are dropped in SQL), or a whole JSON file as one
    document without a row. Lines are cut with numpy and handed over as Arrow buffers: building a
    Python bytes object per line cost more than DuckDB's parse of it."""
    with open(path, "rb") as fh:
        first = fh.readline()
    bom = len(BOM) if first.startswith(BOM) else 0
    first = first[bom:]
    try:
        json.loads(first)
        ndjson = True
    except ValueError:
        ndjson = False
    with open(path, "rb") as fh:
        if not ndjson:
            data = fh.read().removeprefix(BOM)
            offsets = np.array([0, len(data)], np.int64)
            yield [None], _utf8(data, offsets, path, None), _blank(data, offsets)
            return
        line, carry, start = 1, b"", bom
        while True:
            block = fh.read(BLOCK_BYTES)
            data = carry + block
            if not data:
                return
            if block:
                cut = data.rfind(b"\n") + 1
                if cut == 0:  # one line longer than a block: read on
                    carry = data
                    continue
                data, carry = data[:cut], data[cut:]
            else:
                carry = b""
            ends = np.flatnonzero(np.frombuffer(data, np.uint8) == 10) + 1
            if not len(ends) or ends[-1] != len(data):
                ends = np.append(ends, len(data))
            offsets = np.concatenate([[start], ends]).astype(np.int64)
            yield np.arange(line, line + len(ends)), _utf8(data, offsets, path, line), _blank(data, offsets)
            line += len(ends)
            start = 0
            if not block:
                return


def _blank(data: bytes, offsets: np.ndarray) -> np.ndarray:
    """Which documents are only white space (blank NDJSON lines, skipped): only those starting
    with white space need a look."""
    buf = np.frombuffer(data, np.uint8)
    starts = offsets[:-1]
    first = np.full(len(starts), 32, np.uint8)
    inside = starts < len(buf)
    first[inside] = buf[starts[inside]]
    blank = np.zeros(len(starts), bool)
    for i in np.flatnonzero(np.isin(first, (9, 10, 13, 32))):
        blank[i] = not data[offsets[i]:offsets[i + 1]].strip()
    return blank


def _utf8(data: bytes, offsets: np.ndarray, path: Path, first_row: int | None) -> pa.Array:
    """The documents data[offsets[i]:offsets[i+1]] as Arrow strings, checked to be UTF-8."""
    docs = pa.LargeStringArray.from_buffers(len(offsets) - 1, pa.py_buffer(offsets), pa.py_buffer(data))
    try:
        docs.validate(full=True)
    except pa.ArrowInvalid:
        for number in range(len(offsets) - 1):
            try:
                data[offsets[number]:offsets[number + 1]].decode("utf-8")
            except UnicodeDecodeError as exc:
                row = None if first_row is None else first_row + number
                raise InputError(f"not UTF-8 text (byte {exc.start + 1} of the "
                                 f"{'line' if row else 'file'}); FHIR JSON is UTF-8", file=path, row=row) from None
        raise
    return docs
