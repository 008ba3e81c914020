"""code_diffs, error_rates and the coder scorecard on hand-made claims, expected values worked by hand."""

from __future__ import annotations

import duckdb
import pytest

from audits.compare import (
                            build_code_diffs,
                            build_coder_scorecard,
                            build_error_rates,
                            error_rate_summary,
                            )

# ---------------------------------------------------------------------------------------------
# fixture: the published warehouse tables, schema as in the project brief


def _schema(con):
    con.execute(
        """
        CREATE TABLE claims (claim_id VARCHAR PRIMARY KEY, facility_id VARCHAR, patient_id VARCHAR,
            admit_date DATE, discharge_date DATE, discharge_status VARCHAR, age INTEGER, sex VARCHAR,
            payer VARCHAR, coder_id VARCHAR, service_line VARCHAR, billed_drg VARCHAR,
            drg_version INTEGER, audit_period VARCHAR, source_file VARCHAR, source_row BIGINT,
            extra_columns JSON);
        CREATE TABLE reviews (claim_id VARCHAR PRIMARY KEY, reviewer_id VARCHAR, review_date DATE,
            discharge_status VARCHAR, reviewer_drg VARCHAR, notes VARCHAR, audit_period VARCHAR,
            source_file VARCHAR, source_row BIGINT, extra_columns JSON);
        CREATE TABLE claim_codes (claim_id VARCHAR, side VARCHAR, kind VARCHAR, position INTEGER,
            code VARCHAR, poa VARCHAR);
        """
    )


class Warehouse:
    """Adds claims the way the ingest publishes them. Diagnoses are 'CODE' (POA Y) or 'CODE:N'."""

    def __init__(self):
        self.con = duckdb.connect()
        _schema(self.con)

    def claim(self, claim_id, original, audited=None, original_px=(), audited_px=(), coder="C1",
              facility="F1", service_line="MED", payer="MCR", discharge="2025-11-15"):
        self.con.execute(
            "INSERT INTO claims (claim_id, facility_id, admit_date, discharge_date, discharge_status,"
            " age, sex, payer, coder_id, service_line) VALUES (?, ?, DATE '2025-10-01', ?, '01', 70,"
            " 'F', ?, ?, ?)",
            [claim_id, facility, discharge, payer, coder, service_line],
        )
        self._codes(claim_id, "original", original, original_px)
        if audited is not None:
            self.con.execute(
                "INSERT INTO reviews (claim_id, reviewer_id, review_date) VALUES (?, 'R1', DATE '2026-01-10')",
                [claim_id],
            )
            self._codes(claim_id, "audited", audited, audited_px)
        return self

    def _codes(self, claim_id, side, dx, px):
        rows = []
        for position, item in enumerate(dx, start=1):
            code, _, poa = item.partition(":")
            rows.append((claim_id, side, "dx", position, code, poa or "Y"))
        for position, code in enumerate(px, start=1):
            rows.append((claim_id, side, "px", position, code, None))
        if rows:
            self.con.executemany("INSERT INTO claim_codes VALUES (?, ?, ?, ?, ?, ?)", rows)

    def diffs(self, claim_id=None, kind=None):
        build_code_diffs(self.con)
        where, params = [], []
        if claim_id:
            where.append("claim_id = ?")
            params.append(claim_id)
        if kind:
            where.append("kind = ?")
            params.append(kind)
        sql = ("SELECT kind, role, original_position, audited_position, original_code, audited_code,"
               " result FROM code_diffs")
        if where:
            sql += " WHERE " + " AND ".join(where)
        return self.con.execute(sql + " ORDER BY kind, role, original_position NULLS LAST,"
                                " audited_position", params).fetchall()

    def rates(self):
        build_code_diffs(self.con)
        build_error_rates(self.con)
        return {
            (m, b, v): (n, e, r)
            for m, b, v, n, e, r in self.con.execute(
                "SELECT metric, breakdown, breakdown_value, n, errors, rate FROM error_rates").fetchall()
        }


@pytest.fixture
def wh():
    return Warehouse()


P = "principal"
S = "secondary"

# ---------------------------------------------------------------------------------------------
# one case per result type


def test_all_match(wh):
    wh.claim("c1", ["J189", "I10", "E119"], ["J189", "I10", "E119"])
    assert wh.diffs() == [
        ("dx", P, 1, 1, "J189", "J189", "match"),
        ("dx", S, 2, 2, "I10", "I10", "match"),
        ("dx", S, 3, 3, "E119", "E119", "match"),
    ]


