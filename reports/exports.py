"""CSV worklists that finance and compliance open in a spreadsheet.

A text cell starting with = + - @ (or a tab / carriage return) would be read by Excel, LibreOffice
or Google Sheets as a formula (CSV/formula injection, OWASP). Such cells get a leading single quote.
Numbers stay numbers: numeric columns are written as they are (a refund delta of -2552.68 stays
-2552.68), and a text cell that is itself a plain number ("-12.5") is left alone too, since a
spreadsheet reads it as that number and never as a formula.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

FORMULA_START = r"^[=+\-@\t\r]"
PLAIN_NUMBER = r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$"


def neutralise_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """Copy of `frame` with every non-numeric text cell that a spreadsheet would run prefixed by '."""
    out = frame.copy()
    for column in out.columns:
        series = out[column]
        if pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
            continue
        if pd.api.types.is_datetime64_any_dtype(series):
            continue
        text = series.astype("string")
        risky = (text.str.contains(FORMULA_START, regex=True) & ~text.str.fullmatch(PLAIN_NUMBER)).fillna(False)
        if risky.any():
            out[column] = series.astype("object").where(~risky, "'" + text.astype("object"))
    return out


def write_csv(rows: pd.DataFrame | Iterable[pd.DataFrame], path: Path) -> Path:
    """Neutralised CSV (UTF-8, header row), written to a temporary file and renamed into place.

    `rows` is one frame, or frames with the same columns written one after the other (a list that grows
    with the universe streams through in batches, never whole in memory)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    frames = [rows] if isinstance(rows, pd.DataFrame) else rows
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as out:
            for i, frame in enumerate(frames):
                neutralise_formulas(frame).to_csv(out, index=False, header=i == 0, lineterminator="\n")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
