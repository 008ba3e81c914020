"""Dagster definitions, the in-process audit run, the CLI exit codes, the sensor and the schedule."""

from __future__ import annotations

import datetime as dt
import json
import os

import dagster as dg
import duckdb
import pytest

from assets.resources import AuditSettings
from pipelines.cli import main
from pipelines.definitions import build_definitions, monthly_audit_schedule, reviews_drop_sensor
from tests.helpers import claim, good_claims, good_reviews, write_wide


def test_definitions_load_without_warnings(recwarn, tmp_path):
    defs = build_definitions(workdir=tmp_path)
    dg.Definitions.validate_loadable(defs)
    job = defs.resolve_job_def("audit_job")
    assert {"ingest", "coding_comparison", "run_summary"} <= {n.name for n in job.graph.node_defs}
    assert not [w for w in recwarn if issubclass(w.category, DeprecationWarning)]


def test_cli_run_materialises_warehouse_and_summary(tmp_path, capsys):
    claims = write_wide(tmp_path / "claims.csv", good_claims())
    reviews = write_wide(tmp_path / "reviews.csv", good_reviews())
    work = tmp_path / "work"
    code = main(["run", "--claims", str(claims), "--reviews", str(reviews), "--workdir", str(work),
                 "--period", "2026-11"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((work / "summary.json").read_text())
    assert (summary["claims"], summary["reviews"], summary["audited_claims"], summary["rejected_rows"]) == (4, 3, 3, 0)
    # A1: I10 kept, N17.9 deleted; A2: J96.01 deleted; A3 unchanged -> 2 of 3 records in error.
    assert summary["record_error_rate"] == pytest.approx(2 / 3, abs=1e-4)
    con = duckdb.connect(str(work / "warehouse.duckdb"), read_only=True)
    assert con.execute("SELECT count(*) FROM claims").fetchall()[0][0] == 4
    assert con.execute("SELECT DISTINCT audit_period FROM code_diffs").fetchall() == [("2026-11",)]
    con.close()
    out = capsys.readouterr().out
    assert "ingest: done" in out and "audited_claims" in out


def test_cli_missing_required_column_exits_2_naming_it(tmp_path, capsys):
    path = write_wide(tmp_path / "claims.csv", good_claims())
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    drop = header.index("sex")
    path.write_text("\n".join(",".join(v for i, v in enumerate(l.split(",")) if i != drop) for l in lines))
    code = main(["run", "--claims", str(path), "--workdir", str(tmp_path / "w")])
    err = capsys.readouterr().err
    assert code == 2
    assert "column sex" in err and "claims.csv" in err and "missing required column 'sex'" in err


def test_cli_failed_validation_exits_2_and_keeps_previous_tables(tmp_path, capsys):
    work = tmp_path / "w"
    claims = write_wide(tmp_path / "claims.csv", good_claims())
    assert main(["run", "--claims", str(claims), "--workdir", str(work), "--period", "2026-11"]) == 0
    bad = write_wide(tmp_path / "bad.csv", [claim(f"X{i}", ["I50.2"]) for i in range(3)])
    assert main(["run", "--claims", str(bad), "--workdir", str(work), "--period", "2026-11"]) == 2
    assert "3 of 3 claims rows failed validation" in capsys.readouterr().err
    con = duckdb.connect(str(work / "warehouse.duckdb"), read_only=True)
    assert sorted(r[0] for r in con.execute("SELECT claim_id FROM claims").fetchall()) == ["A1", "A2", "A3", "A4"]
    con.close()


def test_sensor_fires_once_per_new_reviews_file(tmp_path):
    drop = tmp_path / "drop"
    (drop / "2026-10").mkdir(parents=True)
    write_wide(drop / "2026-10" / "claims.csv", good_claims())
    write_wide(drop / "2026-10" / "reviews.csv", good_reviews())
    settings = AuditSettings(workdir=str(tmp_path), drop_folder=str(drop))

    def tick(cursor):
        with dg.build_sensor_context(cursor=cursor, resources={"settings": settings}) as context:
            return reviews_drop_sensor(context)

    first = tick(None)
    assert len(first.run_requests) == 1
    request = first.run_requests[0]
    assert request.partition_key == "2026-10"
    assert request.run_config["ops"]["ingest"]["config"]["claims"] == [str(drop / "2026-10" / "claims.csv")]
    assert tick(first.cursor).run_requests == []  # same file: no second run
    write_wide(drop / "2026-10" / "reviews_batch2.csv", good_reviews()[:1])
    third = tick(first.cursor)
    assert [r.run_config["ops"]["ingest"]["config"]["reviews"] for r in third.run_requests] == [
        [str(drop / "2026-10" / "reviews_batch2.csv")]]


def test_sensor_takes_past_periods_and_skips_folders_outside_the_range(tmp_path):
    drop = tmp_path / "drop"
    for period in ("2016-03", "2015-09"):
        (drop / period).mkdir(parents=True)
        write_wide(drop / period / "claims.csv", good_claims())
        write_wide(drop / period / "reviews.csv", good_reviews())
    settings = AuditSettings(workdir=str(tmp_path), drop_folder=str(drop))
    with dg.build_sensor_context(cursor=None, resources={"settings": settings}) as context:
        result = reviews_drop_sensor(context)
    assert [r.partition_key for r in result.run_requests] == ["2016-03"]  # 2015-09 is before ICD-10


def test_monthly_schedule_audits_the_month_just_ended():
    context = dg.build_schedule_context(scheduled_execution_time=dt.datetime(2026, 12, 1, 6, tzinfo=dt.timezone.utc))
    request = monthly_audit_schedule(context)
    assert request.partition_key == "2026-11"


def test_drop_folder_run_without_explicit_files(tmp_path):
    from pipelines.cli import run_audit

    drop = tmp_path / "work" / "drop" / "2026-11"
    drop.mkdir(parents=True)
    write_wide(drop / "claims.csv", good_claims())
    write_wide(drop / "reviews.csv", good_reviews())
    summary = run_audit({}, tmp_path / "work", "2026-11")
    assert summary["audited_claims"] == 3
