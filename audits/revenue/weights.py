"""MS-DRG relative weights: CMS IPPS Final Rule Table 5, parsed exactly as CMS publishes it.

FY2016-FY2026 ship with the package (`audits/data/ms_drg_weights_fy<YEAR>.csv`, one file per year,
sources in `audits/data/README.md`). A Table 5 file dropped into the weights folder (`--weights-dir`)
adds a year that is not shipped (FY2027) or replaces a shipped one; where each year's weights came
from is reported (`weights_sources`). A fiscal year without a table is an error, never a silent
zero weight.
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

PACKAGED_WEIGHTS = {fy: f"ms_drg_weights_fy{fy}.csv" for fy in range(2016, 2027)}

TABLE5_COLUMNS = [
    "drg", "mdc", "type", "title", "weight_before_cap", "weight", "gmlos", "amlos",
    "post_acute", "special_pay",
]
WEIGHT_COLUMNS = ["fiscal_year", "drg", "weight", "gmlos", "amlos", "title", "mdc", "type"]
_NUMERIC = ["weight_before_cap", "weight", "gmlos", "amlos"]
_FY_PATTERN = re.compile(r"FY\s*(\d{4})", re.IGNORECASE)
_FY_IN_NAME = re.compile(r"fy[\s_-]?(\d{4})(?!\d)", re.IGNORECASE)
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
        shipped = sorted(PACKAGED_WEIGHTS)
        message = (
            f"No MS-DRG relative weights for {', '.join(parts)}. Drop the CMS IPPS Final Rule "
            f"Table 5 file for {which} (\"Table 5 - List of MS-DRGs, Relative Weighting Factors and "
            f"Geometric and Arithmetic Mean Length of Stay\", the tab-separated .txt as CMS publishes it "
            f"with the final rule) {where}; weights shipped with the project: FY {shipped[0]}-FY {shipped[-1]}."
        )
        super().__init__(message)


def _decode(raw: bytes) -> str:
    """CMS's own files are Windows-1252 (the title carries an em dash); copies re-saved by other
    tools are often UTF-8 (with or without a byte-order mark). UTF-8 is tried first: cp1252 text
    with an accented character is not valid UTF-8, so the two cannot be confused."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("cp1252")


def _read_text(path_or_text: str | Path | bytes) -> str:
    if isinstance(path_or_text, bytes):
        return _decode(path_or_text)
    if isinstance(path_or_text, Path):
        return _decode(path_or_text.read_bytes())
    if "\n" not in path_or_text and "\t" not in path_or_text and Path(path_or_text).is_file():
        return _decode(Path(path_or_text).read_bytes())
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


def _fiscal_year_of(title: str, path_or_text: str | Path | bytes) -> int | None:
    found = _FY_PATTERN.findall(title)
    if found:
        return int(found[-1])
    if isinstance(path_or_text, (str, Path)) and "\n" not in str(path_or_text):
        named = _FY_IN_NAME.findall(Path(path_or_text).name)
        return int(named[-1]) if named else None
    return None