def test_principal_specificity(wh):
    wh.claim("c1", ["I5022", "I10"], ["I5023", "I10"])
    assert wh.diffs() == [
        ("dx", P, 1, 1, "I5022", "I5023", "specificity"),
        ("dx", S, 2, 2, "I10", "I10", "match"),
    ]


def test_principal_changed(wh):
    wh.claim("c1", ["J189", "I10"], ["A419", "I10"])
    assert wh.diffs()[0] == ("dx", P, 1, 1, "J189", "A419", "changed")


def test_secondary_deleted_and_added(wh):
    wh.claim("c1", ["J189", "E43", "I10"], ["J189", "I10", "N179"])
    assert wh.diffs() == [
        ("dx", P, 1, 1, "J189", "J189", "match"),
        ("dx", S, 2, None, "E43", None, "deleted"),
        ("dx", S, 3, 2, "I10", "I10", "match"),
        ("dx", S, None, 3, None, "N179", "added"),
    ]


def test_poa_only_change_is_not_a_diagnosis_error(wh):
    wh.claim("c1", ["J189", "E119:Y"], ["J189", "E119:N"])
    assert wh.diffs() == [
        ("dx", P, 1, 1, "J189", "J189", "match"),
        ("dx", S, 2, 2, "E119", "E119", "poa_changed"),
    ]
    poa = wh.con.execute("SELECT original_poa, audited_poa FROM code_diffs WHERE result = 'poa_changed'")
    assert poa.fetchall() == [("Y", "N")]
    rates = wh.rates()
    assert rates[("record_error_rate", "all", "all")] == (1, 0, 0.0)
    assert rates[("secondary_dx_error_rate", "all", "all")] == (1, 0, 0.0)
    assert rates[("error_type:dx:poa_changed", "all", "all")] == (1, 1, 1.0)


# ---------------------------------------------------------------------------------------------
# the tricky ones


def test_swap_is_resequenced_and_not_a_secondary_change(wh):
    # J18.9 and A41.9 trade places: one principal error, nothing deleted or added.
    wh.claim("c1", ["J189", "A419", "E119"], ["A419", "J189", "E119"])
    assert wh.diffs() == [
        ("dx", P, 1, 1, "J189", "A419", "resequenced"),
        ("dx", S, 3, 3, "E119", "E119", "match"),
    ]
    rates = wh.rates()
    assert rates[("principal_dx_error_rate", "all", "all")] == (1, 1, 1.0)
    assert rates[("secondary_dx_error_rate", "all", "all")] == (1, 0, 0.0)
    assert rates[("dx_position_2", "all", "all")] == (1, 0, 0.0)  # A41.9 at 2 is supported


def test_resequenced_either_direction(wh):
    # audited principal was an original secondary (the original principal then dropped entirely)
    wh.claim("c1", ["J189", "A419"], ["A419"])
    # original principal became a secondary, a new principal came in
    wh.claim("c2", ["J189", "I10"], ["A419", "J189", "I10"])
    assert wh.diffs("c1") == [("dx", P, 1, 1, "J189", "A419", "resequenced")]
    assert wh.diffs("c2") == [
        ("dx", P, 1, 1, "J189", "A419", "resequenced"),
        ("dx", S, 2, 3, "I10", "I10", "match"),
    ]


def test_specificity_pair_counts_once(wh):
    wh.claim("c1", ["J189", "I5022"], ["J189", "I5023"])
    assert wh.diffs() == [
        ("dx", P, 1, 1, "J189", "J189", "match"),
        ("dx", S, 2, 2, "I5022", "I5023", "specificity"),
    ]
    rates = wh.rates()
    assert rates[("error_type:dx:specificity", "all", "all")] == (1, 1, 1.0)
    assert rates[("error_type:dx:deleted", "all", "all")] == (1, 0, 0.0)
    assert rates[("error_type:dx:added", "all", "all")] == (1, 0, 0.0)
    assert rates[("dx_omitted", "all", "all")] == (1, 0, 0.0)
    assert rates[("dx_position_2", "all", "all")] == (1, 1, 1.0)


def test_specificity_pairs_in_position_order_leftover_added(wh):
    # I50 category: deleted I50.22 (2), I50.32 (3); added I50.23 (2), I50.33 (3), I50.9 (4).
    # Pairs by position order: I5022-I5023, I5032-I5033; I509 is left over -> added.
    wh.claim("c1", ["J189", "I5022", "I5032"], ["J189", "I5023", "I5033", "I509"])
    assert wh.diffs() == [
        ("dx", P, 1, 1, "J189", "J189", "match"),
        ("dx", S, 2, 2, "I5022", "I5023", "specificity"),
        ("dx", S, 3, 3, "I5032", "I5033", "specificity"),
        ("dx", S, None, 4, None, "I509", "added"),
    ]


