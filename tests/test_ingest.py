"""Ingest and validation: layouts, normalisation, quarantine rules, atomic and idempotent loads."""

from __future__ import annotations

import pytest

from audits.errors import InputError
from audits.ingest.loading import TooManyRejectedError, load
from audits.ingest.readers import InputFiles
from tests.helpers import claim, good_claims, good_reviews, review, write_long, write_wide

TABLES = {
    "claims": "SELECT * EXCLUDE (load_id, source_file, source_row) FROM claims ORDER BY claim_id",
    "reviews": "SELECT * EXCLUDE (load_id, source_file, source_row) FROM reviews ORDER BY claim_id",
    "claim_codes": "SELECT * FROM claim_codes ORDER BY ALL",
}


def snapshot(con) -> dict:
    return {name: con.execute(sql).fetchall() for name, sql in TABLES.items()}


def load_wide(con, tmp_path, claims, reviews=None, period="2026-11", **kw):
    files = InputFiles(claims=[write_wide(tmp_path / "claims.csv", claims)],
                       reviews=[write_wide(tmp_path / "reviews.csv", reviews)] if reviews else [])
    return load(con, files, period, **kw)


def test_wide_load_publishes_normalised_tables(con, tmp_path):
    result = load_wide(con, tmp_path, good_claims(), good_reviews())
    assert (result.claims_loaded, result.reviews_loaded, len(result.rejections)) == (4, 3, 0)
    codes = con.execute("SELECT claim_id, side, kind, position, code, poa FROM claim_codes "
                        "WHERE claim_id = 'A2' ORDER BY side DESC, position").fetchall()
    # 'i5023' and 'J96.01' are stored upper case without the dot.
    assert codes == [("A2", "original", "dx", 1, "I5023", "Y"), ("A2", "original", "dx", 2, "J9601", "N"),
                     ("A2", "audited", "dx", 1, "I5023", "Y")]
    assert con.execute("SELECT px FROM (SELECT code AS px FROM claim_codes WHERE kind = 'px' "
                       "AND side = 'original')").fetchall() == [("0DTJ4ZZ",)]
    a4 = con.execute("SELECT discharge_date::VARCHAR, age, drg_version FROM claims WHERE claim_id = 'A4'").fetchall()
    assert a4 == [("2026-04-10", 70, 431)]  # April 2026 discharge -> MS-DRG v43.1


def test_wide_codes_are_normalised_blank_poa_kept_and_bad_code_named_as_written(con, tmp_path):
    # Padded, lower-case, dotted codes; a blank POA; a code cell of spaces (no code: no row);
    # a procedure code in lower case; and an invalid code whose rejection quotes it trimmed.
    rows = good_claims() + [claim("E1", [(" i50.23 ", ""), ("J96.01", " n "), ("   ", "Y")], px=[" 0dtj4zz "]),
                            claim("E2", [(" I50.2 ", "Y")])]
    result = load_wide(con, tmp_path, rows, max_rejected_share=1.0)
    assert con.execute("SELECT kind, position, code, poa FROM claim_codes WHERE claim_id = 'E1' "
                       "ORDER BY kind, position").fetchall() == [
        ("dx", 1, "I5023", None), ("dx", 2, "J9601", "N"), ("px", 1, "0DTJ4ZZ", None)]
    rejected = result.rejections
    assert list(zip(rejected["claim_id"], rejected["column"], rejected["rule"], rejected["value"])) == [
        ("E2", "dx1", "code_not_valid_for_discharge_date", "I50.2")]


def test_wide_and_long_layouts_give_identical_tables(con, tmp_path):
    import duckdb

    load_wide(con, tmp_path, good_claims(), good_reviews())
    wide = snapshot(con)
    long_dir = tmp_path / "long"
    long_dir.mkdir()
    c = write_long(long_dir, "claims", good_claims())
    r = write_long(long_dir, "reviews", good_reviews())
    other = duckdb.connect(":memory:")
    load(other, InputFiles(claims=[c["header"]], claim_diagnoses=[c["dx"]], claim_procedures=[c["px"]],
                           reviews=[r["header"]], review_diagnoses=[r["dx"]], review_procedures=[r["px"]]),
         "2026-11")
    assert snapshot(other) == wide


