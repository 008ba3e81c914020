"""Benchmark input at national scale without regenerating it: k copies of a generated claims file.

The generator groups every claim it writes (about 3k claims/s here), so a 9M-claim year takes most
of an hour; the benchmarks only need realistic rows at that volume. This writes `--copies` copies
of DIR/claims.csv (copy k's claim_id gets the prefix `Rk-`; copy 0 is the file itself, so the
reviews still match) with DuckDB, streamed, and copies reviews.csv alongside. A prefix, not a
suffix: each copy is then its own run of claim_ids, so the universe regroup's chunks and batches
hold one copy each, as many distinct claims as the original (the grouper groups each distinct
code set of a batch once; adjacent copies would make it look several times faster).

    .venv/bin/python benchmarks/replicate.py --source DIR --copies 9 --out DIR9
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import duckdb


def replicate(source: Path, copies: int, out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    claims = str(source / "claims.csv").replace("'", "''")
    con = duckdb.connect()
    with open(out / "claims.csv", "wb") as whole:
        for k in range(copies):
            part = out / f".claims-{k}.csv"
            prefix = "" if k == 0 else f"R{k}-"
            con.execute(f"""
                COPY (SELECT * REPLACE ('{prefix}' || claim_id AS claim_id)
                      FROM read_csv('{claims}', header=true, all_varchar=true))
                TO '{str(part).replace("'", "''")}' (HEADER {'true' if k == 0 else 'false'}, DELIMITER ',')""")
            with open(part, "rb") as piece:
                shutil.copyfileobj(piece, whole, 16 << 20)
            part.unlink()
    shutil.copy(source / "reviews.csv", out / "reviews.csv")
    return {"claims": out / "claims.csv", "reviews": out / "reviews.csv"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, required=True)
    parser.add_argument("--copies", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    started = time.perf_counter()
    paths = replicate(args.source, args.copies, args.out)
    print(f"wrote {paths['claims']} in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
