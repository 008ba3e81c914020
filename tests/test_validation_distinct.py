"""GX over distinct values: `check_distinct` finds the same rows a per-row check would, in rule order."""

from __future__ import annotations

import duckdb

from audits.ingest.expectations import DistinctCheck, Rule, _gx, check_distinct, once, present


def test_distinct_values_and_row_verdicts_find_the_failing_rows_in_rule_order():
    """Six rows, worked by hand: claim_id missing on row 3; 'A' on rows 1 and 4 (both duplicates);
    sex 'X' on rows 2 and 5 (one distinct value, two rows); age 130 on row 4. Expected, rule by rule
    and then by row: required (3), duplicate (1, 4), sex (2, 5), age (4)."""
    con = duckdb.connect()
    con.execute("""CREATE TABLE t AS SELECT * FROM (VALUES
        (1, 'A', 'M', 40), (2, 'B', 'X', 50), (3, NULL, 'F', 60),
        (4, 'A', 'F', 130), (5, 'C', 'X', 70), (6, 'D', 'M', 80)) v(r, claim_id, sex, age)""")
    e = _gx().expectations
    checks = [
        DistinctCheck("rows", {"claim_id": present("claim_id"), "claim_id_once": once("claim_id", "t")}, [
            Rule("required", "claim_id", "missing", lambda: e.ExpectColumnValuesToNotBeNull(column="claim_id")),
            Rule("duplicate", "claim_id", "twice",
                 lambda: e.ExpectColumnValuesToBeInSet(column="claim_id_once", value_set=[True]))]),
        DistinctCheck("sex", {"sex": "sex"}, [
            Rule("sex", "sex", "domain", lambda: e.ExpectColumnValuesToBeInSet(column="sex", value_set=["M", "F"]))]),
        DistinctCheck("age", {"age": "age"}, [
            Rule("age", "age", "range", lambda: e.ExpectColumnValuesToBeBetween(column="age", min_value=0,
                                                                                 max_value=124))]),
    ]
    found = check_distinct(con, "t", checks, "c.r, f.rule", "c.r")
    assert list(zip(found["r"], found["rule"])) == [
        (3, "required"), (1, "duplicate"), (4, "duplicate"), (2, "sex"), (5, "sex"), (4, "age")]
    # The distinct frames GX ran on are temporary tables, dropped afterwards.
    assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name LIKE 'distinct_%'").fetchall() == [(0,)]


def test_no_failures_give_an_empty_frame_with_the_row_columns():
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT 'M' AS sex")
    e = _gx().expectations
    found = check_distinct(con, "t", [DistinctCheck("sex", {"sex": "sex"}, [
        Rule("sex", "sex", "domain", lambda: e.ExpectColumnValuesToBeInSet(column="sex", value_set=["M"]))])],
        "c.sex, f.rule", "c.sex")
    assert found.empty and list(found.columns) == ["sex", "rule"]


def test_universe_rows_quarantined_by_file_row_and_rule(con, tmp_path):
    """A universe file of five rows, worked by hand (row numbers count data rows from 1): row 2 has no
    claim_id; U1 is on rows 1 and 4 (both duplicates); row 3's discharge date 2026-02-30 is no date.
    Expected rejections, rule by rule then by row: required (2), duplicate (1, 4), invalid_date (3);
    only U3 (row 5) is accepted, its dates typed."""
    from audits.ingest.universe import stage_universe

    path = tmp_path / "universe.csv"
    path.write_text("claim_id,facility_id,admit_date,discharge_date\n"
                    "U1,F1,2026-01-01,2026-01-05\n"
                    ",F1,2026-01-02,2026-01-06\n"
                    "U2,F1,2026-02-01,2026-02-30\n"
                    "U1,F2,2026-01-03,2026-01-07\n"
                    "U3,F2,2026-01-04,2026-01-08\n")
    rejected = stage_universe(con, [path])
    found = list(zip(rejected["row"].astype(int), rejected["rule"], rejected["column"]))
    assert found == [(2, "required_value_missing", "claim_id"), (1, "duplicate_claim_id", "claim_id"),
                     (4, "duplicate_claim_id", "claim_id"), (3, "invalid_date", "discharge_date")]
    assert rejected.loc[rejected["rule"] == "invalid_date", "value"].tolist() == ["2026-02-30"]
    assert con.execute("SELECT claim_id, CAST(discharge_date AS VARCHAR) FROM ok_universe").fetchall() == [
        ("U3", "2026-01-08")]


def test_checks_share_one_gx_context_and_leave_no_suite_behind():
    """Every check of a process runs on one GX context and batch definition (a new data source per
    check cost two thirds of its time), and its suite and validation definition are removed after
    it: two checks with failing rows each find their own rows, with nothing left registered."""
    import pandas as pd

    from audits.ingest import expectations

    e = _gx().expectations
    frame = pd.DataFrame({"_key": [1, 2, 3], "v": ["a", None, "b"]})
    not_null = [Rule("required_value_missing", "v", "v is blank", lambda: e.ExpectColumnValuesToNotBeNull(column="v"))]
    in_set = [Rule("not_in_set", "v", "v is not a", lambda: e.ExpectColumnValuesToBeInSet(column="v", value_set=["a"]))]
    first = expectations.run_expectations("first", frame, not_null, ["_key"])
    second = expectations.run_expectations("second", frame, in_set, ["_key"])
    assert list(zip(first["_key"], first["rule"])) == [(2, "required_value_missing")]
    assert list(zip(second["_key"], second["rule"])) == [(3, "not_in_set")]  # GX skips the missing value
    context, _ = expectations._context()
    assert [d.name for d in context.data_sources.all().values()] == ["coding_audit_frames"]
    assert context.suites.all() == [] and context.validation_definitions.all() == []
