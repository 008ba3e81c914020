"""The demo's configuration (sizes, seed, error rates, planted patterns) and its file columns."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

from audits.contract import DX_COLUMNS, POA_COLUMNS, PX_COLUMNS


@dataclass(frozen=True)
class ErrorRates:
    """Per audited claim, the probability of injecting each documented error type."""

    principal_changed: float = 0.04
    principal_specificity: float = 0.05
    principal_resequenced: float = 0.03
    secondary_deleted: float = 0.10      # an original secondary not supported by the chart (over-coding)
    secondary_added: float = 0.08        # a missed secondary (under-coding)
    secondary_specificity: float = 0.05  # a secondary replaced by another code of the same 3-char category
    poa_changed: float = 0.04
    procedure_error: float = 0.05        # a procedure deleted/added/changed
    discharge_status_corrected: float = 0.02  # the auditor corrects the discharge status


ERROR_TYPES = tuple(f.name for f in fields(ErrorRates))


@dataclass(frozen=True)
class DemoConfig:
    n_claims: int = 5000
    audit_sample: int = 500
    seed: int = 2026
    fiscal_year: int = 2026
    n_facilities: int = 5
    n_coders: int = 12
    errors: ErrorRates = field(default_factory=ErrorRates)
    plant_patterns: bool = True   # False = no planted over-coder / septicemia outlier
    facility_spread: float = 0.35  # facilities' spread around Medicare's case mix, x New York hospitals' SD
    billed_drg_mismatch_rate: float = 0.01


# Planted patterns.
OVERCODER = "C07"
OVERCODER_RATE = 0.8           # share of the over-coder's claims without an MCC that get an unsupported one
SEPSIS_OUTLIER = "F003"
SEPSIS_OUTLIER_FACTOR = 7.0    # sepsis volume multiplier at F003: septicemia ~92% of the area vs Medicare's 62%

_BLOCK = 10_000                # claims per generator block (output does not depend on chunk_size)
_HOME_CODER_SHARE = 0.75       # share of a facility's claims coded by its own coders
_YOUNG_SHARE = 0.07            # medical patients drawn from ages 20-49
_LONG_STAY_SHARE = 0.03
_POA_U, _POA_W = 0.006, 0.002  # documentation insufficient / clinically undetermined
_POA = np.array([None, "Y", "N", "U", "W"], dtype=object)
_Y, _N, _U, _W = 1, 2, 3, 4
_REVIEWERS = ("R01", "R02", "R03", "R04")
_PAYERS = np.array(["MEDICARE", "MEDICARE ADVANTAGE", "COMMERCIAL", "MEDICAID"], dtype=object)
_PAYER_65_PLUS = np.cumsum([0.56, 0.38, 0.04, 0.02])
_PAYER_UNDER_65 = np.cumsum([0.12, 0.06, 0.50, 0.32])
_SEVERITY_RANK = {"NONE": 0, "CC": 1, "MCC": 2}
_DELETE_WEIGHT = (1.0, 6.0, 20.0)  # audits find unsupported MCCs and CCs far more than other codes
_ADD_WEIGHT = (1.0, 2.5, 2.5)      # missed codes: CDI finds CCs/MCCs, but most missed codes are minor

CLAIM_COLUMNS = (
    "claim_id", "facility_id", "patient_id", "admit_date", "discharge_date", "discharge_status", "age",
    "sex", "payer", "coder_id", "service_line", "billed_drg",
) + DX_COLUMNS + POA_COLUMNS + PX_COLUMNS
REVIEW_COLUMNS = ("claim_id", "reviewer_id", "review_date") + DX_COLUMNS + POA_COLUMNS + PX_COLUMNS + (
    "discharge_status", "reviewer_drg", "notes")
TRUTH_COLUMNS = ("claim_id", "coder_id", "facility_id", "injected_errors", "planted", "billed_drg_mismatch")
