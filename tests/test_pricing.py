"""Payment, delta and revenue totals, priced by hand (FY 2026 Table 5 weights)."""

from decimal import Decimal

import pandas as pd
import pytest

from audits.errors import InputError
from audits.revenue.pricing import (
                                    DEFAULT_BASE_RATE,
                                    load_rate_config,
                                    price_claims,
                                    regroup_delta,
                                    revenue_by,
                                    revenue_totals,
                                    )
from audits.revenue.weights import MissingWeightsError, load_weights


@pytest.fixture(scope="module")
def weights():
    return load_weights([2026])


@pytest.fixture
def rates(tmp_path):
    path = tmp_path / "rates.toml"
    path.write_text(
        'default_base_rate = 8000.00\n'
        '[facility_base_rates]\n"F2" = 7005.00\n'
        '[payer_multipliers]\n"Commercial" = 1.1\n'
    )
    return load_rate_config(path)


def sides(rows):
    return pd.DataFrame(rows, columns=["claim_id", "fiscal_year", "facility_id", "payer", "drg", "mcc_codes",
                                       "cc_codes", "drg_px_codes", "principal_dx"])


def test_hand_priced_two_claims(weights, rates):
    """Claim A: 291 (1.2838) audited to 292 (0.8490), Medicare, base 8,000.00:
         original 1.2838 x 8000 = 10,270.40; audited 0.8490 x 8000 = 6,792.00; delta -3,478.40 overpaid.
       Claim B: 195 (0.6285) audited to 194 (0.8059), Commercial x 1.1:
         original 0.6285 x 8000 x 1.1 = 5,530.80; audited 0.8059 x 8000 x 1.1 = 7,091.92; delta +1,561.12."""
    original = price_claims(sides([
        ("A", 2026, "F1", "Medicare", "291", ["J9601"], [], [], "I5023"),
        ("B", 2026, "F1", "Commercial", "195", [], [], [], "J189"),
    ]), weights, rates)
    audited = price_claims(sides([
        ("A", 2026, "F1", "Medicare", "292", [], ["N179"], [], "I5023"),
        ("B", 2026, "F1", "Commercial", "194", [], ["N179"], [], "J189"),
    ]), weights, rates)
    assert list(original["payment"]) == [10270.40, 5530.80]
    assert list(audited["payment"]) == [6792.00, 7091.92]
    delta = regroup_delta(original, audited).set_index("claim_id")
    assert delta.loc["A", "delta"] == -3478.40 and delta.loc["A", "direction"] == "overpaid"
    assert delta.loc["B", "delta"] == 1561.12 and delta.loc["B", "direction"] == "underpaid"
    assert list(delta.loc["A", "change_drivers"]) == ["-J9601:MCC", "+N179:CC"]
    assert list(delta.loc["B", "change_drivers"]) == ["+N179:CC"]
    assert bool(delta.loc["A", "drg_changed"]) and bool(delta.loc["B", "drg_changed"])

    totals = revenue_totals(delta.reset_index())
    assert totals["underpaid_amount"] == 1561.12
    assert totals["overpaid_amount"] == 3478.40
    assert totals["net_amount"] == -1917.28  # 1,561.12 - 3,478.40, in cents
    assert totals["drg_change_rate"] == 1.0
    assert totals["drg_upgrade_rate"] == 0.5 and totals["drg_downgrade_rate"] == 0.5


def test_payment_rounds_half_up_exactly(weights, rates):
    """DRG 006 (weight 4.6370) at facility F2's 7,005.00: 4.637 x 7005 = 32,482.185 exactly -> 32,482.19.
    (In binary floating point the product is 32482.184999..., which naive rounding turns into .18.)"""
    priced = price_claims(sides([("X", 2026, "F2", None, "006", [], [], [], "Z940")]), weights, rates)
    assert priced["payment"].iloc[0] == 32482.19
    assert priced["base_rate"].iloc[0] == 7005.00 and priced["payer_multiplier"].iloc[0] == 1.0


def test_unpriceable_and_unchanged_claims(weights, rates):
    original = price_claims(sides([
        ("U", 2026, "F1", None, "999", [], [], [], "XXXXX"),
        ("S", 2026, "F1", None, "293", [], [], [], "I5023"),
    ]), weights, rates)
    audited = price_claims(sides([
        ("U", 2026, "F1", None, "293", [], [], [], "I5023"),
        ("S", 2026, "F1", None, "293", [], [], [], "I5023"),
    ]), weights, rates)
    assert pd.isna(original["payment"].iloc[0])  # DRG 999 has no weight: not priced, not zero
    delta = regroup_delta(original, audited).set_index("claim_id")
    assert delta.loc["U", "direction"] == "not_priced" and pd.isna(delta.loc["U", "delta"])
    assert list(delta.loc["U", "change_drivers"]) == ["principal XXXXX>I5023"]
    assert delta.loc["S", "direction"] == "unchanged" and delta.loc["S", "delta"] == 0
    assert list(delta.loc["S", "change_drivers"]) == [] and not delta.loc["S", "drg_changed"]
    totals = revenue_totals(delta.reset_index())
    assert totals["not_priced_claims"] == 1 and totals["net_amount"] == 0
    assert totals["drg_change_rate"] == 0.5 and totals["drg_upgrade_rate"] == 0.0


