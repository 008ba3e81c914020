"""Upcoding flags: takes the compared and regrouped audit (and optional peer discharges); gives claim, coder
and facility patterns, each with the evidence and significance a compliance officer follows.

`build_flags(con, peers=None)` (re)creates six tables from `claims`, `reviews`, `claim_codes`,
`code_diffs`, `claim_regroup` and `universe`: `upcoding_flags`, `upcoding_rules`, `coder_funnel`,
`facility_target_areas`, `target_area_peers` (each peer's counts per area, for the funnel plots),
`short_stay_rates`. Modules: `claim` (claim rules), `coder`, `facility`
(target areas, short stays), `stats` (the tests), `common` (shapes, thresholds, configuration files).

Claim rules (audited claims; exposure = the claim's overpaid magnitude max(0, -delta), 0 when unpriced):
- `severity_code_removed`: a CC/MCC that set the original DRG's severity level (the MCC codes of a
  "WITH MCC" DRG, the CC codes of a "WITH CC" DRG, both for "WITH CC/MCC") was removed on audit
  (code_diffs secondary `deleted`, or the original side of a `specificity` pair) and the claim
  regrouped to a lighter DRG of the same family (same MDC and `drg_family` title, lower weight).
- `high_risk_mcc_removed`: a code on the watchlist (`audits/data/high_risk_mccs.csv`, code prefixes)
  deleted on audit, whether or not the DRG changed. A specificity pair counts only when it lowered the
  code's CC/MCC level as the grouper used it (J96.01 -> J96.91 counts; N17.9 -> N17.0 does not).
- `heavier_drg_same_principal`: original DRG weight > audited weight, principal diagnosis result `match`.
  Severity of a claim flag, by exposure: high >= $5,000, medium >= $1,000, low below (including $0).

Coder rule `coder_overpaid_share`: for a coder with >= 11 priced audited claims, x overpaid of n, against
the rest of the audit (y overpaid of m, every other priced audited claim, unattributed ones included):
one-sided Fisher exact p = P(X >= x), X ~ Hypergeometric(n + m, x + y, n): the rest's share is an
estimate too, not a known rate. Benjamini-Hochberg q across the tested coders; flagged at
q < Q_THRESHOLD (0.01). Claims whose payment could not be computed (`not_priced`) count nowhere.
Funnel limits (`coder_funnel`): the same hypergeometric's 2.5/97.5% and 0.1/99.9% quantiles / n with the
audit's totals (`audit_claims`, `audit_overpaid`), so a coder above `upper_998` has p <= 0.001.

Facility rules (claims universe: `universe` when it has rows, else `claims`; billed DRGs; no audit):
- Target areas (`audits/data/target_areas.csv`, sources in TARGET_AREAS.md; plus one `mcc_share_<drgs>`
  area per medical family with a WITH MCC / WITH CC / WITHOUT CC/MCC split, from Table 5 titles).
  percent = 100 x numerator / denominator (the facility's own discharges, every cell).
- Peers: the `peers` DataFrame (provider_id, drg, discharges; CMS "Medicare Inpatient Hospitals - by
  Provider and Service" names Rndrng_Prvdr_CCN, DRG_Cd, Tot_Dschrgs accepted), else the other facilities
  of the universe; never the facility itself. A peer counts for an area (a complete peer) when its
  denominator is >= 11 and, in a suppressed file (every cell >= 11, as CMS publishes), it reports every
  DRG cell of the area: a missing cell there means "under 11, unknown", not zero. A peers file with
  cells under 11 is complete: every facility counts. `peers_incomplete` = peers left out for the area.
- peer_p20 / peer_p80: 20th / 80th percentiles of the complete peers' percents (linear interpolation).
  Outlier: `high` when percent >= peer_p80 (direction high or both), `low` when percent <= peer_p20
  (direction low or both). Rows with a numerator or denominator under 11 are `suppressed`, never
  outliers. `peer_percentile` (midrank) is shown for reading only; the rule uses peer_p20 / peer_p80.
- Significance, Spiegelhalter's overdispersed funnel (Stat Med 2005;24:1185-1202, additive random effects;
  `stats.overdispersion`): p0 = the complete peers' pooled proportion; peer z = (y - p0) / sqrt(p0(1-p0)/n);
  tau2 from the peers' z-scores winsorised at 10%/90% (the floor(10%) most extreme at each end set to the
  next one inward; DerSimonian-Laird moment form, floored at 0); z_d = (y - p0) / sqrt(p0(1-p0)/n + tau2).
  p: the exact tail of the same random-effects model with binomial counts (beta-binomial, mean p0, extra
  variance tau2 plus the pooled rate's own sampling variance; `stats.overdispersed_p`), one-sided in the
  area's direction (twice the smaller tail for `both`): the normal tail of z_d is far too thin for the
  small numerators of an audit (5 facility flags in 39 clean demo seeds with it). Benjamini-Hochberg
  across every facility test of the run (each unsuppressed row with at least two peers, target areas and
  short stays together). A facility flag = the outlier AND q < Q_THRESHOLD.
- `short_stay_highest_severity` (OIG OEI-02-18-00380): highest-severity stays (billed DRG whose Table 5
  title starts "WITH MCC" after its family, in a family of >= 2 members, "WITH MCC OR ..." included) with a
  length of stay under 0.8 x the DRG's geometric mean LOS (Table 5 of the discharge's fiscal year). Rates by
  facility and coder in `short_stay_rates`. A facility is flagged when not suppressed (stays and short
  stays >= 11), its rate >= the 80th percentile of the other facilities with >= 11 such stays, and its
  overdispersed z test (peers = those facilities, direction high) has q < Q_THRESHOLD.
- Single MCC (`single_mcc_stays` / `audited_mcc_stays`, audited stays only): from every non-excluded MCC the
  grouper reports for the original coding (`claim_regroup.original_severity_codes`, CC exclusion applied,
  HACs left out), not only the one it marks as setting the DRG. Denominator: audited stays of a
  highest-severity original DRG with at least one such MCC; a "WITH MCC OR ..." DRG (e.g. 064 "... WITH MCC
  OR TPA IN 24 HOURS") reached without an MCC (by tPA) does not rest on an MCC and is left out.
Facility flags: exposure NULL (no audit), severity high q < 0.0001, medium q < 0.001, low otherwise.

flag_id: '<level>:<rule>:<entity>' (+ ':<target_area>' for target areas). Rates in `upcoding_flags`
(observed, expected) are proportions 0-1 for coder and facility rules and payments ($) for claim rules
(observed = original payment, expected = audited payment); `percent` and `peer_p20/p80` of target areas
are 0-100; p0 and tau2 are on the proportion scale.
"""

