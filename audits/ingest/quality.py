"""Great Expectations suites over the *published* tables: what downstream steps rely on.

The ingest quarantines bad rows before publishing; these suites re-check the published result
(a safety net against a bug or a hand edit), and fail the Dagster asset check that blocks the
downstream steps.
"""

from __future__ import annotations

import duckdb

from audits.codes import ICD10CM_PATTERN, ICD10PCS_PATTERN, POA_VALUES
from audits.contract import AGE_MAX, AGE_MIN, SEX_VALUES
from audits.ingest.expectations import DistinctCheck, Rule, _gx, check_distinct, once, present


def _checks(table: str) -> list[DistinctCheck]:
    """The published table's rules, each on the distinct values (or per-row verdicts) it needs."""
    e = _gx().expectations
    if table == "claims":
        return [
            DistinctCheck("claims_rows", {
                "claim_id": present("claim_id"), "claim_id_once": once("claim_id", table),
                "no_principal": """claim_id NOT IN (SELECT claim_id FROM claim_codes
                                   WHERE side = 'original' AND kind = 'dx' AND position = 1)"""}, [
                Rule("unique", "claim_id", "claim_id unique",
                     lambda: e.ExpectColumnValuesToBeInSet(column="claim_id_once", value_set=[True])),
                Rule("not_null", "claim_id", "claim_id present", lambda: e.ExpectColumnValuesToNotBeNull(column="claim_id")),
                Rule("principal", "dx1", "every claim has a principal diagnosis",
                     lambda: e.ExpectColumnValuesToBeInSet(column="no_principal", value_set=[False]))]),
            DistinctCheck("claims_stay", {"admit_date": "admit_date", "discharge_date": "discharge_date"}, [
                Rule("dates", "discharge_date", "discharge on/after admit",
                     lambda: e.ExpectColumnPairValuesAToBeGreaterThanB(column_A="discharge_date", column_B="admit_date",
                                                                       or_equal=True))]),
            DistinctCheck("claims_age", {"age": "age"}, [
                Rule("age", "age", "age in range", lambda: e.ExpectColumnValuesToBeBetween(
                    column="age", min_value=AGE_MIN, max_value=AGE_MAX))]),
            DistinctCheck("claims_sex", {"sex": "sex"}, [
                Rule("sex", "sex", "sex domain",
                     lambda: e.ExpectColumnValuesToBeInSet(column="sex", value_set=list(SEX_VALUES)))]),
        ]
    if table == "reviews":
        return [DistinctCheck("reviews_rows", {
            "claim_id_once": once("claim_id", table),
            "has_claim": "claim_id IN (SELECT claim_id FROM claims)"}, [
            Rule("unique", "claim_id", "one review per claim",
                 lambda: e.ExpectColumnValuesToBeInSet(column="claim_id_once", value_set=[True])),
            Rule("has_claim", "claim_id", "every review has its claim",
                 lambda: e.ExpectColumnValuesToBeInSet(column="has_claim", value_set=[True]))])]
    return [DistinctCheck("claim_codes_values", {
        "kind": "kind", "code": "code", "poa": "poa",
        "dx_code": "CASE WHEN kind = 'dx' THEN code END", "px_code": "CASE WHEN kind = 'px' THEN code END"}, [
        Rule("dx_shape", "code", "dx codes normalised ICD-10-CM", lambda: e.ExpectColumnValuesToMatchRegex(
            column="dx_code", regex=ICD10CM_PATTERN)),
        Rule("px_shape", "code", "px codes normalised ICD-10-PCS", lambda: e.ExpectColumnValuesToMatchRegex(
            column="px_code", regex=ICD10PCS_PATTERN)),
        Rule("poa", "poa", "POA domain", lambda: e.ExpectColumnValuesToBeInSet(column="poa", value_set=list(POA_VALUES))),
        Rule("side", "kind", "kind domain", lambda: e.ExpectColumnValuesToBeInSet(column="kind", value_set=["dx", "px"])),
    ])]


