"""Regrouping throughput: claims grouped per second, 1 and 2 workers, against a plain msdrg loop.

    python benchmarks/regroup.py [--claims 200000] [--seed 7]

Synthetic but valid claim sides (codes from a small checked pool, MS-DRG v43.0/v43.1). Half the sides
are originals, half audited re-reviews; as in real audits most re-reviews agree with the coder, so many
audited sides repeat their original exactly, and short simple claims repeat across patients of the same
age and sex. The dedupe ratio is reported separately from the raw grouping speed.
The baseline is msdrg's own `MsdrgGrouper.group()` called once per claim side in a plain loop.
Prints the figures; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audits.revenue.grouping import MsdrgAdapter  # noqa: E402

MEDICAL = ["I5023", "I5033", "I110", "I130", "A419", "A4101", "J189", "J690", "J441", "N390", "N179",
           "I2109", "I214", "I639", "K922", "E871", "K5651", "R55", "I4891", "L03115"]
SURGICAL = [("S72001A", ["0SR9019"]), ("K3580", ["0DTJ4ZZ"]), ("K8010", ["0FT44ZZ"]),
            ("I2510", ["02703DZ"]), ("I214", ["02703DZ"]), ("A419", ["5A1955Z"]), ("J9601", ["5A1945Z"])]
SECONDARY = ["N179", "J9601", "E1165", "E119", "I10", "E871", "E876", "D62", "I4891", "N184", "N1830",
             "E43", "G9341", "E785", "Z7901", "F0390", "I480", "J449", "E1122", "I2510", "Z955", "K219",
             "E039", "F329", "R6520", "E440", "J9621", "I5032", "D649", "Z87891", "G4733"]


def synthetic_claim_sides(claims: int, seed: int = 7) -> pd.DataFrame:
    """`claims` claim sides in the grouper input layout: half original, half audited."""
    rng = np.random.default_rng(seed)
    n = claims // 2
    surgical = rng.random(n) < 0.25
    # Many short simple claims (0-2 secondaries), some long ones, as in inpatient data.
    n_sdx = np.minimum(rng.geometric(0.35, n) - 1, 12)
    age = rng.integers(65, 96, n)
    sex = rng.choice(["M", "F"], n)
    status = rng.choice(["01", "06", "03", "20"], n, p=[0.6, 0.2, 0.15, 0.05])
    version = rng.choice([430, 431], n)
    originals = []
    for i in range(n):
        if surgical[i]:
            pdx, px = SURGICAL[rng.integers(len(SURGICAL))]
        else:
            pdx, px = MEDICAL[rng.integers(len(MEDICAL))], []
        sdx = [c for c in rng.choice(SECONDARY, n_sdx[i], replace=False) if c != pdx]
        originals.append(([pdx, *sdx], list(px)))
    audited = []
    change = rng.random(n)
    for i, (dx, px) in enumerate(originals):
        if change[i] < 0.75 or len(dx) == 1:  # the auditor agrees
            audited.append((list(dx), list(px)))
        elif change[i] < 0.9:  # a secondary not supported (deleted)
            drop = 1 + rng.integers(len(dx) - 1)
            audited.append((dx[:drop] + dx[drop + 1:], list(px)))
        else:  # a missed secondary (added)
            extra = SECONDARY[rng.integers(len(SECONDARY))]
            audited.append((dx + ([extra] if extra not in dx else []), list(px)))
    rows = []
    for side, sets in (("original", originals), ("audited", audited)):
        for i, (dx, px) in enumerate(sets):
            rows.append((f"C{i:07d}:{side}", int(version[i]), int(age[i]), sex[i], status[i], dx,
                         ["Y"] * len(dx), px, False))
    return pd.DataFrame.from_records(rows, columns=["key", "version", "age", "sex", "discharge_status", "dx",
                                                    "poa", "px", "hospital_poa_exempt"])


def msdrg_claims(frame: pd.DataFrame) -> list[dict]:
    import msdrg

    sex_codes = {"M": 0, "F": 1, "U": 2}
    return [
        msdrg.create_claim(version=int(v), age=int(a), sex=sex_codes[s], discharge_status=int(st),
                           pdx=dx[0], pdx_poa=poa[0], sdx=list(zip(dx[1:], poa[1:])), procedures=list(px))
        for v, a, s, st, dx, poa, px in zip(frame.version, frame.age, frame.sex, frame.discharge_status,
                                            frame.dx, frame.poa, frame.px)
    ]


def plain_loop(claims: list[dict]) -> tuple[float, list]:
    """The baseline: msdrg's Python `group()` once per claim side."""
    import msdrg

    started = time.perf_counter()
    with msdrg.MsdrgGrouper() as grouper:
        drgs = [grouper.group(c)["final_drg"] for c in claims]
    return time.perf_counter() - started, drgs


def group_in_two_threads(claims: list[dict]) -> float:
    """msdrg's `group()` from a ThreadPoolExecutor(2), one grouper per thread: does it scale?"""
    import msdrg
    from concurrent.futures import ThreadPoolExecutor

    def run(part: list[dict]) -> None:
        with msdrg.MsdrgGrouper() as grouper:
            for c in part:
                grouper.group(c)

    half = len(claims) // 2
    started = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(run, [claims[:half], claims[half:]]))
    return time.perf_counter() - started


