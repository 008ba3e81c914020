"""Drawing the next audit sample from a claims universe: simple or stratified random, reproducible.

The frame is the universe sorted by claim id (so the same universe in another row order gives the
same sample) and numbered 1..N, as RAT-STATS numbers a frame; the numbering and the fetch of the
drawn rows are DuckDB SQL, so the universe stays in DuckDB whatever its size. Draws use numpy's
default_rng(seed) (PCG64) without replacement; strata are drawn one after another in sorted
stratum order from the same generator. The description returned with the sample (seed, method, universe size, per-stratum
counts) is what the audit file records so anyone can redraw the same claims.
"""

from __future__ import annotations

from collections.abc import Mapping

import duckdb
import numpy as np
import pandas as pd

from audits.warehouse import quote_ident


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
    """`draw_from_table` over a DataFrame (the frame is read in place by DuckDB)."""
    con = duckdb.connect()
    try:
        con.register("universe_frame", universe)
        return draw_from_table(con, "SELECT * FROM universe_frame", sample_size, seed=seed, stratum=stratum,
                               sizes=sizes, id_column=id_column, minimum_per_stratum=minimum_per_stratum)
    finally:
        con.close()


def draw_from_table(con: duckdb.DuckDBPyConnection, source: str, sample_size: int | None = None, *, seed: int,
                    stratum: str | None = None, sizes: Mapping | None = None, id_column: str = "claim_id",
                    minimum_per_stratum: int = 2, params: dict | None = None) -> tuple[pd.DataFrame, dict]:
    """Draw the sample from `source` (a SELECT of the universe's rows; `params` its parameters);
    returns (sample rows with frame_position and selection_order, description).

    Simple random: `sample_size`. Stratified: `stratum` (a column) with either `sizes` per stratum
    or `sample_size` allocated proportionally (`allocate_proportional`). Only the drawn rows leave
    DuckDB: numpy draws frame positions (or ranks within a stratum), SQL numbers the frame and
    fetches those rows, so a national universe is never held in memory.
    """
    frame = f"({source})"
    columns = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {frame}", params or {}).fetchall()]
    if id_column not in columns:
        raise ValueError(f"universe has no {id_column!r} column")
    ident = quote_ident(id_column)
    total, distinct = con.execute(f"SELECT count(*), count(DISTINCT {ident}) FROM {frame}", params or {}).fetchall()[0]
    if distinct < total:
        raise ValueError(f"universe has duplicate {id_column} values: a frame lists each claim once")
    rng = np.random.default_rng(seed)
    numbered = f"row_number() OVER (ORDER BY {ident}) AS frame_position"
    if stratum is None:
        if sample_size is None:
            raise ValueError("give the sample size")
        if not 0 < sample_size <= total:
            raise ValueError(f"sample size {sample_size} must be between 1 and the universe size {total}")
        picks = pd.DataFrame({"_pick": rng.choice(total, size=sample_size, replace=False) + 1,
                              "selection_order": np.arange(1, sample_size + 1)})
        sql = f"""WITH f AS (SELECT {numbered}, * FROM {frame})
                  SELECT f.*, p.selection_order FROM f JOIN _sample_picks p ON f.frame_position = p._pick"""
        strata_rows = [{"stratum": None, "universe_count": int(total), "sample_count": sample_size}]
        method = "simple random sample without replacement"
    else:
        if stratum not in columns:
            raise ValueError(f"universe has no stratum column {stratum!r}")
        column = quote_ident(stratum)
        found = con.execute(f"SELECT {column}, CAST({column} AS VARCHAR), count(*) FROM {frame} GROUP BY ALL",
                            params or {}).fetchall()
        missing = sum(n for key, _, n in found if key is None)
        if missing:
            raise ValueError(f"{missing} claims have no {stratum}: every claim needs one")
        counts = {key: n for key, _, n in found}
        labels = {key: label for key, label, _ in found}
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
        for key in sorted(counts, key=str):  # strata drawn one after another from the same generator
            n_h, big_n = int(sizes.get(key, 0)), int(counts[key])
            if n_h > big_n:
                raise ValueError(f"stratum {key!r}: sample size {n_h} exceeds its {big_n} claims")
            parts.append(pd.DataFrame({"_label": labels[key],
                                       "_pick": (rng.choice(big_n, size=n_h, replace=False) + 1) if n_h else []}))
            strata_rows.append({"stratum": key, "universe_count": big_n, "sample_count": n_h})
        picks = pd.concat(parts, ignore_index=True).astype({"_label": "object", "_pick": "int64"})
        picks["selection_order"] = np.arange(1, len(picks) + 1)
        sql = f"""WITH f AS (SELECT {numbered},
                                    row_number() OVER (PARTITION BY {column} ORDER BY {ident}) AS _rank, *
                             FROM {frame})
                  SELECT f.* EXCLUDE (_rank), p.selection_order
                  FROM f JOIN _sample_picks p ON CAST(f.{column} AS VARCHAR) = p._label AND f._rank = p._pick"""
    con.register("_sample_picks", picks)
    try:
        sample = con.execute(f"{sql} ORDER BY selection_order", params or {}).df()
    finally:
        con.unregister("_sample_picks")
    description = {
        "method": method, "seed": int(seed), "generator": "numpy.random.default_rng (PCG64)",
        "universe_size": int(total), "sample_size": int(len(sample)), "stratum_column": stratum,
        "frame_order": f"sorted by {id_column}, numbered 1..N (frame_position)",
        "strata": strata_rows,
    }
    return sample, description


def worklist(sample: pd.DataFrame, columns: list[str] | None = None) -> pd.DataFrame:
    """The auditors' worklist: claims in selection order, without patient identifiers."""
    default = ["selection_order", "frame_position", "claim_id", "facility_id", "admit_date", "discharge_date",
               "payer", "service_line", "billed_drg", "stratum"]
    cols = [c for c in (columns or default) if c in sample and c != "patient_id"]
    return sample.sort_values("selection_order")[cols].reset_index(drop=True)


def draw_from_warehouse(con, audit_period: str, sample_size: int, seed: int,
                        stratify: bool = False) -> tuple[pd.DataFrame, dict]:
    """Draw the next audit sample from the period's loaded universe."""
    source = """SELECT claim_id, facility_id, admit_date, discharge_date, payer, service_line, billed_drg, stratum
                FROM universe WHERE audit_period = $period"""
    if not con.execute(f"SELECT count(*) FROM ({source})", {"period": audit_period}).fetchall()[0][0]:
        raise ValueError(f"no universe is loaded for audit period {audit_period}: load one with --universe")
    return draw_from_table(con, source, sample_size, seed=seed, stratum="stratum" if stratify else None,
                           params={"period": audit_period})
