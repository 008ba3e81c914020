"""The input contract (v1) of DESIGN.md, as data: which columns exist, which are required."""

MAX_POSITIONS = 25

CLAIM_HEADER_COLUMNS = (
    "claim_id", "facility_id", "patient_id", "admit_date", "discharge_date", "discharge_status",
    "age", "sex", "payer", "coder_id", "service_line", "billed_drg",
)
CLAIM_REQUIRED = (
    "claim_id", "facility_id", "admit_date", "discharge_date", "discharge_status", "age", "sex",
    "coder_id",
)
REVIEW_HEADER_COLUMNS = ("claim_id", "reviewer_id", "review_date", "discharge_status", "reviewer_drg", "notes")
REVIEW_REQUIRED = ("claim_id", "reviewer_id", "review_date")

DX_COLUMNS = tuple(f"dx{i}" for i in range(1, MAX_POSITIONS + 1))
POA_COLUMNS = tuple(f"poa{i}" for i in range(1, MAX_POSITIONS + 1))
PX_COLUMNS = tuple(f"px{i}" for i in range(1, MAX_POSITIONS + 1))
CODE_COLUMNS = DX_COLUMNS + POA_COLUMNS + PX_COLUMNS

SEX_VALUES = ("M", "F", "U")
# UB-04 form locator 17, patient discharge status codes in use (NUBC).
DISCHARGE_STATUS_VALUES = (
    "01", "02", "03", "04", "05", "06", "07", "09", "20", "21", "30", "40", "41", "42", "43",
    "50", "51", "61", "62", "63", "64", "65", "66", "69", "70", "81", "82", "83", "84", "85",
    "86", "87", "88", "89", "90", "91", "92", "93", "94", "95",
)
AGE_MIN, AGE_MAX = 0, 124
