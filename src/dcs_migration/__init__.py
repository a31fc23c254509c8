"""dcs-migration: import Redis backups into Redis behind the DCS migration-task API."""

__version__ = "0.1.0"
