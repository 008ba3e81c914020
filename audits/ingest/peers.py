"""Peer DRG discharge counts by provider (optional input for the facility target areas).

Accepts our layout (provider_id, drg, discharges) or CMS's "Medicare Inpatient Hospitals - by
Provider and Service" file as published (Rndrng_Prvdr_CCN, DRG_Cd, Tot_Dschrgs; any case).
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd

from audits.errors import InputError
from audits.ingest.readers.base import read_raw, release_scratch

ALIASES = {"provider_id": ("provider_id", "rndrng_prvdr_ccn"), "drg": ("drg", "drg_cd"),
           "discharges": ("discharges", "tot_dschrgs")}


def read_peers(paths: list[Path]) -> pd.DataFrame:
    con = duckdb.connect(":memory:")
    try:
        return _read_peers(con, paths)
    finally:
        release_scratch(con)
        con.close()


def _read_peers(con: duckdb.DuckDBPyConnection, paths: list[Path]) -> pd.DataFrame:
    frames = []
    for i, path in enumerate(paths):
        columns = read_raw(con, path, f"peers_{i}")
        picked = {}
        for target, names in ALIASES.items():
            found = next((n for n in names if n in columns), None)
            if found is None:
                raise InputError(f"missing required column {target!r} (or CMS's {names[1]!r})", file=path, row=0,
                                 column=target)
            picked[target] = found
        frame = con.execute(f"""
            SELECT _source_row, {picked['provider_id']} AS provider_id,
                   lpad({picked['drg']}, 3, '0') AS drg,
                   TRY_CAST(replace({picked['discharges']}, ',', '') AS BIGINT) AS discharges,
                   {picked['discharges']} AS discharges_raw
            FROM peers_{i}""").df()
        bad = frame[frame["discharges"].isna() | frame["provider_id"].isna()]
        if len(bad):
            row = bad.iloc[0]
            raise InputError(f"discharges must be a whole number and provider_id present (got "
                             f"{row['discharges_raw']!r})", file=path, row=int(row["_source_row"]),
                             column="discharges")
        frames.append(frame[["provider_id", "drg", "discharges"]])
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["provider_id", "drg", "discharges"])
