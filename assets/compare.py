"""Coding-comparison assets: `code_diffs`, `error_rates`, `coder_scorecard` for the audit period."""

import dagster as dg

from assets.resources import WAREHOUSE_POOL, audit_periods, WarehouseResource
from audits import compare
from audits.periods import build_for_period

COMPARE_TABLES = ("code_diffs", "error_rates", "coder_scorecard")


def _build_all(con) -> None:
    compare.build_code_diffs(con)
    compare.build_error_rates(con)
    compare.build_coder_scorecard(con)


@dg.multi_asset(
    specs=[dg.AssetSpec(t, kinds={"duckdb"}, group_name="coding_accuracy",
                        deps=["claims", "reviews", "claim_codes"]) for t in COMPARE_TABLES],
    partitions_def=audit_periods, pool=WAREHOUSE_POOL)
def coding_comparison(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    """Original vs audited codes per audited claim, error rates by position with Wilson intervals,
    and coder scorecards (DESIGN.md "Definitions")."""
    with warehouse.staged(context) as con:
        counts = build_for_period(con, context.partition_key, ("claims", "reviews", "claim_codes"),
                                  COMPARE_TABLES, _build_all)
    context.log.info(f"compared codes: {counts['code_diffs']:,} code rows, {counts['error_rates']:,} rate rows")
    for table in COMPARE_TABLES:
        yield dg.MaterializeResult(asset_key=table, metadata={"rows": counts[table]})