def test_unknown_columns_are_kept(con, tmp_path):
    rows = good_claims()
    rows[0]["drg_grouper_note"] = "kept"
    load_wide(con, tmp_path, rows)
    assert con.execute("SELECT extra_columns->>'drg_grouper_note' FROM claims WHERE claim_id = 'A1'"
                       ).fetchall() == [("kept",)]


BAD_CLAIMS = [
    # (claim row, column, rule)
    (claim("B1", ["I50.23"], claim_id=""), "claim_id", "required_value_missing"),
    (claim("B2", ["I50.23"], discharge_date="2026-01-01", admit_date="2026-01-05"), "discharge_date",
     "discharge_before_admit"),
    (claim("B3", ["I50.23"], admit_date="2026-13-45"), "admit_date", "invalid_date"),
    (claim("B4", ["I50.23"], age="-3"), "age", "age_out_of_range"),
    (claim("B5", ["I50.23"], age="125"), "age", "age_out_of_range"),
    (claim("B6", ["I50.23"], age="seventy"), "age", "invalid_age"),
    (claim("B7", ["I50.23"], sex="X"), "sex", "invalid_sex"),
    (claim("B8", ["I50.23"], discharge_status="99"), "discharge_status", "invalid_discharge_status"),
    (claim("B9", ["I50.23", "N17-9"]), "dx2", "invalid_code_format"),
    (claim("B10", ["I50.2"]), "dx1", "code_not_valid_for_discharge_date"),
    (claim("B11", ["K35.80"], px=["0DTJ4ZX"]), "px1", "code_not_valid_for_discharge_date"),
    (claim("B12", ["K35.80"], px=["0DTJ4Z"]), "px1", "invalid_code_format"),
    (claim("B13", [("I50.23", "Y"), ("N17.9", "Q")]), "poa2", "invalid_poa"),
    (claim("B14", [], coder_id="C01"), "dx1", "principal_dx_missing"),
    (claim("B15", ["I50.23"], coder_id=""), "coder_id", "required_value_missing"),
    (claim("B16", ["I50.23"], billed_drg="29A"), "billed_drg", "invalid_billed_drg"),
]


@pytest.mark.parametrize("bad,column,rule", BAD_CLAIMS, ids=[b[2] + "-" + b[1] for b in BAD_CLAIMS])
def test_each_rule_rejects_its_row_and_good_rows_load(con, tmp_path, bad, column, rule):
    rows = good_claims() + [bad]
    result = load_wide(con, tmp_path, rows, max_rejected_share=1.0)
    rejected = result.rejections
    assert list(zip(rejected["column"], rejected["rule"])) == [(column, rule)]
    assert int(rejected["row"].iloc[0]) == 5  # 5th data row of the file
    assert con.execute("SELECT count(*) FROM claims").fetchall()[0][0] == 4
    stored = con.execute('SELECT source_file, "row", "column", rule FROM rejected_rows').fetchall()
    assert stored == [(str(tmp_path / "claims.csv"), 5, column, rule)]


def test_code_rows_of_rejected_claims_and_of_rows_without_claim_id_are_not_published(con, tmp_path):
    # Validation writes a wide file's code rows straight into the stage; publishing must still
    # leave out those of the rejected claim (B10, invalid code) and of the row without a claim_id,
    # and the two columns only validation reads.
    rows = good_claims() + [claim("B10", ["I50.2", "N17.9"]), claim("B1", ["I50.23", "I10"], claim_id="")]
    load_wide(con, tmp_path, rows, max_rejected_share=1.0)
    assert [r[0] for r in con.execute("DESCRIBE claim_codes").fetchall()] == [
        "claim_id", "side", "kind", "position", "code", "poa"]
    # A1 3 dx, A2 2 dx, A3 1 dx + 1 px, A4 2 dx: the good claims' 9 code rows, no other.
    assert con.execute("SELECT claim_id, count(*) FROM claim_codes GROUP BY 1 ORDER BY 1").fetchall() == [
        ("A1", 3), ("A2", 2), ("A3", 2), ("A4", 2)]


