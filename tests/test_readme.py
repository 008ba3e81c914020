"""README stands alone (issue 13): no link leaves the repository; the input contract is in it."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def _links(text: str) -> list[str]:
    return re.findall(r"\]\(([^)\s]+)\)", text) + re.findall(r"<(https?://[^>]+)>", text)


def test_every_link_stays_in_the_repository():
    for doc in DOCS:
        for target in _links(doc.read_text(encoding="utf-8")):
            assert not re.match(r"^[a-z]+:|^//", target), f"{doc.name}: {target} leaves the repository"
            path = (doc.parent / target.split("#", 1)[0]).resolve()
            assert path.is_relative_to(REPO), f"{doc.name}: {target} points outside the repository"
            assert path.exists(), f"{doc.name}: {target} does not exist"


def test_no_address_outside_this_machine():
    for doc in DOCS:
        for url in re.findall(r"https?://[^\s)`>]+", doc.read_text(encoding="utf-8")):
            assert url.startswith("http://127.0.0.1"), f"{doc.name}: {url}"


def test_input_contract_covers_every_column_and_rule():
    from audits.contract import CLAIM_REQUIRED, REVIEW_REQUIRED

    contract = (REPO / "docs" / "input-contract.md").read_text(encoding="utf-8")
    assert "[docs/input-contract.md](docs/input-contract.md)" in (REPO / "README.md").read_text(encoding="utf-8")
    for column in (*CLAIM_REQUIRED, *REVIEW_REQUIRED, "patient_id", "payer", "service_line", "billed_drg",
                   "reviewer_drg", "notes", "stratum", "position"):
        assert f"`{column}`" in contract or f"{column}," in contract or f"({column}" in contract, column
    for rule in ("required_value_missing", "principal_dx_missing", "duplicate_claim_id", "invalid_date",
                 "discharge_before_admit", "invalid_code_format", "code_not_valid_for_discharge_date",
                 "review_without_claim", "claim_rejected", "--date-format"):
        assert rule in contract, rule
    for layout in ("tuva", "cms", "x12", "fhir", "Long layout"):
        assert layout in contract, layout