class OtherLoad:
    """CPU used by other processes meanwhile (the figures are only comparable on a quiet machine)."""

    def __enter__(self) -> "OtherLoad":
        self.start = self._busy(), self._own(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        busy, own, wall = self._busy(), self._own(), time.perf_counter()
        self.cores = max(0.0, ((busy - self.start[0]) - (own - self.start[1])) / (wall - self.start[2]))

    @staticmethod
    def _busy() -> float:
        try:
            fields = [float(x) for x in open("/proc/stat").readline().split()[1:]]
        except OSError:
            return 0.0
        return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _own() -> float:
        import resource

        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime


def timed(adapter: MsdrgAdapter, frame: pd.DataFrame) -> tuple[float, pd.DataFrame]:
    started = time.perf_counter()
    out = adapter.group_many(frame)
    return time.perf_counter() - started, out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claims", type=int, default=200_000, help="claim sides to group")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    frame = synthetic_claim_sides(args.claims, args.seed)
    n = len(frame)
    print(f"claim sides: {n:,}  cores: {os.cpu_count()}  python {platform.python_version()}")

    claims = msdrg_claims(frame)
    load = OtherLoad().__enter__()
    loop_s, loop_drgs = plain_loop(claims)
    print(f"plain loop, msdrg group() per claim:        {n / loop_s:>9,.0f} claims/s  ({loop_s:.2f} s)")
    threads_s = group_in_two_threads(claims)
    print(f"msdrg group() in ThreadPoolExecutor(2):     {n / threads_s:>9,.0f} claims/s  "
          f"({n / threads_s / (n / loop_s):.2f}x loop)")

    figures: dict = {"claim_sides": n, "cores": os.cpu_count(), "plain_loop_per_s": round(n / loop_s),
                     "group_2_threads_per_s": round(n / threads_s)}
    results = {}
    for label, mode, workers in (("1 worker", "serial", 1), ("2 workers (threads)", "threads", 2),
                                 ("2 workers (processes)", "processes", 2)):
        adapter = MsdrgAdapter(workers=workers, mode="threads" if mode == "serial" else mode)
        seconds, out = timed(adapter, frame)
        distinct = adapter.last_run["distinct_code_sets"]
        results[mode] = out
        print(f"adapter, {label:<22}            {n / seconds:>9,.0f} claims/s  ({seconds:.2f} s; "
              f"{distinct / seconds:,.0f} distinct code sets/s; {n / seconds / (n / loop_s):.2f}x loop)")
        figures[f"{mode}_workers"] = workers
        figures[f"{mode}_per_s"] = round(n / seconds)
        figures[f"{mode}_distinct_per_s"] = round(distinct / seconds)
        figures[f"{mode}_speedup_vs_loop"] = round(n / seconds / (n / loop_s), 2)

    code_set = pd.Series(list(zip(frame.version, frame.age, frame.sex, frame.discharge_status,
                                  map(tuple, frame.dx), map(tuple, frame.poa), map(tuple, frame.px))))
    repeated = code_set.duplicated().to_numpy()
    distinct_sets = int((~repeated).sum())
    figures["distinct_code_sets"] = distinct_sets
    figures["dedupe_ratio"] = round(n / distinct_sets, 3)
    print(f"distinct code sets: {distinct_sets:,} of {n:,} claim sides (dedupe ratio {n / distinct_sets:.2f}x)")

    # No dedupe gain: the raw grouping speed on distinct code sets only.
    unique_frame = frame.loc[~repeated]
    for label, mode, workers in (("1 worker", "serial", 1), ("2 threads", "threads", 2),
                                 ("2 processes", "processes", 2)):
        adapter = MsdrgAdapter(workers=workers, mode="threads" if mode == "serial" else mode)
        seconds, _ = timed(adapter, unique_frame)
        rate = len(unique_frame) / seconds
        print(f"distinct sets only (no dedupe gain), {label:<10} {rate:>9,.0f} claims/s  "
              f"({rate / (n / loop_s):.2f}x loop)")
        figures[f"nodedupe_{mode}_per_s"] = round(rate)

    same = all((results[m]["drg"].astype(object).to_numpy() ==
                np.array([f"{d:03d}" for d in loop_drgs], dtype=object)).all() for m in results)
    ungroupable = int((results["threads"]["return_code"] != "OK").sum())
    figures["same_drgs_as_loop"] = bool(same)
    figures["ungroupable"] = ungroupable
    figures["target_2_workers_vs_loop"] = 1.8
    auto = MsdrgAdapter()  # what the pipeline uses: mode 'auto'
    seconds, _ = timed(auto, frame)
    figures["default_adapter"] = auto.last_run["how"]
    figures["default_per_s"] = round(n / seconds)
    figures["default_speedup_vs_loop"] = round(n / seconds / (n / loop_s), 2)
    print(f"adapter as configured by default ({auto.last_run['how']}): {n / seconds:,.0f} claims/s "
          f"({figures['default_speedup_vs_loop']:.2f}x loop)")
    figures["target_met"] = figures["default_speedup_vs_loop"] >= 1.8
    load.__exit__(None, None, None)
    figures["other_processes_cpu_cores"] = round(load.cores, 2)
    print(f"CPU used by other processes meanwhile: {load.cores:.2f} cores (figures assume ~0)")
    print(f"same DRGs as the plain loop: {same}; ungroupable: {ungroupable}")
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
