"""Names in the readers' words: upcoding rules, PEPPER target areas, suppressed cells.

Rule and target-area ids stay in the CSV and workbook (for filtering and joins); pages show these
names with a one-line explanation. An id this module does not know (a rule added later) is shown
spelled out ('new_rule_x' -> 'New rule x'), with the rule's description from `upcoding_rules`.
"""

from __future__ import annotations

import re

import pandas as pd

# rule id -> (name, one line: what it found)
RULES = {
    "severity_code_removed": (
        "Severity code removed",
        "The auditor removed the CC or MCC that set the DRG's severity level; the claim regrouped to a lighter "
        "DRG of the same family."),
    "high_risk_mcc_removed": (
        "High-risk MCC removed",
        "The auditor removed a code on the watchlist of often-unsupported MCCs (e.g. E43 severe malnutrition)."),
    "heavier_drg_same_principal": (
        "Heavier DRG, same principal diagnosis",
        "The billed DRG weighs more than the audited one although the principal diagnosis was right."),
    "coder_overpaid_share": (
        "Coder: overpaid share above the rest",
        "More of this coder's audited claims were overpaid than the rest of the audit explains by chance."),
    "target_area_outlier": (
        "Facility: PEPPER target-area outlier",
        "The facility's share of a PEPPER target area is at or beyond its peers' 80th (or 20th) percentile "
        "and significantly different from the middle peers."),
    "short_stay_highest_severity": (
        "Facility: short highest-severity stays",
        "Many of the facility's WITH MCC stays are shorter than 0.8 x the DRG's geometric mean length of stay "
        "(OIG OEI-02-18-00380)."),
}

# PEPPER (short-term acute care) target-area names, in PEPPER's words, with what is counted.
TARGET_AREAS = {
    "septicemia": ("Septicemia",
                   "septicemia DRGs 870-872 over those plus the DRGs such stays are often reassigned to"),
    "respiratory_infections": ("Respiratory infections",
                               "respiratory infections with CC or MCC (177-178) over respiratory infections "
                               "and simple pneumonia (177-179, 193-195)"),
    "simple_pneumonia": ("Simple pneumonia",
                         "simple pneumonia with CC or MCC (193-194) over COPD and simple pneumonia (190-195)"),
}
_ACRONYMS = {"mcc": "MCC", "cc": "CC", "cc/mcc": "CC/MCC", "o.r.": "O.R.", "ecmo": "ECMO", "ami": "AMI",
             "gi": "GI", "copd": "COPD", "hiv": "HIV", "ent": "ENT", "tia": "TIA", "mv": "MV", "ami,": "AMI,"}
_MCC_SHARE = re.compile(r"^mcc_share_(\d{3})_(\d{3})$")


def sentence_case(title: str) -> str:
    """'HEART FAILURE AND SHOCK' -> 'Heart failure and shock' (acronyms kept)."""
    words = str(title).lower().split()
    words = [_ACRONYMS.get(w, w) for w in words]
    text = " ".join(words)
    return text[:1].upper() + text[1:]


def spelled(identifier: str) -> str:
    text = str(identifier).replace("_", " ").strip()
    return text[:1].upper() + text[1:]


def rule_name(rule: str) -> str:
    return RULES.get(rule, (spelled(rule), ""))[0]


def rule_explanation(rule: str, fallback: str | None = None) -> str:
    known = RULES.get(rule, (None, ""))[1]
    if known:
        return known
    first = re.split(r"(?<=\.)\s", str(fallback or "").strip(), maxsplit=1)[0]
    return first


def target_area_name(area: str, titles: pd.Series | None = None) -> str:
    """PEPPER's name of a target area; a generated per-family area reads '<family>: share with MCC'."""
    if area in TARGET_AREAS:
        return TARGET_AREAS[area][0]
    match = _MCC_SHARE.match(str(area))
    if match:
        family = _family_title(match.group(1), titles)
        drgs = f"DRGs {match.group(1)}-{match.group(2)}"
        return f"{family}: share with MCC ({drgs})" if family else f"{drgs}: share with MCC"
    return spelled(area)


def target_area_explanation(area: str) -> str:
    if area in TARGET_AREAS:
        return TARGET_AREAS[area][1]
    match = _MCC_SHARE.match(str(area))
    if match:
        return (f"the WITH MCC member over the whole family (DRGs {match.group(1)}-{match.group(2)}): the share "
                "billed at the highest severity")
    return ""


def _family_title(drg: str, titles: pd.Series | None) -> str:
    if titles is None or not len(titles):
        return ""
    from audits.revenue.weights import drg_family

    found = titles[titles.index.get_level_values(1) == drg]
    return sentence_case(drg_family(found.iloc[-1])) if len(found) else ""
