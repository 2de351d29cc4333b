"""Alembic migrations; the schema of `events` is owned here."""
