"""Slash dates are never guessed (issue 13): month-first only when the file proves it or the user
says so; a file whose slash dates are all ambiguous is refused with an example and the option."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pytest

from audits.errors import InputError
from audits.ingest.loading import load
from audits.ingest.readers import InputFiles
from tests.helpers import claim, good_claims, good_reviews, review, write_wide
from tests.test_bad_input import cli, fingerprint, run_args


def _claims(dates: list[tuple[str, str]]) -> list[dict]:
    return [claim(f"C{i}", ["I50.23", "I10"], admit_date=a, discharge_date=d) for i, (a, d) in enumerate(dates, 1)]


def _load(tmp_path: Path, rows: list[dict], date_format: str | None = None, reviews: list[dict] | None = None):
    con = duckdb.connect(":memory:")
    files = InputFiles(claims=[write_wide(tmp_path / "claims.csv", rows)],
                       reviews=[write_wide(tmp_path / "reviews.csv", reviews)] if reviews else [])
    result = load(con, files, "2026-11", date_format=date_format)
    dates = dict((r[0], (r[1], r[2])) for r in con.execute(
        "SELECT claim_id, admit_date, discharge_date FROM claims").fetchall())
    return result, dates, con


DAY_FIRST_AMBIGUOUS = [("06/10/2025", "09/10/2025"), ("01/11/2025", "03/11/2025")]  # 6 Oct, 1 Nov 2025


def test_all_ambiguous_slash_dates_are_refused_with_an_example_and_the_option(tmp_path):
    with pytest.raises(InputError) as caught:
        _load(tmp_path, _claims(DAY_FIRST_AMBIGUOUS))
    message = str(caught.value)
    assert "06/10/2025 could be 10 June 2025 (month first) or 6 October 2025 (day first)" in message
    assert "--date-format mdy" in message and "--date-format dmy" in message
    assert (caught.value.row, caught.value.column) == (1, "admit_date")


def test_cli_all_ambiguous_file_exits_2_and_changes_nothing(tmp_path):
    work = tmp_path / "work"
    good = write_wide(tmp_path / "good.csv", good_claims())
    assert cli(*run_args(work, good, write_wide(tmp_path / "r.csv", good_reviews())))[0] == 0
    before = fingerprint(work / "warehouse.duckdb")
    code, _, err = cli(*run_args(work, write_wide(tmp_path / "claims.csv", _claims(DAY_FIRST_AMBIGUOUS))))
    assert code == 2, err
    assert "claims.csv" in err and "row 1" in err and "--date-format" in err
    assert fingerprint(work / "warehouse.duckdb") == before


def test_date_format_dmy_reads_day_first(tmp_path):
    result, dates, _ = _load(tmp_path, _claims(DAY_FIRST_AMBIGUOUS), date_format="dmy")
    assert dates["C1"] == (dt.date(2025, 10, 6), dt.date(2025, 10, 9))
    assert dates["C2"] == (dt.date(2025, 11, 1), dt.date(2025, 11, 3))
    assert [(w["code"], w["count"]) for w in result.warnings] == [("ambiguous_dates_resolved", 4)]


def test_file_proving_month_first_reads_ambiguous_dates_month_first_with_a_warning(tmp_path):
    # 01/31/2026 can only be month first; so 02/03/2026 is 3 February.
    result, dates, _ = _load(tmp_path, _claims([("01/28/2026", "01/31/2026"), ("02/03/2026", "02/05/2026")]))
    assert dates["C2"] == (dt.date(2026, 2, 3), dt.date(2026, 2, 5))
    assert dates["C1"] == (dt.date(2026, 1, 28), dt.date(2026, 1, 31))
    (warning,) = result.warnings
    assert warning["code"] == "ambiguous_dates_resolved" and warning["count"] == 2
    assert "month first" in warning["message"] and "01/28/2026" in warning["message"]


def test_file_proving_day_first_reads_day_first(tmp_path):
    result, dates, _ = _load(tmp_path, _claims([("28/01/2026", "31/01/2026"), ("02/03/2026", "05/03/2026")]))
    assert dates["C2"] == (dt.date(2026, 3, 2), dt.date(2026, 3, 5))
    assert dates["C1"] == (dt.date(2026, 1, 28), dt.date(2026, 1, 31))


def test_file_with_both_orders_is_refused(tmp_path):
    with pytest.raises(InputError) as caught:
        _load(tmp_path, _claims([("28/01/2026", "31/01/2026"), ("02/13/2026", "02/15/2026")]))
    assert "28/01/2026" in str(caught.value) and "02/13/2026" in str(caught.value)


def test_unambiguous_formats_need_no_option(tmp_path):
    result, dates, _ = _load(tmp_path, _claims([("2026-01-02", "20260105"), ("2026/02/03", "03/03/2026")]))
    assert dates == {"C1": (dt.date(2026, 1, 2), dt.date(2026, 1, 5)), "C2": (dt.date(2026, 2, 3), dt.date(2026, 3, 3))}
    assert result.warnings == []


def test_invalid_date_reason_lists_the_formats_accepted(tmp_path):
    rows = _claims([("2026-01-02", "2026-01-05"), ("2026-01-02", "Jan 5 2026")])
    result, _, _ = _load(tmp_path, rows)
    reason = result.rejections.query("rule == 'invalid_date'")["reason"].iloc[0]
    assert reason == ("discharge_date is not a date (accepted: 2026-01-31, 20260131, 2026/01/31, "
                      "01/31/2026 (month first))")


def test_review_dates_are_resolved_per_file_too(tmp_path):
    rows = _claims([("2026-01-02", "2026-01-05")])
    with pytest.raises(InputError) as caught:
        _load(tmp_path, rows, reviews=[review("C1", ["I50.23"], review_date="03/04/2026")])
    assert "reviews.csv" in str(caught.value) and caught.value.column == "review_date"
    result, _, con = _load(tmp_path, rows, date_format="mdy",
                           reviews=[review("C1", ["I50.23"], review_date="03/04/2026")])
    assert con.execute("SELECT review_date FROM reviews").fetchone()[0] == dt.date(2026, 3, 4)


def test_each_distinct_date_text_is_parsed_once_per_file_as_that_file_reads_it():
    """`parse_dates_once` (issue 17: a million claims' dates parsed as a few thousand texts): one
    row per distinct (file, text) of both columns, read as `parse_date_sql` reads them. By hand:
    in a.csv (day first) 03/04/2025 is 3 April 2025; in b.csv (month first) it is 4 March 2025;
    2025-02-30 does not exist and 1850-01-01 is before 1900: both NULL (invalid_date). Blank
    dates are not listed; 2025-04-03 appears in both columns of a.csv but is listed once."""
    from audits.ingest.validation import parse_dates_once

    con = duckdb.connect(":memory:")
    con.execute("""CREATE TABLE t AS SELECT * FROM (VALUES
        ('a.csv', '03/04/2025', '2025-04-03'), ('a.csv', '2025-04-03', NULL),
        ('b.csv', '03/04/2025', '2025-02-30'), ('b.csv', '1850-01-01', '20250131'))
        AS v(_source_file, admit_date, discharge_date)""")
    parse_dates_once(con, "t", ["admit_date", "discharge_date"], {"a.csv": "dmy", "b.csv": "mdy"}, "parsed")
    assert sorted(con.execute("SELECT _source_file, v, t FROM parsed").fetchall(), key=str) == sorted([
        ("a.csv", "03/04/2025", dt.date(2025, 4, 3)), ("a.csv", "2025-04-03", dt.date(2025, 4, 3)),
        ("b.csv", "03/04/2025", dt.date(2025, 3, 4)), ("b.csv", "2025-02-30", None),
        ("b.csv", "1850-01-01", None), ("b.csv", "20250131", dt.date(2025, 1, 31))], key=str)


def test_codes_are_valid_on_the_discharge_date_as_their_own_file_reads_it(tmp_path):
    """Two claims files, the first proving day-first dates (25/12/2025), the second month-first
    (12/25/2025). The same text 03/04/2020 is then 3 April 2020 in the first and 4 March 2020 in
    the second; U07.1 (COVID-19) is valid from 1 April 2020 (CMS code editor), so by hand only the
    second file's claim DB1 is rejected, for that code."""
    first = write_wide(tmp_path / "first.csv", [
        claim("DA1", ["J18.9", "U07.1"], admit_date="01/04/2020", discharge_date="03/04/2020"),
        claim("DA2", ["J18.9"], admit_date="20/12/2025", discharge_date="25/12/2025")])
    second = write_wide(tmp_path / "second.csv", [
        claim("DB1", ["J18.9", "U07.1"], admit_date="03/01/2020", discharge_date="03/04/2020"),
        claim("DB2", ["J18.9"], admit_date="12/20/2025", discharge_date="12/25/2025")])
    con = duckdb.connect(":memory:")
    result = load(con, InputFiles(claims=[first, second]), "2026-11", max_rejected_share=1.0)
    assert list(zip(result.rejections["claim_id"], result.rejections["column"], result.rejections["rule"])) == [
        ("DB1", "dx2", "code_not_valid_for_discharge_date")]
    assert con.execute("SELECT claim_id, discharge_date FROM claims ORDER BY claim_id").fetchall() == [
        ("DA1", dt.date(2020, 4, 3)), ("DA2", dt.date(2025, 12, 25)), ("DB2", dt.date(2025, 12, 25))]
