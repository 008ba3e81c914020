"""Drawing the next audit sample: reproducible, stratum sizes respected."""

import json

import numpy as np
import pandas as pd
import pytest

from audits.revenue.sampling import allocate_proportional, draw_sample, worklist


@pytest.fixture
def universe():
    n = 1000
    return pd.DataFrame({
        "claim_id": [f"C{i:05d}" for i in range(n)],
        "patient_id": [f"P{i}" for i in range(n)],
        "facility_id": "F1",
        "stratum": np.where(np.arange(n) < 700, "low", np.where(np.arange(n) < 950, "mid", "high")),
    })


def test_same_seed_same_sample_whatever_the_row_order(universe):
    first, description = draw_sample(universe, 50, seed=20260401)
    again, _ = draw_sample(universe.sample(frac=1, random_state=5), 50, seed=20260401)
    assert list(first["claim_id"]) == list(again["claim_id"])
    assert description["seed"] == 20260401 and description["universe_size"] == 1000
    assert description["sample_size"] == 50 and first["claim_id"].is_unique
    json.dumps(description)  # recordable as is


def test_different_seed_different_sample(universe):
    a, _ = draw_sample(universe, 50, seed=1)
    b, _ = draw_sample(universe, 50, seed=2)
    assert set(a["claim_id"]) != set(b["claim_id"])


def test_stratum_sizes_respected(universe):
    sample, description = draw_sample(universe, seed=7, stratum="stratum", sizes={"low": 10, "mid": 6, "high": 4})
    assert sample.groupby("stratum").size().to_dict() == {"high": 4, "low": 10, "mid": 6}
    assert {s["stratum"]: (s["universe_count"], s["sample_count"]) for s in description["strata"]} == {
        "high": (50, 4), "low": (700, 10), "mid": (250, 6)}
    again, _ = draw_sample(universe, seed=7, stratum="stratum", sizes={"low": 10, "mid": 6, "high": 4})
    assert list(sample["claim_id"]) == list(again["claim_id"])
    with pytest.raises(ValueError, match="exceeds"):
        draw_sample(universe, seed=7, stratum="stratum", sizes={"high": 51})


def test_proportional_allocation():
    # 30 x 700/1000 = 21, 30 x 250/1000 = 7.5, 30 x 50/1000 = 1.5: floors 21 + 7 + 1 = 29; the one left
    # goes to the largest remainder, a .5 tie between mid and high broken by name -> high.
    assert allocate_proportional({"low": 700, "mid": 250, "high": 50}, 30) == {"low": 21, "mid": 7, "high": 2}
    # a tiny stratum is lifted to 2 claims (an interval needs 2), taken from the largest
    assert allocate_proportional({"a": 1000, "b": 10}, 20) == {"a": 18, "b": 2}


def test_proportional_stratified_draw_and_worklist(universe):
    sample, description = draw_sample(universe, 30, seed=3, stratum="stratum")
    assert len(sample) == 30 and description["method"].startswith("stratified")
    assert all(s["sample_count"] >= 2 for s in description["strata"])
    listed = worklist(sample)
    assert "patient_id" not in listed and list(listed["selection_order"]) == list(range(1, 31))


def test_draw_is_numpy_choice_over_the_frame_sorted_by_claim_id():
    """The documented procedure, worked independently: sort the ids, number them 1..N, take
    default_rng(seed).choice(N, n, replace=False) as 0-based frame indexes; stratified, the strata in
    sorted order draw ranks within their own sorted ids from the same generator."""
    ids = [f"K{i:02d}" for i in (7, 3, 11, 0, 5, 9, 1, 10, 4, 8, 2, 6)]
    strata = ["b" if int(i[1:]) % 3 == 0 else "a" for i in ids]
    universe = pd.DataFrame({"claim_id": ids, "stratum": strata})
    ordered = sorted(ids)
    picked = np.random.default_rng(99).choice(12, size=4, replace=False)
    sample, _ = draw_sample(universe, 4, seed=99)
    assert sample["claim_id"].tolist() == [ordered[k] for k in picked]
    assert sample["frame_position"].tolist() == [k + 1 for k in picked]
    assert sample["selection_order"].tolist() == [1, 2, 3, 4]

    rng = np.random.default_rng(5)
    a = [c for c in ordered if int(c[1:]) % 3]          # 8 claims in stratum a
    b = [c for c in ordered if int(c[1:]) % 3 == 0]     # 4 claims in stratum b
    expected = [a[k] for k in rng.choice(8, size=3, replace=False)] + [b[k] for k in rng.choice(4, size=2,
                                                                                               replace=False)]
    sample, description = draw_sample(universe, seed=5, stratum="stratum", sizes={"a": 3, "b": 2})
    assert sample["claim_id"].tolist() == expected
    assert sample["frame_position"].tolist() == [ordered.index(c) + 1 for c in expected]
    assert [s["universe_count"] for s in description["strata"]] == [8, 4]
