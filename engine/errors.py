"""Exception hierarchy.

Every failure a user can cause is an ``EngineError``; the CLI turns it into one line on
stderr and a non-zero exit code.  ``CaseError`` always says where (file and path into the
spec), what (the offending value) and how to fix it.
"""

from __future__ import annotations


class EngineError(Exception):
    """Base class of every error the engine reports to a user."""

    exit_code = 1


class CaseError(EngineError):
    """A case file (or a priors/ file it refers to) is invalid."""

    exit_code = 2

    def __init__(self, file: str, path: str, message: str) -> None:
        self.file = str(file)
        self.path = path or "<root>"
        self.message = message
        super().__init__(f"{self.file}: {self.path}: {message}")


class CaseErrors(EngineError):
    """Several problems found while validating one case file (reported one per line)."""

    exit_code = 2

    def __init__(self, errors: list[CaseError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


class RunError(EngineError):
    """A run could not be carried out or a run folder is unusable."""

    exit_code = 3


class OptionError(RunError):
    """Options that do not fit together, or point at unusable files: a usage error (exit 2)."""

    exit_code = 2
