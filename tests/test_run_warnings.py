"""Warnings that do not stop a run reach summary.json and the overview page; summary.json's keys
are the ones README lists (one source: `audits.summary.SUMMARY_KEYS`); the rates source says
`--base-rate` when it was given (issue 13)."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from audits.summary import SUMMARY_KEYS, readme_key_list, run_warnings
from tests.helpers import claim, good_reviews, write_wide
from tests.test_bad_input import cli

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def warned_run(tmp_path_factory) -> Path:
    """Month-first slash dates proven by 01/31/2026 (so 01/02/2026 is 2 January), --format auto,
    --base-rate 7000."""
    root = tmp_path_factory.mktemp("warned")
    claims = [claim("A1", ["I50.23", "N17.9", "I10"], admit_date="01/28/2026", discharge_date="01/31/2026"),
              claim("A2", ["I50.23", ("J96.01", "N")], admit_date="01/02/2026", discharge_date="01/06/2026"),
              claim("A3", ["K35.80"], px=["0DTJ4ZZ"], admit_date="2026-01-02", discharge_date="2026-01-04")]
    reviews = good_reviews()
    work = root / "work"
    code, _, err = cli("run", "--claims", write_wide(root / "claims.csv", claims), "--reviews",
                       write_wide(root / "reviews.csv", reviews), "--workdir", work, "--period", "2026-11",
                       "--format", "auto", "--base-rate", "7000")
    assert code == 0, err
    return work


def test_warnings_reach_summary_json(warned_run):
    summary = json.loads((warned_run / "summary.json").read_text())
    by_code = {}
    for warning in summary["warnings"]:
        assert set(warning) == {"code", "message", "count"}
        by_code.setdefault(warning["code"], []).append(warning)
    assert sorted(by_code) == ["ambiguous_dates_resolved", "layout_detected"]
    (dates,) = by_code["ambiguous_dates_resolved"]
    assert dates["count"] == 2 and "01/02/2026" in dates["message"] and "month first" in dates["message"]
    assert sorted(w["message"] for w in by_code["layout_detected"]) == [
        "claims files read as the wide layout (--format auto)", "reviews files read as the wide layout (--format auto)"]


def test_overview_shows_warnings_the_run_and_the_rates_source(warned_run):
    summary = json.loads((warned_run / "summary.json").read_text())
    page = (warned_run / "reports" / "index.html").read_text()
    assert "claims files read as the wide layout (--format auto)" in page
    assert "read month first, because the file also has 01/28/2026" in page
    assert summary["run_id"] in page
    assert "{&#x27;claims&#x27;" not in page and "{'claims'" not in page  # no raw Python dict
    assert summary["rates"]["rates_source"] == "--base-rate 7000.00 for every facility (what-if)"
    assert "--base-rate 7000.00 for every facility (what-if)" in page


def test_summary_keys_are_the_documented_ones(warned_run):
    written = set(json.loads((warned_run / "summary.json").read_text()))
    assert written <= set(SUMMARY_KEYS), written - set(SUMMARY_KEYS)
    # only extrapolation_note is conditional (written when there is no extrapolation and a reason)
    assert set(SUMMARY_KEYS) - written <= {"extrapolation_note"}


def test_readme_key_list_is_generated_from_summary_keys():
    readme = (REPO / "README.md").read_text()
    start, end = "<!-- summary-keys: generated from audits/summary.py SUMMARY_KEYS -->", "<!-- /summary-keys -->"
    assert start in readme and end in readme
    assert readme.split(start, 1)[1].split(end, 1)[0].strip() == readme_key_list()


def test_unpriced_claims_and_claims_outside_grouper_versions_are_warnings():
    con = duckdb.connect(":memory:")
    con.execute("""CREATE TABLE claim_regroup AS SELECT * FROM (VALUES
        ('C1', 'underpaid', 'OK', 'OK'), ('C2', 'not_priced', 'OK', 'OK'), ('C3', 'not_priced', 'OK', 'OK'),
        ('C4', 'not_grouped', 'UNSUPPORTED_VERSION', 'UNSUPPORTED_VERSION'))
        AS t(claim_id, direction, original_return_code, audited_return_code)""")
    warnings = run_warnings(con, has_load_warnings=False)
    assert [(w["code"], w["count"]) for w in warnings] == [("outside_grouper_versions", 1), ("unpriced_claims", 2)]

