"""Ingest assets: `claims`, `reviews`, `claim_codes`, `rejected_rows`, `universe`, published in one transaction."""

from pathlib import Path

import dagster as dg

from assets.resources import WAREHOUSE_POOL, AuditSettings, WarehouseResource, audit_periods, warehouse_check
from audits import ingest as ingest_logic
from audits.progress import stage_progress
from audits.quality import published_checks
from audits.readers import InputFiles

INGEST_TABLES = ("claims", "reviews", "claim_codes", "rejected_rows", "universe")


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
    with warehouse.get_connection() as con:
        result = ingest_logic.load(con, files, period, settings.max_rejected_share,
                                   progress=stage_progress("load", "steps"))
        # Read back on the same connection: once it is released another run of this period may
        # replace the load (and its `loads` row) before this step ends.
        row = con.execute("SELECT claims_in, claims_loaded, claims_rejected, reviews_in, reviews_loaded, "
                          "reviews_rejected FROM loads WHERE load_id = ?", [result.load_id]).fetchall()[0]
    counts = result.as_dict()
    context.log.info(
        f"loaded {result.claims_loaded:,} of {result.claims_in:,} claims and {result.reviews_loaded:,} of "
        f"{result.reviews_in:,} reviews; {len(result.rejections):,} rejected rows")
    by_rule = result.rejections.groupby("rule").size().to_dict() if len(result.rejections) else {}
    for table in INGEST_TABLES:
        yield dg.MaterializeResult(asset_key=table, metadata={
            "load_id": result.load_id, **{k: v for k, v in counts.items() if isinstance(v, int)},
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
