"""Alembic migrations for the audit and feedback tables, shipped inside the package."""
