"""Plotly HTML reports and CSV worklists of an audit period (see `reports.build.write_reports`)."""

from reports.build import write_reports

__all__ = ["write_reports"]
