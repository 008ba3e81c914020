"""Dagster definitions (jobs, schedules, sensors, resources) and the command-line entry point."""