def published_checks(con: duckdb.DuckDBPyConnection, table: str) -> dict:
    """Run the suite of `table`; {'passed': bool, 'metadata': {rule: failing rows}}. GX sees the
    distinct values, not every row (`audits.ingest.expectations.check_distinct`); counts are of rows."""
    exists = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?",
                         [table]).fetchall()[0][0]
    if not exists:
        return {"passed": False, "metadata": {"error": f"table {table} does not exist"}}
    if table == "claim_codes":  # what was checked: the distinct (kind, code, POA)
        checked = con.execute("SELECT count(*) FROM (SELECT DISTINCT kind, code, poa FROM claim_codes)").fetchall()[0][0]
        failures = check_distinct(con, "(SELECT DISTINCT kind, code, poa FROM claim_codes)", _checks(table),
                                  "f.rule", "f.rule")
    else:
        checked = con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
        failures = check_distinct(con, table, _checks(table), "f.rule", "f.rule")
    by_rule = failures.groupby("rule").size().to_dict() if len(failures) else {}
    extra: dict[str, int] = {}
    if table == "claim_codes":
        dup = con.execute("""SELECT count(*) FROM (SELECT claim_id, side, kind, position FROM claim_codes
                             GROUP BY ALL HAVING count(*) > 1)""").fetchall()[0][0]
        orphan = con.execute("""SELECT count(*) FROM claim_codes WHERE side = 'audited'
                                AND claim_id NOT IN (SELECT claim_id FROM reviews)""").fetchall()[0][0]
        extra = {"duplicate_positions": int(dup), "audited_codes_without_review": int(orphan)}
    metadata = {"rows_checked": int(checked),
                **{f"failed_{k}": int(v) for k, v in by_rule.items()}, **extra}
    return {"passed": not by_rule and not any(extra.values()), "metadata": metadata}


def reconcile_regroup(con: duckdb.DuckDBPyConnection) -> dict:
    """Every audited claim has a claim_regroup row or a finding explaining why not (all periods)."""
    missing = con.execute("""
        SELECT r.audit_period, r.claim_id FROM reviews r JOIN claims c USING (claim_id)
        WHERE NOT EXISTS (SELECT 1 FROM claim_regroup g WHERE g.claim_id = r.claim_id
                          AND g.audit_period = r.audit_period)
          AND NOT EXISTS (SELECT 1 FROM regroup_findings f WHERE f.claim_id = r.claim_id
                          AND f.audit_period = r.audit_period)
        ORDER BY 1, 2""").fetchall()
    audited = con.execute("SELECT count(*) FROM reviews r JOIN claims c USING (claim_id)").fetchall()[0][0]
    return {"passed": not missing, "metadata": {
        "audited_claims": int(audited), "without_regroup_or_finding": len(missing),
        "examples": ", ".join(f"{p}:{c}" for p, c in missing[:10])}}


def reconcile_revenue(con: duckdb.DuckDBPyConnection) -> dict:
    """revenue_impact's overall totals equal the sums of the claims' deltas, to the cent, per period."""
    rows = con.execute("""
        WITH claims_sum AS (
            SELECT audit_period, count(*) AS claims,
                   sum(CASE WHEN delta > 0 THEN round(delta * 100) ELSE 0 END) AS under_cents,
                   sum(CASE WHEN delta < 0 THEN -round(delta * 100) ELSE 0 END) AS over_cents
            FROM claim_regroup GROUP BY 1),
        impact AS (
            SELECT audit_period, claims, round(underpaid_amount * 100) AS under_cents,
                   round(overpaid_amount * 100) AS over_cents, round(net_amount * 100) AS net_cents
            FROM revenue_impact WHERE breakdown = 'all')
        SELECT coalesce(c.audit_period, i.audit_period), c.claims, i.claims, c.under_cents, i.under_cents,
               c.over_cents, i.over_cents, i.net_cents
        FROM claims_sum c FULL JOIN impact i USING (audit_period)""").fetchall()
    bad = [r for r in rows if r[1] != r[2] or r[3] != r[4] or r[5] != r[6] or r[7] != (r[4] or 0) - (r[6] or 0)]
    return {"passed": not bad, "metadata": {"periods_checked": len(rows),
                                           "mismatched_periods": ", ".join(str(r[0]) for r in bad)}}
