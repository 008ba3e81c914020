"""`run_summary`: summary.json of the audit period in the working folder."""


import dagster as dg

from assets.resources import WAREHOUSE_POOL, AuditSettings, audit_periods, WarehouseResource
from audits.summary import build_summary, write_summary


@dg.asset(deps=["claims", "reviews", "claim_codes", "rejected_rows", "code_diffs", "error_rates",
                "coder_scorecard", "claim_regroup", "revenue_impact", "revenue_extrapolation",
                "upcoding_flags", "billed_drg_validation"], partitions_def=audit_periods,
          pool=WAREHOUSE_POOL, kinds={"json"}, group_name="reports")
def run_summary(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                settings: AuditSettings) -> dg.MaterializeResult:
    """Headline figures of the period, written to <workdir>/summary.json."""
    with warehouse.get_connection() as con:
        rates = settings.rate_config().summary()
        base_rate = rates["base_rate"] if rates.get("base_rate") is not None else rates["default_base_rate"]
        figures = build_summary(con, context.partition_key, {"base_rate": base_rate, "rates": rates},
                                weights_dir=settings.weights_folder or None)
    path = write_summary(settings.workdir_path / "summary.json", figures)
    context.log.info(f"summary written to {path}")
    return dg.MaterializeResult(metadata={"path": str(path), **{
        k: v for k, v in figures.items() if isinstance(v, int)}})