def test_duplicate_codes_count_once_at_first_position(wh):
    # E11.9 at original 2 and 4; J18.9 repeated as a secondary on the audited side.
    wh.claim("c1", ["J189", "E119", "I10", "E119"], ["J189", "E119", "I10", "J189"])
    assert wh.diffs() == [
        ("dx", P, 1, 1, "J189", "J189", "match"),
        ("dx", S, 2, 2, "E119", "E119", "match"),
        ("dx", S, 3, 3, "I10", "I10", "match"),
    ]
    rates = wh.rates()
    # the duplicate at original position 4 is in the denominator, never an error of its own
    assert rates[("dx_position_4", "all", "all")] == (1, 0, 0.0)
    assert rates[("record_error_rate", "all", "all")] == (1, 0, 0.0)


def test_deleted_duplicate_is_one_deletion(wh):
    wh.claim("c1", ["J189", "E43", "E43"], ["J189"])
    assert wh.diffs() == [
        ("dx", P, 1, 1, "J189", "J189", "match"),
        ("dx", S, 2, None, "E43", None, "deleted"),
    ]


def test_claim_with_all_25_positions(wh):
    # The contract allows 25 dx positions: the principal and 24 secondaries. The auditor removes
    # the code at position 25 and changes the one at position 24 within its category.
    secondaries = [f"Z{n:02d}" for n in range(10, 32)] + ["E871", "I5022"]  # 22 + 2 = 24 codes
    original = ["J189"] + secondaries
    audited = ["J189"] + secondaries[:22] + ["E872"]
    assert len(original) == 25
    wh.claim("c1", original, audited)
    diffs = wh.diffs()
    assert len(diffs) == 25  # 1 principal + 22 match + 1 specificity + 1 deleted
    assert diffs[-2:] == [
        ("dx", S, 24, 24, "E871", "E872", "specificity"),
        ("dx", S, 25, None, "I5022", None, "deleted"),
    ]
    rates = wh.rates()
    assert rates[("dx_position_25", "all", "all")] == (1, 1, 1.0)
    assert rates[("dx_position_24", "all", "all")] == (1, 1, 1.0)
    assert rates[("dx_position_23", "all", "all")] == (1, 0, 0.0)


def test_claim_without_secondaries(wh):
    wh.claim("c1", ["K3580"], ["K3580"])
    wh.claim("c2", ["K3580"], ["K3580", "E871"])
    assert wh.diffs("c1") == [("dx", P, 1, 1, "K3580", "K3580", "match")]
    assert wh.diffs("c2") == [
        ("dx", P, 1, 1, "K3580", "K3580", "match"),
        ("dx", S, None, 2, None, "E871", "added"),
    ]
    rates = wh.rates()
    assert rates[("dx_position_1", "all", "all")] == (2, 0, 0.0)
    assert ("dx_position_2", "all", "all") not in rates  # no audited claim has an original dx at 2
    assert rates[("dx_omitted", "all", "all")] == (2, 1, 0.5)


def test_procedure_only_changes(wh):
    dx = ["K3580", "E119"]
    # px1 changed within section/body system/root operation (0DT, resection): specificity
    wh.claim("c1", dx, dx, ["0DTJ4ZZ"], ["0DTJ0ZZ"])
    # the auditor adds the only procedure: principal procedure added
    wh.claim("c2", dx, dx, [], ["0DTJ4ZZ"])
    # a secondary procedure not supported: deleted
    wh.claim("c3", dx, dx, ["0DTJ4ZZ", "0W9G3ZZ"], ["0DTJ4ZZ"])
    # no procedures on either side: no px rows at all
    wh.claim("c4", dx, dx)
    assert wh.diffs("c1", "px") == [("px", P, 1, 1, "0DTJ4ZZ", "0DTJ0ZZ", "specificity")]
    assert wh.diffs("c2", "px") == [("px", P, None, 1, None, "0DTJ4ZZ", "added")]
    assert wh.diffs("c3", "px") == [
        ("px", P, 1, 1, "0DTJ4ZZ", "0DTJ4ZZ", "match"),
        ("px", S, 2, None, "0W9G3ZZ", None, "deleted"),
    ]
    assert wh.diffs("c4", "px") == []
    rates = wh.rates()
    # 3 of 4 audited claims have a procedure error; none has a diagnosis error
    assert rates[("procedure_error_rate", "all", "all")] == (4, 3, 0.75)
    assert rates[("record_error_rate", "all", "all")] == (4, 0, 0.0)
    assert rates[("error_type:px:specificity", "all", "all")] == (4, 1, 0.25)


