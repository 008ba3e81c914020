"""The demo's case mix against real Medicare peers: where `audits/data/demo_case_mix.csv` comes from, and
how close a generated demo is to it.

    python benchmarks/demo_case_mix.py --derive PEERS_FILE
    python benchmarks/demo_case_mix.py --peers PEERS_FILE [--seed S] [--claims 20000]

--derive: from a CMS "Medicare Inpatient Hospitals - by Provider and Service" file (cells under 11
  suppressed), per MS-DRG family the demo draws (FAMILIES): the share of each member, pooled over the
  hospitals that report every member the file has (a missing cell is unknown, not zero), the between-
  hospital spread of the family's first member's share (Spiegelhalter's tau2 from audits.flags, turned
  into a logit-scale SD: sqrt(tau2) / (p0 (1 - p0)); the other families' median with fewer than 5
  complete hospitals) and, for a family whose volume sets a cross-family
  target area (VOLUME_AREAS), that area's spread on the same scale. Prints the CSV rows.
--peers: one clean demo (no planted pattern), every target area's pooled demo percent beside the peers'
  pooled percent p0 over complete peers and their tau2; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audits import flags  # noqa: E402
from audits.ingest.peers import read_peers  # noqa: E402

# The medical families the demo's scenarios group to (first member = highest severity).
FAMILIES = ("871 872", "177 178 179", "193 194 195", "190 191 192", "291 292 293", "280 281 282", "064 065 066",
            "308 309 310", "377 378 379", "637 638 639", "682 683 684", "689 690", "602 603", "175 176")
# Families whose volume, against the rest, is a PEPPER target area: its spread sets the family's volume SD.
VOLUME_AREAS = {"871 872": "septicemia", "177 178 179": "respiratory_infections", "190 191 192": "simple_pneumonia"}
MIN_HOSPITALS = 5


def _pooled(num: np.ndarray, den: np.ndarray) -> tuple[float, float]:
    od = flags.overdispersion(num[None, :], den[None, :], np.ones((1, len(den)), dtype=bool))
    return float(od["p0"][0]), float(od["tau2"][0])


def _logit_sd(p0: float, tau2: float) -> float:
    return float(np.sqrt(max(tau2, 0.0)) / (p0 * (1 - p0)))


def derive(peers: pd.DataFrame) -> pd.DataFrame:
    cells = flags.normalise_peers(peers)
    wide = cells.pivot_table(index="provider_id", columns="drg", values="discharges", aggfunc="sum")
    areas = flags.load_target_areas().set_index("target_area")
    rows = []
    for family in FAMILIES:
        drgs = family.split()
        present = [d for d in drgs if d in wide.columns]
        sub = wide[present]
        complete = sub.notna().all(axis=1) & (sub.sum(axis=1) >= flags.MIN_COUNT)
        totals = sub[complete].sum()
        shares = [float(totals.get(d, 0.0) / totals.sum()) for d in drgs]
        p0, tau2 = _pooled(sub[complete][drgs[0]].to_numpy(float), sub[complete].sum(axis=1).to_numpy(float))
        volume_sd = ""
        if family in VOLUME_AREAS:
            area = areas.loc[VOLUME_AREAS[family]]
            den = wide.reindex(columns=area["denominator"])
            ok = den.notna().all(axis=1) & (den.sum(axis=1) >= flags.MIN_COUNT)
            a_p0, a_tau2 = _pooled(wide.reindex(columns=area["numerator"]).sum(axis=1)[ok].to_numpy(float),
                                   den.sum(axis=1)[ok].to_numpy(float))
            volume_sd = f"{_logit_sd(a_p0, a_tau2):.2f}"
        rows.append({"drgs": family, "shares": " ".join(f"{s:.3f}" for s in shares),
                     "hospitals": int(complete.sum()), "severity_sd": f"{_logit_sd(p0, tau2):.2f}",
                     "volume_sd": volume_sd,
                     "note": "" if len(present) == len(drgs) else
                     f"no hospital reports {' '.join(sorted(set(drgs) - set(present)))}: share 0"})
    frame = pd.DataFrame(rows)
    # Too few complete hospitals to see any spread: the median spread of the other families.
    few = frame["hospitals"] < MIN_HOSPITALS
    median = float(frame.loc[~few, "severity_sd"].astype(float).median())
    frame.loc[few, "severity_sd"] = f"{median:.2f}"
    frame.loc[few, "note"] = (frame.loc[few, "note"] + f"; under {MIN_HOSPITALS} complete hospitals: median "
                              "severity_sd").str.lstrip("; ")
    return frame


def compare_demo(peers: pd.DataFrame, seed: int, claims: int) -> dict:
    import duckdb

    from audits.demo.config import DemoConfig
    from audits.demo.generate import generate_demo
    from audits.ingest.readers import InputFiles
    from audits.ingest.loading import load

    with tempfile.TemporaryDirectory() as tmp:
        paths = generate_demo(tmp, DemoConfig(n_claims=claims, audit_sample=0, seed=seed, plant_patterns=False))
        con = duckdb.connect(":memory:")
        load(con, InputFiles(claims=[paths["claims"]]), "2026-11")
    drg = con.execute("SELECT billed_drg AS drg, count(*) AS n FROM claims GROUP BY ALL").df().set_index("drg")["n"]
    con.close()
    cells = flags.normalise_peers(peers)
    wide = cells.pivot_table(index="provider_id", columns="drg", values="discharges", aggfunc="sum")
    out = {}
    print(f"clean demo seed {seed}, {claims:,} claims, pooled over its facilities, against complete peers")
    print(f"{'target area':22} {'demo %':>7} {'demo n':>7} {'peers p0 %':>10} {'tau':>6} {'complete':>8}")
    for area in flags.load_target_areas().itertuples():
        den_n = int(drg.reindex(area.denominator).fillna(0).sum())
        if den_n < flags.MIN_COUNT:
            continue
        demo = 100.0 * drg.reindex(area.numerator).fillna(0).sum() / den_n
        den = wide.reindex(columns=area.denominator)
        ok = den.notna().all(axis=1) & (den.sum(axis=1) >= flags.MIN_COUNT)
        p0 = tau2 = float("nan")
        if ok.sum() >= 2:
            p0, tau2 = _pooled(wide.reindex(columns=area.numerator).sum(axis=1)[ok].to_numpy(float),
                               den.sum(axis=1)[ok].to_numpy(float))
        out[area.target_area] = {"demo": round(demo, 1), "n": den_n, "p0": round(100 * p0, 1),
                                 "tau": round(100 * np.sqrt(tau2), 1), "complete": int(ok.sum())}
        print(f"{area.target_area:22} {demo:7.1f} {den_n:7d} {100 * p0:10.1f} {100 * np.sqrt(tau2):6.1f} "
              f"{int(ok.sum()):8d}")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--derive", default=None, help="peers file to derive demo_case_mix.csv from")
    parser.add_argument("--peers", default=None, help="peers file to compare a clean demo with")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--claims", type=int, default=20_000)
    args = parser.parse_args(argv)
    if args.derive:
        print(derive(read_peers([Path(args.derive)])).to_csv(index=False), end="")
        return 0
    if not args.peers:
        parser.error("give --derive FILE or --peers FILE")
    print(json.dumps(compare_demo(read_peers([Path(args.peers)]), args.seed, args.claims)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
