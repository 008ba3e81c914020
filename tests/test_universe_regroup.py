"""The universe regroup streamed in chunks and batches: the same table whatever the sizes."""

from __future__ import annotations

import duckdb
import pytest

import audits.regroup as regroup
from audits.grouping import MsdrgAdapter
from audits.ingest import load
from audits.pricing import load_rate_config
from audits.readers import InputFiles
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
    assert figures == {"claims_regrouped": 6, "billed_drg_mismatches": 3, "billed_drg_mismatch_amount": 5322.0,
                       "ungroupable_claims": 0}
    assert seen[0] == (0, 6) and seen[-1] == (6, 6)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_chunks_are_consecutive_claim_id_ranges(warehouse):
    assert regroup.universe_chunks(warehouse, "2026-11", 4) == [("U1", "U4", 4), ("U5", "U6", 2)]
    assert regroup.universe_chunks(warehouse, "2026-12", 4) == []
