"""MS-DRG relative weights: CMS IPPS Final Rule Table 5, parsed exactly as CMS publishes it.

FY2026 ships with the package (`audits/data/ms_drg_weights_fy2026.csv`, carried from the CMS file);
other fiscal years are read from CMS Table 5 files dropped into a configured folder. A fiscal year
without a table is an error, never a silent zero weight.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path

import pandas as pd

from audits.errors import InputError

PACKAGED_WEIGHTS = {2026: "ms_drg_weights_fy2026.csv"}

TABLE5_COLUMNS = [
    "drg", "mdc", "type", "title", "weight_before_cap", "weight", "gmlos", "amlos",
    "post_acute", "special_pay",
]
WEIGHT_COLUMNS = ["fiscal_year", "drg", "weight", "gmlos", "amlos", "title", "mdc", "type"]
_NUMERIC = ["weight_before_cap", "weight", "gmlos", "amlos"]
_FY_PATTERN = re.compile(r"FY\s*(\d{4})", re.IGNORECASE)
# Extensions looked at in the drop folder: CMS ships Table 5 as a tab-separated .txt.
_TABLE5_SUFFIXES = {".txt", ".tsv", ".csv", ".tab"}


class MissingWeightsError(InputError):
    """Claims fall in a fiscal year for which no Table 5 is available: pricing them would be a guess."""

    def __init__(self, fiscal_years: Iterable[int], claims_affected: Mapping[int, int] | None = None,
                 extra_dir: str | Path | None = None):
        self.fiscal_years = sorted(int(fy) for fy in fiscal_years)
        self.claims_affected = dict(claims_affected or {})
        self.extra_dir = str(extra_dir) if extra_dir is not None else None
        parts = []
        for fy in self.fiscal_years:
            count = self.claims_affected.get(fy)
            parts.append(f"FY {fy}" + (f" ({count:,} claims affected)" if count is not None else ""))
        where = (f"into the weights folder {self.extra_dir}" if self.extra_dir
                 else "into a folder and pass it with --weights-dir (or set CODING_AUDIT_WEIGHTS)")
        which = "that fiscal year" if len(self.fiscal_years) == 1 else "each of them"
        message = (
            f"No MS-DRG relative weights for {', '.join(parts)}. Drop the CMS IPPS Final Rule "
            f"Table 5 file for {which} (the tab-separated .txt as CMS publishes it) {where}; "
            f"weights shipped with the project: FY {', FY '.join(str(y) for y in PACKAGED_WEIGHTS)}."
        )
        super().__init__(message)


def _read_text(path_or_text: str | Path | bytes) -> str:
    """CMS files are Windows-1252 (the title carries an em dash)."""
    if isinstance(path_or_text, bytes):
        return path_or_text.decode("cp1252")
    if isinstance(path_or_text, Path):
        return path_or_text.read_bytes().decode("cp1252")
    if "\n" not in path_or_text and "\t" not in path_or_text and Path(path_or_text).is_file():
        return Path(path_or_text).read_bytes().decode("cp1252")
    return path_or_text


def _header_name(cell: str) -> str | None:
    """Map a CMS header cell to our column name by its content (headers vary a little by year)."""
    text = re.sub(r"\s+", " ", cell).strip().lower()
    if "post-acute" in text or "post acute" in text:
        return "post_acute"
    if "special pay" in text:
        return "special_pay"
    if "title" in text:
        return "title"
    if "cap applied" in text:
        return "weight"
    if "before cap" in text:
        return "weight_before_cap"
    if "weight" in text:  # years without the 10% cap: a single weights column
        return "weight_only"
    if "geometric" in text:
        return "gmlos"
    if "arithmetic" in text:
        return "amlos"
    if text in ("mdc",):
        return "mdc"
    if text in ("type",):
        return "type"
    if text.replace(" ", "") in ("ms-drg", "drg"):
        return "drg"
    return None


def _table5_records(text: str) -> tuple[list[dict[str, str]], str]:
    """Raw text cells per DRG row, and the title text above the header (it names the fiscal year)."""
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter="\t", quotechar='"'))
    header_at = None
    for i, row in enumerate(rows):
        names = [_header_name(c) for c in row]
        if "drg" in names and "title" in names and ("weight" in names or "weight_only" in names):
            header_at = i
            break
    if header_at is None:
        raise InputError("not a CMS Table 5 file: no header line naming MS-DRG, title and weights")
    names = [_header_name(c) for c in rows[header_at]]
    title = " ".join(" ".join(r) for r in rows[:header_at])
    records = []
    for row in rows[header_at + 1:]:
        if not row or not row[0].strip().isdigit():
            continue  # blank trailer lines, footnotes
        cells = {name: (row[j].strip() if j < len(row) else "") for j, name in enumerate(names) if name}
        if "weight_only" in cells:
            cells.setdefault("weight", cells["weight_only"])
            cells.setdefault("weight_before_cap", cells["weight_only"])
        cells["drg"] = cells["drg"].zfill(3)
        records.append({c: cells.get(c, "") for c in TABLE5_COLUMNS})
    return records, title


def table5_fiscal_year(path_or_text: str | Path | bytes) -> int | None:
    """The fiscal year a Table 5 file is for, read from its title ("... FY 2026 Final Rule")."""
    _, title = _table5_records(_read_text(path_or_text))
    found = _FY_PATTERN.findall(title)
    return int(found[-1]) if found else None


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """Text cells to types: '.' and blanks are missing (DRGs 998/999 carry no weight)."""
    frame = frame.copy()
    for col in _NUMERIC:
        text = frame[col].astype("string").str.strip()
        frame[col] = pd.to_numeric(text.mask(text.isin([".", ""])), errors="raise").astype("float64")
    for col in ("post_acute", "special_pay"):
        frame[col] = frame[col].astype("string").str.strip().str.lower().map({"yes": True, "no": False})
        frame[col] = frame[col].astype("boolean")
    for col in ("drg", "mdc", "type", "title"):
        text = frame[col].astype("string").str.strip()
        frame[col] = text.mask(text == "")
    return frame[TABLE5_COLUMNS]


def parse_table5(path_or_text: str | Path | bytes) -> pd.DataFrame:
    """Parse a CMS IPPS Table 5 (tab-separated, cp1252, quoted two-line title) into one row per MS-DRG.

    `weight` is the "Weights - 10% Cap Applied" column (the one CMS pays on); `weight_before_cap`
    the uncapped one. The fiscal year read from the title is in `frame.attrs["fiscal_year"]`.
    """
    text = _read_text(path_or_text)
    records, title = _table5_records(text)
    frame = _typed(pd.DataFrame.from_records(records, columns=TABLE5_COLUMNS))
    found = _FY_PATTERN.findall(title)
    frame.attrs["fiscal_year"] = int(found[-1]) if found else None
    return frame


def table5_to_csv(path_or_text: str | Path | bytes, source_note: str) -> str:
    """The packaged CSV form of a Table 5: the published text of every cell, a `#` source line first."""
    records, _ = _table5_records(_read_text(path_or_text))
    out = io.StringIO()
    out.write(f"# {source_note}\n")
    writer = csv.DictWriter(out, fieldnames=TABLE5_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for rec in records:
        writer.writerow({k: ("" if v == "." else v) for k, v in rec.items()})
    return out.getvalue()


def read_packaged_csv(text: str) -> pd.DataFrame:
    body = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    frame = pd.read_csv(io.StringIO(body), dtype=str, keep_default_na=False)
    return _typed(frame)


def packaged_weights(fiscal_year: int = 2026) -> pd.DataFrame:
    """The Table 5 shipped with the package (importlib.resources, so it works from a wheel too)."""
    name = PACKAGED_WEIGHTS[fiscal_year]
    text = resources.files("audits").joinpath("data", name).read_text(encoding="utf-8")
    frame = read_packaged_csv(text)
    frame.attrs["fiscal_year"] = fiscal_year
    return frame


def find_table5_files(extra_dir: str | Path) -> dict[int, Path]:
    """Table 5 files in the drop folder, by the fiscal year named in their title."""
    found: dict[int, Path] = {}
    folder = Path(extra_dir)
    if not folder.is_dir():
        return found
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.suffix.lower() not in _TABLE5_SUFFIXES:
            continue
        try:
            fy = table5_fiscal_year(path)
        except (InputError, UnicodeDecodeError, csv.Error):
            continue  # not a Table 5: ignore other files in the folder
        if fy is None:
            continue
        if fy in found:
            raise InputError(f"two Table 5 files for FY {fy}: {found[fy].name} and {path.name}; keep one",
                             file=folder)
        found[fy] = path
    return found


def load_weights(fiscal_years: Iterable[int] | Mapping[int, int], extra_dir: str | Path | None = None
                 ) -> pd.DataFrame:
    """Weights for the fiscal years the claims fall in: fiscal_year, drg, weight, gmlos, amlos, title, mdc, type.

    `fiscal_years` is a list of years, or a mapping year -> number of claims (then the error message
    says how many claims a missing table affects). FY2026 comes from the package; other years from
    CMS Table 5 files in `extra_dir`. Raises MissingWeightsError naming every year without a table.
    """
    counts = ({int(k): int(v) for k, v in fiscal_years.items()} if isinstance(fiscal_years, Mapping)
              else None)
    years = sorted({int(fy) for fy in (counts or fiscal_years) if pd.notna(fy)})
    dropped = find_table5_files(extra_dir) if extra_dir is not None else {}
    missing = [fy for fy in years if fy not in PACKAGED_WEIGHTS and fy not in dropped]
    if missing:
        raise MissingWeightsError(missing, {fy: counts[fy] for fy in missing} if counts else None, extra_dir)
    frames = []
    for fy in years:
        table = packaged_weights(fy) if fy in PACKAGED_WEIGHTS else parse_table5(dropped[fy])
        frames.append(table.assign(fiscal_year=fy))
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype="float64" if c in ("weight", "gmlos", "amlos") else "string")
                             for c in WEIGHT_COLUMNS}).astype({"fiscal_year": "int64"})
    out = pd.concat(frames, ignore_index=True)
    out["fiscal_year"] = out["fiscal_year"].astype("int64")
    return out[WEIGHT_COLUMNS]


_SEVERITY_SUFFIX = re.compile(
    r"\s+(WITH MCC|WITH CC/MCC|WITH CC|WITHOUT CC/MCC|WITHOUT MCC|WITHOUT CC)\b.*$")


def drg_family(title: str) -> str:
    """The MS-DRG family of a Table 5 title: the title without its severity split
    ('HEART FAILURE AND SHOCK WITH MCC' -> 'HEART FAILURE AND SHOCK')."""
    return _SEVERITY_SUFFIX.sub("", str(title)).strip()
