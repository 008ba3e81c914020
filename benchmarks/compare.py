"""Benchmark: code_diffs, error_rates and the coder scorecard for 100,000 audited claims.

Builds synthetic `claims`, `reviews` and `claim_codes` directly in an in-memory DuckDB (codes from a
small pool; about 10% of codes perturbed on the audited side: deleted, changed within category,
changed, POA changed; some secondaries added and some principals swapped), then times each stage.
Pseudo-random numbers come from hash(), so the data are the same on every run and thread count.

    python benchmarks/compare.py [--claims 100000] [--threads N]

The last line printed is one JSON object with the figures. Target: under 10 s for the three stages.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import duckdb

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from audits.compare import build_code_diffs, build_coder_scorecard, build_error_rates  # noqa: E402


def _u(*parts: str) -> str:
    """Deterministic uniform [0, 1) from hash() of the given SQL expressions."""
    return f"(hash({', '.join(parts)}) % 1000000) / 1000000.0"


def build_synthetic(con, claims: int) -> None:
    con.execute(
        f"""
        CREATE TABLE claims AS
        SELECT printf('C%07d', i) AS claim_id, printf('F%02d', i % 20) AS facility_id,
               printf('P%07d', i) AS patient_id,
               DATE '2025-01-01' + CAST(i % 365 AS INTEGER) AS admit_date,
               DATE '2025-01-01' + CAST(i % 365 + 1 + i % 9 AS INTEGER) AS discharge_date,
               '01' AS discharge_status, CAST(20 + i % 80 AS INTEGER) AS age,
               CASE WHEN i % 2 = 0 THEN 'F' ELSE 'M' END AS sex,
               (['MCR', 'MCD', 'COM', 'SELF'])[1 + i % 4] AS payer,
               printf('K%03d', i % 150) AS coder_id,
               (['MED', 'SURG', 'CARD', 'ORTHO', 'NEURO', 'OB'])[1 + i % 6] AS service_line,
               NULL::VARCHAR AS billed_drg, 431 AS drg_version, '2025Q4' AS audit_period,
               'bench' AS source_file, i AS source_row, NULL::JSON AS extra_columns
        FROM range({claims}) t(i);

        CREATE TABLE reviews AS
        SELECT claim_id, 'R1' AS reviewer_id, DATE '2026-02-01' AS review_date,
               NULL::VARCHAR AS discharge_status, NULL::VARCHAR AS reviewer_drg, NULL::VARCHAR AS notes,
               audit_period, source_file, source_row, NULL::JSON AS extra_columns
        FROM claims;

        -- original side: 1..15 dx from 60 categories x 6 codes, 0..3 px from 40 codes
        CREATE TABLE _orig AS
        WITH counts AS (
            SELECT claim_id, source_row AS i,
                   1 + CAST(floor({_u("claim_id", "'ndx'")} * 15) AS INTEGER) AS n_dx,
                   CAST(floor({_u("claim_id", "'npx'")} * 4) AS INTEGER) AS n_px
            FROM claims
        )
        SELECT claim_id, 'dx' AS kind, p AS position,
               printf('%s%02d%d', chr(65 + (cat % 26)::INTEGER), cat, sub) AS code,
               CASE WHEN {_u("claim_id", "p", "'poa'")} < 0.9 THEN 'Y' ELSE 'N' END AS poa
        FROM (SELECT claim_id, p,
                     CAST(floor({_u("claim_id", "p", "'cat'")} * 60) AS INTEGER) AS cat,
                     CAST(floor({_u("claim_id", "p", "'sub'")} * 6) AS INTEGER) AS sub
              FROM counts, range(1, n_dx + 1) r(p))
        UNION ALL
        SELECT claim_id, 'px', p, printf('0DT%s%dZZ', chr(65 + (k % 8)::INTEGER), k % 5), NULL
        FROM (SELECT claim_id, p, CAST(floor({_u("claim_id", "p", "'px'")} * 40) AS INTEGER) AS k
              FROM counts, range(1, n_px + 1) r(p));

        CREATE TABLE claim_codes AS
        WITH perturbed AS (
            SELECT *, {_u("claim_id", "kind", "position", "'act'")} AS r FROM _orig
        ),
        audited AS (
            SELECT claim_id, kind, position,
                   CASE WHEN r < 0.04 THEN left(code, 3) || CASE WHEN right(code, 1) = '9' THEN '8'
                                                                  ELSE '9' END        -- specificity
                        WHEN r < 0.06 THEN 'Z99' || right(code, 1)                 -- changed
                        ELSE code END AS code,
                   CASE WHEN kind = 'dx' AND r BETWEEN 0.06 AND 0.07 THEN
                            CASE WHEN poa = 'Y' THEN 'N' ELSE 'Y' END ELSE poa END AS poa
            FROM perturbed
            WHERE NOT (r >= 0.97 AND position > 1)                                   -- deleted
            UNION ALL                                                                -- added
            SELECT claim_id, 'dx', 26, 'N17' || CAST(floor(r * 10) AS INTEGER), 'N'
            FROM perturbed WHERE kind = 'dx' AND position = 1 AND r BETWEEN 0.5 AND 0.55
        ),
        swapped AS (  -- about 2% of claims: principal and first secondary trade places
            SELECT a.claim_id, a.kind,
                   CASE WHEN a.kind = 'dx' AND {_u("a.claim_id", "'swap'")} < 0.02 AND a.position <= 2
                             AND m.n_dx >= 2
                        THEN 3 - a.position ELSE a.position END AS position,
                   a.code, a.poa
            FROM audited a
            JOIN (SELECT claim_id, count(*) FILTER (WHERE kind = 'dx' AND position <= 2) AS n_dx
                  FROM audited GROUP BY claim_id) m ON m.claim_id = a.claim_id
        )
        SELECT claim_id, 'original' AS side, kind, position, code, poa FROM _orig
        UNION ALL
        SELECT claim_id, 'audited', kind,
               CAST(row_number() OVER (PARTITION BY claim_id, kind ORDER BY position) AS INTEGER),
               code, poa
        FROM swapped;
        DROP TABLE _orig;
        """
    )


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claims", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)

    con = duckdb.connect()
    if args.threads:
        con.execute(f"SET threads = {args.threads}")
    t0 = time.perf_counter()
    build_synthetic(con, args.claims)
    setup_s = time.perf_counter() - t0
    code_rows = con.execute("SELECT count(*) FROM claim_codes").fetchone()[0]
    print(f"synthetic data: {args.claims:,} audited claims, {code_rows:,} claim_codes rows in {setup_s:.2f} s")

    figures: dict = {"claims": args.claims, "claim_codes_rows": code_rows, "setup_s": round(setup_s, 3),
                     "threads": con.execute("SELECT current_setting('threads')").fetchone()[0]}
    total = 0.0
    for stage, fn in (("code_diffs", build_code_diffs), ("error_rates", build_error_rates),
                      ("coder_scorecard", build_coder_scorecard)):
        t = time.perf_counter()
        rows = fn(con)
        seconds = time.perf_counter() - t
        total += seconds
        print(f"{stage:16s} {seconds:7.2f} s  {rows:>10,} rows out  {rows / seconds:>12,.0f} rows/s"
              f"  {args.claims / seconds:>12,.0f} claims/s")
        figures[f"{stage}_s"] = round(seconds, 3)
        figures[f"{stage}_rows"] = rows
        figures[f"{stage}_rows_per_s"] = round(rows / seconds)
    figures["total_s"] = round(total, 3)
    figures["claims_per_s"] = round(args.claims / total)
    figures["claim_codes_rows_per_s"] = round(code_rows / total)
    figures["under_10_s"] = total < 10
    results = dict(con.execute(
        "SELECT result, count(*) FROM code_diffs GROUP BY result ORDER BY result").fetchall())
    figures["code_diffs_by_result"] = results
    figures["record_error_rate"] = con.execute(
        "SELECT round(rate, 4) FROM error_rates WHERE metric = 'record_error_rate' AND breakdown = 'all'"
    ).fetchone()[0]
    print(f"total            {total:7.2f} s  {args.claims / total:,.0f} claims/s")
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
