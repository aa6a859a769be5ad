"""Typed errors, translated once at the CLI boundary.

Library code raises these; ``alq.cli`` turns them into one ``Error: ...`` line
on stderr. Bad input or bad usage exits 2, anything else that fails exits 1.
"""

from __future__ import annotations


class AlqError(Exception):
    """Base of every error alq raises on purpose. Exit code 2 (bad input)."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.hint = hint

    def line(self) -> str:
        """The one line shown to the user (message, then what to do next)."""
        msg = str(self)
        return f"{msg} ({self.hint})" if self.hint else msg


class BadInputError(AlqError):
    """An input file or value is wrong: names the file, row or argument."""


class StoreError(BadInputError):
    """A pool store is missing, corrupt, or does not match what was asked."""


class StaleError(BadInputError):
    """A derived file (scores, clusters, head) no longer matches its pool."""


class BudgetError(BadInputError):
    """The budget cannot be met from the unlabeled pool."""


class MissingFeatureError(AlqError):
    """A documented feature that is not available in this install (exit 2)."""


class AlqFailure(AlqError):
    """Something failed that was not the user's input. Exit code 1."""

    exit_code = 1
