"""Settings shared by the assets: where the working folder and the drop folder are."""


from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import dagster as dg
from dagster_duckdb import DuckDBResource

# Every asset that writes the warehouse runs in this pool; dagster.yaml limits it to 1 (DuckDB
# allows one writer per file).
WAREHOUSE_POOL = "duckdb_warehouse"

audit_periods = dg.MonthlyPartitionsDefinition(start_date="2025-10", fmt="%Y-%m", end_offset=1)


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
        from audits.pricing import load_rate_config
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


def warehouse_check(asset: str, name: str, description: str, evaluate) -> dg.AssetChecksDefinition:
    """A blocking asset check that runs `evaluate(con) -> {"passed", "metadata"}` on the warehouse."""

    @dg.asset_check(asset=asset, name=name, blocking=True, pool=WAREHOUSE_POOL, description=description)
    def check(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        with warehouse.get_connection() as con:
            outcome = evaluate(con)
        return dg.AssetCheckResult(passed=outcome["passed"], metadata=outcome["metadata"])

    return check


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