def test_unaudited_claims_are_ignored(wh):
    wh.claim("c1", ["J189"], ["J189"])
    wh.claim("c2", ["J189", "E43"])  # no review
    build_code_diffs(wh.con)
    assert wh.con.execute("SELECT DISTINCT claim_id FROM code_diffs").fetchall() == [("c1",)]
    assert wh.rates()[("record_error_rate", "all", "all")][0] == 1


def test_rebuild_replaces_tables(wh):
    wh.claim("c1", ["J189", "E43"], ["J189"])
    wh.rates()
    first = wh.con.execute("SELECT count(*) FROM code_diffs").fetchone()[0]
    wh.rates()
    assert wh.con.execute("SELECT count(*) FROM code_diffs").fetchone()[0] == first == 2


def test_no_audited_claims(wh):
    wh.claim("c1", ["J189"])
    assert wh.rates() == {}
    assert error_rate_summary(wh.con) == {
        "record_error_rate": None,
        "principal_dx_error_rate": None,
        "secondary_dx_error_rate": None,
        "procedure_error_rate": None,
        "error_rate_by_position": {},
    }
    assert build_coder_scorecard(wh.con) == 0


# ---------------------------------------------------------------------------------------------
# a small published-style table, worked by hand


@pytest.fixture
def ten_claims(wh):
    """Ten audited claims (coder A: a01-a05, coder B: b06-b10) and one claim without a review.

    claim  original dx                 audited dx                       what happened
    a01    J189 I10 E119               same                             nothing
    a02    J189 E43 I10                J189 I10                         E43 deleted (pos 2)
    a03    I5022 I10 E43               I5023 I10                        principal specificity, E43 deleted (pos 3)
    a04    J189 A419 E119              A419 J189 E119                   principal resequenced
    a05    J189 I10                    J189 I10 N179                    N179 added (omitted)
    b06    J189 I10 E119:Y             J189 I10 E119:N                  POA only: no error
    b07    J189 I5022 E43 I10          J189 I5023 I10                   I5022->I5023 specificity (pos 2), E43 deleted (pos 3)
    b08    K359                        N390                             principal changed
    b09    J189 I10 + px 0DTJ4ZZ       J189 I10, no px                  procedure deleted only
    b10    J189 E119 I10 N179          J189 E119 I10 N179 E871          E871 added (omitted)
    """
    w = wh
    a = dict(coder="A", discharge="2025-10-20", payer="MCR")
    b = dict(coder="B", discharge="2025-11-20", payer=None)
    w.claim("a01", ["J189", "I10", "E119"], ["J189", "I10", "E119"], **a)
    w.claim("a02", ["J189", "E43", "I10"], ["J189", "I10"], **a)
    w.claim("a03", ["I5022", "I10", "E43"], ["I5023", "I10"], **a)
    w.claim("a04", ["J189", "A419", "E119"], ["A419", "J189", "E119"], **a)
    w.claim("a05", ["J189", "I10"], ["J189", "I10", "N179"], **a)
    w.claim("b06", ["J189", "I10", "E119:Y"], ["J189", "I10", "E119:N"], **b)
    w.claim("b07", ["J189", "I5022", "E43", "I10"], ["J189", "I5023", "I10"], **b)
    w.claim("b08", ["K359"], ["N390"], **b)
    w.claim("b09", ["J189", "I10"], ["J189", "I10"], ["0DTJ4ZZ"], [], **b)
    w.claim("b10", ["J189", "E119", "I10", "N179"], ["J189", "E119", "I10", "N179", "E871"], **b)
    w.claim("x11", ["J189", "E43"], None, **b)  # not audited: in no denominator
    return w


