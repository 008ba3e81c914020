"""MS-DRG grouping through msdrg: known CMS v43.0 groupings, ungroupable claims, the POA policy."""

import json
import random

import numpy as np
import pandas as pd
import pytest

from audits.revenue.grouping import (
                                     OUTPUT_COLUMNS,
                                     SEX_CODES,
                                     Grouper,
                                     MsdrgAdapter,
                                     build_requests,
                                     extract_result,
                                     read_results,
                                     request_json,
                                     )


@pytest.fixture(scope="module")
def grouper():
    return MsdrgAdapter()


def side(key, dx, px=(), status="01", poa="Y", version=430, age=70, sex="M", exempt=False):
    poa_list = [poa] * len(dx) if isinstance(poa, str) or poa is None else list(poa)
    return {"key": key, "version": version, "age": age, "sex": sex, "discharge_status": status,
            "dx": list(dx), "poa": poa_list, "px": list(px), "hospital_poa_exempt": exempt}


# CMS MS-DRG v43.0 (FY 2026), age 70, male, discharged home, POA Y.
KNOWN = [
    ("hf", ["I5023"], [], "01", "293"),
    ("hf_cc", ["I5023", "N179"], [], "01", "292"),
    ("hf_mcc", ["I5023", "J9601"], [], "01", "291"),
    ("hf_cc_excluded", ["I5022", "I5023"], [], "01", "293"),  # I50.23 excluded as a CC by the principal
    ("sepsis", ["A419"], [], "01", "872"),
    ("sepsis_mcc", ["A419", "J9601"], [], "01", "871"),
    ("sepsis_mv96", ["A419", "J9601"], ["5A1955Z"], "01", "870"),
    ("pneumonia", ["J189"], [], "01", "195"),
    ("pneumonia_cc", ["J189", "N179"], [], "01", "194"),
    ("appendix", ["K3580"], ["0DTJ4ZZ"], "01", "399"),  # appendectomy family 397-399 since v41
    ("hip", ["S72001A"], ["0SR9019"], "01", "522"),
    ("hip_mcc", ["S72001A", "J9601"], ["0SR9019"], "01", "521"),
    ("ami_home", ["I2109"], [], "01", "282"),
    ("ami_expired", ["I2109"], [], "20", "285"),
]


@pytest.fixture(scope="module")
def known(grouper):
    frame = pd.DataFrame([side(k, dx, px, status) for k, dx, px, status, _ in KNOWN])
    return grouper.group_many(frame).set_index("key")


@pytest.mark.parametrize("key,expected", [(k, drg) for k, *_, drg in KNOWN])
def test_known_groupings(known, key, expected):
    assert known.loc[key, "drg"] == expected
    assert known.loc[key, "return_code"] == "OK"


def test_severity_the_grouper_used(known):
    assert list(known.loc["hf_mcc", "mcc_codes"]) == ["J9601"]
    assert list(known.loc["hf_mcc", "severity_codes"]) == ["J9601:MCC"]
    assert list(known.loc["hf_cc", "cc_codes"]) == ["N179"]
    assert list(known.loc["hf_cc_excluded", "severity_codes"]) == []  # excluded: not counted
    # In 870 the MCC does not set the DRG (ventilation > 96 h does): reported, not "used".
    assert list(known.loc["sepsis_mv96", "mcc_codes"]) == []
    assert list(known.loc["sepsis_mv96", "severity_codes"]) == ["J9601:MCC"]
    assert list(known.loc["sepsis_mv96", "drg_px_codes"]) == ["5A1955Z"]
    assert known.loc["hf_mcc", "mdc"] == "05"
    assert known.loc["hf_mcc", "drg_description"] == "Heart Failure and Shock with MCC"


