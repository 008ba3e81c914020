"""`reports`: index, audit, revenue and compliance pages of the period with their CSV exports,
written into the run's staging folder; `publish`: the run made visible at once."""

import json

import dagster as dg

from assets.resources import WAREHOUSE_POOL, AuditSettings, WarehouseResource, audit_periods
from audits import runs, staging
from reports import write_reports


@dg.asset(deps=["run_summary"], partitions_def=audit_periods, pool=WAREHOUSE_POOL, kinds={"html", "plotly"},
          group_name="reports")
def reports(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
            settings: AuditSettings) -> dg.MaterializeResult:
    """Self-contained HTML pages (plotly.js embedded, no network) for <workdir>/reports/<period>/,
    also copied to <workdir>/reports/ as the latest run, once the run publishes."""
    period, run_id = context.partition_key, context.run.run_id
    folder = staging.staging_dir(warehouse.workdir, run_id)
    with warehouse.staged(context) as con:
        summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
        written = write_reports(con, period, folder / "reports" / period, summary)
    context.log.info(f"reports staged in {folder / 'reports' / period}")
    return dg.MaterializeResult(metadata={"files": dg.MetadataValue.json(sorted(p.name for p in written.values()))})


@dg.asset(deps=["reports"], partitions_def=audit_periods, pool=WAREHOUSE_POOL, kinds={"duckdb"},
          group_name="reports")
def publish(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
            settings: AuditSettings) -> dg.MaterializeResult:
    """Every table the run staged replaces the published one in one DuckDB transaction (with the
    run's `runs` row); then summary.json and the report folder are renamed into place."""
    period, run_id = context.partition_key, context.run.run_id
    workdir = warehouse.workdir
    summary = staging.read_staged_summary(workdir, run_id)
    try:
        with warehouse.get_connection() as con:
            table = runs.ensure_runs(con)
            staging.attach_stage(con, staging.stage_file(workdir, run_id))
            try:
                counts = staging.publish(con, extra_sql=[runs.succeeded_sql(
                    run_id, summary, table, settings.weights_folder or None)])
            finally:
                con.execute(f"DETACH {staging.STAGE}")
    except Exception as exc:
        warehouse.record_failure(context, exc)
        raise
    staging.move_into_place(workdir, run_id, period)
    context.log.info(f"published {len(counts)} tables, summary.json and the reports of {period}")
    return dg.MaterializeResult(metadata={"tables": dg.MetadataValue.json(counts)})
