"""Sans-I/O readers and writers of Redis backups: bytes in, records out, and back.

Nothing here opens a file or a socket: `dcs_migration.reading` drives the readers over
the inputs a source opens. A record's value is decoded by `formats.values.decode_value`;
each type's layout lives in `formats.types`.
"""

from __future__ import annotations

from dcs_migration.formats.errors import FormatError
from dcs_migration.formats.rdb import RdbReader
from dcs_migration.formats.records import (
    AofCommand,
    AofTruncated,
    AuxField,
    FunctionLibrary,
    KeyRecord,
    ModuleAux,
    RdbEnd,
    RdbHeader,
    Record,
    ResizeDb,
    SelectDb,
    SlotInfo,
)

__all__ = [
    "AofCommand",
    "AofTruncated",
    "AuxField",
    "FormatError",
    "FunctionLibrary",
    "KeyRecord",
    "ModuleAux",
    "RdbEnd",
    "RdbHeader",
    "RdbReader",
    "Record",
    "ResizeDb",
    "SelectDb",
    "SlotInfo",
]