def test_published_style_table(ten_claims):
    rates = ten_claims.rates()
    all_ = {m: v for (m, b, _), v in rates.items() if b == "all"}
    # principal errors: a03 specificity, a04 resequenced, b08 changed -> 3/10
    assert all_["principal_dx_error_rate"] == (10, 3, 0.3)
    # claims with >= 1 secondary error: a02, a03, a05, b07, b10 -> 5/10 (b06 POA only is not one)
    assert all_["secondary_dx_error_rate"] == (10, 5, 0.5)
    # record: {a03, a04, b08} ∪ {a02, a03, a05, b07, b10} = 7 claims -> 0.7, NOT 0.3 + 0.5 = 0.8
    assert all_["record_error_rate"] == (10, 7, 0.7)
    # procedures: b09 only, over all 10 audited claims
    assert all_["procedure_error_rate"] == (10, 1, 0.1)
    # position 1: 10 claims have a principal, 3 not supported
    assert all_["dx_position_1"] == (10, 3, 0.3)
    # position 2: every claim but b08 (9); unsupported: a02 E43 deleted, b07 I5022 specificity -> 2/9
    assert all_["dx_position_2"][:2] == (9, 2)
    assert all_["dx_position_2"][2] == pytest.approx(2 / 9)
    # position 3: a01 a02 a03 a04 b06 b07 b10 (7); unsupported: a03 E43, b07 E43 -> 2/7
    assert all_["dx_position_3"][:2] == (7, 2)
    # position 4: b07 (I10 kept), b10 (N179 kept) -> 0/2
    assert all_["dx_position_4"] == (2, 0, 0.0)
    assert "dx_position_5" not in all_
    # omitted: a05, b10 -> 2/10
    assert all_["dx_omitted"] == (10, 2, 0.2)
    # error counts by type (rows of code_diffs), n = 10 audited claims
    assert all_["error_type:dx:specificity"][:2] == (10, 2)  # a03 principal, b07 secondary
    assert all_["error_type:dx:deleted"][:2] == (10, 3)  # a02, a03, b07 (E43 each)
    assert all_["error_type:dx:added"][:2] == (10, 2)  # a05 N179, b10 E871
    assert all_["error_type:dx:resequenced"][:2] == (10, 1)
    assert all_["error_type:dx:changed"][:2] == (10, 1)
    assert all_["error_type:dx:poa_changed"][:2] == (10, 1)
    assert all_["error_type:px:deleted"][:2] == (10, 1)
    assert all_["error_type:px:added"][:2] == (10, 0)

    # by coder: A record errors a02 a03 a04 a05 = 4/5; B: b07 b08 b10 = 3/5
    assert rates[("record_error_rate", "coder", "A")] == (5, 4, 0.8)
    assert rates[("record_error_rate", "coder", "B")] == (5, 3, 0.6)
    # audit month = discharge month; payer NULL shows as '(missing)'
    assert rates[("principal_dx_error_rate", "audit_month", "2025-10")] == (5, 2, 0.4)
    assert rates[("principal_dx_error_rate", "payer", "(missing)")] == (5, 1, 0.2)
    assert rates[("record_error_rate", "facility", "F1")] == (10, 7, 0.7)
    assert rates[("record_error_rate", "service_line", "MED")] == (10, 7, 0.7)


def test_wilson_interval_and_small_cells_on_rows(ten_claims):
    ten_claims.rates()
    con = ten_claims.con
    row = con.execute(
        "SELECT ci_low, ci_high, small_cell FROM error_rates"
        " WHERE metric = 'record_error_rate' AND breakdown = 'all'"
    ).fetchone()
    # 7 of 10: z² = 3.841459, denom = 1.3841459, centre = (0.7 + 0.1920729)/denom = 0.644488
    # half = 1.959964 * sqrt(0.021 + 0.0096036)/denom = 1.959964 * 0.174939 / 1.3841459 = 0.247714
    # -> (0.396774, 0.892202); n = 10 < 11 -> small cell
    assert row[0] == pytest.approx(0.3968, abs=5e-5)
    assert row[1] == pytest.approx(0.8922, abs=5e-5)
    assert row[2] is True
    # counts by type carry no interval
    assert con.execute(
        "SELECT ci_low IS NULL AND ci_high IS NULL FROM error_rates"
        " WHERE metric = 'error_type:dx:deleted' AND breakdown = 'all'"
    ).fetchone() == (True,)


def test_summary(ten_claims):
    ten_claims.rates()
    assert error_rate_summary(ten_claims.con) == {
        "record_error_rate": 0.7,
        "principal_dx_error_rate": 0.3,
        "secondary_dx_error_rate": 0.5,
        "procedure_error_rate": 0.1,
        # 2/9 = 0.22222 -> 0.2222; 2/7 = 0.285714 -> 0.2857
        "error_rate_by_position": {"1": 0.3, "2": 0.2222, "3": 0.2857, "4": 0.0, "omitted": 0.2},
    }


