"""Calibration of the coder and facility upcoding flags on data the thresholds were not chosen on.

    python benchmarks/flag_calibration.py --seeds 200 [--first-seed S] [--claims 5000] [--audited 800]
                                          [--peers FILE]
    python benchmarks/flag_calibration.py --planted [--first-seed S] [--peers FILE]
    python benchmarks/flag_calibration.py --peers FILE --leave-one-out

--seeds: N clean demo runs (DemoConfig(plant_patterns=False): every coder and facility drawn from the same
  distributions), seeds S .. S+N-1, S drawn at random at run time unless given. Prints the share of runs
  with at least one coder or facility flag (each is false) with its Wilson 95% interval. Target: <= 5%.
--planted: one demo run with the planted patterns (over-coder C07, septicemia facility F003): its coder and
  facility flags.
--peers FILE: the peer group for the facility rules (e.g. CMS "Medicare Inpatient Hospitals - by Provider
  and Service"); with --leave-one-out, each peer hospital in turn is the audited facility against the
  others (its own counts from the same file) and the share flagged per target area is printed, over the
  hospitals complete for the area (denominator >= 11 and every DRG cell reported): a real population
  has no planted outlier, so a sound test flags few (target <= 5% per area). BH runs per hospital, across
  that hospital's tests, as in an audit of one facility.
Prints the figures; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audits import compare, flags  # noqa: E402
from audits.demo.config import DemoConfig
from audits.demo.generate import generate_demo  # noqa: E402
from audits.revenue.grouping import MsdrgAdapter  # noqa: E402
from audits.ingest.loading import load  # noqa: E402
from audits.ingest.peers import read_peers  # noqa: E402
from audits.revenue.pricing import load_rate_config  # noqa: E402
from audits.ingest.readers import InputFiles  # noqa: E402
from audits.revenue.regroup import EMPTY_SCHEMAS, build_regroup  # noqa: E402
from audits.stats import wilson_interval  # noqa: E402


def demo_run(folder: Path, config: DemoConfig, peers: pd.DataFrame | None) -> tuple[pd.DataFrame, float]:
    """Coder and facility flags of one demo run, and the smallest q-value among the candidates (a coder
    tested, a target-area outlier, a short-stay rate at or above the peers' 80th percentile): the run would
    have a flag at any threshold above it."""
    paths = generate_demo(folder, config)
    con = duckdb.connect(":memory:")
    try:
        load(con, InputFiles(claims=[paths["claims"]], reviews=[paths["reviews"]]), "2026-11")
        compare.build_code_diffs(con)
        build_regroup(con, MsdrgAdapter(workers=1), load_rate_config())
        flags.build_flags(con, peers=peers)
        found = con.execute("SELECT flag_id, q_value FROM upcoding_flags WHERE level IN ('coder', 'facility') "
                            "ORDER BY flag_id").df()
        smallest = con.execute("""
            SELECT min(q) FROM (
                SELECT q_value AS q FROM coder_funnel
                UNION ALL SELECT q_value FROM facility_target_areas WHERE outlier IS NOT NULL
                UNION ALL SELECT q_value FROM short_stay_rates
                          WHERE level = 'facility' AND NOT suppressed AND short_stay_rate >= peer_p80)
            """).fetchall()[0][0]
        return found, float("nan") if smallest is None else float(smallest)
    finally:
        con.close()


def clean_seeds(args, peers) -> dict:
    first = args.first_seed if args.first_seed is not None else random.SystemRandom().randrange(10_000, 1_000_000)
    print(f"clean demo runs: seeds {first}..{first + args.seeds - 1} ({args.claims:,} claims, {args.audited:,} "
          f"audited{', peers ' + Path(args.peers).name if args.peers else ''})")
    with_flag, smallest, started = [], [], time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(first, first + args.seeds):
            config = DemoConfig(n_claims=args.claims, audit_sample=args.audited, seed=seed, plant_patterns=False)
            found, q_min = demo_run(Path(tmp) / str(seed), config, peers)
            smallest.append(q_min)
            if len(found):
                with_flag.append(seed)
                print(f"  seed {seed}: {', '.join(found['flag_id'])}", flush=True)
    seconds = time.perf_counter() - started
    low, high = wilson_interval(len(with_flag), args.seeds)
    share = len(with_flag) / args.seeds
    print(f"runs with >= 1 false coder or facility flag: {len(with_flag)} of {args.seeds} = {share:.1%} "
          f"(Wilson 95% {low:.1%} to {high:.1%}); {seconds / args.seeds:.1f} s per seed")
    at = {}
    for threshold in (0.01, 0.025, 0.05):
        hits = int(np.sum(np.asarray(smallest) < threshold))
        at[str(threshold)] = hits
        print(f"  had the threshold been q < {threshold}: {hits} of {args.seeds} runs with a flag")
    return {"mode": "clean_seeds", "first_seed": first, "seeds": args.seeds, "claims": args.claims,
            "audited": args.audited, "peers": Path(args.peers).name if args.peers else None,
            "runs_with_flag": len(with_flag), "share": share, "runs_with_flag_at": at, "wilson_95": [low, high],
            "flagged_seeds": with_flag,
            "seconds_per_seed": round(seconds / args.seeds, 2)}


def planted(args, peers) -> dict:
    seed = args.first_seed if args.first_seed is not None else DemoConfig().seed
    with tempfile.TemporaryDirectory() as tmp:
        found, _ = demo_run(Path(tmp), DemoConfig(n_claims=args.claims, audit_sample=args.audited, seed=seed), peers)
    print(f"planted demo (seed {seed}, {args.claims:,} claims, {args.audited:,} audited"
          f"{', peers ' + Path(args.peers).name if args.peers else ''}): {len(found)} coder/facility flags")
    for row in found.itertuples():
        print(f"  {row.flag_id}  q = {row.q_value:.3g}")
    return {"mode": "planted", "seed": seed, "peers": Path(args.peers).name if args.peers else None,
            "flags": found["flag_id"].tolist()}


def leave_one_out(args, peers) -> dict:
    """Every hospital of the peers file as the audited facility, against the others."""
    cells = flags.normalise_peers(peers)
    con = duckdb.connect(":memory:")
    try:
        con.register("cells_frame", cells)
        # One row per discharge, expanded inside DuckDB (a national file is ~7 million discharges).
        con.execute("""CREATE TABLE universe AS
            SELECT 'x' || row_number() OVER () AS claim_id, provider_id AS facility_id,
                   CAST(NULL AS VARCHAR) AS coder_id, drg AS billed_drg, CAST(NULL AS DATE) AS admit_date,
                   CAST(NULL AS DATE) AS discharge_date
            FROM (SELECT provider_id, drg, unnest(range(discharges)) FROM cells_frame)""")
        con.unregister("cells_frame")
        con.execute("CREATE TABLE claims AS SELECT * FROM universe LIMIT 0")
        con.execute(f"CREATE TABLE claim_regroup ({EMPTY_SCHEMAS['claim_regroup']})")
        con.execute("CREATE TABLE code_diffs (claim_id VARCHAR, kind VARCHAR, role VARCHAR, original_code VARCHAR, "
                    "audited_code VARCHAR, result VARCHAR)")
        flags.build_flags(con, peers=peers)
        rows = con.execute("""
            SELECT t.*, p.complete AS self_complete
            FROM facility_target_areas t
            JOIN target_area_peers p ON p.target_area = t.target_area AND p.peer_id = t.facility_id""").df()
    finally:
        con.close()
    rows["q_own"] = rows.groupby("facility_id")["p_value"].transform(lambda p: flags.bh_qvalues(p.to_numpy()))
    rows["flag_own"] = rows["outlier"].notna() & (rows["q_own"] < flags.Q_THRESHOLD)
    tested = rows[rows["self_complete"] & ~rows["suppressed"] & rows["p_value"].notna()]
    per_area = tested.groupby("target_area").agg(hospitals=("facility_id", "size"), outliers=("outlier", "count"),
                                                 flagged=("flag_own", "sum"), tau2=("tau2", "median"))
    per_area["share"] = per_area["flagged"] / per_area["hospitals"]
    per_area["low"], per_area["high"] = wilson_interval(per_area["flagged"], per_area["hospitals"])
    per_area = per_area.sort_values(["share", "hospitals"], ascending=[False, False])
    hospitals = rows["facility_id"].nunique()
    any_flag = tested.groupby("facility_id")["flag_own"].any()
    print(f"leave-one-out on {Path(args.peers).name}: {hospitals} hospitals, {len(per_area)} target areas tested "
          f"(hospitals complete for the area, numerator and denominator >= 11)")
    print(f"{'target area':32} {'tested':>6} {'PEPPER outliers':>15} {'flagged':>7} {'share':>6} {'Wilson 95%':>15} "
          f"{'median tau2':>11}")
    for area, r in per_area.iterrows():
        print(f"{area:32} {int(r['hospitals']):>6} {int(r['outliers']):>15} {int(r['flagged']):>7} "
              f"{r['share']:>6.1%} {r['low']:>6.1%}-{r['high']:>6.1%} {r['tau2']:>11.2g}")
    total_low, total_high = wilson_interval(int(per_area["flagged"].sum()), int(per_area["hospitals"].sum()))
    print(f"all areas: {int(per_area['flagged'].sum())} flags of {int(per_area['hospitals'].sum())} "
          f"hospital-area tests "
          f"({per_area['flagged'].sum() / max(per_area['hospitals'].sum(), 1):.1%}, Wilson 95% {total_low:.1%} to "
          f"{total_high:.1%})")
    worst = float(per_area["share"].max()) if len(per_area) else float("nan")
    print(f"largest share flagged in one area: {worst:.1%}; areas above 5%: {int((per_area['share'] > 0.05).sum())}; "
          f"hospitals with >= 1 flag: {int(any_flag.sum())} of {len(any_flag)}")
    return {"mode": "leave_one_out", "peers": Path(args.peers).name, "hospitals": hospitals,
            "areas": len(per_area), "max_area_share": worst, "tests": int(per_area["hospitals"].sum()),
            "flags": int(per_area["flagged"].sum()), "areas_above_5pct": int((per_area["share"] > 0.05).sum()),
            "hospitals_with_flag": int(any_flag.sum()),
            "per_area": {a: {"tested": int(r["hospitals"]), "flagged": int(r["flagged"])}
                         for a, r in per_area.iterrows()}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=0, help="number of clean demo runs")
    parser.add_argument("--first-seed", type=int, default=None, help="first seed (default: random at run time)")
    parser.add_argument("--claims", type=int, default=5000)
    parser.add_argument("--audited", type=int, default=800)
    parser.add_argument("--peers", default=None, help="peer DRG counts file (CMS by Provider and Service)")
    parser.add_argument("--leave-one-out", action="store_true")
    parser.add_argument("--planted", action="store_true", help="one demo run with the planted patterns")
    args = parser.parse_args(argv)
    peers = read_peers([Path(args.peers)]) if args.peers else None
    results = []
    if args.leave_one_out:
        if peers is None:
            parser.error("--leave-one-out needs --peers FILE")
        results.append(leave_one_out(args, peers))
    if args.planted:
        results.append(planted(args, peers))
    if args.seeds:
        results.append(clean_seeds(args, peers))
    if not results:
        parser.error("nothing to do: give --seeds N, --planted or --peers FILE --leave-one-out")
    print(json.dumps({"machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                      "q_threshold": flags.Q_THRESHOLD, "results": results}, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
