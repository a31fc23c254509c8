"""Records into Redis: RESTORE or rewrite per key, AOF replay, replies, the native hand-off.

The way in is `writer.facade.open_writer(endpoint, options)`. This package module stays
empty: the command line imports `writer.options` without loading the writer itself.
"""
