"""Alembic migrations for wct's database."""
