"""Dagster `Definitions` of coding-audit: what `dagster dev` loads (module `pipelines.definitions`).

Working folder from CODING_AUDIT_WORKDIR (default ./work), drop folder from CODING_AUDIT_DROP
(default <workdir>/drop).
"""


import datetime as dt
import json
import os
import re
from pathlib import Path

import dagster as dg

from assets.compare import COMPARE_TABLES, coding_comparison
from assets.ingest import INGEST_TABLES, published_table_checks
from assets.ingest import ingest as ingest_assets
from assets.flags import FLAG_TABLES, upcoding
from assets.reports import publish, reports
from assets.revenue import REVENUE_CHECKS, REVENUE_TABLES, billed_drg_validation, revenue
from assets.sampling import audit_sample
from assets.resources import AuditSettings, WarehouseResource
from assets.summary import run_summary
from assets.universe_chunks import universe_regroup_job
from audits.errors import InputError
from audits.periods import check_audit_period
from audits.warehouse import connection_config

ASSETS = [ingest_assets, coding_comparison, revenue, billed_drg_validation, upcoding, run_summary, reports,
          publish, audit_sample]
CHECKS = [*published_table_checks, *REVENUE_CHECKS]

audit_job = dg.define_asset_job(
    "audit_job", selection=dg.AssetSelection.assets(*INGEST_TABLES, *COMPARE_TABLES, *REVENUE_TABLES, *FLAG_TABLES,
                                         "billed_drg_validation", "run_summary", "reports", "publish"),
    description="Monthly audit: ingest and validate the period's files, then every downstream table, built "
                "aside and published at once by the last step.")


sample_job = dg.define_asset_job(
    "sample_job", selection=dg.AssetSelection.assets("audit_sample"),
    description="Draw the next audit sample from the period's universe and write the auditors' worklist.")


@dg.schedule(job=audit_job, cron_schedule="0 6 1 * *", execution_timezone="UTC",
             default_status=dg.DefaultScheduleStatus.STOPPED)
def monthly_audit_schedule(context: dg.ScheduleEvaluationContext):
    """On the 1st at 06:00 UTC, audit the month just ended from <drop>/<YYYY-MM>/ (or <drop>/)."""
    first = context.scheduled_execution_time.date().replace(day=1)
    period = (first - dt.timedelta(days=1)).strftime("%Y-%m")
    return dg.RunRequest(run_key=f"monthly-{period}", partition_key=period)


_PERIOD = re.compile(r"^\d{4}-\d{2}$")
_FILE_TYPES = (".csv", ".parquet")


def _new_review_files(drop: Path, seen: dict[str, int]) -> list[tuple[Path, int]]:
    if not drop.is_dir():
        return []
    found = []
    for path in sorted([*drop.glob("reviews*"), *drop.glob("*/reviews*")]):
        if path.suffix.lower() not in _FILE_TYPES or "_diagnoses" in path.name or "_procedures" in path.name:
            continue
        mtime = path.stat().st_mtime_ns
        if seen.get(str(path)) != mtime:
            found.append((path, mtime))
    return found


@dg.sensor(job=audit_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.STOPPED)
def reviews_drop_sensor(context: dg.SensorEvaluationContext, settings: AuditSettings):
    """Start an audit run for each new (or replaced) reviews file in the drop folder.

    A file in <drop>/<YYYY-MM>/ is audit period YYYY-MM; one directly in <drop>/ is the current
    month. The claims files beside it are loaded with it.
    """
    seen: dict[str, int] = json.loads(context.cursor) if context.cursor else {}
    requests = []
    for path, mtime in _new_review_files(Path(settings.drop_folder), seen):
        seen[str(path)] = mtime
        folder = path.parent.name
        period = folder if _PERIOD.match(folder) else dt.date.today().strftime("%Y-%m")
        try:
            check_audit_period(period)
        except InputError as exc:
            context.log.warning(f"{path}: {exc}; skipped")
            continue
        claims = sorted(str(p) for p in path.parent.glob("claims*") if p.suffix.lower() in _FILE_TYPES
                        and "_diagnoses" not in p.name and "_procedures" not in p.name)
        requests.append(dg.RunRequest(
            run_key=f"{path}@{mtime}", partition_key=period,
            run_config={"ops": {"ingest": {"config": {"reviews": [str(path)], "claims": claims}}}}))
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(seen, sort_keys=True))


def build_definitions(workdir: str | Path | None = None, drop_folder: str | Path | None = None,
                      max_rejected_share: float = 0.5, rates_config: str | Path | None = None,
                      weights_folder: str | Path | None = None,
                      base_rate: float | None = None, peers: list | None = None,
                      regroup_universe: bool = False) -> dg.Definitions:
    workdir = Path(workdir or os.environ.get("CODING_AUDIT_WORKDIR", "work"))
    drop = Path(drop_folder or os.environ.get("CODING_AUDIT_DROP", workdir / "drop"))
    workdir.mkdir(parents=True, exist_ok=True)
    return dg.Definitions(
        assets=ASSETS, asset_checks=CHECKS, jobs=[audit_job, sample_job, universe_regroup_job],
        schedules=[monthly_audit_schedule], sensors=[reviews_drop_sensor],
        resources={
            "warehouse": WarehouseResource(database=str(workdir / "warehouse.duckdb"),
                                           connection_config=connection_config()),
            "settings": AuditSettings(
                workdir=str(workdir), drop_folder=str(drop), max_rejected_share=max_rejected_share,
                rates_config=str(rates_config or os.environ.get("CODING_AUDIT_RATES", "")),
                weights_folder=str(weights_folder or os.environ.get("CODING_AUDIT_WEIGHTS", "")),
                base_rate=base_rate, peers_files=[str(p) for p in (peers or [])],
                regroup_universe=regroup_universe),
        })


defs = build_definitions()


def universe_regroup_job_from_environment() -> dg.JobDefinition:
    """`universe_regroup_job` with the resources of `defs` (CODING_AUDIT_WORKDIR) on the executor
    named by CODING_AUDIT_EXECUTOR (`in_process`, the default, or `multiprocess`). Reconstructable
    (`dg.reconstructable` of this function), which the multiprocess executor needs."""
    from assets.universe_chunks import make_universe_regroup_job

    executor = os.environ.get("CODING_AUDIT_EXECUTOR", "in_process")
    if executor not in ("in_process", "multiprocess"):
        raise ValueError(f"CODING_AUDIT_EXECUTOR must be in_process or multiprocess, not {executor!r}")
    job = make_universe_regroup_job(dg.multiprocess_executor if executor == "multiprocess"
                                    else dg.in_process_executor)
    return dg.Definitions(jobs=[job], resources=build_definitions().resources).resolve_job_def(job.name)