def test_coder_scorecard(ten_claims):
    ten_claims.rates()
    assert build_coder_scorecard(ten_claims.con) == 2
    con = ten_claims.con
    a = con.execute(
        "SELECT audited_claims, record_errors, record_error_rate, principal_dx_error_rate,"
        " secondary_dx_error_rate, procedure_error_rate, top_error_types, top_changed_codes, small_cell"
        " FROM coder_scorecard WHERE coder_id = 'A'"
    ).fetchone()
    # coder A's error rows: a02 secondary E43 deleted, a03 principal I5022->I5023 specificity,
    # a03 secondary E43 deleted, a04 principal J189->A419 resequenced, a05 secondary N179 added.
    # record 4/5, principal 2/5 (a03, a04), secondary 3/5 (a02, a03, a05), procedure 0/5.
    assert a[:6] == (5, 4, 0.8, 0.4, 0.6, 0.0)
    assert a[6] == "secondary dx deleted x2; principal dx resequenced x1; principal dx specificity x1"
    assert a[7] == "E43 deleted x2; I5022->I5023 specificity x1; J189->A419 resequenced x1; N179 added x1"
    assert a[8] is True
    b = con.execute(
        "SELECT record_error_ci_low, record_error_ci_high, top_changed_codes FROM coder_scorecard"
        " WHERE coder_id = 'B'"
    ).fetchone()
    # 3 of 5: z²/n = 0.7682918, denom = 1.7682918, centre = (0.6 + 0.3841459)/denom = 0.556554
    # half = 1.959964 * sqrt(0.048 + 0.0384146)/denom = 1.959964 * 0.293964 / 1.7682918 = 0.325828
    # -> (0.230726, 0.882382)
    assert b[0] == pytest.approx(0.2307, abs=5e-5)
    assert b[1] == pytest.approx(0.8824, abs=5e-5)
    # B: b07 E43 deleted, b07 I5022->I5023, b08 K359->N390 changed, b09 0DTJ4ZZ deleted, b10 E871 added
    assert b[2] == ("0DTJ4ZZ deleted x1; E43 deleted x1; E871 added x1; I5022->I5023 specificity x1;"
                    " K359->N390 changed x1")


# ---------------------------------------------------------------------------------------------
# invariants on random claims drawn from a tiny code pool (collisions, duplicates, swaps, pairs)

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_POOL = st.sampled_from(["I5022", "I5023", "I509", "E43", "E440", "J189", "A419", "I10"])
_SIDE = st.lists(st.tuples(_POOL, st.sampled_from(["Y", "N"])), min_size=1, max_size=6)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(_SIDE, _SIDE), min_size=1, max_size=4))
def test_invariants_on_random_claims(pairs):
    w = Warehouse()
    for i, (original, audited) in enumerate(pairs):
        w.claim(f"c{i}", [f"{c}:{p}" for c, p in original], [f"{c}:{p}" for c, p in audited])
    build_code_diffs(w.con)
    rows = w.con.execute(
        "SELECT claim_id, role, original_code, audited_code, result FROM code_diffs").fetchall()
    for i, (original, audited) in enumerate(pairs):
        mine = [r for r in rows if r[0] == f"c{i}"]
        o_codes, a_codes = [c for c, _ in original], [c for c, _ in audited]
        principal = [r for r in mine if r[1] == "principal"]
        assert len(principal) == 1
        seen_o = [r[2] for r in mine if r[2] is not None]
        seen_a = [r[3] for r in mine if r[3] is not None]
        # each distinct code of a side appears once, except the code swapped in a resequencing
        assert len(seen_o) == len(set(seen_o)) and len(seen_a) == len(set(seen_a))
        swapped_o = {a_codes[0]} if a_codes[0] in o_codes[1:] and a_codes[0] != o_codes[0] else set()
        swapped_a = {o_codes[0]} if o_codes[0] in a_codes[1:] and a_codes[0] != o_codes[0] else set()
        assert set(o_codes) - set(seen_o) == swapped_o
        assert set(a_codes) - set(seen_a) == swapped_a
        assert (principal[0][4] == "resequenced") == bool(swapped_o or swapped_a)
        # a deleted and an added secondary never share a category (they would have paired)
        deleted = {r[2][:3] for r in mine if r[4] == "deleted"}
        added = {r[3][:3] for r in mine if r[4] == "added"}
        assert not deleted & added
        assert all(r[2][:3] == r[3][:3] for r in mine if r[4] == "specificity")
