"""Errors a user can act on: they name the file, the row and the column."""

from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """A file-level problem with an input (exit code 2): unreadable, wrong encoding, missing column."""

    def __init__(self, message: str, file: str | Path | None = None, row: int | None = None,
                 column: str | None = None):
        self.message = message
        self.file = str(file) if file is not None else None
        self.row = row
        self.column = column
        super().__init__(str(self))

    def __str__(self) -> str:
        where = []
        if self.file:
            where.append(f"file {self.file}")
        if self.row == 0:
            where.append("header row")
        elif self.row is not None:
            where.append(f"row {self.row}")
        if self.column:
            where.append(f"column {self.column}")
        prefix = ", ".join(where)
        return f"{prefix}: {self.message}" if prefix else self.message
