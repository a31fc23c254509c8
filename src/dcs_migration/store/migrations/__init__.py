"""Alembic migrations of the store's schema; run by `dcs_migration.store.db.open_store`."""
