"""`audit_sample`: the next audit sample drawn from the period's universe, and the auditors' worklist."""

import json

import dagster as dg

from assets.resources import WAREHOUSE_POOL, AuditSettings, WarehouseResource, audit_periods
from audits.revenue.sampling import draw_from_warehouse, worklist
from reports.exports import write_csv


class SampleConfig(dg.Config):
    """Sample size, seed (recorded with the sample: the same seed and frame give the same sample)
    and whether to stratify by the universe's `stratum` column (proportional allocation)."""

    sample_size: int = 100
    seed: int = 1
    stratify: bool = False


@dg.asset(partitions_def=audit_periods, pool=WAREHOUSE_POOL, deps=["universe"], kinds={"duckdb", "csv"},
          group_name="sampling")
def audit_sample(context: dg.AssetExecutionContext, config: SampleConfig, warehouse: WarehouseResource,
                 settings: AuditSettings) -> dg.MaterializeResult:
    """Simple or stratified random sample, seeded; table `audit_sample` and worklist-<period>.csv."""
    period = context.partition_key
    with warehouse.get_connection() as con:
        sample, description = draw_from_warehouse(con, period, config.sample_size, config.seed, config.stratify)
        rows = worklist(sample).assign(audit_period=period, seed=config.seed)
        con.register("sample_frame", rows)
        con.execute("BEGIN TRANSACTION")
        con.execute("CREATE TABLE IF NOT EXISTS audit_sample AS SELECT * FROM sample_frame LIMIT 0")
        con.execute("DELETE FROM audit_sample WHERE audit_period = ?", [period])
        con.execute("INSERT INTO audit_sample BY NAME SELECT * FROM sample_frame")
        con.execute("CREATE TABLE IF NOT EXISTS audit_sample_frames (audit_period VARCHAR, description JSON)")
        con.execute("DELETE FROM audit_sample_frames WHERE audit_period = ?", [period])
        con.execute("INSERT INTO audit_sample_frames VALUES (?, ?)", [period, json.dumps(description, default=str)])
        con.execute("COMMIT")
        con.unregister("sample_frame")
    path = settings.workdir_path / f"worklist-{period}.csv"
    write_csv(worklist(sample), path)
    context.log.info(f"drew {len(sample):,} of {description['universe_size']:,} claims (seed {config.seed}); "
                     f"worklist {path}")
    return dg.MaterializeResult(metadata={"worklist": str(path), "seed": config.seed,
                                          "sample_size": len(sample), "method": description["method"]})
