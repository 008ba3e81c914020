"""One reader per input layout. Each maps its files into the same staging tables:

- `stg_<entity>` (entity = claims | reviews): one row per input row, contract header columns as
  text (blank -> NULL), `extra_columns` JSON for columns the contract does not know,
  `_source_file`, `_source_row`.
- `stg_<entity>_codes`: claim_id, kind 'dx'|'px', position, code_raw, poa_raw, `_source_file`,
  `_source_row`, `_source_column` (where a quarantine reason should point).
- `stg_<entity>_findings`: problems the reader found while mapping its layout (quarantined).
- optionally `stg_<entity>_code_keys`: the code rows with a normalised code, already normalised
  (claim_id, kind, position_t, code, poa, `_source_file`): validation then writes these instead
  of normalising `stg_<entity>_codes` itself (the wide layout, for speed).

Each reader's `stage(con, entity, paths)` returns {file: FileRead} for the files holding claim
(or review) records: how many of the audited kind it staged and how many it skipped, by reason.
Validation and publishing read only the staging tables, so a new layout is a new module here and
touches nothing downstream. Modules: `base` (helpers every reader imports), `detect` (layout
registry and detection), `stage` (`stage_inputs`), one module per layout.
"""

from audits.ingest.readers.base import FileRead, InputFiles
from audits.ingest.readers.stage import StagedInputs, stage_inputs

__all__ = ["FileRead", "InputFiles", "StagedInputs", "stage_inputs"]
