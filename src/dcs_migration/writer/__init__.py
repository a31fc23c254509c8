"""Records into Redis: RESTORE or rewrite per key, AOF replay, replies, the native hand-off."""
