"""Talking to Redis: connections, pipelines, cluster topology and redirects, the RESP encoder."""
