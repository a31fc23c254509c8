"""What a target does wrong, as one exception the writer and the importer catch."""

from __future__ import annotations


class TargetError(Exception):
    """The target cannot be used or refused what was sent; the message says which key and why."""
