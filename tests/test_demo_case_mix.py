"""The demo's Medicare case mix (audits/demo/case_mix.py): the member shares it draws, the severity bounds it
reads from Table 5 titles, and the generated claims' DRGs landing on the CSV's shares."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from audits.demo.config import DemoConfig
from audits.demo.generate import generate_demo
from audits.demo.case_mix import _cumulative, load_case_mix, severity_bounds


def test_first_member_share_moves_on_the_logit_scale_the_rest_keep_proportions():
    # 0.6 / 0.3 / 0.1 moved by log(2): odds 1.5 x 2 = 3 -> 0.75; the rest 0.4 -> 0.25 in 3 : 1 -> 0.1875, 0.0625.
    assert _cumulative((0.6, 0.3, 0.1), math.log(2)) == pytest.approx([0.75, 0.9375, 1.0])
    assert _cumulative((0.6, 0.3, 0.1), 0.0) == pytest.approx([0.6, 0.9, 1.0])


def test_severity_bounds_from_table5_titles():
    bounds = severity_bounds(2026)
    assert bounds[871] == (2, 2) and bounds[872] == (0, 1)          # WITH MCC / WITHOUT MCC
    assert bounds[291] == (2, 2) and bounds[292] == (1, 1) and bounds[293] == (0, 0)
    assert bounds[65] == (1, 1)                                      # WITH CC OR TPA IN 24 HOURS
    assert bounds[312] == (0, 2)                                     # no severity split


def test_case_mix_figures_are_new_yorks():
    # The CSV (derived by benchmarks/demo_case_mix.py from CMS's NY DY2022 file): DRG 193 is 60.5% of 193-195
    # over the 8 hospitals reporting all three (the figure tests/test_flags.py works out by hand: 1187 / 1961).
    fam = {f.drgs: f for f in load_case_mix()}
    assert fam[(193, 194, 195)].shares[0] == pytest.approx(1187 / 1961, abs=0.0005)
    assert all(abs(sum(f.shares) - 1) <= 0.002 for f in fam.values())


def test_generated_claims_land_on_the_medicare_shares(tmp_path):
    """With no spread between facilities and no billing errors, each family's first member's share among the
    claims grouped to the family is the CSV's, within 3 binomial SEs plus one point (claims whose secondaries
    could not be fitted: under 1% of a family)."""
    cfg = replace(DemoConfig(n_claims=10_000, audit_sample=0, seed=424242, plant_patterns=False),
                  facility_spread=0.0, billed_drg_mismatch_rate=0.0)
    claims = pd.read_csv(generate_demo(tmp_path, cfg)["claims"], usecols=["billed_drg"], dtype=str)
    drg = claims["billed_drg"].astype(int).value_counts()
    checked = 0
    for f in load_case_mix():
        n = int(drg.reindex(list(f.drgs)).fillna(0).sum())
        if n < 300:
            continue
        share = drg.get(f.drgs[0], 0) / n
        p = f.shares[0]
        assert abs(share - p) <= 3 * np.sqrt(p * (1 - p) / n) + 0.01, (f.drgs, share, p, n)
        checked += 1
    assert checked >= 8
