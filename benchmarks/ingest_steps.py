"""Benchmark: where a load's time goes, statement by statement (issue 17's ingest profile).

Loads DIR/claims.csv and DIR/reviews.csv (e.g. from `benchmarks/run_all.py --keep` or
`benchmarks/replicate.py`) into a fresh warehouse through a connection that times every SQL
statement, then prints the slowest statements (wall and CPU seconds: on a shared machine the CPU
time is the steadier figure), the SQL and whole-load totals, the peak memory and the load average,
and at the highest sampled RSS how much DuckDB itself held (`duckdb_memory()`) and which statement ran.

    .venv/bin/python benchmarks/ingest_steps.py DIR [--top 20] [--universe] [--stage]
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import threading
import time
from pathlib import Path

import duckdb


def _cpu() -> float:
    """CPU seconds of this process, all threads: less disturbed than wall time on a shared machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class TimedConnection:
    """A DuckDB connection that records how long each `execute` takes."""

    def __init__(self, con: duckdb.DuckDBPyConnection):
        self._con, self.timings = con, []

    def execute(self, sql, *args):
        self.running = " ".join(str(sql).split())
        started, cpu = time.perf_counter(), _cpu()
        result = self._con.execute(sql, *args)
        self.timings.append((time.perf_counter() - started, _cpu() - cpu, " ".join(str(sql).split())))
        return result

    def __getattr__(self, name):
        return getattr(self._con, name)


def _watch_memory(con: TimedConnection) -> dict:
    """Sample, every 0.2 s until `stop`, the process's RSS, the memory DuckDB says it holds
    (`duckdb_memory()`, through its own cursor) and the statement running: what sets the peak."""
    peaks = {"rss": 0.0, "duckdb": 0.0, "stop": False, "during": "", "at": 0.0}
    began = time.perf_counter()
    cursor = con._con.cursor()

    def sample() -> None:
        while not peaks["stop"]:
            with open("/proc/self/status") as status:
                rss = next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS"))
            held = cursor.execute("SELECT sum(memory_usage_bytes) FROM duckdb_memory()").fetchall()[0][0] or 0
            if rss > peaks["rss"]:
                peaks.update(rss=rss, duckdb=held / 2**20, during=getattr(con, "running", ""),
                             at=time.perf_counter() - began)
            time.sleep(0.2)

    threading.Thread(target=sample, daemon=True).start()
    return peaks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", type=Path)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--universe", action="store_true", help="load the claims file as the universe too")
    parser.add_argument("--stage", action="store_true",
                        help="as in a run: write the load into a run's stage file, not publish it")
    args = parser.parse_args()
    from audits.ingest.loading import load
    from audits.ingest.readers import InputFiles
    from audits.staging import attach_stage
    from audits.warehouse import connection_config, ensure_schema

    with tempfile.TemporaryDirectory(prefix="coding-audit-steps-") as work:
        con = TimedConnection(duckdb.connect(str(Path(work) / "warehouse.duckdb"), config=connection_config()))
        claims = str(args.input / "claims.csv")
        files = InputFiles(claims=[claims], reviews=[str(args.input / "reviews.csv")],
                           universe=[claims] if args.universe else [])
        if args.stage:
            ensure_schema(con)
            attach_stage(con, Path(work) / "stage.duckdb")
        load_before = os.getloadavg()
        peaks = _watch_memory(con)
        started, cpu = time.perf_counter(), _cpu()
        result = load(con, files, "2026-11")
        total, cpu = time.perf_counter() - started, _cpu() - cpu
        peaks["stop"] = True
        for seconds, cpu_seconds, sql in sorted(con.timings, reverse=True)[:args.top]:
            print(f"{seconds:7.2f} s {cpu_seconds:6.2f} cpu-s  {sql[:140]}")
        load_after = os.getloadavg()
        print(f"SQL {sum(t[0] for t in con.timings):.1f} s, whole load {total:.1f} s "
              f"({result.claims_loaded / total:,.0f} claims/s), CPU {cpu:.1f} s, peak "
              f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB, load average "
              f"{load_before[0]:.2f} before, {load_after[0]:.2f} after")
        print(f"at the process's highest sampled RSS ({peaks['rss']:,.0f} MB), DuckDB held {peaks['duckdb']:,.0f} MB "
              f"(duckdb_memory()) and the rest of the process {peaks['rss'] - peaks['duckdb']:,.0f} MB, "
              f"{peaks['at']:.1f} s in, after or during: {peaks['during'][:140]}")
        con.close()


if __name__ == "__main__":
    main()
