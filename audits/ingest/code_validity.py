"""Is a code valid on a date? Asked of CMS's Medicare Code Editor (as reimplemented by msdrg).

The code editor reports an edit count, not which code failed, so each code is checked alone:
a diagnosis as the only (principal) diagnosis, a procedure beside the always-valid principal I10.
Verdicts are cached per (kind, code, date).
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

import pandas as pd

from audits.codes import CODE_PATTERNS, is_code_shaped

_EDITOR = None


def _editor():
    global _EDITOR
    if _EDITOR is None:
        import atexit

        import msdrg
        _EDITOR = msdrg.MceEditor()
        atexit.register(_EDITOR.close)
    return _EDITOR


@lru_cache(maxsize=500_000)
def is_valid_on(kind: str, code: str, date_yyyymmdd: int) -> bool:
    claim = {"discharge_date": date_yyyymmdd, "age": 65, "sex": 2, "discharge_status": 1,
             "sdx": [], "procedures": []}
    if kind == "dx":
        claim["pdx"] = {"code": code}
    else:
        claim["pdx"] = {"code": "I10"}
        claim["procedures"] = [{"code": code}]
    result = _editor().edit(claim)
    return not any(edit["name"] == "INVALID_CODE" for edit in result["edits"])


def code_validity(codes: pd.DataFrame) -> pd.Series:
    """For rows (kind, code, discharge_date): True/False, or None where the question does not
    arise (a badly shaped code, which has its own rule, or no usable discharge date)."""
    verdicts = []
    for kind, code, date in zip(codes["kind"], codes["code"], codes["discharge_date"]):
        if code is None or pd.isna(date) or kind not in CODE_PATTERNS or not is_code_shaped(code, kind):
            verdicts.append(None)
            continue
        day = pd.Timestamp(date).date() if not isinstance(date, dt.date) else date
        if not 2000 <= day.year <= 2100:  # the code editor's range; such claims are ungroupable anyway
            verdicts.append(None)
            continue
        verdicts.append(is_valid_on(kind, code, day.year * 10000 + day.month * 100 + day.day))
    return pd.Series(verdicts, index=codes.index, dtype="object")