def test_duplicate_claim_ids_are_both_rejected(con, tmp_path):
    rows = good_claims() + [claim("A1", ["I50.23"])]
    result = load_wide(con, tmp_path, rows, max_rejected_share=1.0)
    assert sorted(result.rejections["row"].astype(int)) == [1, 5]
    assert set(result.rejections["rule"]) == {"duplicate_claim_id"}
    assert con.execute("SELECT count(*) FROM claims").fetchall()[0][0] == 3


def test_wide_row_without_dx1_is_missing_its_principal_dx_even_when_its_claim_id_has_one(con, tmp_path):
    # In the wide layout the principal diagnosis is the row's own dx1: row 5 repeats claim A1 with
    # its codes from dx2 on, so it is rejected for its blank dx1 too (row 1's dx1 is not its own).
    rows = good_claims() + [claim("A1", ["I50.23"])]
    rows[-1]["dx"] = [("", "")] + rows[-1]["dx"]
    result = load_wide(con, tmp_path, rows, max_rejected_share=1.0)
    got = sorted(zip(result.rejections["row"].astype(int), result.rejections["rule"]))
    assert got == [(1, "duplicate_claim_id"), (5, "duplicate_claim_id"), (5, "principal_dx_missing")]
    assert con.execute("SELECT count(*) FROM claims").fetchall()[0][0] == 3


def test_review_rules(con, tmp_path):
    reviews = good_reviews() + [review("ZZ9", ["I50.23"]), review("A4", ["A41.9"]),
                                review("A4", ["A41.9", "R65.20"])]
    result = load_wide(con, tmp_path, good_claims(), reviews, max_rejected_share=1.0)
    got = sorted(zip(result.rejections["row"].astype(int), result.rejections["rule"]))
    assert got == [(4, "review_without_claim"), (5, "duplicate_review"), (6, "duplicate_review")]
    assert con.execute("SELECT count(*) FROM reviews").fetchall()[0][0] == 3


def test_review_of_rejected_claim_is_quarantined_with_that_reason(con, tmp_path):
    claims = good_claims() + [claim("B1", ["I50.2"])]
    reviews = good_reviews() + [review("B1", ["I50.23"])]
    result = load_wide(con, tmp_path, claims, reviews, max_rejected_share=1.0)
    assert sorted(result.rejections["rule"]) == ["claim_rejected", "code_not_valid_for_discharge_date"]


def test_code_valid_by_discharge_date(con, tmp_path):
    # M62.84 (sarcopenia) entered ICD-10-CM on 1 October 2016: valid in FY2026, and the MCE
    # rejects U07.1 (COVID-19) before 1 April 2020.
    rows = [claim("D1", ["J18.9", "U07.1"], admit_date="2019-12-01", discharge_date="2019-12-05"),
            claim("D2", ["J18.9", "U07.1"])]
    result = load_wide(con, tmp_path, good_claims() + rows, max_rejected_share=1.0)
    assert list(zip(result.rejections["claim_id"], result.rejections["rule"])) == [
        ("D1", "code_not_valid_for_discharge_date")]


def test_reload_is_idempotent(con, tmp_path):
    load_wide(con, tmp_path, good_claims(), good_reviews())
    first = snapshot(con)
    load_wide(con, tmp_path, good_claims(), good_reviews())
    assert snapshot(con) == first
    assert con.execute("SELECT count(*) FROM loads").fetchall()[0][0] == 1


def test_other_periods_are_kept_and_a_period_is_replaced(con, tmp_path):
    load_wide(con, tmp_path, good_claims()[:2], period="2026-10")
    (tmp_path / "b").mkdir()
    load_wide(con, tmp_path / "b", good_claims()[2:], period="2026-11")
    assert con.execute("SELECT audit_period, count(*) FROM claims GROUP BY 1 ORDER BY 1").fetchall() == [
        ("2026-10", 2), ("2026-11", 2)]
    load_wide(con, tmp_path / "b", good_claims()[3:], period="2026-11")
    assert con.execute("SELECT audit_period, count(*) FROM claims GROUP BY 1 ORDER BY 1").fetchall() == [
        ("2026-10", 2), ("2026-11", 1)]


