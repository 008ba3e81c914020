"""`universe_regroup_job`: the universe regroup as chunks any Dagster executor can spread.

plan (reads the warehouse, writes each chunk's grouper input to Parquet) -> one step per chunk
(dynamic outputs; regroups its Parquet file without opening the warehouse) -> publish (loads every
chunk's result into `billed_drg_validation` in one transaction, replacing the period). The same
table as the `billed_drg_validation` asset of `audit_job`; the steps exchange only small dicts and
files under <workdir>/staging/, so on a cluster <workdir> must be shared storage.
"""

import shutil
from pathlib import Path

import dagster as dg

from assets.resources import WAREHOUSE_POOL, AuditSettings, WarehouseResource


class UniverseRegroupConfig(dg.Config):
    """The audit period to regroup and the claims per chunk (one step each)."""

    audit_period: str
    chunk_claims: int = 1_000_000


def _staging(settings: AuditSettings, run_id: str) -> Path:
    return settings.workdir_path / "staging" / f"universe-{run_id}"


@dg.op(out=dg.DynamicOut(dict), pool=WAREHOUSE_POOL)
def plan_universe_chunks(context: dg.OpExecutionContext, config: UniverseRegroupConfig,
                         warehouse: WarehouseResource, settings: AuditSettings):
    """Split the period's claims into claim_id ranges and export each range's grouper input."""
    from audits.revenue.regroup import export_universe_chunk, universe_chunks, universe_fiscal_years

    folder = _staging(settings, context.run_id)
    folder.mkdir(parents=True, exist_ok=True)
    with warehouse.get_connection() as con:
        years = universe_fiscal_years(con, config.audit_period)
        chunks = universe_chunks(con, config.audit_period, config.chunk_claims)
        for i, (first, last, n) in enumerate(chunks):
            source = folder / f"chunk-{i:05d}-input.parquet"
            export_universe_chunk(con, config.audit_period, first, last, source)
            yield dg.DynamicOutput({"period": config.audit_period, "index": i, "claims": n, "years": years,
                                    "input": str(source), "output": str(folder / f"chunk-{i:05d}.parquet")},
                                   mapping_key=f"chunk_{i:05d}")
    context.log.info(f"{len(chunks)} chunks of up to {config.chunk_claims:,} claims")


@dg.op
def regroup_universe_chunk(context: dg.OpExecutionContext, chunk: dict, settings: AuditSettings) -> dict:
    """Regroup one chunk file; never opens the warehouse, so chunks run side by side."""
    from audits.revenue.grouping import MsdrgAdapter
    from audits.revenue.regroup import regroup_universe_file
    from audits.revenue.weights import load_weights

    weights = load_weights({int(y): n for y, n in chunk["years"].items()}, extra_dir=settings.weights_folder or None)
    figures = regroup_universe_file(chunk["input"], chunk["output"], MsdrgAdapter(), settings.rate_config(), weights)
    Path(chunk["input"]).unlink(missing_ok=True)
    context.log.info(f"chunk {chunk['index']}: {figures['claims']:,} claims, {figures['rows']:,} rows")
    return chunk | figures


@dg.op(pool=WAREHOUSE_POOL)
def publish_universe_chunks(context: dg.OpExecutionContext, chunks: list[dict], warehouse: WarehouseResource,
                            settings: AuditSettings) -> dict:
    """Every chunk's rows into `billed_drg_validation` for the period, in one transaction."""
    from audits.periods import build_for_period
    from audits.revenue.regroup import billed_validation_figures, load_universe_files

    chunks = sorted(chunks, key=lambda c: c["index"])
    period = chunks[0]["period"] if chunks else None
    figures: dict = {"claims_regrouped": sum(c["claims"] for c in chunks), "chunks": len(chunks)}
    if period is not None:
        with warehouse.get_connection() as con:
            def build(c) -> None:
                load_universe_files(c, [chunk["output"] for chunk in chunks])
                figures.update(billed_validation_figures(c))

            build_for_period(con, period, ("claims",), ("billed_drg_validation",), build)
        context.log_event(dg.AssetMaterialization(asset_key="billed_drg_validation", partition=period,
                                                  metadata={k: v for k, v in figures.items()}))
        shutil.rmtree(_staging(settings, context.run_id), ignore_errors=True)
    return figures


def make_universe_regroup_job(executor_def: dg.ExecutorDefinition = dg.in_process_executor) -> dg.JobDefinition:
    """The job on an executor: in-process by default; `dg.multiprocess_executor` spreads the
    chunks over this machine's cores, `dagster_k8s.k8s_job_executor` or `dagster_celery`'s over a
    cluster (same ops, same table)."""

    @dg.job(name="universe_regroup_job", executor_def=executor_def,
            description="The universe regroup of one period as chunks, one step per chunk.")
    def universe_regroup_job():
        publish_universe_chunks(plan_universe_chunks().map(regroup_universe_chunk).collect())

    return universe_regroup_job


universe_regroup_job = make_universe_regroup_job()