def table5_fiscal_year(path_or_text: str | Path | bytes) -> int | None:
    """The fiscal year a Table 5 file is for: from its title ("... FY 2026 Final Rule"), else, for a
    copy without the title lines, from the file name ("table5_fy2027.txt", "FY2027-Table-5.tsv")."""
    _, title = _table5_records(_read_text(path_or_text))
    return _fiscal_year_of(title, path_or_text)


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
    the uncapped one. A table with a single "Weights" column (years before the cap, or a copy that
    carries only the paid weight) gives that weight in both. The fiscal year (title, else file
    name) is in `frame.attrs["fiscal_year"]`.
    """
    text = _read_text(path_or_text)
    records, title = _table5_records(text)
    frame = _typed(pd.DataFrame.from_records(records, columns=TABLE5_COLUMNS))
    frame.attrs["fiscal_year"] = _fiscal_year_of(title, path_or_text)
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
    """Table 5 files in the weights folder, by fiscal year (title, else file name). Other files in
    the folder are ignored; a Table 5 whose year cannot be told, two files for one year, or a folder
    that does not exist are errors (a user who names a folder expects its tables to be used)."""
    found: dict[int, Path] = {}
    folder = Path(extra_dir)
    if not folder.is_dir():
        raise InputError("the weights folder does not exist (give the folder that holds the CMS Table 5 "
                         "files)", file=folder)
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.suffix.lower() not in _TABLE5_SUFFIXES:
            continue
        try:
            records, title = _table5_records(_read_text(path))
        except (InputError, csv.Error):
            continue  # not a Table 5: ignore other files in the folder
        fy = _fiscal_year_of(title, path)
        if fy is None:
            raise InputError("a Table 5 file whose fiscal year is neither in its title nor in its name; "
                             "rename it with the year, e.g. table5_fy2027.txt", file=path)
        if fy in found:
            raise InputError(f"two Table 5 files for FY {fy}: {found[fy].name} and {path.name}; keep one",
                             file=folder)
        found[fy] = path
    return found


def _year_counts(fiscal_years: Iterable[int] | Mapping[int, int]) -> tuple[list[int], dict[int, int] | None]:
    counts = ({int(k): int(v) for k, v in fiscal_years.items()} if isinstance(fiscal_years, Mapping)
              else None)
    years = sorted({int(fy) for fy in (counts or fiscal_years) if pd.notna(fy)})
    return years, counts


def weights_sources(fiscal_years: Iterable[int] | Mapping[int, int], extra_dir: str | Path | None = None,
                    missing_ok: bool = False) -> dict[int, str]:
    """Where each fiscal year's weights come from: `file <path>` (the weights folder, which wins over
    a shipped year) or `shipped` (package data). Raises MissingWeightsError naming every year
    without a table, with the claims it affects when `fiscal_years` is a year -> claims mapping;
    with `missing_ok`, such a year is reported as `missing` instead (for describing a finished run)."""
    years, counts = _year_counts(fiscal_years)
    dropped = find_table5_files(extra_dir) if extra_dir is not None else {}
    missing = [fy for fy in years if fy not in PACKAGED_WEIGHTS and fy not in dropped]
    if missing and not missing_ok:
        raise MissingWeightsError(missing, {fy: counts[fy] for fy in missing} if counts else None, extra_dir)
    return {fy: f"file {dropped[fy]}" if fy in dropped else "missing" if fy in missing else "shipped"
            for fy in years}


def load_weights(fiscal_years: Iterable[int] | Mapping[int, int], extra_dir: str | Path | None = None
                 ) -> pd.DataFrame:
    """Weights for the fiscal years the claims fall in: fiscal_year, drg, weight, gmlos, amlos, title, mdc, type.

    `fiscal_years` is a list of years, or a mapping year -> number of claims (then the error message
    says how many claims a missing table affects). A Table 5 in `extra_dir` for a year is used
    before the shipped one (FY2016-FY2026); see `weights_sources`.
    """
    years, _ = _year_counts(fiscal_years)
    sources = weights_sources(fiscal_years, extra_dir)
    frames = []
    for fy in years:
        table = (parse_table5(Path(sources[fy].removeprefix("file "))) if sources[fy].startswith("file ")
                 else packaged_weights(fy))
        frames.append(table.assign(fiscal_year=fy))
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype="float64" if c in ("weight", "gmlos", "amlos") else "string")
                             for c in WEIGHT_COLUMNS}).astype({"fiscal_year": "int64"})
    out = pd.concat(frames, ignore_index=True)
    out["fiscal_year"] = out["fiscal_year"].astype("int64")
    return out[WEIGHT_COLUMNS]


# Titles before FY2021 abbreviate the split ("W MCC", "W/O CC/MCC"); from FY2021 they spell it out.
_SEVERITY_SUFFIX = re.compile(
    r"\s+(WITH MCC|WITH CC/MCC|WITH CC|WITHOUT CC/MCC|WITHOUT MCC|WITHOUT CC"
    r"|W MCC|W CC/MCC|W CC|W/O CC/MCC|W/O MCC|W/O CC)\b.*$")


def spelled_out_title(title: str) -> str:
    """A Table 5 title with the severity split spelled out as CMS writes it since FY2021
    ('... W MCC' -> '... WITH MCC', '... W/O CC/MCC' -> '... WITHOUT CC/MCC'), so rules that read
    the split work on every year's titles."""
    return re.sub(r"\bW/O\b", "WITHOUT", re.sub(r"\bW (?=(CC|MCC)\b)", "WITH ", str(title)))


def drg_family(title: str) -> str:
    """The MS-DRG family of a Table 5 title: the title without its severity split
    ('HEART FAILURE AND SHOCK WITH MCC' -> 'HEART FAILURE AND SHOCK'; FY2016-FY2020 titles
    abbreviate the split: 'HEART FAILURE & SHOCK W MCC' -> 'HEART FAILURE & SHOCK')."""
    return _SEVERITY_SUFFIX.sub("", str(title)).strip()