def test_failed_load_leaves_previous_tables_intact(con, tmp_path):
    load_wide(con, tmp_path, good_claims(), good_reviews())
    before = snapshot(con)
    bad = [claim(f"X{i}", ["I50.2"]) for i in range(5)] + good_claims()[:1]
    (tmp_path / "bad").mkdir()
    with pytest.raises(TooManyRejectedError, match="5 of 6 claims rows failed validation"):
        load_wide(con, tmp_path / "bad", bad, good_reviews())
    assert snapshot(con) == before
    broken = tmp_path / "broken.csv"
    broken.write_text("claim_id,facility_id\nA1,F1\n")
    with pytest.raises(InputError, match="missing required column 'admit_date'"):
        load(con, InputFiles(claims=[broken]), "2026-11")
    assert snapshot(con) == before


def test_file_level_errors_name_file_row_and_column(con, tmp_path):
    path = write_wide(tmp_path / "claims.csv", good_claims())
    text = path.read_text().replace("dx1,", "DX1 ,")
    (tmp_path / "upper.csv").write_text(text)
    load(con, InputFiles(claims=[tmp_path / "upper.csv"]), "2026-11")  # header case/space is fine

    (tmp_path / "semi.csv").write_text(path.read_text().replace(",", ";"))
    with pytest.raises(InputError) as err:
        load(con, InputFiles(claims=[tmp_path / "semi.csv"]), "2026-11")
    assert "semi.csv" in str(err.value) and "header row" in str(err.value)
    assert "comma-separated" in str(err.value)

    (tmp_path / "latin1.csv").write_bytes(path.read_bytes().replace(b"Cardiology", b"Cardiolog\xe9"))
    with pytest.raises(InputError, match="not valid UTF-8") as err:
        load(con, InputFiles(claims=[tmp_path / "latin1.csv"]), "2026-11")
    assert err.value.file.endswith("latin1.csv")

    lines = path.read_text().splitlines()
    lines[3] = lines[3] + ",surplus"
    (tmp_path / "ragged.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match="but the header has") as err:
        load(con, InputFiles(claims=[tmp_path / "ragged.csv"]), "2026-11")
    assert err.value.row == 3

    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(InputError, match="empty"):
        load(con, InputFiles(claims=[tmp_path / "empty.csv"]), "2026-11")


def test_parquet_input_equals_csv(con, tmp_path):
    import duckdb
    import pandas as pd

    csv_path = write_wide(tmp_path / "claims.csv", good_claims())
    pd.read_csv(csv_path, dtype=str).to_parquet(tmp_path / "claims.parquet")
    load(con, InputFiles(claims=[csv_path]), "2026-11")
    other = duckdb.connect(":memory:")
    load(other, InputFiles(claims=[tmp_path / "claims.parquet"]), "2026-11")
    assert snapshot(other) == snapshot(con)


def test_long_layout_rules(con, tmp_path):
    paths = write_long(tmp_path, "claims", good_claims())
    with open(paths["dx"], "a") as fh:
        # rows 1-8 are the good claims' 8 diagnoses (A1 has 3, A2 2, A3 1, A4 2)
        fh.write("A1,x,I10,Y\r\n")        # row 9: position not a number
        fh.write("A1,2,E78.5,Y\r\n")      # row 10: A1 already has a code at position 2 (row 2)
        fh.write("NOPE,1,I10,Y\r\n")      # row 11: no such claim in the header file
        fh.write("A3,26,I10,Y\r\n")       # row 12: position beyond 25
    result = load(con, InputFiles(claims=[paths["header"]], claim_diagnoses=[paths["dx"]],
                                  claim_procedures=[paths["px"]]), "2026-11", max_rejected_share=1.0)
    got = sorted(zip(result.rejections["row"].astype(int), result.rejections["rule"], result.rejections["value"]))
    assert got == [(2, "duplicate_position", "2"), (9, "invalid_position", "x"),
                   (10, "duplicate_position", "2"), (11, "code_without_claim", "NOPE"),
                   (12, "invalid_position", "26")]
    # A1 and A3 are rejected whole; A2 and A4 load.
    assert con.execute("SELECT claim_id FROM claims ORDER BY 1").fetchall() == [("A2",), ("A4",)]


def test_claims_file_given_again_as_universe_is_read_once_with_the_same_rows(con, tmp_path):
    """The universe from the claims file this load read (its table reused) equals the universe
    read from a copy of the file: four claims, facility ' F002 ' trimmed, A4 discharged 2026-04-10.
    A later load whose claims are in another layout reads the universe file afresh."""
    import shutil

    import duckdb

    rows = good_claims()
    rows[2]["facility_id"] = " F002 "
    claims = write_wide(tmp_path / "claims.csv", rows)
    load(con, InputFiles(claims=[claims], universe=[claims]), "2026-11")
    query = ("SELECT claim_id, facility_id, CAST(discharge_date AS VARCHAR), billed_drg, source_row "
             "FROM universe ORDER BY claim_id")
    expected = [("A1", "F001", "2026-01-06", "293", 1), ("A2", "F001", "2026-01-06", "293", 2),
                ("A3", "F002", "2026-01-06", "399", 3), ("A4", "F001", "2026-04-10", "293", 4)]
    assert con.execute(query).fetchall() == expected
    copy = shutil.copy(claims, tmp_path / "universe.csv")
    other = duckdb.connect(":memory:")
    load(other, InputFiles(claims=[claims], universe=[copy]), "2026-11")
    assert other.execute(query).fetchall() == expected

    # Next load on the same connection: long-layout claims, the universe file since rewritten.
    write_wide(claims, rows[:2])
    long_dir = tmp_path / "long"
    long_dir.mkdir()
    c = write_long(long_dir, "claims", good_claims())
    load(con, InputFiles(claims=[c["header"]], claim_diagnoses=[c["dx"]], claim_procedures=[c["px"]],
                         universe=[claims]), "2026-11")
    assert con.execute(query).fetchall() == expected[:2]


def test_accepted_claims_and_universe_are_written_once_into_the_stage(con, tmp_path):
    """The accepted claims and universe rows go straight into the stage (`accept_rows`): no TEMP
    copy of them is left, nor the typed claims (`v_claims`) once the reviews are checked; the
    published rows are the four good claims, each with the load's period and id."""
    claims = write_wide(tmp_path / "claims.csv", good_claims())
    result = load(con, InputFiles(claims=[claims], reviews=[write_wide(tmp_path / "reviews.csv", good_reviews())],
                                  universe=[claims]), "2026-11")
    temp = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() WHERE temporary").fetchall()}
    assert not temp & {"ok_claims", "ok_universe", "v_claims"}
    for table in ("claims", "universe"):
        assert con.execute(f"SELECT claim_id, audit_period, load_id FROM {table} ORDER BY claim_id").fetchall() == [
            (c, "2026-11", result.load_id) for c in ("A1", "A2", "A3", "A4")]


@pytest.mark.parametrize("listed", [10_000, 0], ids=["by-claim-id", "whole-view"])
def test_rows_with_invalid_codes_or_poa_are_named_whether_looked_up_by_claim_or_not(con, tmp_path, monkeypatch, listed):
    """The rows holding an invalid code are named from the claims that hold one (or, past
    FAILED_CODE_CLAIMS_LISTED such claims, from the whole file): the same rejections either way.
    By hand: row 5 (X1) has I50.2 at dx2 (not billable on its discharge date); row 6 has no
    claim_id and 12345 at dx1, no diagnosis code's shape, so it is rejected for the blank claim_id
    and for the code (its codes have no date, so only their shape is checked); row 7 (X2) has a
    valid I50.23; row 8 (X3) has POA Q, no POA value."""
    import audits.ingest.expectations as expectations

    monkeypatch.setattr(expectations, "FAILED_CODE_CLAIMS_LISTED", listed)
    rows = good_claims() + [claim("X1", ["I50.23", "I50.2"]), claim("", ["12345"]), claim("X2", ["I50.23"]),
                            claim("X3", [("I50.23", "Q")])]
    result = load_wide(con, tmp_path, rows, max_rejected_share=1.0)
    got = sorted(zip(result.rejections["row"].astype(int), result.rejections["column"],
                     result.rejections["rule"], result.rejections["value"].fillna("")))
    assert got == [(5, "dx2", "code_not_valid_for_discharge_date", "I50.2"),
                   (6, "claim_id", "required_value_missing", ""),
                   (6, "dx1", "invalid_code_format", "12345"), (8, "poa1", "invalid_poa", "Q")]


def test_large_files_read_into_a_scratch_database_give_the_same_load_and_leave_no_file(con, tmp_path, monkeypatch):
    """A file too large for DuckDB's memory is read into a scratch database on disk, compressed
    (`read_raw`): forced here for every file, the load names the same rows as the TEMP-table
    path (by hand, as in the test above: row 5 dx2, row 6 claim_id and dx1, row 8 poa1), the
    universe reuses the claims file's table, the published tables are identical, and the scratch
    file is gone after the load, as after a load that fails."""
    import duckdb

    import audits.ingest.readers.base as base

    rows = good_claims() + [claim("X1", ["I50.23", "I50.2"]), claim("", ["12345"]), claim("X2", ["I50.23"]),
                            claim("X3", [("I50.23", "Q")])]
    claims = write_wide(tmp_path / "claims.csv", rows)
    files = InputFiles(claims=[claims], reviews=[write_wide(tmp_path / "reviews.csv", good_reviews())],
                       universe=[claims])
    load(con, files, "2026-11", max_rejected_share=1.0)

    monkeypatch.setattr(base, "FILE_TABLE_SHARE", 0.0)
    scratch_dir = tmp_path / "spill"
    other = duckdb.connect(":memory:")
    other.execute(f"SET temp_directory = '{scratch_dir}'")
    attached = []
    real_scratch = base._scratch
    monkeypatch.setattr(base, "_scratch", lambda c: attached.append(1) or real_scratch(c))
    result = load(other, files, "2026-11", max_rejected_share=1.0)
    assert attached  # the scratch path was taken
    claims_rejected = result.rejections[result.rejections["entity"] == "claims"]
    got = sorted(zip(claims_rejected["row"].astype(int), claims_rejected["column"],
                     claims_rejected["rule"], claims_rejected["value"].fillna("")))
    assert got == [(5, "dx2", "code_not_valid_for_discharge_date", "I50.2"),
                   (6, "claim_id", "required_value_missing", ""),
                   (6, "dx1", "invalid_code_format", "12345"), (8, "poa1", "invalid_poa", "Q")]
    assert snapshot(other) == snapshot(con)
    universe = "SELECT claim_id, source_row FROM universe ORDER BY source_row"
    # Every row but row 6 (no claim_id): the universe has no codes to fail.
    assert [r[1] for r in other.execute(universe).fetchall()] == [1, 2, 3, 4, 5, 7, 8]
    assert other.execute(universe).fetchall() == con.execute(universe).fetchall()
    assert list(scratch_dir.glob("coding_audit_read_*")) == []
    assert "read_scratch" not in {r[0] for r in other.execute("SELECT database_name FROM duckdb_databases()").fetchall()}

    write_wide(claims, [claim("", ["I50.23"])] * 3)  # every row rejected: the load fails
    with pytest.raises(TooManyRejectedError):
        load(other, InputFiles(claims=[claims]), "2026-11")
    assert list(scratch_dir.glob("coding_audit_read_*")) == []


def test_scratch_database_left_by_a_killed_load_is_removed_but_not_one_in_use(tmp_path):
    """A killed load leaves its scratch file: the next one deletes it (no process holds it),
    but not a scratch file another process has attached."""
    import subprocess
    import sys

    import duckdb

    from audits.ingest.readers.base import _scratch, release_scratch

    (tmp_path / "coding_audit_read_dead.duckdb").write_bytes(b"left by a killed load")
    (tmp_path / "coding_audit_read_dead.duckdb.wal").write_bytes(b"")
    held = tmp_path / "coding_audit_read_held.duckdb"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import duckdb, sys; c = duckdb.connect(); "
        f"c.execute(\"ATTACH '{held}' AS s\"); c.execute('CREATE TABLE s.t AS SELECT 1'); "
        "print('ready', flush=True); sys.stdin.read()")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        con = duckdb.connect(":memory:")
        con.execute(f"SET temp_directory = '{tmp_path}'")
        _scratch(con)
        names = sorted(p.name for p in tmp_path.glob("coding_audit_read_*"))
        assert "coding_audit_read_dead.duckdb" not in names and "coding_audit_read_dead.duckdb.wal" not in names
        assert "coding_audit_read_held.duckdb" in names and len([n for n in names if n.endswith(".duckdb")]) == 2
        release_scratch(con)
        assert sorted(p.name for p in tmp_path.glob("coding_audit_read_*.duckdb")) == ["coding_audit_read_held.duckdb"]
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)


