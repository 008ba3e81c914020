"""Reconciliation checks: they pass on consistent tables and catch a lost claim or a cent."""

from __future__ import annotations

from audits.ingest.quality import reconcile_regroup, reconcile_revenue


def _tables(con, impact_net=-5404.0, regrouped=("A", "B")):
    con.execute("CREATE TABLE claims AS SELECT * FROM (VALUES ('A'), ('B')) t(claim_id)")
    con.execute("CREATE TABLE reviews AS SELECT * FROM (VALUES ('A', '2026-11'), ('B', '2026-11')) t(claim_id, audit_period)")
    rows = {"A": -7178.0, "B": 1774.0}
    values = ", ".join(f"('{c}', '2026-11', {rows[c]})" for c in regrouped)
    con.execute(f"CREATE TABLE claim_regroup AS SELECT * FROM (VALUES {values}) t(claim_id, audit_period, delta)")
    con.execute("CREATE TABLE regroup_findings (claim_id VARCHAR, audit_period VARCHAR, finding VARCHAR)")
    con.execute(f"""CREATE TABLE revenue_impact AS SELECT * FROM (VALUES
        ('2026-11', 'all', {len(regrouped)}, 1774.0, 7178.0, {impact_net})) t(audit_period, breakdown, claims,
        underpaid_amount, overpaid_amount, net_amount)""")


def test_consistent_tables_pass(con):
    _tables(con)
    assert reconcile_regroup(con)["passed"] and reconcile_revenue(con)["passed"]


def test_a_cent_off_fails(con):
    _tables(con, impact_net=-5404.01)
    assert not reconcile_revenue(con)["passed"]


def test_an_audited_claim_without_regroup_row_or_finding_fails(con):
    _tables(con, regrouped=("A",))
    outcome = reconcile_regroup(con)
    assert not outcome["passed"] and outcome["metadata"]["examples"] == "2026-11:B"
    con.execute("INSERT INTO regroup_findings VALUES ('B', '2026-11', 'ungroupable')")
    assert reconcile_regroup(con)["passed"]
