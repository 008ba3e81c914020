"""Revenue assets: `claim_regroup`, `regroup_findings`, `revenue_impact`, `revenue_extrapolation`."""

import dagster as dg

from assets.resources import WAREHOUSE_POOL, AuditSettings, WarehouseResource, audit_periods, warehouse_check
from audits.revenue.grouping import MsdrgAdapter
from audits.periods import build_for_period
from audits.ingest.quality import reconcile_regroup, reconcile_revenue
from audits.revenue.regroup import build_extrapolation, build_regroup

REVENUE_TABLES = ("claim_regroup", "regroup_findings", "revenue_impact", "revenue_extrapolation")


@dg.multi_asset(
    specs=[dg.AssetSpec(t, kinds={"duckdb"}, group_name="revenue",
                        deps=["claims", "reviews", "claim_codes", "universe"]) for t in REVENUE_TABLES],
    partitions_def=audit_periods, pool=WAREHOUSE_POOL)
def revenue(context: dg.AssetExecutionContext, warehouse: WarehouseResource, settings: AuditSettings):
    """Both sides of every audited claim through the MS-DRG grouper of its discharge date, priced
    with Table 5 weights, and the delta extrapolated to the universe when one was loaded."""
    grouper = MsdrgAdapter(mode="threads")  # threads: no fork inside the Dagster process
    rate_config = settings.rate_config()
    figures: dict = {}

    def build(con) -> None:
        figures.update(build_regroup(con, grouper, rate_config, settings.weights_folder or None))
        figures["extrapolation"] = build_extrapolation(con)

    with warehouse.staged(context) as con:
        counts = build_for_period(con, context.partition_key, ("claims", "reviews", "claim_codes", "universe"),
                                  REVENUE_TABLES, build)
    context.log.info(f"regrouped {counts['claim_regroup']:,} audited claims with {grouper.version_string} "
                     f"({grouper.last_run.get('distinct_code_sets', 0):,} distinct code sets); net "
                     f"{figures['net_amount']:,.2f}")
    for table in REVENUE_TABLES:
        yield dg.MaterializeResult(asset_key=table, metadata={"rows": counts[table]})


REVENUE_CHECKS = [
    warehouse_check("claim_regroup", "every_audited_claim_regrouped",
                    "every audited claim has a regroup row or a finding saying why not", reconcile_regroup),
    warehouse_check("revenue_impact", "revenue_totals_reconcile",
                    "revenue totals equal the sum of the claims' deltas, to the cent", reconcile_revenue),
]


@dg.asset(deps=["claims", "claim_codes"], partitions_def=audit_periods, pool=WAREHOUSE_POOL,
          kinds={"duckdb"}, group_name="revenue")
def billed_drg_validation(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                          settings: AuditSettings) -> dg.MaterializeResult:
    """With `regroup_universe` on (`coding-audit run --regroup-universe`): every claim of the period,
    audited or not, regrouped; billed-DRG mismatches listed with the dollar difference."""
    from audits.progress import stage_progress
    from audits.revenue.regroup import BILLED_VALIDATION_SCHEMA, build_billed_drg_validation

    figures: dict = {"enabled": settings.regroup_universe}
    # auto: the whole universe is far above the process threshold, so worker processes (from a fork
    # server, not a fork of this process) also read the answers in parallel (300,000 claims: ~1.7 s of 14 s).
    grouper = MsdrgAdapter()
    rate_config = settings.rate_config()

    def build(con) -> None:
        if settings.regroup_universe:
            figures.update(build_billed_drg_validation(
                con, context.partition_key, grouper, rate_config, settings.weights_folder or None,
                progress=stage_progress("universe regroup", "claims")))
        else:
            con.execute(f"CREATE OR REPLACE TABLE billed_drg_validation ({BILLED_VALIDATION_SCHEMA})")

    with warehouse.staged(context) as con:
        build_for_period(con, context.partition_key, ("claims", "claim_codes"), ("billed_drg_validation",), build)
    if settings.regroup_universe:
        context.log.info(f"regrouped {figures['claims_regrouped']:,} claims: {figures['billed_drg_mismatches']:,} "
                         f"billed-DRG mismatches, ${figures['billed_drg_mismatch_amount']:,.2f} at stake")
    return dg.MaterializeResult(metadata={k: v for k, v in figures.items() if isinstance(v, (int, float, bool))})