@pytest.mark.parametrize("setting,expected", [("1536MB", 1.4 * 2**30), ("2GB", 1.8 * 2**30), ("512MiB", 512 * 2**20)])
def test_memory_limit_is_read_from_duckdb_setting(setting, expected):
    """DuckDB shows its limit rounded in binary units: 1536 MB reads '1.4 GiB', 2 GB '1.8 GiB'."""
    import duckdb

    from audits.ingest.readers.base import memory_limit_bytes

    con = duckdb.connect(":memory:")
    con.execute(f"SET memory_limit = '{setting}'")
    assert memory_limit_bytes(con) == pytest.approx(expected)


def test_parquet_through_the_scratch_database_equals_csv_and_its_size_is_estimated_from_metadata(con, tmp_path, monkeypatch):
    """A Parquet file's table is estimated at 7 bytes a field from its metadata (4 rows of the
    wide layout's columns here), and read through the scratch database it loads as the CSV does."""
    import duckdb
    import pandas as pd

    import audits.ingest.readers.base as base

    csv_path = write_wide(tmp_path / "claims.csv", good_claims())
    frame = pd.read_csv(csv_path, dtype=str)
    frame.to_parquet(tmp_path / "claims.parquet")
    other = duckdb.connect(":memory:")
    assert base._estimated_table_bytes(other, tmp_path / "claims.parquet", ".parquet", len(frame.columns)) == \
        4 * len(frame.columns) * 7
    load(con, InputFiles(claims=[csv_path]), "2026-11")
    monkeypatch.setattr(base, "FILE_TABLE_SHARE", 0.0)
    other.execute(f"SET temp_directory = '{tmp_path / 'spill'}'")
    load(other, InputFiles(claims=[tmp_path / "claims.parquet"]), "2026-11")
    assert snapshot(other) == snapshot(con)
    assert list((tmp_path / "spill").glob("coding_audit_read_*")) == []


def test_a_large_file_is_read_into_a_temp_table_when_no_scratch_database_can_be_made(con, tmp_path, monkeypatch):
    """DuckDB's temp directory is a file, not a folder: no scratch database, and the load still
    gives the same tables through a TEMP table."""
    import duckdb

    import audits.ingest.readers.base as base

    claims = write_wide(tmp_path / "claims.csv", good_claims())
    load(con, InputFiles(claims=[claims]), "2026-11")
    monkeypatch.setattr(base, "FILE_TABLE_SHARE", 0.0)
    (tmp_path / "not_a_folder").write_text("")
    other = duckdb.connect(":memory:")
    other.execute(f"SET temp_directory = '{tmp_path / 'not_a_folder'}'")
    load(other, InputFiles(claims=[claims]), "2026-11")
    assert snapshot(other) == snapshot(con)
    assert base._scratch_path(other) is None
