"""Great Expectations on distinct values: the rules of a load (`audits.ingest.validation`), of the
universe and of the published tables run as GX expectations on small pandas frames of the distinct
values (or per-row verdicts computed in DuckDB SQL) of a table's rows, never on a batch of every
row; failing values are joined back to their rows set-based (`check_distinct`)."""

from __future__ import annotations

import os
import sys
import threading
import uuid
from dataclasses import dataclass
from typing import Callable

import duckdb
import pandas as pd

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")


@dataclass(frozen=True)
class Rule:
    """One validation rule: the GX expectation, the input column it is reported against, and
    the plain-words reason written to `rejected_rows`."""

    rule: str
    column: str
    reason: str
    expectation: Callable[[], object]


def _gx():
    import great_expectations as gx
    return gx


def preload_gx() -> None:
    """Import Great Expectations in the background (a fixed ~3 s of Python imports, most of a
    small load's time) while DuckDB, which releases the GIL, reads the files; the first rule to
    run waits for it."""
    if "great_expectations.expectations" not in sys.modules:
        threading.Thread(target=lambda: _gx().expectations, name="preload-gx", daemon=True).start()


def run_expectations(suite_name: str, frame: pd.DataFrame, rules: list[Rule],
                     key_columns: list[str]) -> pd.DataFrame:
    """Run `rules` with GX on `frame`; return one row per (unexpected row, rule): key columns,
    rule, column, reason. Also returns nothing silently: a GX failure to evaluate raises."""
    if frame.empty or not rules:
        return pd.DataFrame(columns=key_columns + ["rule", "column", "reason"])
    gx = _gx()
    with _CONTEXT_LOCK:
        context, batch_definition = _context()
        name = f"{suite_name}_{uuid.uuid4().hex[:8]}"
        try:
            return _run_suite(gx, context, batch_definition, name, frame, rules, key_columns)
        finally:
            for store in (context.validation_definitions, context.suites):
                try:
                    store.delete(name)
                except Exception:  # not added: the run failed before
                    pass


_CONTEXT_LOCK = threading.Lock()
_CONTEXT: list = []  # [(context, batch definition)] once made


def _context():
    """One ephemeral GX context per process, with one pandas batch definition that takes any frame
    (`batch_parameters`): each new data source made the context write its whole configuration as
    YAML three times, two thirds of a check's time (24 of 35 ms; 18 checks a load)."""
    if not _CONTEXT:
        gx = _gx()
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        batch_definition = (context.data_sources.add_pandas("coding_audit_frames")
                            .add_dataframe_asset(name="frame")
                            .add_batch_definition_whole_dataframe("whole_frame"))
        _CONTEXT.append((context, batch_definition))
    return _CONTEXT[0]


def _run_suite(gx, context, batch_definition, name: str, frame: pd.DataFrame, rules: list[Rule],
               key_columns: list[str]) -> pd.DataFrame:
    suite = context.suites.add(gx.ExpectationSuite(name=name))
    by_id = {}
    for rule in rules:
        expectation = suite.add_expectation(rule.expectation())
        by_id[expectation.id] = rule
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=name, data=batch_definition, suite=suite))
    result = definition.run(
        batch_parameters={"dataframe": frame},
        result_format={"result_format": "COMPLETE", "unexpected_index_column_names": key_columns,
                       "return_unexpected_index_query": False})
    failures = []
    for outcome in result.results:
        rule = by_id[outcome.expectation_config.id]
        if outcome.exception_info and outcome.exception_info.get("raised_exception"):
            raise RuntimeError(f"validation rule {rule.rule} could not run: "
                               f"{outcome.exception_info.get('exception_message')}")
        if outcome.success:
            continue
        index = outcome.result.get("unexpected_index_list") or []
        if not index:
            continue
        found = pd.DataFrame(index)[key_columns]
        found["rule"], found["column"], found["reason"] = rule.rule, rule.column, rule.reason
        failures.append(found)
    if not failures:
        return pd.DataFrame(columns=key_columns + ["rule", "column", "reason"])
    return pd.concat(failures, ignore_index=True)


@dataclass(frozen=True)
class DistinctCheck:
    """Rules GX runs on the distinct values of `keys` rather than on every row: `keys` maps each
    column of GX's frame to its SQL over the checked table's rows. A rule that is per row by nature
    (not null, unique) is given a per-row verdict column (TRUE or NULL, TRUE or FALSE) computed in
    SQL, so its frame is the few distinct verdicts. Failing values are joined back to the rows."""

    name: str
    keys: dict[str, str]
    rules: list[Rule]
    where: str = ""


