"""Ingest assets: `claims`, `reviews`, `claim_codes`, `rejected_rows`, `universe`, staged for the run's
publish step (see `audits.staging`)."""

import os
from pathlib import Path

import dagster as dg

from assets.resources import WAREHOUSE_POOL, AuditSettings, WarehouseResource, audit_periods, warehouse_check
from audits.ingest import loading as ingest_logic
from audits import runs
from audits.staging import STAGE, staging_dir
from audits.warehouse import ensure_schema
from audits.progress import stage_progress
from audits.ingest.quality import published_checks
from audits.ingest.readers import InputFiles

INGEST_TABLES = ("claims", "reviews", "claim_codes", "rejected_rows", "universe", "load_warnings")


class IngestConfig(dg.Config):
    """Input files of the load. Left empty, the files are taken from the drop folder
    (`<drop>/<YYYY-MM>/` when it exists, else `<drop>/`): claims*, reviews*, universe* (.csv|.parquet)."""

    claims: list[str] = []
    reviews: list[str] = []
    claim_diagnoses: list[str] = []
    claim_procedures: list[str] = []
    review_diagnoses: list[str] = []
    review_procedures: list[str] = []
    universe: list[str] = []
    formats: dict[str, str] = {}  # {"claims": "tuva", "reviews": "auto"}; empty = canonical
    date_format: str = ""  # how slash dates with the year last are read: mdy, dmy or ymd; "" = as the file proves


def files_in_drop_folder(drop: Path, period: str) -> InputFiles:
    folder = drop / period if (drop / period).is_dir() else drop

    def pick(prefix: str) -> list[Path]:
        return sorted(p for p in folder.glob(f"{prefix}*") if p.suffix.lower() in (".csv", ".parquet"))

    return InputFiles(claims=[p for p in pick("claims") if "_diagnoses" not in p.name
                              and "_procedures" not in p.name],
                      reviews=[p for p in pick("reviews") if "_diagnoses" not in p.name
                               and "_procedures" not in p.name],
                      claim_diagnoses=pick("claim_diagnoses"), claim_procedures=pick("claim_procedures"),
                      review_diagnoses=pick("review_diagnoses"), review_procedures=pick("review_procedures"),
                      universe=pick("universe"))


@dg.multi_asset(
    specs=[dg.AssetSpec(t, kinds={"duckdb"}, group_name="ingest",
                        description=f"Published `{t}` table of the warehouse") for t in INGEST_TABLES],
    check_specs=[dg.AssetCheckSpec("rows_reconcile", asset="claims", blocking=True,
                                   description="claims in = claims loaded + claims rejected"),
                 dg.AssetCheckSpec("rows_reconcile", asset="reviews", blocking=True,
                                   description="reviews in = reviews loaded + reviews rejected")],
    partitions_def=audit_periods,
    pool=WAREHOUSE_POOL,
)
def ingest(context: dg.AssetExecutionContext, config: IngestConfig, warehouse: WarehouseResource,
           settings: AuditSettings):
    """Stage, validate with Great Expectations, quarantine bad rows, publish the rest atomically."""
    period = context.partition_key
    files = InputFiles(*(list(map(Path, getattr(config, f))) for f in (
        "claims", "reviews", "claim_diagnoses", "claim_procedures", "review_diagnoses",
        "review_procedures", "universe")), formats=dict(config.formats))
    if not files.claims and not files.reviews:
        files = files_in_drop_folder(Path(settings.drop_folder), period)
    context.log.info(f"loading audit period {period}: {files.as_dict()}")
    run_id = context.run.run_id
    with warehouse.get_connection() as con:
        ensure_schema(con)
        runs.recover(con, warehouse.workdir, run_id)
        runs.start(con, run_id, period, {k: v for k, v in files.as_dict().items() if k != "formats"})
    if context.instance.is_ephemeral:  # in-process run (the CLI): this process is the run
        owner = staging_dir(warehouse.workdir, run_id) / "owner"
        owner.parent.mkdir(parents=True, exist_ok=True)
        owner.write_text(f"{os.getpid()}\n")
    with warehouse.staged(context) as con:
        result = ingest_logic.load(con, files, period, settings.max_rejected_share,
                                   weights_dir=settings.weights_folder or None,
                                   date_format=config.date_format or None,
                                   progress=stage_progress("load", "steps"))
        # The staged `loads` row, as the run will publish it.
        row = con.execute("SELECT claims_in, claims_loaded, claims_rejected, reviews_in, reviews_loaded, "
                          f"reviews_rejected FROM {STAGE}.main.loads WHERE load_id = ?",
                          [result.load_id]).fetchall()[0]
    counts = result.as_dict()
    for f in result.formats:
        context.log.info(f"{f['entity']} file {f['file']}: read as {f['format']}"
                         + (" (detected)" if f["detected"] else ""))
    for skip in result.skipped_records:
        context.log.warning(f"{skip['entity']} file {skip['file']}: {skip['records']:,} records skipped "
                            f"({skip['reason']})")
    context.log.info(
        f"loaded {result.claims_loaded:,} of {result.claims_in:,} claims and {result.reviews_loaded:,} of "
        f"{result.reviews_in:,} reviews; {len(result.rejections):,} rejected rows")
    for version, claims in result.coverage.get("not_groupable", {}).items():
        context.log.warning(f"{claims:,} claims discharged under MS-DRG {version}, older than the grouper's "
                            "versions: counted in the error rates and facility rules, not regrouped")
    by_rule = result.rejections.groupby("rule").size().to_dict() if len(result.rejections) else {}
    for table in INGEST_TABLES:
        yield dg.MaterializeResult(asset_key=table, metadata={
            "load_id": result.load_id, **{k: v for k, v in counts.items() if isinstance(v, int)},
            "formats": dg.MetadataValue.json(result.formats),
            "skipped_records": dg.MetadataValue.json(result.skipped_records),
            "rejected_by_rule": dg.MetadataValue.json(by_rule)})
    yield dg.AssetCheckResult(asset_key="claims", check_name="rows_reconcile",
                              passed=row[0] == row[1] + row[2],
                              metadata={"claims_in": row[0], "loaded": row[1], "rejected": row[2]})
    yield dg.AssetCheckResult(asset_key="reviews", check_name="rows_reconcile",
                              passed=row[3] == row[4] + row[5],
                              metadata={"reviews_in": row[3], "loaded": row[4], "rejected": row[5]})


published_table_checks = [
    warehouse_check(t, "gx_published", f"Great Expectations suite over the whole published `{t}` table",
                    lambda con, t=t: published_checks(con, t))
    for t in ("claims", "reviews", "claim_codes")]
