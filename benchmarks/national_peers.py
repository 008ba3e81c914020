"""Benchmark: the facility target areas against a national-size peers file (no real one ships here).

    python benchmarks/national_peers.py [--hospitals 3000] [--seed 1] [--keep FILE] [--leave-one-out]

Writes a synthetic CMS "Medicare Inpatient Hospitals - by Provider and Service" file of that many hospitals
(CMS column names; each hospital's DRG counts drawn around New York's DY2022 DRG mix when ../shared has it,
else a flat mix; cells under 11 suppressed, as CMS publishes: ~150,000 rows at 3,000 hospitals), then times
reading it (`audits.ingest.peers.read_peers`) and `flags.build_flags` of a 5,000-claim demo against it, and with
--leave-one-out the benchmark's leave-one-out over every hospital. The counts are independent draws, with
none of real hospitals' between-hospital structure: the figures are speed and memory, not calibration.
Prints the figures; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

NY = Path(__file__).resolve().parents[2] / "shared" / "reference" / \
    "cms_medicare_inpatient_by_provider_and_service_dy2022_ny.csv"


def synthetic_peers(hospitals: int, seed: int) -> pd.DataFrame:
    """CMS-shaped rows: Rndrng_Prvdr_CCN, DRG_Cd, DRG_Desc, Tot_Dschrgs (>= 11 only). Hospital size is
    lognormal; its count of a DRG is Poisson(size x the DRG's share x a lognormal hospital-DRG factor)."""
    rng = np.random.default_rng(seed)
    if NY.exists():
        ny = pd.read_csv(NY, dtype={"DRG_Cd": str})
        mix = ny.groupby("DRG_Cd")["Tot_Dschrgs"].sum()
    else:
        mix = pd.Series(1.0, index=[f"{d:03d}" for d in range(1, 990) if d % 3 != 0])
    share = (mix / mix.sum()).to_numpy()
    size = rng.lognormal(np.log(1500), 1.0, hospitals)
    lam = size[:, None] * share[None, :] * rng.lognormal(0, 0.35, (hospitals, len(share)))
    counts = rng.poisson(lam)
    h, d = np.nonzero(counts >= 11)
    return pd.DataFrame({"Rndrng_Prvdr_CCN": [f"{100000 + i:06d}" for i in h], "DRG_Cd": mix.index.to_numpy()[d],
                         "DRG_Desc": "", "Tot_Dschrgs": counts[h, d]})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hospitals", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", default=None, help="also write the synthetic file here")
    parser.add_argument("--leave-one-out", action="store_true")
    args = parser.parse_args(argv)

    import flag_calibration
    from audits import flags
    from audits.demo.config import DemoConfig
    from audits.ingest.peers import read_peers

    out: dict = {"hospitals": args.hospitals}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.keep) if args.keep else Path(tmp) / "national.csv"
        started = time.perf_counter()
        synthetic_peers(args.hospitals, args.seed).to_csv(path, index=False)
        out["write_s"] = round(time.perf_counter() - started, 1)
        started = time.perf_counter()
        peers = read_peers([path])
        out["rows"], out["read_s"] = len(peers), round(time.perf_counter() - started, 2)
        print(f"synthetic national peers: {args.hospitals:,} hospitals, {len(peers):,} rows (cells >= 11); "
              f"read in {out['read_s']} s")
        started = time.perf_counter()
        found, _ = flag_calibration.demo_run(Path(tmp) / "demo", DemoConfig(n_claims=5000, audit_sample=800,
                                                                           plant_patterns=False), peers)
        out["demo_run_s"] = round(time.perf_counter() - started, 1)
        print(f"clean 5,000-claim demo, generate + load + regroup + flags against it: {out['demo_run_s']} s; "
              f"coder/facility flags: {len(found)}")
        if args.leave_one_out:
            started = time.perf_counter()
            loo = flag_calibration.leave_one_out(argparse.Namespace(peers=str(path)), peers)
            out["leave_one_out_s"] = round(time.perf_counter() - started, 1)
            out["leave_one_out"] = {k: loo[k] for k in ("tests", "flags", "max_area_share")}
            print(f"leave-one-out over {args.hospitals:,} hospitals: {out['leave_one_out_s']} s")
    print(json.dumps({"q_threshold": flags.Q_THRESHOLD, **out}))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    raise SystemExit(main())
