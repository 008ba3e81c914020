"""On demo data, the comparison finds exactly the errors the generator injected.

Tolerance: none. truth.csv lists, per audited claim, the error types actually injected; every
claim with a principal (secondary, procedure) error injected must be counted as a principal
(secondary, procedure) error, and no other claim. This is stricter than "within sampling error"
of the configured rates, which the realised rates only approximate (an error is injected only
where the claim allows it).
"""

from __future__ import annotations

import duckdb
import pandas as pd
import pytest

from audits import compare
from audits.demo.config import DemoConfig, ErrorRates
from audits.demo.generate import generate_demo
from audits.ingest.loading import load
from audits.ingest.readers import InputFiles


@pytest.fixture(scope="module")
def demo_audit(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    rates = ErrorRates(principal_changed=0.08, principal_specificity=0.08, principal_resequenced=0.08,
                       secondary_deleted=0.15, secondary_added=0.12, secondary_specificity=0.10,
                       poa_changed=0.10, procedure_error=0.10)
    paths = generate_demo(out, DemoConfig(n_claims=3000, audit_sample=800, seed=7, errors=rates))
    con = duckdb.connect(":memory:")
    load(con, InputFiles(claims=[paths["claims"]], reviews=[paths["reviews"]]), "2026-11")
    compare.build_code_diffs(con)
    compare.build_error_rates(con)
    truth = pd.read_csv(paths["truth"], dtype=str).fillna("")
    yield con, truth
    con.close()


def _claims_with(truth: pd.DataFrame, prefix: str) -> set[str]:
    return {c for c, e in zip(truth["claim_id"], truth["injected_errors"])
            if any(t.startswith(prefix) for t in e.split(";") if t)}


def test_error_claims_match_injected(demo_audit):
    con, truth = demo_audit
    found = {
        "principal": "SELECT DISTINCT claim_id FROM code_diffs WHERE kind = 'dx' AND role = 'principal' AND result <> 'match'",
        "secondary": "SELECT DISTINCT claim_id FROM code_diffs WHERE kind = 'dx' AND role = 'secondary' "
                     "AND result IN ('deleted', 'added', 'specificity')",
        "procedure": "SELECT DISTINCT claim_id FROM code_diffs WHERE kind = 'px' AND result <> 'match'",
    }
    for kind, prefix in (("principal", "principal_"), ("secondary", "secondary_"), ("procedure", "procedure_")):
        got = {r[0] for r in con.execute(found[kind]).fetchall()}
        assert got == _claims_with(truth, prefix), kind
    assert len(_claims_with(truth, "principal_")) > 50 and len(_claims_with(truth, "secondary_")) > 100


def test_rates_equal_injected_shares(demo_audit):
    con, truth = demo_audit
    n = len(truth)
    rates = dict(con.execute("SELECT metric, rate FROM error_rates WHERE breakdown = 'all'").fetchall())
    principal, secondary = _claims_with(truth, "principal_"), _claims_with(truth, "secondary_")
    assert rates["principal_dx_error_rate"] == pytest.approx(len(principal) / n, abs=1e-12)
    assert rates["secondary_dx_error_rate"] == pytest.approx(len(secondary) / n, abs=1e-12)
    assert rates["record_error_rate"] == pytest.approx(len(principal | secondary) / n, abs=1e-12)
    assert rates["procedure_error_rate"] == pytest.approx(len(_claims_with(truth, "procedure_")) / n, abs=1e-12)
    poa_only = _claims_with(truth, "poa_changed") - principal - secondary
    assert poa_only, "some claims carry only a POA change"
    errors = {r[0] for r in con.execute("SELECT DISTINCT claim_id FROM code_diffs WHERE kind = 'dx' "
                                        "AND result NOT IN ('match', 'poa_changed')").fetchall()}
    assert not (poa_only & errors)  # a POA-only change is not a diagnosis error
