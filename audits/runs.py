"""Run history: the `runs` table, one row per run, successful or not.

A run's row is written when it starts (status `running`), set to `succeeded` inside the publish
transaction, or to `failed` with the reason in its own small transaction: the one change a failed
run makes to the warehouse. A run killed outright stays `running` until the next run finds its
leftover staging folder and marks it `interrupted` (see `recover`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from importlib import metadata
from pathlib import Path

import duckdb

from audits import staging

RUNS_DDL = """run_id VARCHAR, audit_period VARCHAR, inputs JSON, started_at TIMESTAMP, finished_at TIMESTAMP,
    status VARCHAR, failure_reason VARCHAR, failed_step VARCHAR, project_version VARCHAR, grouper_version VARCHAR,
    weights_sources JSON, warnings JSON"""


def ensure_runs(con: duckdb.DuckDBPyConnection, catalog: str | None = None) -> str:
    name = f"{catalog}.main.runs" if catalog else "runs"
    con.execute(f"CREATE TABLE IF NOT EXISTS {name} ({RUNS_DDL})")
    return name


def project_version() -> str:
    try:
        return metadata.version("coding-audit")
    except metadata.PackageNotFoundError:
        return "unknown"


def file_facts(files: dict[str, list]) -> dict[str, list[dict]]:
    """{kind: [{path, size, sha256}]} of the input files, read in 1 MB blocks."""
    out: dict[str, list[dict]] = {}
    for kind, paths in files.items():
        facts = []
        for path in paths or []:
            path = Path(path)
            digest = hashlib.sha256()
            try:
                with open(path, "rb") as fh:
                    for block in iter(lambda: fh.read(1 << 20), b""):
                        digest.update(block)
                facts.append({"path": str(path), "size": path.stat().st_size, "sha256": digest.hexdigest()})
            except OSError:
                facts.append({"path": str(path), "size": None, "sha256": None})
        if facts:
            out[kind] = facts
    return out


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def start(con: duckdb.DuckDBPyConnection, run_id: str, period: str, files: dict[str, list]) -> None:
    """Record the run as `running` (replacing a row of the same run id: a retried step)."""
    table = ensure_runs(con)
    con.execute("BEGIN TRANSACTION")
    con.execute(f"DELETE FROM {table} WHERE run_id = ?", [run_id])
    con.execute(f"INSERT INTO {table} (run_id, audit_period, inputs, started_at, status, project_version) "
                "VALUES (?, ?, ?, ?, 'running', ?)",
                [run_id, period, json.dumps(file_facts(files)), _now(), project_version()])
    con.execute("COMMIT")


def weights_sources(fiscal_years, weights_dir: str | Path | None = None) -> list[str]:
    """Where each fiscal year's Table 5 came from (`audits.revenue.weights.weights_sources`: `shipped`, or
    `file <path>` from the weights folder), one 'FY<year>: <source>' line per year."""
    from audits.revenue.weights import weights_sources as sources_of

    years = sorted({int(y) for y in fiscal_years or []})
    sources = sources_of(years, weights_dir) if years else {}
    return [f"FY{fy}: {sources[fy]}" for fy in years]


def succeeded_sql(run_id: str, summary: dict, table: str = "runs",
                  weights_dir: str | Path | None = None) -> tuple[str, list]:
    """The UPDATE that marks the run succeeded; runs inside the publish transaction."""
    weights = weights_sources(summary.get("weights_fiscal_years"), weights_dir)
    return (f"UPDATE {table} SET status = 'succeeded', finished_at = ?, grouper_version = ?, weights_sources = ?, "
            "warnings = ? WHERE run_id = ?",
            [_now(), summary.get("grouper"), json.dumps(weights), json.dumps(summary.get("warnings") or []), run_id])


def record_failure(con: duckdb.DuckDBPyConnection, run_id: str, period: str, reason: str,
                   step: str | None = None, status: str = "failed") -> None:
    """Mark the running run failed with its reason (inserting the row if it failed before `start`);
    the first failure of a run is the one kept."""
    table = ensure_runs(con)
    con.execute("BEGIN TRANSACTION")
    exists = con.execute(f"SELECT count(*) FROM {table} WHERE run_id = ?", [run_id]).fetchall()[0][0]
    if not exists:
        con.execute(f"INSERT INTO {table} (run_id, audit_period, started_at, project_version) VALUES (?, ?, ?, ?)",
                    [run_id, period, _now(), project_version()])
    con.execute(f"UPDATE {table} SET status = ?, finished_at = ?, failure_reason = ?, failed_step = ? "
                "WHERE run_id = ? AND (status = 'running' OR status IS NULL)",
                [status, _now(), reason[:2000], step, run_id])
    con.execute("COMMIT")


def status_of(con: duckdb.DuckDBPyConnection, run_id: str) -> str | None:
    ensure_runs(con)
    rows = con.execute("SELECT status FROM runs WHERE run_id = ?", [run_id]).fetchall()
    return rows[0][0] if rows else None


def recover(con: duckdb.DuckDBPyConnection, workdir: Path, current_run: str | None = None) -> list[str]:
    """Finish or discard what earlier runs left in the staging folder. A run whose publish committed
    has its summary.json and reports moved into place (the step after the commit); any other
    leftover is discarded and its run, if still `running`, marked `interrupted`. Returns the run
    ids dealt with. Called by a run before it starts building; runs of one working folder take
    turns on the warehouse, so a leftover's run is not publishing meanwhile."""
    done = []
    for run_id in staging.leftover_runs(workdir):
        if run_id == current_run:
            continue
        row = con.execute("SELECT status, audit_period FROM runs WHERE run_id = ?", [run_id]).fetchall() \
            if _has_runs(con) else []
        status, period = (row[0] if row else (None, None))
        if status == "succeeded":
            staging.move_into_place(workdir, run_id, period)
        elif status == "running" and _probably_alive(workdir, run_id):
            continue
        else:
            if status == "running":
                record_failure(con, run_id, period, "the run was interrupted (killed or crashed) before it "
                               "published; nothing of it was published", status="interrupted")
            staging.discard(workdir, run_id)
        done.append(run_id)
    return done


