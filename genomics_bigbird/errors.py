"""Project exception types: the CLI turns these into one line and exit code 2."""
from __future__ import annotations

from os import PathLike


class InputError(Exception):
    """A problem with a file or value the user gave us; the message says how to fix it."""

    def __init__(self, message: str, path: str | PathLike | None = None, line: int | None = None):
        self.message = message
        self.path = None if path is None else str(path)
        self.line = line
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            where = self.path if self.line is None else f"{self.path}:{self.line}"
            where += ": "
        return where + self.message

    def __reduce__(self):
        # Raised in a worker process and re-raised in the parent: keep the file and line.
        return type(self), (self.message, self.path, self.line)


class TrainingError(Exception):
    """Training cannot continue (NaN loss, wrong tokenizer for a checkpoint); message names the fix."""
