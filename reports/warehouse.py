"""Period-filtered reads of the warehouse for the report pages, and the DRG titles they show.

Privacy: nothing here reads `claims` (the only table with patient_id) nor any extra_columns.
"""

from __future__ import annotations

from collections.abc import Iterator

import duckdb
import pandas as pd

from audits.revenue.weights import load_weights


class PeriodWarehouse:
    """Reads of one audit period; knows which tables and columns exist (optional tables may be absent,
    and tables another step rewrites may gain columns: read them by name)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, period: str):
        self.con, self.period = con, period
        rows = con.execute("""SELECT table_name, column_name FROM information_schema.columns
                              WHERE table_catalog = current_database()
                                AND table_schema = current_schema()""").fetchall()
        self.columns: dict[str, set[str]] = {}
        for table, column in rows:
            self.columns.setdefault(table, set()).add(column)
        self._titles: pd.Series | None = None

    def has(self, table: str, column: str | None = None) -> bool:
        return table in self.columns and (column is None or column in self.columns[table])

    def scoped(self, table: str, alias: str = "") -> str:
        """`table [alias]` as a subquery limited to the period when the table has the column."""
        name = f"{table} {alias}".strip()
        if "audit_period" in self.columns.get(table, ()):
            return f"(SELECT * FROM {table} WHERE audit_period = $period) {alias or table}"
        return name

    def _params(self, sql: str, params: dict) -> dict:
        """The period and `params`, those `sql` names ($period...): DuckDB refuses unused ones."""
        return {k: v for k, v in {"period": self.period, **params}.items() if f"${k}" in sql}

    def df(self, sql: str, **params) -> pd.DataFrame:
        return self.con.execute(sql, self._params(sql, params)).df()

    def scalar(self, sql: str, **params):
        # fetched to the end: no result left open
        return self.con.execute(sql, self._params(sql, params)).fetchall()[0][0]

    def batches(self, sql: str, rows: int = 100_000) -> Iterator[pd.DataFrame]:
        """The rows of `sql`, `rows` at a time; one empty frame when there are none. A list that grows
        with the universe (flag evidence, billed-DRG mismatches) goes through pandas a batch at a time."""
        self.drg_titles()  # read before the stream opens: the connection serves one open result at a time
        reader = self.con.sql(sql, params=self._params(sql, {}) or None).to_arrow_reader(rows)
        empty = True
        for batch in reader:
            empty = False
            yield batch.to_pandas()
        if empty:
            yield reader.schema.empty_table().to_pandas()

    def drg_titles(self) -> pd.Series:
        """Table 5 title by (fiscal_year, drg) for the fiscal years of the period's claims (the weights
        the regroup priced with); years without a table (a --weights-dir not given here) get no title."""
        if self._titles is None:
            years = (self.df(f"SELECT DISTINCT fiscal_year FROM {self.scoped('claim_regroup')} "
                             "WHERE fiscal_year IS NOT NULL")["fiscal_year"].astype(int).tolist()
                     if self.has("claim_regroup", "fiscal_year") else [])
            frames = []
            for year in sorted(set(years)):
                try:
                    frames.append(load_weights([year])[["fiscal_year", "drg", "title"]])
                except Exception:  # noqa: BLE001 - a missing Table 5 leaves that year's DRGs untitled
                    continue
            table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
                {"fiscal_year": pd.Series(dtype="int64"), "drg": pd.Series(dtype="string"),
                 "title": pd.Series(dtype="string")})
            self._titles = table.drop_duplicates(["fiscal_year", "drg"]).set_index(["fiscal_year", "drg"])["title"]
        return self._titles


def drg_label(drg, title) -> str | None:
    """'291 HEART FAILURE AND SHOCK WITH MCC'; the number alone without a title; None without a DRG."""
    if drg is None or (isinstance(drg, float) and drg != drg) or drg is pd.NA:
        return None
    drg = str(drg)
    return f"{drg} {title}" if isinstance(title, str) and title else drg


def with_drg_titles(wh: PeriodWarehouse, frame: pd.DataFrame, columns: list[str],
                    year_column: str = "fiscal_year", default_year: int | None = None) -> pd.DataFrame:
    """Adds `<column>_label` (number and Table 5 title of the claim's fiscal year) for each DRG column."""
    titles = wh.drg_titles()
    out = frame.copy()
    if year_column in out:
        years = pd.to_numeric(out[year_column], errors="coerce")
    else:
        years = pd.Series(default_year, index=out.index, dtype="float64")
    if default_year is not None:
        years = years.fillna(default_year)
    if years.isna().all() and len(titles):  # no year known: the period's only fiscal year, when it has one
        known = titles.index.get_level_values(0).unique()
        if len(known) == 1:
            years = pd.Series(float(known[0]), index=out.index)
    for column in columns:
        drgs = out[column].astype("string").str.strip().str.zfill(3).where(out[column].notna())
        keys = pd.MultiIndex.from_arrays([years.fillna(-1).astype(int), drgs.fillna("")])
        found = titles.reindex(keys).to_numpy() if len(titles) else [None] * len(out)
        out[f"{column}_label"] = [drg_label(d, t) for d, t in zip(out[column].astype("object"), found)]
    return out
