"""`run_summary`: summary.json of the audit period, written into the run's staging folder (moved
into the working folder when the run publishes)."""


import dagster as dg

from assets.resources import WAREHOUSE_POOL, AuditSettings, audit_periods, WarehouseResource
from audits.staging import staging_dir
from audits.summary import build_summary, write_summary


@dg.asset(deps=["claims", "reviews", "claim_codes", "rejected_rows", "code_diffs", "error_rates",
                "coder_scorecard", "claim_regroup", "revenue_impact", "revenue_extrapolation",
                "upcoding_flags", "billed_drg_validation"], partitions_def=audit_periods,
          pool=WAREHOUSE_POOL, kinds={"json"}, group_name="reports")
def run_summary(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                settings: AuditSettings) -> dg.MaterializeResult:
    """Headline figures of the period, <workdir>/summary.json once the run publishes."""
    with warehouse.staged(context) as con:
        rates = settings.rate_config().summary()
        base_rate = rates["base_rate"] if rates.get("base_rate") is not None else rates["default_base_rate"]
        figures = build_summary(con, context.partition_key, {"base_rate": base_rate, "rates": rates,
                                                             "run_id": context.run.run_id},
                                weights_dir=settings.weights_folder or None)
        path = write_summary(staging_dir(warehouse.workdir, context.run.run_id) / "summary.json", figures)
    context.log.info(f"summary staged at {path}")
    return dg.MaterializeResult(metadata={"path": str(path), **{
        k: v for k, v in figures.items() if isinstance(v, int)}})