def test_ungroupable_claims_are_kept_with_their_reason(grouper):
    frame = pd.DataFrame([
        side("bad_pdx", ["XXXXX"]),
        side("no_dx", []),
        side("old_version", ["I5023"], version=350),
        side("bad_sex", ["I5023"], sex="X"),
        side("bad_status", ["I5023"], status="home"),
        side("fine", ["I5023"]),
    ])
    out = grouper.group_many(frame).set_index("key")
    assert len(out) == 6
    assert out.loc["bad_pdx", "return_code"] == "INVALID_PDX" and out.loc["bad_pdx", "drg"] == "999"
    assert pd.isna(out.loc["bad_pdx", "mdc"])
    assert out.loc["no_dx", "return_code"] == "NO_PRINCIPAL_DX" and pd.isna(out.loc["no_dx", "drg"])
    assert out.loc["old_version", "return_code"] == "UNSUPPORTED_VERSION"
    assert out.loc["bad_sex", "return_code"] == "INVALID_SEX"
    assert out.loc["bad_status", "return_code"] == "INVALID_DISCHARGE_STATUS"
    assert out.loc["fine", "drg"] == "293"


def test_poa_policy(grouper):
    """L89.153 (stage 3 pressure ulcer) is a HAC-list MCC: POA decides whether it counts."""
    dx = ["I5023", "L89153", "N179"]
    frame = pd.DataFrame([
        side("poa_yes", dx, poa="Y"),
        side("no_poa_at_all", dx, poa=None),  # no POA columns: grouped as a POA-exempt hospital
        side("one_blank", dx, poa=["Y", None, "Y"]),  # blank secondary POA: sent as U
        side("one_marked_1", dx, poa=["Y", "1", "Y"]),  # '1' (retired exempt mark) = blank
        side("poa_no", dx, poa=["Y", "N", "Y"]),
        side("exempt_hospital", dx, poa=["Y", "N", "Y"], exempt=True),
    ])
    out = grouper.group_many(frame).set_index("key")
    assert out.loc["poa_yes", "drg"] == "291" and out.loc["poa_yes", "poa_policy"] == "given"
    assert out.loc["no_poa_at_all", "drg"] == "291"
    assert out.loc["no_poa_at_all", "poa_policy"] == "no_poa_as_exempt"
    assert out.loc["no_poa_at_all", "hospital_status"] == "EXEMPT"
    for key in ("one_blank", "one_marked_1"):
        # msdrg alone would answer 999 HAC_MISSING_ONE_POA; as U the HAC removes the MCC: N17.9 (CC) -> 292.
        assert out.loc[key, "drg"] == "292" and out.loc[key, "return_code"] == "OK"
        assert out.loc[key, "poa_policy"] == "blank_poa_as_U"
        assert list(out.loc[key, "poa_filled_codes"]) == ["L89153"]
        assert list(out.loc[key, "hac_codes"]) == ["L89153"]
        assert out.loc[key, "initial_drg"] == "291"
    assert out.loc["poa_no", "drg"] == "292" and list(out.loc["poa_no", "cc_codes"]) == ["N179"]
    assert list(out.loc["poa_no", "mcc_codes"]) == []  # the HAC took the MCC out of the final DRG
    assert out.loc["exempt_hospital", "drg"] == "291"
    assert out.loc["exempt_hospital", "poa_policy"] == "hospital_exempt"


def test_each_code_set_grouped_once_and_order_kept(grouper):
    rows = [side(f"c{i}", ["I5023", "N179"]) for i in range(50)] + [side("other", ["J189"])]
    rows.insert(10, side("mcc", ["I5023", "J9601"]))
    out = grouper.group_many(pd.DataFrame(rows))
    assert grouper.last_run["distinct_code_sets"] == 3
    assert list(out["key"]) == [r["key"] for r in rows]
    assert list(out.columns) == OUTPUT_COLUMNS
    assert out.loc[out["key"] == "mcc", "drg"].iloc[0] == "291"
    assert set(out.loc[out["key"].str.startswith("c"), "drg"]) == {"292"}


