"""Settings shared by the assets: where the working folder and the drop folder are; the warehouse
connection every step opens on the run's stage (see `audits.staging`)."""


from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import dagster as dg
from dagster_duckdb import DuckDBResource

from audits.periods import FIRST_AUDIT_PERIOD

# Every asset that writes the warehouse runs in this pool; dagster.yaml limits it to 1 (DuckDB
# allows one writer per file).
WAREHOUSE_POOL = "duckdb_warehouse"

# One partition per audit month, from the start of ICD-10 (2015-10) to the month after today
# (end_offset=2: the current month, and the next one), as `audits.periods.check_audit_period` allows.
audit_periods = dg.MonthlyPartitionsDefinition(start_date=FIRST_AUDIT_PERIOD, fmt="%Y-%m", end_offset=2)


class AuditSettings(dg.ConfigurableResource):
    """Working folder (warehouse, summary.json, reports) and the drop folder watched for new files."""

    workdir: str = "work"
    drop_folder: str = "work/drop"
    max_rejected_share: float = 0.5
    rates_config: str = ""      # TOML of base rates and payer multipliers ("" = documented defaults)
    weights_folder: str = ""    # extra CMS Table 5 files for fiscal years not packaged
    base_rate: Optional[float] = None  # what-if: one base rate for every facility
    peers_files: list[str] = []
    regroup_universe: bool = False  # regroup every claim, audited or not, to validate billed DRGs  # DRG discharges by provider, for facility target-area peers

    def rate_config(self):
        from audits.revenue.pricing import load_rate_config
        return load_rate_config(self.rates_config or None, base_rate_override=self.base_rate)

    @property
    def workdir_path(self) -> Path:
        path = Path(self.workdir)
        path.mkdir(parents=True, exist_ok=True)
        return path


class WarehouseResource(DuckDBResource):
    """dagster-duckdb's resource, with two differences that matter to users:

    - the connection is closed also when the step fails (the parent closes it only on success;
      an open connection keeps the file locked for the rest of the process);
    - while another process holds the file (a run, or an analyst's DuckDB/DBeaver session), it
      waits up to `lock_timeout_seconds` (default 30), then fails with a plain message naming the
      holder; nothing has been changed by then.
    """

    lock_timeout_seconds: float = 30.0

    @contextmanager
    def get_connection(self):
        conn = _connect_waiting(self.database, dict(self.connection_config), self.lock_timeout_seconds)
        conn.execute("SET enable_progress_bar = false")  # DuckDB's bar would print into the CLI's lines
        try:
            yield conn
        finally:
            conn.close()

    @property
    def workdir(self) -> Path:
        return Path(self.database).parent

    @contextmanager
    def staged(self, context):
        """The step's connection, with the run's stage attached and `run_view` current (every table
        as it will be once this run publishes). A step that fails records the run as failed."""
        from audits.runs import status_of
        from audits.staging import open_stage, stage_file

        run_id = context.run.run_id
        try:
            with self.get_connection() as con:
                if status_of(con, run_id) == "failed":
                    raise RunFailedEarlier("an earlier step of this run failed (see the runs table); "
                                           "nothing of this run will be published")
                with open_stage(con, stage_file(self.workdir, run_id)):
                    yield con
        except (RunFailedEarlier, WarehouseBusyError):
            raise  # nothing to record: an earlier step did, or the lock is someone else's
        except Exception as exc:
            self.record_failure(context, exc)
            raise

    def record_failure(self, context, error) -> None:
        """The failed run's own small transaction in `runs`, its staging folder discarded, and a
        notice on the period's published overview page. Never hides the original error."""
        from audits import runs, staging
        from reports.status import mark_later_failure

        run_id, period = context.run.run_id, context.run.tags.get("dagster/partition")
        reason = error if isinstance(error, str) else failure_reason(error)
        try:
            with self.get_connection() as con:
                runs.record_failure(con, run_id, period, reason, step=context.op_def.name)
                mark_later_failure(self.workdir, period, runs.later_failures(con, period, None)[-1:])
        except Exception as exc:  # noqa: BLE001 - e.g. the lock is still held: the error itself matters more
            context.log.warning(f"could not record the failed run in the runs table: {exc}")
        staging.discard(self.workdir, run_id)


def warehouse_check(asset: str, name: str, description: str, evaluate) -> dg.AssetChecksDefinition:
    """A blocking asset check that runs `evaluate(con) -> {"passed", "metadata"}` on the warehouse."""

    @dg.asset_check(asset=asset, name=name, blocking=True, pool=WAREHOUSE_POOL, description=description)
    def check(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
        # On the run's staged tables: a failing check blocks what would publish them.
        with warehouse.staged(context) as con:
            outcome = evaluate(con)
        if not outcome["passed"]:
            warehouse.record_failure(context, f"blocking check {asset}.{name} failed: {outcome['metadata']}")
        return dg.AssetCheckResult(passed=outcome["passed"], metadata=outcome["metadata"])

    return check


def failure_reason(error: BaseException) -> str:
    """The user's words for why a step failed: the message of an input error, else type and message."""
    from audits.errors import InputError

    if isinstance(error, InputError):
        return str(error)
    return f"{type(error).__name__}: {error}"


class RunFailedEarlier(RuntimeError):
    """A step of a run that has already failed: it stops at once instead of building for nothing."""


class WarehouseBusyError(RuntimeError):
    """Another process holds the warehouse file's write lock."""


def _connect_waiting(database: str, config: dict, timeout: float):
    import time

    import duckdb

    deadline = time.monotonic() + timeout
    delay = 0.2
    while True:
        try:
            return duckdb.connect(database, read_only=False, config=config)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise
            if time.monotonic() >= deadline:
                holder = str(exc).split("Conflicting lock is held in", 1)[-1].strip().splitlines()[0]
                raise WarehouseBusyError(
                    f"the warehouse {database} is locked by another process ({holder}); waited "
                    f"{timeout:.0f} s; nothing was changed. Retry when that run (or DuckDB session) ends."
                ) from None
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 5.0)
