"""The audit sample: each reviewed chart a copy of its claim with documented errors injected, and
the truth file of what was injected."""

from __future__ import annotations

import csv
import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audits.contract import DX_COLUMNS, MAX_POSITIONS, POA_COLUMNS, PX_COLUMNS
from audits.demo.config import (ERROR_TYPES, ErrorRates, REVIEW_COLUMNS, _ADD_WEIGHT, _DELETE_WEIGHT, _N,
                                _POA, _REVIEWERS, _Y)
from audits.demo.catalogue import _Compiled, _draw
from audits.demo.claims import _Setup


# ---------------------------------------------------------------------------------------------
# The audit: reviewed charts with injected errors
# ---------------------------------------------------------------------------------------------

@dataclass
class _Sampled:
    claim_id: str
    facility: str
    coder: str
    scenario: int
    discharge: dt.date
    status: str
    dx: list[int]
    poa: list[int]
    px: list[int]
    planted: int
    mismatch: bool


def _review(comp: _Compiled, c: _Sampled, rates: ErrorRates, rng: np.random.Generator):
    """The auditor's chart of one claim, the error types injected and a note."""
    cat = comp.cat
    sc = comp.scenarios[c.scenario]
    draws = {t: rng.random() < getattr(rates, t) for t in ERROR_TYPES}
    dx = [[d, p] for d, p in zip(c.dx, c.poa) if d]
    px = [x for x in c.px if x]
    status = None
    applied: list[str] = []
    notes: list[tuple[str, dict]] = []
    touched: set[int] = set()
    removed_keys: set[int] = set()   # clinical families and 3-char categories of deleted codes: a later
    removed_cats: set[str] = set()   # added code there would read as a specificity change
    code = comp.dx_codes
    desc = comp.desc

    def present(d: int) -> bool:
        return any(x[0] == d for x in dx)

    def keys_except(skip: int) -> set[int]:
        return {int(comp.key[x[0]]) for i, x in enumerate(dx) if i != skip}

    def choose(items: list, weights: list[float] | None = None):
        if weights is None:
            return items[int(rng.integers(len(items)))]
        w = np.asarray(weights, dtype=float)
        return items[int(_draw(np.cumsum(w) / w.sum(), rng.random(1))[0])]

    def note(kind: str, **kw) -> None:
        notes.append((kind, kw))

    # Principal diagnosis: at most one principal error per claim.
    old = dx[0][0]

    def replace_principal(kind: str, options: list[int]) -> None:
        if options:
            new = choose(options)
            dx[0] = [new, _Y]
            touched.update((old, new))
            applied.append(kind)
            note(kind, old=code[old], new=code[new], new_desc=desc[code[new]])

    if draws["principal_changed"]:
        others = keys_except(0)
        replace_principal("principal_changed", [a for a in sc["alt"] if code[a][:3] != code[old][:3]
                                                and not present(a) and int(comp.key[a]) not in others])
    if draws["principal_specificity"] and not applied:
        replace_principal("principal_specificity",
                          [s for s in _siblings(comp, old) if s in comp.principal_ok and not present(s)])
    if draws["principal_resequenced"] and not applied:
        options = [i for i in range(1, len(dx)) if dx[i][0] in comp.resequence_ok and dx[i][1] == _Y
                   and dx[i][0] != c.planted]
        if options:
            i = choose(options)
            new = dx[i][0]
            dx[0], dx[i] = [new, _Y], [old, _Y]
            touched |= {old, new}
            applied.append("principal_resequenced")
            note("principal_resequenced", old=code[old], new=code[new])

    # The over-coder's unsupported MCC is always found and deleted.
    planted = False
    if c.planted and present(c.planted) and c.planted not in touched:
        dx = [x for x in dx if x[0] != c.planted]
        touched.add(c.planted)
        removed_keys.add(int(comp.key[c.planted]))
        removed_cats.add(code[c.planted][:3])
        planted = True
        applied.append("secondary_deleted")
        note("secondary_deleted_mcc", old=code[c.planted], old_desc=desc[code[c.planted]])

    if draws["secondary_deleted"]:
        options = [i for i in range(1, len(dx)) if dx[i][0] not in touched]
        if options:
            weights = [_DELETE_WEIGHT[int(comp.severity[dx[i][0]])] for i in options]
            i = choose(options, weights)
            gone = dx.pop(i)[0]
            touched.add(gone)
            removed_keys.add(int(comp.key[gone]))
            removed_cats.add(code[gone][:3])
            applied.append("secondary_deleted")
            kind = ("secondary_deleted", "secondary_deleted_cc", "secondary_deleted_mcc")[int(comp.severity[gone])]
            note(kind, old=code[gone], old_desc=desc[code[gone]])

    if draws["secondary_specificity"]:
        options = []
        for i in range(1, len(dx)):
            d = dx[i][0]
            if d in touched:
                continue
            if code[d][:3] in removed_cats:
                continue
            sibs = [s for s in _siblings(comp, d) if not present(s) and s not in touched]
            if sibs:
                options.append((i, sibs))
        if options:
            i, sibs = choose(options)
            old_s, new_s = dx[i][0], choose(sibs)
            dx[i][0] = new_s
            touched |= {old_s, new_s}
            applied.append("secondary_specificity")
            note("secondary_specificity", old=code[old_s], new=code[new_s], new_desc=desc[code[new_s]])

    if draws["secondary_added"] and len(dx) < MAX_POSITIONS:
        have = {int(comp.key[x[0]]) for x in dx} | removed_keys | {int(comp.key[t]) for t in touched}
        cats = removed_cats | {code[t][:3] for t in touched}
        options = [a for a in sc["added_pool"] if int(comp.key[a]) not in have and a not in touched
                   and code[a][:3] not in cats]
        if options:
            weights = [_ADD_WEIGHT[int(comp.severity[a])] for a in options]
            new = choose(options, weights)
            poa = _N if rng.random() < comp.not_poa[new] else _Y
            dx.append([new, poa])
            touched.add(new)
            applied.append("secondary_added")
            note("secondary_added", new=code[new], new_desc=desc[code[new]])

    if draws["poa_changed"]:
        options = [i for i in range(1, len(dx)) if dx[i][0] not in touched and dx[i][1] in (_Y, _N)
                   and comp.not_poa[dx[i][0]] > 0]  # acquired conditions, not chronic ones
        if options:
            i = choose(options)
            before = dx[i][1]
            dx[i][1] = _N if before == _Y else _Y
            touched.add(dx[i][0])
            applied.append("poa_changed")
            note("poa_changed", code=code[dx[i][0]], old=_POA[before], new=_POA[dx[i][1]])

    if draws["procedure_error"]:
        pcode, pid, pspec = comp.px_codes, comp.px_id, cat["px_specificity"]
        ops = []
        changeable = [i for i, x in enumerate(px) if pspec.get(pcode[x])
                      and any(pid[s] not in px for s in pspec[pcode[x]])]
        if changeable:
            ops.append(("changed", 0.5))
        deletable = [i for i in range(len(px)) if i > 0 or not sc["surgical"]]
        if deletable:
            ops.append(("deleted", 0.3))
        missed = [pid[m] for m in cat["px_missed"] if pid[m] not in px]
        if missed and len(px) < MAX_POSITIONS:
            ops.append(("added", 0.2))
        if ops:
            op = choose([o for o, _ in ops], [w for _, w in ops])
            if op == "changed":
                i = choose(changeable)
                new = pid[choose([s for s in pspec[pcode[px[i]]] if pid[s] not in px])]
                note("procedure_changed", old=pcode[px[i]], new=pcode[new])
                px[i] = new
            elif op == "deleted":
                i = choose(deletable)
                note("procedure_deleted", old=pcode[px[i]])
                px.pop(i)
            else:
                new = choose(missed)
                px.append(new)
                note("procedure_added", new=pcode[new], new_desc=desc[pcode[new]])
            applied.append("procedure_error")

    if draws["discharge_status_corrected"] and c.status != "20":
        options = {"01": ["06", "03"], "06": ["01", "03"], "03": ["62", "06"], "62": ["03"],
                   "02": ["01"], "07": ["01"], "50": ["51", "01"], "51": ["50"]}.get(c.status, ["01"])
        status = choose(options)
        applied.append("discharge_status_corrected")
        note("discharge_status", old=c.status, new=status)

    if not notes:
        note("none")
    text = " ".join(choose(cat["review_notes"][kind]).format(**kw) for kind, kw in notes[:3]).strip()
    return dx, px, status, applied, planted, text


