"""audit_workbook.xlsx: the lists finance, compliance and the audit team filter and sort in Excel.

XlsxWriter writes it: it only writes, streams rows to disk (constant memory) and applies a number
format per column, so a 100,000-claim audit's worklists take seconds, where openpyxl's cell-by-cell
styling took ~50 us a cell (the tests read the workbook back with openpyxl).
Sheets: Summary, Rebill worklist, Refund worklist, Flagged cases, Error rates, Rejected rows; each with
a styled, frozen header row, an autofilter, currency / percent / integer formats. Text cells that a
spreadsheet would run as a formula are neutralised exactly as in the CSVs (reports.exports), and
XlsxWriter is told never to turn text into formulas or links. No patient identifiers: the frames come
from claim_regroup, reviews, flags and the quarantine, never from claims.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd
import xlsxwriter

from reports.exports import neutralise_formulas

MONEY = '"$"#,##0.00;[Red]-"$"#,##0.00'
PERCENT = "0.0%"
INTEGER = "#,##0"
HEADER = {"bold": True, "font_color": "#FFFFFF", "bg_color": "#1D2733", "valign": "top"}
MONEY_WORDS = ("payment", "amount", "delta", "exposure", "point", "lower_90", "upper_90", "standard_error",
               "difference", "base_rate")
RATE_WORDS = ("rate", "ci_low", "ci_high")
SUMMARY_FIGURES = (
    ("audit_period", "Audit period", None), ("claims", "Claims of the period", INTEGER),
    ("reviews", "Reviews", INTEGER), ("audited_claims", "Audited claims", INTEGER),
    ("rejected_rows", "Rejected rows", INTEGER), ("record_error_rate", "Record error rate", PERCENT),
    ("principal_dx_error_rate", "Principal dx error rate", PERCENT),
    ("secondary_dx_error_rate", "Secondary dx error rate", PERCENT),
    ("procedure_error_rate", "Procedure error rate", PERCENT), ("drg_change_rate", "DRG change rate", PERCENT),
    ("underpaid_amount", "Underpaid (lost revenue)", MONEY), ("overpaid_amount", "Overpaid (refund liability)", MONEY),
    ("net_amount", "Net (audited - original)", MONEY),
    ("billed_drg_mismatch_rate", "Billed DRG differs from regrouped (audited claims)", PERCENT),
    ("extrapolation.point", "Universe estimate: net difference", MONEY),
    ("extrapolation.lower_90", "Universe estimate: net, 90% lower limit", MONEY),
    ("extrapolation.upper_90", "Universe estimate: net, 90% upper limit", MONEY),
    ("extrapolation.overpayment_demand_lower_90", "Universe estimate: overpayments, 90% lower limit", MONEY),
    ("upcoding_flags.claim", "Claim flags", INTEGER), ("upcoding_flags.coder", "Coder flags", INTEGER),
    ("upcoding_flags.facility", "Facility flags", INTEGER), ("grouper", "MS-DRG grouper", None),
    ("base_rate", "Base rate (what-if)", MONEY), ("generated_at", "Run at", None),
)


def _number_format(column: str, series: pd.Series) -> str | None:
    if not (pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)):
        return None
    name = column.lower()
    if "year" in name or "version" in name:
        return None
    if any(w in name for w in RATE_WORDS) and "base_rate" not in name:
        return PERCENT
    if any(w in name for w in MONEY_WORDS):
        return MONEY
    if pd.api.types.is_integer_dtype(series) or name in ("row", "n", "claims", "errors", "flags"):
        return INTEGER
    return None


def _cell_value(value):
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if hasattr(value, "item"):
        return value.item()
    return value


class _Book:
    """One workbook being written: formats made once, sheets appended in order."""

    def __init__(self, path: Path):
        self.book = xlsxwriter.Workbook(str(path), {
            "constant_memory": True, "strings_to_formulas": False, "strings_to_urls": False,
            "strings_to_numbers": False, "nan_inf_to_errors": False})
        self.header = self.book.add_format(HEADER)
        self.formats = {f: self.book.add_format({"num_format": f}) for f in (MONEY, PERCENT, INTEGER)}

    def sheet(self, title: str, frame: pd.DataFrame, formats: list[str | None] | None = None) -> None:
        sheet = self.book.add_worksheet(title)
        frame = neutralise_formulas(frame.reset_index(drop=True))
        formats = formats or [_number_format(str(c), frame[c]) for c in frame.columns]
        for i, column in enumerate(frame.columns):
            sample = [len(str(v)) for v in frame[column].head(200).tolist()]
            width = min(max(10, max([len(str(column)), *sample]) + 2), 60)
            sheet.set_column(i, i, width, self.formats.get(formats[i]) if formats[i] else None)
        sheet.freeze_panes(1, 0)
        if len(frame.columns):
            sheet.autofilter(0, 0, len(frame), len(frame.columns) - 1)
        sheet.write_row(0, 0, [str(c) for c in frame.columns], self.header)
        columns = [frame[c].astype("object").tolist() for c in frame.columns]
        for r, row in enumerate(zip(*columns), start=1):
            for c, value in enumerate(row):
                value = _cell_value(value)
                if value is None:
                    continue
                fmt = formats[c]
                if isinstance(value, bool):
                    sheet.write_boolean(r, c, value)
                elif isinstance(value, (int, float)):
                    sheet.write_number(r, c, value, self.formats.get(fmt) if fmt else None)
                else:
                    sheet.write_string(r, c, str(value))

    def close(self) -> None:
        self.book.close()


def summary_frame(run_info: dict) -> pd.DataFrame:
    """The Summary sheet: figure, value, its summary.json key (number formats in `_format`)."""
    rows = []
    for key, label, fmt in SUMMARY_FIGURES:
        value = run_info
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is None or isinstance(value, (dict, list)):
            continue
        rows.append((label, value, key, fmt))
    return pd.DataFrame(rows, columns=["figure", "value", "summary_key", "_format"])


def write_workbook(path: Path, run_info: dict, worklists: dict[str, pd.DataFrame], cases: pd.DataFrame | None,
                   error_rates: pd.DataFrame, rejected: pd.DataFrame) -> Path:
    """Write the workbook to a temporary file and rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.xlsx")
    book = _Book(tmp)
    try:
        summary = summary_frame(run_info)
        _summary_sheet(book, summary)
        book.sheet("Rebill worklist", worklists["rebill_worklist"])
        book.sheet("Refund worklist", worklists["refund_worklist"])
        flagged = cases if cases is not None else pd.DataFrame(columns=["level", "entity", "severity", "rules"])
        book.sheet("Flagged cases", flagged)
        book.sheet("Error rates", error_rates.assign(small_cell=error_rates["small_cell"].map(
            {True: "yes", False: ""})) if "small_cell" in error_rates else error_rates)
        book.sheet("Rejected rows", rejected)
    finally:
        book.close()
    tmp.replace(path)
    return path


def _summary_sheet(book: _Book, summary: pd.DataFrame) -> None:
    """Figure | value | key; each value formatted as what it is (a rate, dollars, a count)."""
    sheet = book.book.add_worksheet("Summary")
    sheet.set_column(0, 0, 52)
    sheet.set_column(1, 1, 28)
    sheet.set_column(2, 2, 44)
    sheet.freeze_panes(1, 0)
    sheet.autofilter(0, 0, len(summary), 2)
    sheet.write_row(0, 0, ["Figure", "Value", "summary.json key"], book.header)
    safe = neutralise_formulas(summary[["figure", "value", "summary_key"]].astype({"value": "object"}))
    for r, ((label, value, key), fmt) in enumerate(zip(safe.itertuples(index=False), summary["_format"]), start=1):
        sheet.write_string(r, 0, str(label))
        value = _cell_value(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            sheet.write_number(r, 1, value, book.formats.get(fmt) if isinstance(fmt, str) else None)
        else:
            sheet.write_string(r, 1, str(value))
        sheet.write_string(r, 2, str(key))
