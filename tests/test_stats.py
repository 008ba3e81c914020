"""Wilson score interval against hand calculations and Newcombe (1998) published figures."""

import math

import numpy as np
import pandas as pd
import pytest

from audits.stats import wilson_interval


def test_zero_of_ten_by_hand():
    # z = 1.959964, z² = 3.841459, n = 10, p = 0:
    # denom = 1 + 3.841459/10 = 1.3841459; centre = (0 + 3.841459/20)/denom = 0.1920729/1.3841459 = 0.138767
    # half = 1.959964 * sqrt(0 + 3.841459/400) / denom = 1.959964 * 0.0979979 / 1.3841459 = 0.138767
    # -> (0, 0.277533)
    low, high = wilson_interval(0, 10)
    assert low == 0.0
    assert high == pytest.approx(0.2775, abs=5e-5)


def test_five_of_ten_by_hand():
    # p = 0.5: centre = (0.5 + 0.1920729)/1.3841459 = 0.5
    # half = 1.959964 * sqrt(0.025 + 0.0096036)/1.3841459 = 1.959964 * 0.186020 / 1.3841459 = 0.263404
    # -> (0.236596, 0.763404)
    low, high = wilson_interval(5, 10)
    assert low == pytest.approx(0.2366, abs=5e-5)
    assert high == pytest.approx(0.7634, abs=5e-5)


@pytest.mark.parametrize(
    "errors, n, low, high",
    [
        # Newcombe RG (1998), Stat Med 17:857-872, Table II, method 3 (Wilson score, no correction).
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0000, 0.1611),
        (1, 29, 0.0061, 0.1718),
    ],
)
def test_newcombe_published_figures(errors, n, low, high):
    got_low, got_high = wilson_interval(errors, n)
    assert got_low == pytest.approx(low, abs=5e-5)
    assert got_high == pytest.approx(high, abs=5e-5)


def test_all_errors_upper_bound_is_one():
    # 10 of 10 mirrors 0 of 10: (1 - 0.277533, 1)
    low, high = wilson_interval(10, 10)
    assert high == 1.0
    assert low == pytest.approx(0.7225, abs=5e-5)


def test_n_zero_is_nan():
    low, high = wilson_interval(0, 0)
    assert math.isnan(low) and math.isnan(high)


def test_vectorised_numpy_and_series():
    low, high = wilson_interval(np.array([0, 5, 0]), np.array([10, 10, 0]))
    assert low[:2] == pytest.approx([0.0, 0.2366], abs=5e-5)
    assert high[:2] == pytest.approx([0.2775, 0.7634], abs=5e-5)
    assert np.isnan(low[2]) and np.isnan(high[2])

    idx = ["coder_a", "coder_b"]
    low, high = wilson_interval(pd.Series([0, 5], index=idx), pd.Series([10, 10], index=idx))
    assert list(low.index) == idx
    assert high["coder_b"] == pytest.approx(0.7634, abs=5e-5)


def test_other_confidence_level():
    # 90%: z = 1.644854, z² = 2.705543; 5 of 10: denom = 1.2705543, centre = 0.5,
    # half = 1.644854 * sqrt(0.025 + 2.705543/400) / 1.2705543 = 1.644854 * 0.178224 / 1.2705543 = 0.230723
    low, high = wilson_interval(5, 10, confidence=0.90)
    assert low == pytest.approx(0.2693, abs=5e-5)
    assert high == pytest.approx(0.7307, abs=5e-5)
