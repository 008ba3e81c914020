"""`run_summary`: summary.json of the audit period in the working folder."""


import dagster as dg

from assets.resources import WAREHOUSE_POOL, AuditSettings, audit_periods, WarehouseResource
from audits.summary import build_summary, write_summary


@dg.asset(deps=["claims", "reviews", "claim_codes", "rejected_rows", "code_diffs", "error_rates",
                "coder_scorecard"], partitions_def=audit_periods,
          pool=WAREHOUSE_POOL, kinds={"json"}, group_name="reports")
def run_summary(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                settings: AuditSettings) -> dg.MaterializeResult:
    """Headline figures of the period, written to <workdir>/summary.json."""
    with warehouse.get_connection() as con:
        figures = build_summary(con, context.partition_key)
    path = write_summary(settings.workdir_path / "summary.json", figures)
    context.log.info(f"summary written to {path}")
    return dg.MaterializeResult(metadata={"path": str(path), **{
        k: v for k, v in figures.items() if isinstance(v, int)}})
