"""Shared test helpers (tests/ is on pytest's path: pyproject.toml's pythonpath)."""
