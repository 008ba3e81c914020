"""The universe regroup streamed in chunks and batches: the same table whatever the sizes."""

from __future__ import annotations

import duckdb
import pytest

import audits.revenue.regroup as regroup
from audits.revenue.grouping import MsdrgAdapter
from audits.ingest.loading import load
from audits.revenue.pricing import load_rate_config
from audits.ingest.readers import InputFiles
from tests.helpers import claim, write_wide

# J18.9 alone groups to 195 (FY2026 weight 0.6285); with N17.9 (CC) to 194 (0.8059). At a base
# rate of 10,000: 195 pays 6,285.00 and 194 8,059.00, so billing 194 for a 195 claim is 1,774.00 too high.
CLAIMS = [claim("U1", ["J18.9"], billed_drg="194"), claim("U2", ["J18.9"], billed_drg="195"),
          claim("U3", ["J18.9"], billed_drg="194"), claim("U4", ["J18.9"], billed_drg="195"),
          claim("U5", ["J18.9"], billed_drg="194"), claim("U6", ["J18.9", "N17.9"], billed_drg="194")]
EXPECTED = [(cid, "194", "195", "OK", 8059.0, 6285.0, -1774.0) for cid in ("U1", "U3", "U5")]


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    folder = tmp_path_factory.mktemp("universe")
    con = duckdb.connect(str(folder / "warehouse.duckdb"))
    load(con, InputFiles(claims=[write_wide(folder / "claims.csv", CLAIMS)], reviews=[]), "2026-11")
    yield con
    con.close()


def _table(con):
    return con.execute("""SELECT claim_id, billed_drg, regrouped_drg, return_code, billed_payment,
                                 regrouped_payment, difference FROM billed_drg_validation ORDER BY claim_id""").fetchall()


@pytest.mark.parametrize("chunk, batch", [(1_000_000, 250_000), (2, 1), (4, 3)])
def test_same_table_whatever_the_chunk_and_batch_sizes(warehouse, monkeypatch, chunk, batch):
    monkeypatch.setattr(regroup, "UNIVERSE_CHUNK_CLAIMS", chunk)
    monkeypatch.setattr(regroup, "UNIVERSE_BATCH_CLAIMS", batch)
    seen = []
    figures = regroup.build_billed_drg_validation(
        warehouse, "2026-11", MsdrgAdapter(workers=1, mode="threads"),
        load_rate_config(None, base_rate_override=10000), progress=lambda done, total: seen.append((done, total)))
    assert _table(warehouse) == EXPECTED
    assert figures == {"claims_regrouped": 6, "claims_not_grouped": 0, "billed_drg_mismatches": 3,
                       "billed_drg_mismatch_amount": 5322.0, "ungroupable_claims": 0}
    assert seen[0] == (0, 6) and seen[-1] == (6, 6)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_chunks_are_consecutive_claim_id_ranges(warehouse):
    assert regroup.universe_chunks(warehouse, "2026-11", 4) == [("U1", "U4", 4), ("U5", "U6", 2)]
    assert regroup.universe_chunks(warehouse, "2026-12", 4) == []


def _chunked_run(tmp_path, monkeypatch, executor: str) -> list:
    """universe_regroup_job over 3 chunks of 2 claims, on the given executor; the table it published."""
    import dagster as dg

    from pipelines.definitions import build_definitions, universe_regroup_job_from_environment

    work = tmp_path / executor
    work.mkdir()
    con = duckdb.connect(str(work / "warehouse.duckdb"))
    load(con, InputFiles(claims=[write_wide(tmp_path / "claims.csv", CLAIMS)], reviews=[]), "2026-11")
    con.close()
    config = {"ops": {"plan_universe_chunks": {"config": {"audit_period": "2026-11", "chunk_claims": 2}}},
              "resources": {"settings": {"config": {"workdir": str(work), "base_rate": 10000.0}},
                            "warehouse": {"config": {"database": str(work / "warehouse.duckdb")}}}}
    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        if executor == "multiprocess":  # each step in its own process: the job must be reconstructable
            monkeypatch.setenv("CODING_AUDIT_WORKDIR", str(work))
            monkeypatch.setenv("CODING_AUDIT_EXECUTOR", "multiprocess")
            result = dg.execute_job(dg.reconstructable(universe_regroup_job_from_environment),
                                    instance=instance, run_config=config)
        else:
            job = build_definitions(workdir=work).resolve_job_def("universe_regroup_job")
            result = job.execute_in_process(run_config=config, instance=instance)
        assert result.success
        steps = [e for e in result.all_events if e.event_type_value == "STEP_SUCCESS"
                 and e.step_key.startswith("regroup_universe_chunk")]
        assert len(steps) == 3  # 6 claims, 2 per chunk
        pids = {e.pid for e in result.all_events if e.event_type_value == "STEP_START"}
        assert (len(pids) > 1) == (executor == "multiprocess")
    con = duckdb.connect(str(work / "warehouse.duckdb"), read_only=True)
    rows = _table(con)
    assert con.execute("SELECT DISTINCT audit_period FROM billed_drg_validation").fetchall() == [("2026-11",)]
    con.close()
    assert not any((work / "staging").iterdir())  # the chunk files are cleaned up
    return rows


def test_chunked_job_in_process_gives_the_same_table(tmp_path, monkeypatch):
    assert _chunked_run(tmp_path, monkeypatch, "in_process") == EXPECTED


@pytest.mark.slow  # one process per step: ~30-60 s on the shared 2-core machine
def test_chunked_job_on_the_multiprocess_executor_gives_the_same_table(tmp_path, monkeypatch):
    assert _chunked_run(tmp_path, monkeypatch, "multiprocess") == EXPECTED
