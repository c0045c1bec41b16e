"""The tool's own exceptions: one message template, one exit code each.

Library code raises these; only the CLI turns them into a one-line message and
an exit status (2 for a user's mistake in usage, config or data; 1 for a
failure at run time). Anything else escaping to the CLI is a bug and is shown
as a runtime failure (traceback with ``--debug``).
"""

from __future__ import annotations


class TextclfError(Exception):
    """Base class. ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class UsageError(TextclfError):
    """The user asked for something that cannot be done as asked."""

    exit_code = 2


class ConfigError(UsageError):
    """A config value is missing, misspelt, of the wrong type or out of range.

    Template: ``<dotted.key> must be <what is allowed>; got <value> (<file>)``.
    """

    def __init__(self, key: str, expected: str, got: object, source: str | None = None):
        where = f" ({source})" if source else ""
        super().__init__(f"{key} must be {expected}; got {got!r}{where}")
        self.key = key
        self.expected = expected

    @classmethod
    def unknown_key(cls, key: str, section: str, hint: str, source: str | None) -> "ConfigError":
        """``unknown key model.filtrs in section model; did you mean model.filters?``"""
        err = cls.__new__(cls)
        where = f" ({source})" if source else ""
        UsageError.__init__(err, f"unknown key {key} in section {section}{hint}{where}")
        err.key = key
        return err


class DataError(UsageError):
    """A data file is missing, unreadable or malformed.

    Template: ``<file>:<line>: <what was expected>, found <what was found>``.
    """

    def __init__(self, message: str, path: object = None, line: int | None = None):
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(f"{where}{message}")
        self.path = path
        self.line = line


class RunDirError(UsageError):
    """A path given as a run directory is not one, or is from another version."""
