"""Acceptance of the upcoding flags on demo data.

- Planted patterns (DemoConfig default): coder C07 (an MCC over-coder) is flagged by the coder rule and
  facility F003 (a septicemia outlier) by the septicemia target area, and nothing else is, both against the
  demo's own facilities and against New York's Medicare hospitals (CMS DY2022 "by Provider and Service",
  ../shared/reference; skipped without it): the demo's case mix is Medicare's (audits/demo/case_mix.py).
- No planted pattern (`plant_patterns=False`): no coder flag and no facility flag in at least 19 of
  20 seeds. Default suite: 5 seeds of 2,000 claims / 300 audited (at most one seed with a flag, the
  same 95% bar); the 20-seed version at 5,000 / 800 is marked slow. The seeds (SEED_BLOCK, from 9001)
  are a block no threshold was chosen on: q < 0.01 (flags.Q_THRESHOLD) was chosen on seeds 1000-1099;
  `benchmarks/flag_calibration.py --seeds 200` measures it on a block drawn at random at run time.
- Every flag's evidence lists claims; for claim and coder flags the exposure equals the sum of those
  claims' overpaid magnitudes (max(0, -delta) from claim_regroup).
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from audits import compare, flags
from audits.demo.config import DemoConfig
from audits.demo.generate import generate_demo
from audits.revenue.grouping import MsdrgAdapter
from audits.ingest.loading import load
from audits.ingest.peers import read_peers
from audits.revenue.pricing import load_rate_config
from audits.ingest.readers import InputFiles
from audits.revenue.regroup import build_regroup


NY_PEERS = (Path(__file__).resolve().parents[2] / "shared" / "reference"
            / "cms_medicare_inpatient_by_provider_and_service_dy2022_ny.csv")
needs_ny_peers = pytest.mark.skipif(not NY_PEERS.exists(), reason="CMS New York peers file not available")
PLANTED = {"coder:coder_overpaid_share:C07", "facility:target_area_outlier:F003:septicemia"}


def _entity_flag_ids(con) -> set[str]:
    return {r[0] for r in con.execute("SELECT flag_id FROM upcoding_flags WHERE level IN ('coder', 'facility')"
                                      ).fetchall()}


def _warehouse(out_dir, config: DemoConfig) -> duckdb.DuckDBPyConnection:
    paths = generate_demo(out_dir, config)
    con = duckdb.connect(":memory:")
    load(con, InputFiles(claims=[paths["claims"]], reviews=[paths["reviews"]]), "2026-11")
    compare.build_code_diffs(con)
    build_regroup(con, MsdrgAdapter(mode="threads"), load_rate_config())
    return con


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    con = _warehouse(tmp_path_factory.mktemp("planted"), DemoConfig(n_claims=5000, audit_sample=800))
    counts = flags.build_flags(con)
    yield con, counts
    con.close()


def test_planted_overcoder_is_flagged(planted):
    con, _ = planted
    coder = con.execute("SELECT * FROM upcoding_flags WHERE level = 'coder'").df().set_index("entity")
    assert "C07" in coder.index
    assert coder.loc["C07", "q_value"] < flags.Q_THRESHOLD and coder.loc["C07", "rule"] == "coder_overpaid_share"
    funnel = con.execute("SELECT * FROM coder_funnel WHERE coder_id = 'C07'").df().iloc[0]
    assert funnel["flagged"] and funnel["rate"] > funnel["upper_998"]


def test_planted_septicemia_facility_is_flagged(planted):
    con, _ = planted
    ids = {r[0] for r in con.execute("SELECT flag_id FROM upcoding_flags WHERE level = 'facility'").fetchall()}
    assert "facility:target_area_outlier:F003:septicemia" in ids
    row = con.execute("SELECT * FROM facility_target_areas WHERE facility_id = 'F003' "
                      "AND target_area = 'septicemia'").df().iloc[0]
    assert row["outlier"] == "high" and row["percent"] >= row["peer_p80"] and not row["suppressed"]
    assert row["flagged"] and row["q_value"] < flags.Q_THRESHOLD


def test_only_the_planted_coder_and_facility_are_flagged(planted):
    con, _ = planted
    assert _entity_flag_ids(con) == PLANTED


@needs_ny_peers
def test_against_new_york_peers_only_the_planted_patterns_are_flagged(planted):
    """Against 131 real New York hospitals (suppressed cells, so a peer counts for an area only where it
    reports every cell), the demo facilities' case mix is Medicare's: none is an outlier that significant,
    except F003's planted septicemia share (about 92% of the area; New York's pooled rate is 61.9%, its
    7 complete hospitals 45-70%)."""
    con, _ = planted
    flags.build_flags(con, peers=read_peers([NY_PEERS]))
    try:
        assert _entity_flag_ids(con) == PLANTED
        row = con.execute("SELECT * FROM facility_target_areas WHERE facility_id = 'F003' "
                          "AND target_area = 'septicemia'").df().iloc[0]
        assert row["peers"] == 7 and row["p0"] == pytest.approx(0.619, abs=0.001) and row["percent"] > 85
    finally:
        flags.build_flags(con)


def test_evidence_lists_claims_and_exposure_is_their_overpaid_sum(planted):
    con, counts = planted
    found = con.execute("SELECT * FROM upcoding_flags").df()
    overpaid = dict(con.execute("SELECT claim_id, greatest(0, -coalesce(delta, 0)) FROM claim_regroup").fetchall())
    universe = {r[0] for r in con.execute("SELECT claim_id FROM claims").fetchall()}
    assert counts["claim"] > 0 and counts["coder"] >= 1 and counts["facility"] >= 1
    for _, row in found.iterrows():
        ev = json.loads(row["evidence"])
        assert ev["claims"] and set(ev) == {"claims", "codes", "detail"}, row["flag_id"]
        if row["level"] == "facility":
            assert set(ev["claims"]) <= universe and pd.isna(row["exposure"])
        else:
            assert row["exposure"] == pytest.approx(sum(overpaid[c] for c in ev["claims"]), abs=0.005)
    coder = found[found["level"] == "coder"].set_index("entity").loc["C07"]
    assert coder["exposure"] > 0 and len(json.loads(coder["evidence"])["claims"]) == \
        con.execute("SELECT count(*) FROM claim_regroup WHERE coder_id = 'C07' AND direction = 'overpaid'"
                    ).fetchall()[0][0]


def test_summary_and_table_shapes(planted):
    con, counts = planted
    assert flags.flag_summary(con) == counts
    for table, columns in (("upcoding_flags", flags.FLAG_COLUMNS), ("coder_funnel", flags.FUNNEL_COLUMNS),
                           ("facility_target_areas", flags.TARGET_COLUMNS),
                           ("short_stay_rates", flags.SHORT_STAY_COLUMNS), ("upcoding_rules", flags.RULE_COLUMNS)):
        assert [(r[0], r[1]) for r in con.execute(f"DESCRIBE {table}").fetchall()] == list(columns.items())
    ids = [r[0] for r in con.execute("SELECT flag_id FROM upcoding_flags").fetchall()]
    assert len(ids) == len(set(ids))
    rules = {r[0] for r in con.execute("SELECT rule FROM upcoding_rules").fetchall()}
    assert {r[0] for r in con.execute("SELECT DISTINCT rule FROM upcoding_flags").fetchall()} <= rules


def _entity_flags(tmp_path, seed: int, n_claims: int, audit_sample: int) -> list[str]:
    con = _warehouse(tmp_path / f"s{seed}", DemoConfig(n_claims=n_claims, audit_sample=audit_sample, seed=seed,
                                                       plant_patterns=False))
    try:
        flags.build_flags(con)
        return [r[0] for r in con.execute("SELECT flag_id FROM upcoding_flags WHERE level IN ('coder', 'facility') "
                                          "AND q_value < 0.01").fetchall()]
    finally:
        con.close()


SEED_BLOCK = 9001


def test_no_coder_or_facility_flag_without_planted_patterns(tmp_path):
    flagged = {seed: _entity_flags(tmp_path, seed, 2000, 300) for seed in range(SEED_BLOCK, SEED_BLOCK + 5)}
    assert sum(not f for f in flagged.values()) >= 4, flagged


@pytest.mark.slow
def test_no_coder_or_facility_flag_without_planted_patterns_20_seeds(tmp_path):
    flagged = {seed: _entity_flags(tmp_path, seed, 5000, 800) for seed in range(SEED_BLOCK, SEED_BLOCK + 20)}
    assert sum(not f for f in flagged.values()) >= 19, flagged
