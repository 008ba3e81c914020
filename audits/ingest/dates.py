"""Dates in input files, read without guessing.

Always accepted: ISO `2026-01-31` (a midnight time part is tolerated: Parquet timestamps), compact
`20260131` and year-first `2026/01/31`. Slash dates with the year last (`06/10/2025`) are read
month-first (US) or day-first only when the file proves which (some first field above 12 and no
second field above 12, or the reverse) or the user says so (`--date-format mdy|dmy|ymd`); a file
whose slash dates are all ambiguous is refused (exit 2) with an example and the option.
"""

from __future__ import annotations

import datetime as dt

import duckdb

from audits.errors import InputError

DATE_FORMATS = ("mdy", "dmy", "ymd")
_STRPTIME = {"mdy": "%m/%d/%Y", "dmy": "%d/%m/%Y"}
_YEAR_LAST = "[0-9]{{1,2}}/[0-9]{{1,2}}/[0-9]{{4}}"
OPTION_HINT = ("re-run with --date-format mdy (month first, US: 01/31/2026) or --date-format dmy "
               "(day first: 31/01/2026), or write the dates as 2026-01-31")


def accepted_formats(order: str | dict | None = "mdy") -> str:
    """The formats a date column takes under `order`, in the users' words (for messages)."""
    if isinstance(order, dict):
        orders = set(order.values()) or {"mdy"}  # no slash date seen: the default order
    else:
        orders = {order or "mdy"}
    formats = ["2026-01-31", "20260131", "2026/01/31"]
    if "mdy" in orders:
        formats.append("01/31/2026 (month first)")
    if "dmy" in orders:
        formats.append("31/01/2026 (day first)")
    return ", ".join(formats)


def _slash_sql(c: str, order: str) -> str:
    if order == "ymd":
        return "NULL"
    return f"CAST(try_strptime({c}, '{_STRPTIME[order]}') AS DATE)"


def parse_date_sql(column: str, order: str | dict | None = "mdy", file_column: str = "_source_file") -> str:
    """SQL reading `column` as a date between 1900 and 2100, else NULL (-> invalid_date). `order` is
    how slash dates with the year last are read: "mdy", "dmy", "ymd" (none are), or {file: order}
    for per-file orders (on `file_column`). Each format is matched exactly first: DuckDB's own cast
    also takes 'infinity', 'epoch', BC dates and 1/5/26 as year 1."""
    c = column
    if isinstance(order, dict):
        cases = " ".join(f"WHEN '{str(f).replace(chr(39), chr(39) * 2)}' THEN {_slash_sql(c, o)}"
                         for f, o in order.items())
        slash = f"CASE {file_column} {cases} ELSE {_slash_sql(c, 'mdy')} END" if cases else _slash_sql(c, "mdy")
    else:
        slash = _slash_sql(c, order or "mdy")
    parsed = (f"CASE WHEN regexp_full_match({c}, '[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}([ T]00:00(:00(\\.0+)?)?)?') "
              f"THEN CAST(try_strptime(left({c}, 10), '%Y-%m-%d') AS DATE) "
              f"WHEN regexp_full_match({c}, '[0-9]{{4}}/[0-9]{{2}}/[0-9]{{2}}') "
              f"THEN CAST(try_strptime({c}, '%Y/%m/%d') AS DATE) "
              f"WHEN regexp_full_match({c}, '{_YEAR_LAST.format()}') THEN {slash} "
              f"WHEN regexp_full_match({c}, '[0-9]{{8}}') THEN CAST(try_strptime({c}, '%Y%m%d') AS DATE) END")
    return f"(CASE WHEN {parsed} BETWEEN DATE '1900-01-01' AND DATE '2100-12-31' THEN {parsed} END)"


def _readings(value: str) -> str:
    a, b, y = (int(x) for x in value.split("/"))
    try:
        return (f"{dt.date(y, a, b):%-d %B %Y} (month first) or {dt.date(y, b, a):%-d %B %Y} (day first)")
    except ValueError:
        return "two different dates"


def slash_date_orders(con: duckdb.DuckDBPyConnection, table: str, columns: list[str],
                      date_format: str | None = None, warnings: list | None = None) -> dict[str, str]:
    """{source file: "mdy" | "dmy" | "ymd"} for the slash dates of `table`'s `columns`. Raises
    InputError for a file whose slash dates are all ambiguous, or that proves both orders, unless
    `date_format` says. Appends to `warnings` the ambiguous dates it resolved."""
    if date_format is not None and date_format not in DATE_FORMATS:
        raise InputError(f"--date-format must be one of {', '.join(DATE_FORMATS)}, not {date_format!r}")
    present = {r[0] for r in con.execute(f"SELECT * FROM {table} LIMIT 0").description}
    columns = [c for c in columns if c in present]
    if not columns:
        return {}
    values = " UNION ALL ".join(
        f"SELECT _source_file AS f, _source_row * 100 + {i} AS k, _source_row AS r, '{c}' AS col, "
        f"CAST({c} AS VARCHAR) AS v FROM {table} "
        f"WHERE regexp_full_match(CAST({c} AS VARCHAR), '{_YEAR_LAST.format()}')" for i, c in enumerate(columns))
    rows = con.execute(f"""
        WITH p AS (SELECT *, CAST(split_part(v, '/', 1) AS INTEGER) AS a,
                             CAST(split_part(v, '/', 2) AS INTEGER) AS b FROM ({values}))
        SELECT f, count(*) FILTER (a > 12 AND b <= 12), count(*) FILTER (b > 12 AND a <= 12),
               count(*) FILTER (a <= 12 AND b <= 12 AND a <> b),
               arg_min(v, k) FILTER (a > 12 AND b <= 12), arg_min(v, k) FILTER (b > 12 AND a <= 12),
               arg_min(v, k) FILTER (a <= 12 AND b <= 12 AND a <> b),
               arg_min(r, k) FILTER (a <= 12 AND b <= 12 AND a <> b),
               arg_min(col, k) FILTER (a <= 12 AND b <= 12 AND a <> b)
        FROM p GROUP BY f ORDER BY f""").fetchall()
    orders: dict[str, str] = {}
    for file, day_first, month_first, ambiguous, ex_day, ex_month, ex_amb, row, column in rows:
        if date_format:
            orders[file] = date_format
            if ambiguous and date_format != "ymd" and warnings is not None:
                warnings.append({"code": "ambiguous_dates_resolved", "count": int(ambiguous), "message": (
                    f"{file}: {ambiguous:,} slash dates such as {ex_amb} read "
                    f"{'month' if date_format == 'mdy' else 'day'} first, as --date-format {date_format} says")})
            continue
        if day_first and month_first:
            raise InputError(f"slash dates are written both day first ({ex_day}) and month first ({ex_month}) "
                             f"in one file; {OPTION_HINT}", file=file)
        if ambiguous and not (day_first or month_first):
            raise InputError(f"every slash date in this file is ambiguous: {ex_amb} could be {_readings(ex_amb)}; "
                             f"nothing in the file shows which comes first. {OPTION_HINT[0].upper()}{OPTION_HINT[1:]}",
                             file=file, row=int(row), column=column)
        orders[file] = "dmy" if day_first else "mdy"
        if ambiguous and warnings is not None:
            proof = ex_day or ex_month
            warnings.append({"code": "ambiguous_dates_resolved", "count": int(ambiguous), "message": (
                f"{file}: {ambiguous:,} slash dates such as {ex_amb} read {'day' if day_first else 'month'} first, "
                f"because the file also has {proof}")})
    return orders
