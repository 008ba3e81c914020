"""Domain logic of coding-audit: plain functions over DataFrames and DuckDB SQL, no Dagster."""
