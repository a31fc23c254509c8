"""Migration tasks: what runs an import for the service, and tracks it."""
