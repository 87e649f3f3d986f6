"""The errors and warnings of the dataset layer."""

from __future__ import annotations


class DatasetError(ValueError):
    """A source, image or dataset.json that cannot be used. The message always names the
    offending file (and the zip it is in, if any); `path` holds that name for programs."""

    def __init__(self, message: str, path: str | None = None):
        super().__init__(message)
        self.path = path


class SkippedImageWarning(UserWarning):
    """Issued for every bad image that `convert_dataset(..., skip_bad=True)` leaves out."""
