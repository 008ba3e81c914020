"""Shared test helpers: write small claims/reviews files in either layout."""

from __future__ import annotations

import csv
from pathlib import Path

HEADER = ["claim_id", "facility_id", "patient_id", "admit_date", "discharge_date", "discharge_status",
          "age", "sex", "payer", "coder_id", "service_line", "billed_drg"]


def claim(cid: str, dx: list, px: list | None = None, **fields) -> dict:
    """A claim row; dx is a list of (code, poa) or codes (POA Y)."""
    row = {"claim_id": cid, "facility_id": "F001", "patient_id": f"P-{cid}",
           "admit_date": "2026-01-02", "discharge_date": "2026-01-06", "discharge_status": "01",
           "age": "70", "sex": "M", "payer": "MEDICARE", "coder_id": "C01", "service_line": "Cardiology",
           "billed_drg": "293"}
    row.update(fields)
    row["dx"] = [(d, "Y") if isinstance(d, str) else d for d in dx]
    row["px"] = px or []
    return row


def review(claim_id: str, dx: list, px: list | None = None, **fields) -> dict:
    row = {"claim_id": claim_id, "reviewer_id": "R01", "review_date": "2026-03-01"}
    row.update(fields)
    row["dx"] = [(d, "Y") if isinstance(d, str) else d for d in dx]
    row["px"] = px or []
    return row


def write_wide(path: Path, rows: list[dict], positions: int = 25) -> Path:
    header = [k for k in rows[0] if k not in ("dx", "px")]
    for r in rows:
        header += [k for k in r if k not in ("dx", "px") and k not in header]
    header += [f"dx{i}" for i in range(1, positions + 1)] + [f"poa{i}" for i in range(1, positions + 1)]
    header += [f"px{i}" for i in range(1, positions + 1)]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=header)
        writer.writeheader()
        for r in rows:
            out = {k: v for k, v in r.items() if k not in ("dx", "px")}
            for i, (code, poa) in enumerate(r["dx"], start=1):
                out[f"dx{i}"], out[f"poa{i}"] = code, poa
            for i, code in enumerate(r["px"], start=1):
                out[f"px{i}"] = code
            writer.writerow(out)
    return path


def write_long(folder: Path, entity: str, rows: list[dict]) -> dict[str, Path]:
    """Header file + <prefix>_diagnoses + <prefix>_procedures, as the long layout expects."""
    prefix = "claim" if entity == "claims" else "review"
    header = []
    for r in rows:
        header += [k for k in r if k not in ("dx", "px") and k not in header]
    paths = {"header": folder / f"{entity}.csv", "dx": folder / f"{prefix}_diagnoses.csv",
             "px": folder / f"{prefix}_procedures.csv"}
    with open(paths["header"], "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=header)
        w.writeheader()
        for r in rows:
            w.writerow({k: v for k, v in r.items() if k not in ("dx", "px")})
    with open(paths["dx"], "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["claim_id", "position", "code", "poa"])
        for r in rows:
            for i, (code, poa) in enumerate(r["dx"], start=1):
                w.writerow([r["claim_id"], i, code, poa])
    with open(paths["px"], "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["claim_id", "position", "code"])
        for r in rows:
            for i, code in enumerate(r["px"], start=1):
                w.writerow([r["claim_id"], i, code])
    return paths


def good_claims() -> list[dict]:
    return [
        claim("A1", ["I50.23", "N17.9", "I10"]),
        claim("A2", [("i5023", "Y"), ("J96.01", "N")], coder_id="C02"),
        claim("A3", ["K35.80"], px=["0DTJ4ZZ"], service_line="General Surgery", billed_drg="399",
              facility_id="F002"),
        claim("A4", ["A41.9", "R65.20"], discharge_date="2026-04-10", admit_date="2026-04-01"),
    ]


def good_reviews() -> list[dict]:
    return [
        review("A1", ["I50.23", "I10"]),
        review("A2", ["I50.23"], notes="<script>alert(1)</script>"),
        review("A3", ["K35.80"], px=["0DTJ4ZZ"]),
    ]
