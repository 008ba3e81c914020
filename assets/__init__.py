"""Thin Dagster assets: each calls `audits/` and reads or writes the DuckDB warehouse."""
