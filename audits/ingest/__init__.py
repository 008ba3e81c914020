"""Ingest: takes the users' claim, review, universe and peer files in any supported layout; gives the
validated, normalised rows published to the warehouse (and the quarantined ones in `rejected_rows`)."""
