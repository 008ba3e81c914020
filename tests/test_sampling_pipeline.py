"""Drawing the next audit sample: the CLI from a universe file, the asset from the warehouse."""

from __future__ import annotations

import csv
import json

import dagster as dg
import duckdb

from pipelines.cli import main
from pipelines.definitions import build_definitions
from tests.helpers import claim, good_claims, good_reviews, write_wide


def _universe(path, n=40):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["claim_id", "facility_id", "discharge_date", "patient_id", "stratum"])
        for i in range(n):
            w.writerow([f"U{i:03d}", "F001", "2026-01-06", f"SECRET-PATIENT-{i}", "high" if i < 10 else "low"])
    return path


def test_cli_sample_is_reproducible_and_has_no_patient_ids(tmp_path, capsys):
    universe = _universe(tmp_path / "u.csv")
    for out in ("a", "b"):
        assert main(["sample", "--universe", str(universe), "--size", "8", "--seed", "42", "--stratify",
                     "--out", str(tmp_path / out)]) == 0
    first = (tmp_path / "a" / "worklist.csv").read_text()
    assert first == (tmp_path / "b" / "worklist.csv").read_text()
    assert "SECRET-PATIENT" not in first
    description = json.loads((tmp_path / "a" / "sample.json").read_text())
    assert description["seed"] == 42 and description["universe_size"] == 40
    # proportional allocation of 8 over strata of 10 and 30 claims: 2 and 6
    assert {s["stratum"]: s["sample_count"] for s in description["strata"]} == {"high": 2, "low": 6}
    assert main(["sample", "--universe", str(universe), "--size", "8", "--seed", "43", "--stratify",
                 "--out", str(tmp_path / "c")]) == 0
    assert (tmp_path / "c" / "worklist.csv").read_text() != first


def test_sample_asset_draws_from_the_loaded_universe(tmp_path):
    work = tmp_path / "w"
    claims = write_wide(tmp_path / "claims.csv", good_claims())
    universe = _universe(tmp_path / "u.csv")
    assert main(["run", "--claims", str(claims), "--universe", str(universe), "--workdir", str(work),
                 "--period", "2026-11"]) == 0
    defs = build_definitions(workdir=work)
    job = defs.resolve_job_def("sample_job")
    result = job.execute_in_process(
        run_config={"ops": {"audit_sample": {"config": {"sample_size": 5, "seed": 3}}}},
        partition_key="2026-11", instance=dg.DagsterInstance.ephemeral())
    assert result.success
    worklist = (work / "worklist-2026-11.csv").read_text()
    assert len(worklist.strip().splitlines()) == 6 and "SECRET-PATIENT" not in worklist
    con = duckdb.connect(str(work / "warehouse.duckdb"), read_only=True)
    assert con.execute("SELECT count(*), min(seed) FROM audit_sample").fetchall() == [(5, 3)]
    con.close()
