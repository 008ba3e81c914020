"""Settings shared by the assets: where the working folder and the drop folder are."""


from pathlib import Path

import dagster as dg

# Every asset that writes the warehouse runs in this pool; dagster.yaml limits it to 1 (DuckDB
# allows one writer per file).
WAREHOUSE_POOL = "duckdb_warehouse"

audit_periods = dg.MonthlyPartitionsDefinition(start_date="2025-10", fmt="%Y-%m", end_offset=1)


class AuditSettings(dg.ConfigurableResource):
    """Working folder (warehouse, summary.json, reports) and the drop folder watched for new files."""

    workdir: str = "work"
    drop_folder: str = "work/drop"
    max_rejected_share: float = 0.5

    @property
    def workdir_path(self) -> Path:
        path = Path(self.workdir)
        path.mkdir(parents=True, exist_ok=True)
        return path
