"""What every reader shares: the input files of a load, reading raw CSV/Parquet into DuckDB, the
staging tables' columns, and what a reader reports about each file it read (`FileRead`).

The readers (`wide`, `long`, `tuva`, `cms`, `x12`, `fhir`) import this module; none imports
another reader's module for a helper. `audits.ingest.readers.stage` picks the reader per layout."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from audits.contract import (CLAIM_HEADER_COLUMNS, CLAIM_REQUIRED, REVIEW_HEADER_COLUMNS,
                             REVIEW_REQUIRED)
from audits.errors import InputError
from audits.warehouse import drop_relation, quote_ident


@dataclass
class InputFiles:
    """The files of one load. `claims`/`reviews` are wide files or, in the long layout, header
    files beside `*_diagnoses` / `*_procedures` files."""

    claims: list[Path]
    reviews: list[Path] = field(default_factory=list)
    claim_diagnoses: list[Path] = field(default_factory=list)
    claim_procedures: list[Path] = field(default_factory=list)
    review_diagnoses: list[Path] = field(default_factory=list)
    review_procedures: list[Path] = field(default_factory=list)
    universe: list[Path] = field(default_factory=list)
    # Layout per entity ('claims', 'reviews'): 'canonical' (default: wide or long), 'tuva', 'cms',
    # 'x12' (837I), 'fhir' or 'auto' (detected from the files). See audits.ingest.readers.detect.
    formats: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict:
        out: dict = {k: [str(p) for p in v] for k, v in self.__dict__.items() if v and k != "formats"}
        if self.formats:
            out["formats"] = dict(self.formats)
        return out


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# The longest record a CSV may hold. DuckDB sizes its read buffers from it: at DuckDB's default
# (2 MiB) the 1M-claim file read in 1.9 s against 1.3-1.5 s at 10 MB (buffers of ~200 MB).
MAX_LINE_SIZE = 10_000_000
_LINE_RE = re.compile(r"line[: ]+(\d+)", re.IGNORECASE)


def read_raw(con: duckdb.DuckDBPyConnection, path: Path, table: str, delim: str = ",",
             keep: Sequence[str] | None = None, untrimmed: Sequence[str] = ()) -> list[str]:
    """Load one CSV or Parquet file into TEMP table `table`, every column as text (a file too
    large for DuckDB's memory into a scratch database on disk, until the load ends: `FILE_TABLE_SHARE`).

    Column names are lower-cased and trimmed; `_source_row` is the 1-based data row (the header
    is row 0), `_source_file` the path as given. Returns the column names. `table` is a view of
    the file's rows (`<table>__file`) adding those two columns, not stored: a column added to a
    table of millions of rows costs its size, and an UPDATE numbering them memory DuckDB does not
    count against its limit. Drop it with `drop_read`. `delim` is for layouts
    that come pipe-delimited (CMS RIF extracts); the canonical layout is comma-separated.
    `keep` (lower-case names): only those columns are materialised (the universe needs 12 of a
    claims file's ~90); the returned names are still all the file's columns.
    Every value is trimmed and a blank one is NULL, except in the `untrimmed` columns (lower-case
    names), which hold the text as read (an empty field is NULL): for columns whose every reader
    trims anyway (the wide layout's codes, three quarters of its columns, mostly empty).
    """
    path = Path(path)
    if not path.exists():
        raise InputError("file not found", file=path)
    if path.stat().st_size == 0:
        raise InputError("file is empty (no header row)", file=path)
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        source = f"read_parquet({_sql_str(str(path))})"
    elif suffix in (".csv", ".txt"):
        source = _csv_source(con, path, delim)
    else:
        raise InputError(f"unsupported file type {suffix!r}: use .csv or .parquet", file=path)
    try:
        header = [row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()]
    except duckdb.Error as exc:
        raise _read_error(exc, path, suffix) from None
    lowered = [n.strip().lower() for n in header]
    dupes = sorted({n for n in lowered if lowered.count(n) > 1})
    if dupes:
        raise InputError(f"duplicated header column {dupes[0]!r}", file=path, row=0, column=dupes[0])
    def value(orig: str, low: str) -> str:
        text = f"CAST({quote_ident(orig)} AS VARCHAR)"
        if low not in untrimmed:
            text = f"nullif(trim({text}), '')"
        return f"{text} AS {quote_ident(low)}"

    select = ", ".join(value(orig, low) for orig, low in zip(header, lowered) if keep is None or low in set(keep)) \
        or ", ".join(value(orig, low) for orig, low in zip(header, lowered))
    drop_read(con, table)
    # One pass over the file: the table keeps the file's row order, so its rowid is the data row.
    large = (_estimated_table_bytes(con, path, suffix, len(header)) > memory_limit_bytes(con) * FILE_TABLE_SHARE
             and _scratch(con) is not None)
    rows = f"{SCRATCH}.main.{quote_ident(table + '__file')}" if large else f"{table}__file"
    try:
        con.execute(f"CREATE {'' if large else 'TEMP '}TABLE {rows} AS SELECT {select} FROM {source}")
        if suffix in (".csv", ".txt"):
            _check_no_surplus_fields(con, path, len(header), delim)
    except duckdb.Error as exc:
        drop_read(con, table)
        raise _read_error(exc, path, suffix) from None
    except InputError:
        drop_read(con, table)
        raise
    number_rows(con, table, path, rows)
    return lowered


# A file whose table of text would take more than this share of DuckDB's memory limit is read into
# a scratch database on disk (`_scratch`), compressed, instead of a TEMP table. Past the limit a
# TEMP table spills to disk uncompressed and is read back at every pass: at 9M claims the 90
# columns of a wide file took 5.4 GB that way, 370 MB compressed, and the load took 95-104 s
# against 79 s. Below it the TEMP table is faster (compressing costs 1.5 s a million claims).
FILE_TABLE_SHARE = 0.5
SCRATCH = "read_scratch"


def _estimated_table_bytes(con: duckdb.DuckDBPyConnection, path: Path, suffix: str, n_columns: int) -> int:
    """What the file's rows take as a TEMP table of text: about three times a CSV's size (the
    1M-claim wide file, 209 MB, takes 616 MB), about 7 bytes a field for Parquet (the same rows:
    1M rows of 90 fields, mostly empty codes)."""
    if suffix in (".csv", ".txt"):
        return 3 * path.stat().st_size
    rows = con.execute(f"SELECT coalesce(sum(num_rows), 0) FROM parquet_file_metadata({_sql_str(str(path))})"
                       ).fetchall()[0][0]
    return int(rows) * n_columns * 7


_SIZE_RE = re.compile(r"^\s*([0-9.]+)\s*([KMGT]?i?B)\s*$", re.IGNORECASE)
_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def memory_limit_bytes(con: duckdb.DuckDBPyConnection) -> float:
    """DuckDB's memory limit on `con` in bytes (its setting reads like '1.4 GiB')."""
    setting = con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
    match = _SIZE_RE.match(str(setting))
    return float(match.group(1)) * _UNITS[match.group(2).lower()] if match else float("inf")


def _scratch(con: duckdb.DuckDBPyConnection) -> str | None:
    """The connection's scratch database for large files' tables, attached on first use: a file in
    DuckDB's temp directory (where it spills), removed once its last table is dropped (`drop_read`)
    or the load ends (`release_scratch`). None if it cannot be made there (the file is then read
    into a TEMP table, as a small one is: slower past the memory limit, the same rows)."""
    if not _scratch_path(con):
        directory = Path(con.execute("SELECT current_setting('temp_directory')").fetchall()[0][0] or ".tmp")
        path = (directory / f"{_SCRATCH_PREFIX}{uuid.uuid4().hex}.duckdb").resolve()
        try:
            directory.mkdir(parents=True, exist_ok=True)
            _remove_stale_scratch(directory)
            con.execute(f"ATTACH {_sql_str(str(path))} AS {SCRATCH}")
        except (OSError, duckdb.Error):
            return None
        _SCRATCH_IN_USE.add(str(path))
    return SCRATCH


_SCRATCH_PREFIX = "coding_audit_read_"
_SCRATCH_IN_USE: set[str] = set()  # this process's, whose lock a probe of ours would release


def _remove_stale_scratch(directory: Path) -> None:
    """Delete the scratch databases a killed load left in `directory`: those no process holds
    (DuckDB keeps an attached database file locked)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: leave them
        return
    for stale in directory.glob(f"{_SCRATCH_PREFIX}*.duckdb"):
        if str(stale.resolve()) in _SCRATCH_IN_USE:
            continue
        try:
            with open(stale, "r+b") as fh:
                fcntl.lockf(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # attached by another process (or gone)
            continue
        for leftover in (stale, Path(f"{stale}.wal")):
            leftover.unlink(missing_ok=True)


def _scratch_path(con: duckdb.DuckDBPyConnection) -> str | None:
    found = con.execute("SELECT path FROM duckdb_databases() WHERE database_name = ?", [SCRATCH]).fetchall()
    return found[0][0] if found else None


def number_rows(con: duckdb.DuckDBPyConnection, table: str, path: Path, rows: str | None = None) -> None:
    """View `table` of the table `rows` (default TEMP table `<table>__file`: a file's rows as DuckDB
    read them, in the file's order) adding `_source_file` (`path` as given) and `_source_row`
    (rowid + 1, the data row)."""
    con.execute(f"CREATE TEMP VIEW {table} AS SELECT *, {_sql_str(str(path))} AS _source_file, "
                f"rowid + 1 AS _source_row FROM {rows or table + '__file'}")


def reads_named(con: duckdb.DuckDBPyConnection, prefix: str) -> list[str]:
    """The files read as `read_raw` leaves them (its views) whose name starts with `prefix`, by name."""
    return [r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE temporary AND "
                                      "starts_with(view_name, ?) ORDER BY 1", [prefix]).fetchall()]


def drop_read(con: duckdb.DuckDBPyConnection, table: str) -> None:
    """Drop what `read_raw` made of a file as `table` (if anything)."""
    drop_relation(con, table)
    drop_relation(con, f"{table}__file")
    if _scratch_path(con):
        con.execute(f"DROP TABLE IF EXISTS {SCRATCH}.main.{quote_ident(table + '__file')}")
        if not con.execute("SELECT count(*) FROM duckdb_tables() WHERE database_name = ?", [SCRATCH]).fetchall()[0][0]:
            release_scratch(con)


def release_scratch(con: duckdb.DuckDBPyConnection) -> None:
    """Detach and delete the scratch database of large files' tables, if `con` has one (the end
    of a load: the reads' views of it are left without rows; the next load drops them)."""
    path = _scratch_path(con)
    if path:
        con.execute(f"DETACH {SCRATCH}")
        _SCRATCH_IN_USE.discard(path)
        for leftover in (Path(path), Path(path + ".wal")):
            leftover.unlink(missing_ok=True)


def _read_error(exc: duckdb.Error, path: Path, suffix: str) -> InputError:
    if suffix in (".csv", ".txt"):
        located = _locate_csv_problem(path)
        if located is not None:
            return located
    return _input_error_from_duckdb(exc, path)


def _csv_source(con: duckdb.DuckDBPyConnection, path: Path, delim: str = ",") -> str:
    """A strict comma-separated (or `delim`-separated) read: every column text, the header as it is."""
    with open(path, "rb") as fh:
        head = fh.read(65536)
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    try:
        first_line = head.splitlines()[0].decode("utf-8") if head.strip() else ""
    except UnicodeDecodeError:
        raise InputError("header row is not UTF-8 text; save the file as UTF-8 CSV", file=path,
                         row=0) from None
    if not first_line.strip():
        raise InputError("file has no header row", file=path, row=0)
    import csv

    names = [n.strip().lower() for n in next(csv.reader([first_line], delimiter=delim), [])]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:  # checked here: DuckDB would rename the second copy (payer_1) and load it silently
        raise InputError(f"duplicated header column {dupes[0]!r}", file=path, row=0, column=dupes[0])
    return (f"read_csv({_sql_str(str(path))}, header=true, all_varchar=true, delim={_sql_str(delim)}, "
            "quote='\"', escape='\"', strict_mode=true, encoding='utf-8', null_padding=false, "
            f"max_line_size={MAX_LINE_SIZE})")


_NO_SURPLUS_FIELDS: set[tuple] = set()


def _check_no_surplus_fields(con: duckdb.DuckDBPyConnection, path: Path, n_columns: int, delim: str) -> None:
    """DuckDB's strict reader still accepts a row with one surplus *empty* field (a stray comma in
    free text when the last column is blank) and shifts its values. Re-read with one column more
    than the header and refuse any row that fills it. A file that passed is not re-read while it
    is unchanged (the same claims file often comes again as the universe).

    The check reads in parallel; only a file with such a row is read again, in order, to number
    it, and a file DuckDB cannot pad in parallel (quoted line breaks) is read in order at once."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, n_columns, delim)
    if key in _NO_SURPLUS_FIELDS:
        return
    columns = "{" + ", ".join(f"'c{i}': 'VARCHAR'" for i in range(n_columns + 1)) + "}"

    def source(parallel: bool) -> str:
        return (f"read_csv({_sql_str(str(path))}, header=false, skip=1, delim={_sql_str(delim)}, quote='\"', "
                f"escape='\"', columns={columns}, null_padding=true, auto_detect=false, "
                f"parallel={'true' if parallel else 'false'}, nullstr='\x01', max_line_size={MAX_LINE_SIZE})")

    try:
        suspect = con.execute(f"SELECT EXISTS (SELECT 1 FROM {source(True)} WHERE c{n_columns} IS NOT NULL)"
                              ).fetchall()[0][0]
    except duckdb.Error:  # quoted line breaks: padding needs the serial reader
        suspect = True
    found = con.execute(f"""
        SELECT min(r) FROM (
            SELECT row_number() OVER () AS r, c{n_columns} AS surplus FROM {source(False)})
        WHERE surplus IS NOT NULL""").fetchall()[0][0] if suspect else None
    if found is not None:
        raise InputError(f"row has more fields than the header's {n_columns} (a stray comma in a text "
                         "field? quote fields that contain commas)", file=path, row=int(found))
    _NO_SURPLUS_FIELDS.add(key)


def _locate_csv_problem(path: Path) -> InputError | None:
    """DuckDB's reader stops at a malformed file without always saying where; find the first bad
    row with Python's csv module (only on this error path, streaming)."""
    import csv

    def lines():
        with open(path, "rb") as fh:
            for number, raw in enumerate(fh):
                try:
                    text = raw.decode("utf-8-sig" if number == 0 else "utf-8")
                except UnicodeDecodeError:
                    raise InputError("the file is not valid UTF-8 text; save it as UTF-8 CSV",
                                     file=path, row=number) from None
                yield text

    csv.field_size_limit(MAX_LINE_SIZE)  # as DuckDB's reader: a long note is not the problem
    record = 0  # data rows, counted as records (a quoted note may span several lines)
    try:
        reader = csv.reader(lines(), strict=True)
        header = next(reader, None)
        if header is None:
            return InputError("file has no header row", file=path, row=0)
        for record, row in enumerate(reader, start=1):
            if len(row) != len(header):
                return InputError(f"row has {len(row)} fields but the header has {len(header)} "
                                  "(a stray comma, a missing field, or an unclosed quote above)",
                                  file=path, row=record)
    except InputError as err:
        return err
    except csv.Error as err:
        if "field limit" in str(err):
            return InputError(f"a field is longer than a record may be ({MAX_LINE_SIZE // 10**6} MB): an "
                              "unclosed quote in this row or above makes the rest of the file one field",
                              file=path, row=record + 1)
        return InputError(f"malformed CSV: {err}", file=path, row=record + 1)
    return None


def _input_error_from_duckdb(exc: duckdb.Error, path: Path) -> InputError:
    text = str(exc)
    match = _LINE_RE.search(text)
    row = int(match.group(1)) - 1 if match else None
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    if "invalid unicode" in text.lower():
        first = "the file is not valid UTF-8 text; save it as UTF-8 CSV (" + first + ")"
    return InputError(f"cannot read file: {first}", file=path, row=row)


def require_rows(con: duckdb.DuckDBPyConnection, table: str, path: Path) -> None:
    """A header with no data rows is refused: loaded, it would empty the audit period."""
    if not con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]:
        raise InputError("the file has a header but no data rows; nothing was loaded (an empty "
                         "file would replace the audit period with nothing)", file=path, row=1)


def require_columns(columns: list[str], required: tuple[str, ...], path: Path, hint: str = "") -> None:
    for name in required:
        if name not in columns:
            extra = ""
            if len(columns) <= 3 and any(sep in c for c in columns for sep in ";|\t"):
                extra = " (the header looks like one column: is the file comma-separated?)"
            raise InputError(f"missing required column {name!r}{extra}{hint}", file=path, row=0,
                             column=name)


# ---------------------------------------------------------------------------------------------
# Staging tables and what a reader reports per file
# ---------------------------------------------------------------------------------------------

# Why a reader leaves records of a file out of the audit (keys of FileRead.skipped, of summary.json's
# skipped_records and of the zero-claims error).
SKIP_REASONS = {
    "not_inpatient": "not an inpatient hospital claim (bill type 11x/12x, CMS claim type 60/61, or "
                     "FHIR institutional inpatient)",
    "not_final_action": "not the final action of the claim (CMS FINAL_ACTION 'N': superseded)",
}


@dataclass
class FileRead:
    """What a reader took from one file holding claim (or review) records: how many records of
    the audited kind it staged, how many it left out, by reason (SKIP_REASONS), and the user's
    name for the columns it filled (`columns`: contract column -> the column, element or segment
    as the file spells it), so messages can name both."""

    records: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    columns: dict[str, str] = field(default_factory=dict)

    def skip(self, reason: str, count: int) -> None:
        if count:
            self.skipped[reason] = self.skipped.get(reason, 0) + int(count)


def header_columns(entity: str) -> tuple[str, ...]:
    """The contract's header columns of `entity` ('claims' or 'reviews')."""
    return CLAIM_HEADER_COLUMNS if entity == "claims" else REVIEW_HEADER_COLUMNS


def required_columns(entity: str) -> tuple[str, ...]:
    return CLAIM_REQUIRED if entity == "claims" else REVIEW_REQUIRED


def create_staging(con: duckdb.DuckDBPyConnection, entity: str) -> None:
    """Empty `stg_<entity>`, `stg_<entity>_codes` and `stg_<entity>_findings` (every reader
    writes the same columns in the same order)."""
    cols = ", ".join(f"{c} VARCHAR" for c in header_columns(entity))
    for name in (f"stg_{entity}", f"stg_{entity}_codes", f"stg_{entity}_code_keys", f"stg_{entity}_findings"):
        drop_relation(con, name)
    con.execute(f"CREATE TEMP TABLE stg_{entity} (_source_file VARCHAR, _source_row BIGINT, {cols}, "
                "extra_columns JSON)")
    con.execute(f"CREATE TEMP TABLE stg_{entity}_codes (claim_id VARCHAR, kind VARCHAR, position INTEGER, "
                "position_raw VARCHAR, code_raw VARCHAR, poa_raw VARCHAR, _source_file VARCHAR, "
                "_source_row BIGINT, _source_column VARCHAR)")
    con.execute(f'CREATE TEMP TABLE stg_{entity}_findings (_source_file VARCHAR, _source_row BIGINT, '
                'claim_id VARCHAR, "column" VARCHAR, rule VARCHAR, value VARCHAR, reason VARCHAR)')


def stage_header(entity: str, raw: str, columns: list[str], code_columns: tuple[str, ...] = (),
                 also: tuple[str, ...] = ()) -> str:
    """SELECT of the contract's header columns (missing optional ones as NULL) + extra_columns JSON
    over a table read by `read_raw` (the canonical layouts); `also`: more expressions to select."""
    known = header_columns(entity)
    parts = ["_source_file", "_source_row", *also]
    for name in known:
        parts.append(quote_ident(name) if name in columns else f"CAST(NULL AS VARCHAR) AS {name}")
    extras = [c for c in columns if c not in known and c not in code_columns
              and c not in ("_source_file", "_source_row")]
    if extras:
        pairs = ", ".join(f"'{c.replace(chr(39), chr(39) * 2)}', {quote_ident(c)}" for c in extras)
        parts.append(f"CAST(json_object({pairs}) AS JSON) AS extra_columns")
    else:
        parts.append("CAST(NULL AS JSON) AS extra_columns")
    return f"SELECT {', '.join(parts)} FROM {raw}"


def header_spelling(path: Path, delim: str = ",") -> dict[str, str]:
    """{lower-cased column name: the name as the file's header spells it} (CSV/TXT or Parquet)."""
    path = Path(path)
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            names = pq.read_schema(path).names
        else:
            import csv

            with open(path, encoding="utf-8-sig", errors="replace") as fh:
                names = next(csv.reader([fh.readline()], delimiter=delim), [])
    except Exception:  # noqa: BLE001 - only for messages; the readers report unreadable files
        return {}
    return {n.strip().lower(): n.strip() for n in names}