def test_missing_fiscal_year_fails_loudly(weights, rates):
    frame = sides([("F", 2027, "F1", None, "291", [], [], [], "I5023")] * 3)
    with pytest.raises(MissingWeightsError, match=r"FY 2027 \(3 claims affected\)"):
        price_claims(frame, weights, rates)


def test_rate_config_default_override_and_errors(tmp_path):
    default = load_rate_config()
    assert default.base_rate("ANY") == DEFAULT_BASE_RATE == Decimal("7276.76")
    assert default.payer_multiplier(None) == 1
    what_if = load_rate_config(None, base_rate_override="9000")
    assert what_if.base_rate("ANY") == Decimal("9000") and what_if.summary()["base_rate"] == 9000.0
    bad = tmp_path / "bad.toml"
    bad.write_text("default_base_rate = -5\n")
    with pytest.raises(InputError, match="positive"):
        load_rate_config(bad)
    bad.write_text("base_rate = 5000\n")
    with pytest.raises(InputError, match="unknown setting"):
        load_rate_config(bad)
    bad.write_text("default_base_rate = 5000.123\n")
    with pytest.raises(InputError, match="2 decimals"):
        load_rate_config(bad)


def test_revenue_by_group():
    frame = pd.DataFrame({
        "facility_id": ["F1", "F1", "F2"],
        "delta": [100.10, -50.05, 0.0],
        "drg_changed": [True, True, False],
    })
    out = revenue_by(frame, "facility_id").set_index("facility_id")
    assert out.loc["F1", "claims"] == 2 and out.loc["F1", "upgraded"] == 1 and out.loc["F1", "downgraded"] == 1
    assert out.loc["F1", "underpaid_amount"] == 100.10 and out.loc["F1", "overpaid_amount"] == 50.05
    assert out.loc["F1", "net_amount"] == 50.05
    assert out.loc["F2", "changed"] == 0 and out.loc["F2", "net_amount"] == 0


def _side(rows):
    return pd.DataFrame(rows, columns=["claim_id", "drg", "payment", "dx", "px", "mcc_codes", "cc_codes",
                                       "drg_px_codes", "principal_dx"])


def test_change_drivers_split_auditor_changes_from_grouper_effects():
    """H21606243-like: the auditor only added E43 (an MCC); E87.1 stayed on the claim but stopped counting as
    a CC because the stay is now at MCC level. The old single list read '-E871:CC; +E43:MCC'.
    Resequencing: the auditor swapped the principal (F32.3) with a secondary (J18.9); F32.3, now a
    secondary, counts as a CC. The old list read '+F323:CC' as if the auditor had added it."""
    original = _side([
        ("H1", "641", 5000.0, ["E871", "I10"], [], [], ["E871"], [], "E871"),
        ("R1", "885", 6000.0, ["F323", "J189"], [], [], [], [], "F323"),
    ])
    original.loc[0, "dx"] = ["A419", "E871", "I10"]  # principal sepsis, E87.1 a CC, I10 not a CC
    original.loc[0, "principal_dx"] = "A419"
    audited = _side([
        ("H1", "871", 9000.0, ["A419", "E871", "I10", "E43"], [], ["E43"], [], [], "A419"),
        ("R1", "194", 7000.0, ["J189", "F323"], [], [], ["F323"], [], "J189"),
    ])
    out = regroup_delta(original, audited).set_index("claim_id")
    assert list(out.loc["H1", "auditor_changes"]) == ["+E43:MCC"]
    assert list(out.loc["H1", "grouper_effects"]) == ["-E871:CC (MCC present)"]
    assert list(out.loc["H1", "change_drivers"]) == ["-E871:CC", "+E43:MCC"]  # the combined list, unchanged
    assert list(out.loc["R1", "auditor_changes"]) == ["principal F323>J189"]
    assert list(out.loc["R1", "grouper_effects"]) == ["+F323:CC (no longer principal)"]


def test_auditor_changes_pair_specificity_and_keep_levels_and_procedures():
    """I50.32 (CC) replaced by I50.33 (MCC) is one change, not a deletion and an addition; a removed MCC keeps
    its level; a procedure that set the original DRG removed; the DRG did not change on claim S: no tokens."""
    original = _side([
        ("A", "292", 6000.0, ["I5023", "I5032", "J9601"], ["0JH60DZ"], ["J9601"], [], ["0JH60DZ"], "I5023"),
        ("S", "293", 4000.0, ["I5023", "N179"], [], [], ["N179"], [], "I5023"),
    ])
    audited = _side([
        ("A", "291", 9000.0, ["I5023", "I5033"], [], ["I5033"], [], [], "I5023"),
        ("S", "293", 4000.0, ["I5023", "N170"], [], [], ["N170"], [], "I5023"),
    ])
    out = regroup_delta(original, audited).set_index("claim_id")
    assert list(out.loc["A", "auditor_changes"]) == ["-J9601:MCC", "I5032>I5033:MCC", "-0JH60DZ:PX"]
    assert list(out.loc["A", "grouper_effects"]) == []
    assert list(out.loc["S", "auditor_changes"]) == [] and list(out.loc["S", "grouper_effects"]) == []
