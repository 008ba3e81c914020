"""Staging a load: the reader of each entity's layout, what it read from each file, and the rule
that a file holding claims (or reviews) must give at least one of the audited kind.

That rule is the same for every layout: a file whose records were all left out (an 837I of
outpatient bill types, EOBs of other claim types, CMS claims that are all superseded, a Tuva file
with only a header) is an InputError naming the file and the records skipped by reason. Loaded,
it would replace the audit period with nothing.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd

from audits.errors import InputError
from audits.ingest.readers import detect, long, wide
from audits.ingest.readers.base import SKIP_REASONS, FileRead, InputFiles

log = logging.getLogger(__name__)

LAYOUT_NAMES = {"wide": "canonical wide", "long": "canonical long", "tuva": "Tuva input layer",
                "cms": "CMS RIF", "x12": "X12 837I", "fhir": "FHIR ExplanationOfBenefit"}


@dataclass
class StagedInputs:
    """What staging read: the layout per entity, the layout of each file (`formats`: entity, file,
    format, detected) and the records left out (`skipped_records`: entity, file, reason, records)."""

    layouts: dict[str, str] = field(default_factory=dict)
    formats: list[dict] = field(default_factory=list)
    skipped_records: list[dict] = field(default_factory=list)
    # file -> {contract column: the user's column / element / segment} (see FileRead.columns)
    columns: dict[str, dict[str, str]] = field(default_factory=dict)

    def name_user_columns(self, rejections: pd.DataFrame) -> pd.DataFrame:
        """Rejections with the column named as the user's file names it, beside ours where they
        differ ('ICD_DGNS_CD1 (dx1)'), in the `column` and in the reason's words."""
        if rejections.empty or not self.columns:
            return rejections
        keys = rejections[["source_file", "column", "reason"]].drop_duplicates()
        renamed = []
        for source, column, reason in keys.itertuples(index=False):
            names = self.columns.get(str(source), {})
            renamed.append((_display(names, column), _reword(names, reason)))
        keys = keys.assign(_column=[c for c, _ in renamed], _reason=[r for _, r in renamed])
        out = rejections.merge(keys, on=["source_file", "column", "reason"], how="left")
        out["column"], out["reason"] = out["_column"], out["_reason"]
        return out.drop(columns=["_column", "_reason"])[rejections.columns]


def stage_inputs(con: duckdb.DuckDBPyConnection, files: InputFiles) -> StagedInputs:
    """Read every input file into the staging tables (see `audits.ingest.readers`)."""
    staged = StagedInputs()
    for entity, headers, dx_files, px_files in (
        ("claims", files.claims, files.claim_diagnoses, files.claim_procedures),
        ("reviews", files.reviews, files.review_diagnoses, files.review_procedures),
    ):
        wide.drop_file_tables(con, entity)
        requested = detect.normalise_format(files.formats.get(entity))
        fmt = detect.entity_format(requested, headers, bool(dx_files or px_files))
        if fmt != "canonical":
            layout = fmt
            reads = detect.reader(fmt).stage(con, entity, headers)
        elif dx_files or px_files:
            layout = "long"
            reads = long.stage(con, entity, headers, dx_files, px_files)
        else:
            layout = "wide"
            reads = wide.stage(con, entity, headers)
        staged.layouts[entity] = layout
        for path in list(headers) + list(dx_files) + list(px_files):
            staged.formats.append({"entity": entity, "file": str(path), "format": layout,
                                   "detected": requested == "auto"})
            log.info("%s file %s: read as %s%s", entity, path, LAYOUT_NAMES.get(layout, layout),
                     " (detected)" if requested == "auto" else "")
        for path, read in reads.items():
            if read.columns:
                staged.columns[path] = read.columns
            for reason, count in read.skipped.items():
                staged.skipped_records.append({"entity": entity, "file": path, "reason": reason,
                                               "records": count})
                log.warning("%s file %s: %s records skipped: %s", entity, path, f"{count:,}",
                            SKIP_REASONS.get(reason, reason))
        require_records(entity, headers, reads)
    return staged


def _display(names: dict[str, str], column):
    user = names.get(column) if isinstance(column, str) else None
    if not user or user == column:
        return column
    return user if user.lower() == column.lower() else f"{user} ({column})"


def _reword(names: dict[str, str], reason):
    """Our column names in a reason, as in `_display`."""
    if not isinstance(reason, str):
        return reason
    return re.sub(r"\b[a-z][a-z0-9_]*\b", lambda m: _display(names, m.group(0)) if m.group(0) in names else m.group(0),
                  reason)


def require_records(entity: str, paths: list[Path], reads: dict[str, FileRead]) -> None:
    """Refuse a load in which a file holding records gives none of the audited kind, or in which
    no file holds any."""
    kind = "inpatient claims" if entity == "claims" else "reviews of inpatient claims"
    for path, read in reads.items():
        if read.records:
            continue
        raise InputError(f"no {kind} in this file{_skipped_text(read)}; nothing was loaded and the "
                         "audit period is unchanged", file=path)
    if paths and not reads:
        raise InputError(f"none of the {entity} files holds {kind}; nothing was loaded and the "
                         "audit period is unchanged", file=paths[0])


def _skipped_text(read: FileRead) -> str:
    if not read.skipped:
        return " (it has no claim records at all)"
    total = sum(read.skipped.values())
    parts = "; ".join(f"{n:,} {SKIP_REASONS.get(reason, reason)}" for reason, n in read.skipped.items())
    return f": {total:,} record{'' if total == 1 else 's'} skipped ({parts})"