def check_distinct(con: duckdb.DuckDBPyConnection, table: str, checks: list[DistinctCheck],
                   row_columns: str, order: str, rows_table: str | None = None,
                   rows_by_claim: bool = False) -> pd.DataFrame:
    """Run `checks` over `table`; return one row per (failing row, rule): `row_columns` (SQL over
    the row `c` and the rule `f`: f.rule, f."column", f.reason), in rule order then `order`.
    `rows_table`: the same rows with more columns, to name the failing ones from (default `table`);
    with `rows_by_claim` only the rows of the claims whose rows fail in `table` are read from it
    (a view that is costly to read whole, see `claims_clause`)."""
    failed, frames = [], []
    for i, check in enumerate(checks):
        where = f"WHERE {check.where}" if check.where else ""
        keys = ", ".join(f'{sql} AS "{name}"' for name, sql in check.keys.items())
        frame_table = f"distinct_{check.name}_{uuid.uuid4().hex[:8]}"
        con.execute(f"CREATE TEMP TABLE {frame_table} AS SELECT row_number() OVER () AS _key, * "
                    f"FROM (SELECT DISTINCT {keys} FROM {table} {where})")
        frames.append(frame_table)
        frame = con.execute(f"SELECT * FROM {frame_table}").df()
        found = run_expectations(check.name, frame, check.rules, ["_key"])
        if found.empty:
            continue
        ranks = {(rule.rule, rule.column, rule.reason): n for n, rule in enumerate(check.rules)}
        found["_rank"] = [i * 1000 + ranks[key] for key in zip(found["rule"], found["column"], found["reason"])]
        found["_check"] = i
        failed.append(found[["_check", "_key", "_rank", "rule", "column", "reason"]])
    try:
        if not failed:
            return con.execute(f"SELECT {row_columns} FROM {rows_table or table} c, (SELECT NULL AS rule, NULL AS \"column\", "
                               "NULL AS reason) f LIMIT 0").df()
        con.register("failed_values", pd.concat(failed, ignore_index=True))
        names = ", ".join(f"_order_{n}" for n, _ in enumerate(order.split(",")))
        sorting = ", ".join(f"{sql} AS _order_{n}" for n, sql in enumerate(order.split(",")))
        parts = []
        for i, check in enumerate(checks):
            if not any(int(found["_check"].iloc[0]) == i for found in failed):
                continue
            where = f"WHERE {check.where}" if check.where else ""
            keys = ", ".join(f'{sql} AS "_k_{name}"' for name, sql in check.keys.items())
            on = " AND ".join(f'v."{name}" IS NOT DISTINCT FROM c."_k_{name}"' for name in check.keys)
            def keyed(source: str) -> str:
                return f"(SELECT *, {keys} FROM {source} {where})"

            rows = keyed(rows_table or table)
            if rows_by_claim:
                held = [r[0] for r in con.execute(f"""
                    SELECT DISTINCT c.claim_id FROM {keyed(table)} c
                    JOIN {frames[i]} v ON {on} JOIN failed_values f ON f._check = {i} AND f._key = v._key""").fetchall()]
                rows = f"(SELECT * FROM {rows} c {claims_clause(held)})"
            parts.append(f"""
                SELECT {row_columns}, f._rank AS _rank, {sorting}
                FROM {rows} c
                JOIN {frames[i]} v ON {on}
                JOIN failed_values f ON f._check = {i} AND f._key = v._key""")
        rows = con.execute(f"SELECT * EXCLUDE (_rank, {names}) FROM ({' UNION ALL '.join(parts)}) "
                           f"ORDER BY _rank, {names}").df()
        con.unregister("failed_values")
        return rows
    finally:
        for frame_table in frames:
            con.execute(f"DROP TABLE IF EXISTS {frame_table}")


def present(column: str) -> str:
    """Per-row verdict for a not-null rule: TRUE where `column` has a value, NULL where not."""
    return f"({column} IS NOT NULL OR NULL)"


def once(column: str, table: str) -> str:
    """Per-row verdict for a unique rule over the rows of `table`: FALSE where the row's `column` value
    occurs more than once; NULL where it has none (GX's unique expectation does not compare missing
    values). The repeated values come from one grouping of `table`, not a window partitioned by
    `column`: at 9M claims 1.3 s and ~100 MB less memory against 3.2 s."""
    return (f"(CASE WHEN {column} IS NOT NULL THEN {column} NOT IN (SELECT {column} FROM {table} "
            f"WHERE {column} IS NOT NULL GROUP BY ALL HAVING count(*) > 1) END)")


# Up to this many claims hold a failed code, the rows naming them are looked up by claim_id.
FAILED_CODE_CLAIMS_LISTED = 10_000


def claims_clause(claim_ids: list) -> str:
    """A WHERE clause keeping the rows `c` of these claims (None: rows without a claim_id). The
    views that name failing code rows (file, row, raw text) unpivot every claim of the file: on
    real data, where a few codes or POAs in a million claims are invalid, reading them whole was
    the load's longest statement (2.7 s at 1M); by claim_id only the claims at fault are read.
    Past FAILED_CODE_CLAIMS_LISTED claims (a wrong file) no clause: the view is read whole."""
    if len(claim_ids) > FAILED_CODE_CLAIMS_LISTED:
        return ""
    listed = [f"'{str(i).replace(chr(39), chr(39) * 2)}'" for i in claim_ids if i is not None]
    keep = ([f"c.claim_id IN ({', '.join(listed)})"] if listed else []) + \
        (["c.claim_id IS NULL"] if None in claim_ids else [])
    return f"WHERE {' OR '.join(keep) or 'false'}"
