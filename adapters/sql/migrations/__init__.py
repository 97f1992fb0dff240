"""Alembic migrations of pvebot's database."""
