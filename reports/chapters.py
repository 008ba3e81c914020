"""ICD-10-CM chapters, as data: the axis of the principal-diagnosis confusion heatmap.

Ranges are the chapter headings of the ICD-10-CM tabular list (FY2026), by 3-character category.
Categories compare as strings, which keeps the letter-suffixed ones inside their chapter
(C4A, D3A, E08.., I5A, M1A, O9A, Z3A).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# (chapter number, first category, last category, short name)
ICD10CM_CHAPTERS: tuple[tuple[int, str, str, str], ...] = (
    (1, "A00", "B99", "Infectious and parasitic"),
    (2, "C00", "D49", "Neoplasms"),
    (3, "D50", "D89", "Blood and immune"),
    (4, "E00", "E89", "Endocrine, nutritional, metabolic"),
    (5, "F01", "F99", "Mental and behavioural"),
    (6, "G00", "G99", "Nervous system"),
    (7, "H00", "H59", "Eye and adnexa"),
    (8, "H60", "H95", "Ear and mastoid"),
    (9, "I00", "I99", "Circulatory"),
    (10, "J00", "J99", "Respiratory"),
    (11, "K00", "K95", "Digestive"),
    (12, "L00", "L99", "Skin and subcutaneous"),
    (13, "M00", "M99", "Musculoskeletal"),
    (14, "N00", "N99", "Genitourinary"),
    (15, "O00", "O9A", "Pregnancy and childbirth"),
    (16, "P00", "P96", "Perinatal"),
    (17, "Q00", "QA0", "Congenital"),  # QA0 (FY2026) sorts after Q99
    (18, "R00", "R99", "Symptoms and signs"),
    (19, "S00", "T88", "Injury and poisoning"),
    (20, "V00", "Y99", "External causes"),
    (21, "Z00", "Z99", "Health status factors"),
    (22, "U00", "U85", "Special purposes"),
)

UNKNOWN_CHAPTER = 0
_ORDERED = sorted(ICD10CM_CHAPTERS, key=lambda c: c[1])
_STARTS = np.array([c[1] for c in _ORDERED])
_ENDS = np.array([c[2] for c in _ORDERED])
_NUMBERS = np.array([c[0] for c in _ORDERED])


def chapter_number(codes) -> np.ndarray:
    """Chapter number (1..22) of each ICD-10-CM code (normalised or dotted); 0 when outside every chapter."""
    cats = pd.Series(codes, dtype="object").fillna("").astype(str).str.upper().str.replace(".", "", regex=False)
    cats = cats.str.slice(0, 3).to_numpy(dtype="U3")
    idx = np.searchsorted(_STARTS, cats, side="right") - 1
    safe = np.clip(idx, 0, len(_STARTS) - 1)
    inside = (idx >= 0) & (cats <= _ENDS[safe]) & (np.char.str_len(cats) == 3)
    return np.where(inside, _NUMBERS[safe], UNKNOWN_CHAPTER)


def chapter_label(number: int) -> str:
    """'9 Circulatory (I00-I99)'; 'Unknown' for codes outside the tabular list's chapters."""
    for num, first, last, name in ICD10CM_CHAPTERS:
        if num == number:
            return f"{num} {name} ({first}\u2013{last})"
    return "Unknown chapter"
