"""Difference estimator of the universe total: the OIG figure and intervals worked by hand."""

import pandas as pd
import pytest

from audits.revenue.extrapolation import estimate_total, extrapolate_delta


def test_oig_a_03_17_00010_point_estimate():
    """OIG A-03-17-00010 (severe malnutrition): 224,175 claims, sample 200, sample overpayment
    $914,128 -> 224,175 x 914,128 / 200 = 224,175 x 4,570.64 = $1,024,623,222."""
    overpayments = [4570.0] * 199 + [4570.0 + 128.0]  # any 200 values totalling 914,128
    assert sum(overpayments) == 914_128
    sample = pd.DataFrame({"delta": [-v for v in overpayments]})  # overpaid: audited - original < 0
    result = extrapolate_delta(sample, 224_175)
    assert result["point"] == -1_024_623_222
    assert result["overpayment"]["point"] == 1_024_623_222
    assert result["distribution"] == "t" and result["degrees_of_freedom"] == 199
    # The demand figure is the lower limit of the overpayment = minus the delta's upper limit.
    assert result["overpayment"]["lower_90"] == -result["upper_90"]
    assert result["overpayment"]["lower_90"] < 1_024_623_222 < result["overpayment"]["upper_90"]


def test_interval_tiny_sample_by_hand():
    """N = 100, n = 5, values 10, 0, 20, 0, 30.
    mean 12; squared deviations 4 + 144 + 64 + 144 + 324 = 680; s^2 = 680 / 4 = 170.
    SE(total) = N * sqrt((1 - n/N) * s^2 / n) = 100 * sqrt(0.95 * 34) = 100 * sqrt(32.3) = 568.3309.
    t(0.95, 4 df) = 2.1318 (table); half-width = 2.1318 * 568.3309 = 1,211.59.
    point 1,200; limits 1,200 -/+ 1,211.59 = -11.59 and 2,411.59 -> whole dollars -12 and 2,412."""
    result = estimate_total([10, 0, 20, 0, 30], 100)
    assert result["point"] == 1200
    assert result["standard_error"] == pytest.approx(568.3309, abs=1e-3)
    assert result["critical_value"] == pytest.approx(2.1318, abs=1e-4)
    assert result["unrounded"]["lower"] == pytest.approx(-11.59, abs=0.01)
    assert result["unrounded"]["upper"] == pytest.approx(2411.59, abs=0.01)
    assert (result["lower"], result["upper"]) == (-12, 2412)


def test_stratified_by_hand():
    """Stratum A: N=50, values 100, 200 -> mean 150, s^2 = (50^2 + 50^2) / 1 = 5,000.
    Stratum B: N=30, values 0, 30, 60 -> mean 30, s^2 = (900 + 0 + 900) / 2 = 900.
    point = 50 * 150 + 30 * 30 = 8,400.
    variance = 50 * 48 * 5000 / 2 + 30 * 27 * 900 / 3 = 6,000,000 + 243,000 = 6,243,000; SE = 2,498.60.
    Several strata (RAT-STATS stratified appraisal): z = 1.6449; half-width = 4,109.83.
    limits 4,290.17 and 12,509.83 -> 4,290 and 12,510."""
    sample = pd.DataFrame({"stratum": ["A", "A", "B", "B", "B"], "delta": [100, 200, 0, 30, 60]})
    result = extrapolate_delta(sample, {"A": 50, "B": 30}, stratum="stratum")
    assert result["point"] == 8400
    assert result["standard_error"] == pytest.approx(2498.60, abs=0.01)
    assert result["distribution"] == "normal"
    assert (result["lower_90"], result["upper_90"]) == (4290, 12510)
    per = result["per_stratum"].set_index("stratum")
    assert per.loc["A", "point"] == 7500 and per.loc["B", "point"] == 900
    assert result["universe_count"] == 80 and result["sample_count"] == 5


def test_counts_as_a_frame_and_checks():
    sample = pd.DataFrame({"stratum": ["A", "A", "B", "B"], "delta": [1.0, 2.0, 3.0, 4.0]})
    counts = pd.DataFrame({"stratum": ["A", "B"], "universe_count": [10, 10]})
    assert extrapolate_delta(sample, counts, stratum="stratum")["point"] == 10 * 1.5 + 10 * 3.5
    with pytest.raises(ValueError, match="no sampled claim"):
        extrapolate_delta(sample, {"A": 10, "B": 10, "C": 5}, stratum="stratum")
    with pytest.raises(ValueError, match="at least 2"):
        estimate_total([5.0], 10)
    with pytest.raises(ValueError, match="smaller than the sample"):
        estimate_total([1.0, 2.0, 3.0], 2)
    with pytest.raises(ValueError, match="missing amounts"):
        estimate_total([1.0, float("nan")], 10)