def _has_runs(con: duckdb.DuckDBPyConnection) -> bool:
    return bool(con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'runs' "
                            "AND database_name = current_database()").fetchall()[0][0])


def _probably_alive(workdir: Path, run_id: str) -> bool:
    """A leftover whose process still runs on this machine (its `owner` file names the process id);
    without an owner file (a run the Dagster UI started) it counts as alive for 12 hours."""
    import os

    folder = staging.staging_dir(workdir, run_id)
    owner = folder / "owner"
    if owner.exists():
        try:
            pid = int(owner.read_text().split()[0])
            os.kill(pid, 0)
        except (ValueError, IndexError, ProcessLookupError):
            return False
        except PermissionError:
            return True
        return pid != os.getpid()
    try:
        age = dt.datetime.now().timestamp() - folder.stat().st_mtime
    except OSError:
        return False
    return age < 12 * 3600


def later_failures(con: duckdb.DuckDBPyConnection, period: str, after: dt.datetime | None) -> list[dict]:
    """Failed or interrupted runs of the period that started after `after`."""
    if not _has_runs(con):
        return []
    rows = con.execute("""SELECT run_id, started_at, status, failure_reason FROM runs
                          WHERE audit_period = ? AND status IN ('failed', 'interrupted')
                            AND (? IS NULL OR started_at > ?) ORDER BY started_at""",
                       [period, after, after]).fetchall()
    return [{"run_id": r[0], "started_at": f"{r[1]:%Y-%m-%d %H:%M:%S} UTC", "status": r[2], "reason": r[3]}
            for r in rows]
