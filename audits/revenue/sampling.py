"""Drawing the next audit sample from a claims universe: simple or stratified random, reproducible.

The frame is the universe sorted by claim id (so the same universe in another row order gives the
same sample) and numbered 1..N, as RAT-STATS numbers a frame. Draws use numpy's default_rng(seed)
(PCG64) without replacement; strata are drawn one after another in sorted stratum order from the
same generator. The description returned with the sample (seed, method, universe size, per-stratum
counts) is what the audit file records so anyone can redraw the same claims.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd


def allocate_proportional(universe_counts: Mapping, sample_size: int, minimum: int = 2) -> dict:
    """Sample size per stratum proportional to its universe count (largest remainder), each
    stratum getting at least `minimum` (an interval needs 2 per stratum) where it has that many."""
    counts = {k: int(v) for k, v in universe_counts.items()}
    total = sum(counts.values())
    if sample_size > total:
        raise ValueError(f"sample size {sample_size} exceeds the universe ({total} claims)")
    exact = {k: sample_size * v / total for k, v in counts.items()}
    sizes = {k: int(np.floor(x)) for k, x in exact.items()}
    for k in sorted(exact, key=lambda k: (-(exact[k] - sizes[k]), str(k)))[: sample_size - sum(sizes.values())]:
        sizes[k] += 1
    for k in sorted(counts, key=str):  # lift small strata to the minimum, taking from the largest
        need = min(minimum, counts[k]) - sizes[k]
        while need > 0:
            donor = max((d for d in sizes if sizes[d] > min(minimum, counts[d])), key=lambda d: (sizes[d], str(d)),
                        default=None)
            if donor is None:
                break
            sizes[donor] -= 1
            sizes[k] += 1
            need -= 1
    return sizes


def draw_sample(universe: pd.DataFrame, sample_size: int | None = None, *, seed: int,
                stratum: str | None = None, sizes: Mapping | None = None, id_column: str = "claim_id",
                minimum_per_stratum: int = 2) -> tuple[pd.DataFrame, dict]:
    """Draw the sample; returns (sample rows with frame_position and selection_order, description).

    Simple random: `sample_size`. Stratified: `stratum` (a column) with either `sizes` per stratum
    or `sample_size` allocated proportionally (`allocate_proportional`).
    """
    if id_column not in universe:
        raise ValueError(f"universe has no {id_column!r} column")
    if universe[id_column].duplicated().any():
        raise ValueError(f"universe has duplicate {id_column} values: a frame lists each claim once")
    frame = universe.sort_values(id_column, kind="stable").reset_index(drop=True)
    frame.insert(0, "frame_position", np.arange(1, len(frame) + 1))
    rng = np.random.default_rng(seed)
    if stratum is None:
        if sample_size is None:
            raise ValueError("give the sample size")
        if not 0 < sample_size <= len(frame):
            raise ValueError(f"sample size {sample_size} must be between 1 and the universe size {len(frame)}")
        picked = rng.choice(len(frame), size=sample_size, replace=False)
        sample = frame.iloc[picked].assign(selection_order=np.arange(1, sample_size + 1))
        strata_rows = [{"stratum": None, "universe_count": len(frame), "sample_count": sample_size}]
        method = "simple random sample without replacement"
    else:
        if stratum not in frame:
            raise ValueError(f"universe has no stratum column {stratum!r}")
        if frame[stratum].isna().any():
            raise ValueError(f"{int(frame[stratum].isna().sum())} claims have no {stratum}: every claim needs one")
        counts = frame[stratum].value_counts().to_dict()
        if sizes is None:
            if sample_size is None:
                raise ValueError("give the sample size or the size per stratum")
            sizes = allocate_proportional(counts, sample_size, minimum_per_stratum)
            method = "stratified random sample, proportional allocation"
        else:
            unknown = set(sizes) - set(counts)
            if unknown:
                raise ValueError(f"sizes given for strata not in the universe: {sorted(map(str, unknown))}")
            method = "stratified random sample, sizes per stratum given"
        parts, strata_rows = [], []
        for key in sorted(counts, key=str):
            n_h, big_n = int(sizes.get(key, 0)), int(counts[key])
            if n_h > big_n:
                raise ValueError(f"stratum {key!r}: sample size {n_h} exceeds its {big_n} claims")
            members = np.flatnonzero((frame[stratum] == key).to_numpy())
            picked = members[rng.choice(big_n, size=n_h, replace=False)] if n_h else members[:0]
            parts.append(frame.iloc[picked])
            strata_rows.append({"stratum": key.item() if isinstance(key, np.generic) else key,
                                "universe_count": big_n, "sample_count": n_h})
        sample = pd.concat(parts) if parts else frame.iloc[:0]
        sample = sample.assign(selection_order=np.arange(1, len(sample) + 1))
    description = {
        "method": method, "seed": int(seed), "generator": "numpy.random.default_rng (PCG64)",
        "universe_size": int(len(frame)), "sample_size": int(len(sample)), "stratum_column": stratum,
        "frame_order": f"sorted by {id_column}, numbered 1..N (frame_position)",
        "strata": strata_rows,
    }
    return sample.reset_index(drop=True), description


def worklist(sample: pd.DataFrame, columns: list[str] | None = None) -> pd.DataFrame:
    """The auditors' worklist: claims in selection order, without patient identifiers."""
    default = ["selection_order", "frame_position", "claim_id", "facility_id", "admit_date", "discharge_date",
               "payer", "service_line", "billed_drg", "stratum"]
    cols = [c for c in (columns or default) if c in sample and c != "patient_id"]
    return sample.sort_values("selection_order")[cols].reset_index(drop=True)


def draw_from_warehouse(con, audit_period: str, sample_size: int, seed: int,
                        stratify: bool = False) -> tuple[pd.DataFrame, dict]:
    """Draw the next audit sample from the period's loaded universe."""
    universe = con.execute("""SELECT claim_id, facility_id, admit_date, discharge_date, payer, service_line,
                                     billed_drg, stratum
                              FROM universe WHERE audit_period = ?""", [audit_period]).df()
    if universe.empty:
        raise ValueError(f"no universe is loaded for audit period {audit_period}: load one with --universe")
    return draw_sample(universe, sample_size, seed=seed, stratum="stratum" if stratify else None)
