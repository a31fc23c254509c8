"""Where backup bytes come from, as inputs: one logical backup each, opened as streams.

`find_inputs(path)` finds the backups at a local file or folder (archives included);
`dcs_migration.reading.read_input` reads one input to records.
"""

from __future__ import annotations

from dcs_migration.sources.guard import DEFAULT_LIMITS, ArchiveLimits
from dcs_migration.sources.inputs import ByteStream, Input, InputKind, InputPart, Opener
from dcs_migration.sources.local import find_inputs

__all__ = [
    "DEFAULT_LIMITS",
    "ArchiveLimits",
    "ByteStream",
    "Input",
    "InputKind",
    "InputPart",
    "Opener",
    "find_inputs",
]