def _siblings(comp: _Compiled, d: int) -> list[int]:
    """Same 3-character category codes an auditor would move to (catalogue list or category)."""
    code = comp.dx_codes[d]
    spec = comp.cat["specificity"]
    if code in spec:
        return [comp.dx_id[s] for s in spec[code]]
    if comp.key_of(code) != code[:3] and comp.key_of(code) == code:
        return []  # a stand-alone code of a multi-code category (E87.1 vs E87.6 are different facts)
    return [i for c, i in comp.dx_id.items() if c[:3] == code[:3] and c != code
            and comp.key_of(c) == comp.key_of(code)]


def _reviews(setup: _Setup, sampled: list[_Sampled]) -> tuple[dict[str, list], list[tuple]]:
    cfg, comp = setup.config, setup.comp
    rng = np.random.default_rng([cfg.seed, 3])
    cols: dict[str, list] = {c: [] for c in REVIEW_COLUMNS}
    truth = []
    for c in sampled:
        dx, px, status, applied, planted, text = _review(comp, c, cfg.errors, rng)
        cols["claim_id"].append(c.claim_id)
        cols["reviewer_id"].append(_REVIEWERS[int(rng.integers(len(_REVIEWERS)))])
        cols["review_date"].append(c.discharge + dt.timedelta(days=int(rng.integers(20, 150))))
        for j in range(MAX_POSITIONS):
            cols[DX_COLUMNS[j]].append(comp.dx_codes[dx[j][0]] if j < len(dx) else None)
            cols[POA_COLUMNS[j]].append(_POA[dx[j][1]] if j < len(dx) else None)
            cols[PX_COLUMNS[j]].append(comp.px_codes[px[j]] if j < len(px) else None)
        cols["discharge_status"].append(status)
        cols["reviewer_drg"].append(None)
        cols["notes"].append(text)
        order = [t for t in ERROR_TYPES if t in applied]
        truth.append((c.claim_id, c.coder, c.facility, ";".join(order),
                      "unsupported_mcc" if planted else "", int(c.mismatch)))
    return cols, truth


def _write_small_csv(path: Path, header: tuple[str, ...], rows) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        for row in rows:
            w.writerow(["" if v is None else v for v in row])
