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
    """dagster-duckdb's resource, closing the connection also when the step fails.

    (Its `get_connection` closes only on success; an open connection would keep the file locked
    for the rest of the process.) Like the parent, it retries while another process holds the
    write lock, then fails with DuckDB's lock error.
    """

    @contextmanager
    def get_connection(self):
        with super().get_connection() as conn:
            try:
                yield conn
            finally:
                conn.close()
