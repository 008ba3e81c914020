"""Upcoding-flag assets: `upcoding_flags`, `upcoding_rules`, `coder_funnel`, `facility_target_areas`,
`target_area_peers`, `short_stay_rates` for the audit period."""

from pathlib import Path

import dagster as dg

from assets.resources import WAREHOUSE_POOL, AuditSettings, WarehouseResource, audit_periods
from audits.flags import build_flags
from audits.ingest.peers import read_peers
from audits.periods import build_for_period

FLAG_TABLES = ("upcoding_flags", "upcoding_rules", "coder_funnel", "facility_target_areas", "target_area_peers",
               "short_stay_rates")


@dg.multi_asset(
    specs=[dg.AssetSpec(t, kinds={"duckdb"}, group_name="compliance",
                        deps=["claims", "reviews", "claim_codes", "universe", "code_diffs", "claim_regroup"])
           for t in FLAG_TABLES],
    partitions_def=audit_periods, pool=WAREHOUSE_POOL)
def upcoding(context: dg.AssetExecutionContext, warehouse: WarehouseResource, settings: AuditSettings):
    """Claim, coder and facility upcoding patterns, each flag with the claims behind it."""
    peers = read_peers([Path(p) for p in settings.peers_files]) if settings.peers_files else None
    counts_by_level: dict = {}

    def build(con) -> None:
        counts_by_level.update(build_flags(con, peers=peers, weights_dir=settings.weights_folder or None))

    with warehouse.staged(context) as con:
        counts = build_for_period(
            con, context.partition_key,
            ("claims", "reviews", "claim_codes", "universe", "code_diffs", "claim_regroup"), FLAG_TABLES, build)
    context.log.info(f"upcoding flags: {counts_by_level}")
    for table in FLAG_TABLES:
        yield dg.MaterializeResult(asset_key=table, metadata={"rows": counts[table]})