from __future__ import annotations

import duckdb
import pandas as pd

from audits.flags.claim import claim_flags
from audits.flags.coder import coder_flags, coder_funnel
from audits.flags.common import (FLAG_COLUMNS, FUNNEL_COLUMNS, MIN_COUNT, PEER_COLUMNS, Q_THRESHOLD, RULE_COLUMNS,
                                 RULES, SHORT_STAY_COLUMNS, TARGET_COLUMNS, drg_reference, family_areas,
                                 load_target_areas, load_watchlist, normalise_peers, temp_table, universe_source,
                                 weights_for, write_table)
from audits.flags.facility import facility_flags, facility_target_areas, short_stay_rates
from audits.flags.stats import (bh_qvalues, coder_limits, fisher_p, overdispersed_limits, overdispersed_p,
                                overdispersed_z, overdispersion, percentile_rank)

__all__ = [
    "FLAG_COLUMNS", "FUNNEL_COLUMNS", "MIN_COUNT", "PEER_COLUMNS", "Q_THRESHOLD", "RULE_COLUMNS", "RULES",
    "SHORT_STAY_COLUMNS",
    "TARGET_COLUMNS", "bh_qvalues", "build_flags", "coder_limits", "drg_reference", "family_areas", "fisher_p",
    "flag_summary", "load_target_areas", "load_watchlist", "normalise_peers", "overdispersed_limits", "overdispersed_p",
    "overdispersed_z", "overdispersion", "percentile_rank",
]


def build_flags(con: duckdb.DuckDBPyConnection, peers: pd.DataFrame | None = None, watchlist_path=None,
                target_areas_path=None, weights_dir=None) -> dict:
    """(Re)create upcoding_flags, upcoding_rules, coder_funnel, facility_target_areas, target_area_peers and
    short_stay_rates;
    return the number of flags by level {"claim": n, "coder": n, "facility": n}."""
    source = universe_source(con)
    weights = weights_for(con, source, weights_dir)
    ref = drg_reference(weights)
    temp_table(con, "_flags_drg_ref", ref[["fiscal_year", "drg", "title", "mdc", "family", "level", "family_size",
                                           "highest", "weight", "gmlos"]])
    temp_table(con, "_flags_watchlist", load_watchlist(watchlist_path))
    areas = load_target_areas(target_areas_path, weights)

    claims = claim_flags(con)
    funnel = coder_funnel(con)
    coders = coder_flags(con, funnel)
    targets, peer_rows = facility_target_areas(con, areas, peers)
    stays = short_stay_rates(con)
    facilities, targets, stays = facility_flags(con, targets, stays, areas)

    parts = [f for f in (claims, coders, facilities) if not f.empty]
    flags = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(FLAG_COLUMNS))
    write_table(con, "upcoding_flags", flags, FLAG_COLUMNS)
    write_table(con, "upcoding_rules", RULES, RULE_COLUMNS)
    write_table(con, "coder_funnel", funnel, FUNNEL_COLUMNS)
    write_table(con, "facility_target_areas", targets, TARGET_COLUMNS)
    write_table(con, "target_area_peers", peer_rows, PEER_COLUMNS)
    write_table(con, "short_stay_rates", stays, SHORT_STAY_COLUMNS)
    for name in ("_flags_drg_ref", "_flags_watchlist", "_flags_claim_base", "_flags_removed", "_flags_area_drgs",
                 "_flags_fac_drg", "_flags_peer_drg", "_flags_stays", "_flags_target_hits", "_flags_stay_hits"):
        con.execute(f"DROP TABLE IF EXISTS {name}")
    return flag_summary(con)


def flag_summary(con: duckdb.DuckDBPyConnection) -> dict:
    """Flags by level from `upcoding_flags`: {"claim": n, "coder": n, "facility": n} (flags, not distinct
    entities: one claim can carry several claim rules)."""
    counts = dict(con.execute("SELECT level, count(*) FROM upcoding_flags GROUP BY level").fetchall())
    return {level: int(counts.get(level, 0)) for level in ("claim", "coder", "facility")}
