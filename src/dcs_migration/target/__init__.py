"""Writing records into Redis."""
