"""Errors that carry what a user needs to fix the input: the file and what was expected."""


class DetectorError(Exception):
    """Base class: the message is shown to the user as one line."""


class FileError(DetectorError):
    """A whole file cannot be used (empty, binary, unknown format, no required columns)."""

    def __init__(self, source: str, message: str):
        self.source = source
        self.message = message
        super().__init__(f"{source}: {message}")


class StoreBusy(DetectorError):
    """The DuckDB file stayed locked by another writer for longer than we wait."""
