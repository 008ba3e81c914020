"""`reports`: index, audit, revenue and compliance pages of the period, with their CSV exports."""

import json
import shutil

import dagster as dg

from assets.resources import WAREHOUSE_POOL, AuditSettings, WarehouseResource, audit_periods
from reports import write_reports


@dg.asset(deps=["run_summary"], partitions_def=audit_periods, pool=WAREHOUSE_POOL, kinds={"html", "plotly"},
          group_name="reports")
def reports(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
            settings: AuditSettings) -> dg.MaterializeResult:
    """Self-contained HTML pages (plotly.js embedded, no network) in <workdir>/reports/<period>/,
    copied to <workdir>/reports/ as the latest run."""
    period = context.partition_key
    summary = json.loads((settings.workdir_path / "summary.json").read_text(encoding="utf-8"))
    out = settings.workdir_path / "reports" / period
    with warehouse.get_connection() as con:
        written = write_reports(con, period, out, summary)
    latest = settings.workdir_path / "reports"
    for path in written.values():
        shutil.copy2(path, latest / path.name)
    context.log.info(f"reports written to {latest / 'index.html'}")
    return dg.MaterializeResult(metadata={"index": str(latest / "index.html"),
                                          "files": dg.MetadataValue.json(sorted(p.name for p in written.values()))})