def test_one_and_two_workers_agree():
    rng = random.Random(3)
    pool = ["N179", "J9601", "E1165", "I10", "E871", "D62", "I4891", "E43", "G9341", "L89153"]
    rows = [side(f"k{i}", [rng.choice(["I5023", "A419", "J189", "I2109"]), *rng.sample(pool, rng.randint(0, 4))],
                 status=rng.choice(["01", "20", "06"]), age=rng.randint(40, 95)) for i in range(600)]
    frame = pd.DataFrame(rows)
    one = MsdrgAdapter(workers=1, chunk_size=50).group_many(frame)
    threads = MsdrgAdapter(workers=2, mode="threads", chunk_size=50).group_many(frame)
    pd.testing.assert_frame_equal(one, threads)
    adapter = MsdrgAdapter(workers=2, mode="processes", chunk_size=50)
    processes = adapter.group_many(frame)
    assert adapter.last_run["how"] == "2 processes"
    pd.testing.assert_frame_equal(one, processes)


def test_requests_built_in_blocks_match_one_block():
    """Large inputs build their requests in row blocks: same output, repeats across blocks grouped once."""
    rng = random.Random(5)
    pool = ["N179", "J9601", "E1165", "I10", "E871", "D62", "L89153", "T814XXA"]
    rows = [side(f"b{i}", [rng.choice(["I5023", "A419", "J189", "ZZZ9"]), *rng.sample(pool, rng.randint(0, 3))],
                 poa=rng.choice(["Y", "N", None, ""]), age=rng.choice([70, 70, 150]), sex=rng.choice("MMFX"))
            for i in range(500)]
    frame = pd.DataFrame(rows)
    one = MsdrgAdapter(mode="threads")
    blocks = MsdrgAdapter(mode="threads", batch_size=37)
    pd.testing.assert_frame_equal(one.group_many(frame), blocks.group_many(frame))
    assert blocks.last_run["distinct_code_sets"] == one.last_run["distinct_code_sets"] < 500


def test_column_wise_requests_and_results_match_the_reference_forms(grouper):
    """The pyarrow request builder and the result reader give what json.dumps/json.loads give."""
    rng = random.Random(11)
    dx_pool = ["I5023", "A419", "N179", "J9601", "L89153", "T814XXA", "E1165", "I5022", "ZZZ9", "i10 "]
    poa_pool = ["Y", "N", "U", "W", "1", None, "", " y"]
    rows = []
    for i in range(400):
        dx = [rng.choice(dx_pool) for _ in range(rng.randint(0, 5))]
        if rng.random() < 0.1:
            dx.insert(rng.randint(0, len(dx)), None)
        poa = None if rng.random() < 0.1 else [rng.choice(poa_pool) for _ in range(rng.randint(0, len(dx) + 1))]
        px = [rng.choice(["5A1955Z", "0DTJ4ZZ", "", None]) for _ in range(rng.randint(0, 2))]
        rows.append(side(f"r{i}", dx, px, poa=poa or [], exempt=rng.random() < 0.1))
        rows[-1]["poa"] = poa
    frame = pd.DataFrame(rows)
    n = len(frame)
    sex = frame["sex"].map(SEX_CODES).to_numpy()
    built = build_requests(frame, np.ones(n, bool), frame["version"].to_numpy(), frame["age"].to_numpy(), sex,
                           np.ones(n, dtype=np.int64), frame["hospital_poa_exempt"].to_numpy())
    requests = built["request"].to_pylist()
    for i, row in frame.iterrows():
        ref, hospital, policy, filled = request_json(430, 70, 0, 1, row["dx"], row["poa"], row["px"],
                                                     row["hospital_poa_exempt"])
        assert (json.loads(requests[i]) if requests[i] else None) == (json.loads(ref) if ref else None)
        assert built["poa_policy"][i].as_py() == policy
        assert built["poa_filled_codes"][i].as_py() == filled
    distinct = sorted({r.encode() for r in requests if r})
    raw = grouper._native(distinct)
    table = read_results(raw).to_pylist()
    for answer, row in zip(raw, table):
        assert tuple(row.values()) == extract_result(json.loads(answer))


def test_adapter_is_a_grouper(grouper):
    assert isinstance(grouper, Grouper)
    assert grouper.name == "msdrg" and grouper.version_string == "msdrg 1.2.0"
