"""One reader per input layout. Each maps its files into the same staging tables:

- `stg_<entity>` (entity = claims | reviews): one row per input row, contract header columns as
  text (blank -> NULL), `extra_columns` JSON for columns the contract does not know,
  `_source_file`, `_source_row`.
- `stg_<entity>_codes`: claim_id, kind 'dx'|'px', position, code_raw, poa_raw, `_source_file`,
  `_source_row`, `_source_column` (where a quarantine reason should point).

Validation and publishing read only these, so a new layout (Tuva, CMS files, 837I, FHIR) is a new
module here and touches nothing downstream.
"""

from audits.readers.base import InputFiles, stage_inputs

__all__ = ["InputFiles", "stage_inputs"]
